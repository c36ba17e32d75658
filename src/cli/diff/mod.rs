//! `posturio check --diff OLD NEW`: what a policy change does, one line per fact, for review.
//!
//! Both files are compiled by the filter's own loader, and the two compiled policies are
//! compared: what is compared is what the filter enforces, not the text. Consumers' globs are
//! already expanded against each file's catalogue, a consumer without its own `mode`,
//! `opaque_content` or `rules` already holds the inherited value, and a consumer name that is
//! not defined is evaluated as `default` (its budget and output-token cap included).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

mod guards;
mod identity;
mod rules;

use self::guards::guards;
use self::identity::{credentials, identity_name, identity_sign};
use self::rules::rules;
use super::{config_errors, read, CliError, Output};
use crate::policy::budget::{Limit, Unit, Window};
use crate::policy::compiled::{Consumer, Model, DEFAULT_CONSUMER};
use crate::policy::config::{CapAction, Mode, OpaqueContent};
use crate::policy::price::{Price, Usd};
use crate::policy::Policy;

pub const LEGEND: &str = "\
'+' widens access or weakens inspection, '-' narrows access or strengthens it, '~' neither";

/// Which way a change moves the policy's security posture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Widen,
    Narrow,
    Neutral,
}

impl Sign {
    fn mark(self) -> char {
        match self {
            Sign::Widen => '+',
            Sign::Narrow => '-',
            Sign::Neutral => '~',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sign::Widen => "widen",
            Sign::Narrow => "narrow",
            Sign::Neutral => "neutral",
        }
    }
}

struct Change {
    sign: Sign,
    text: String,
}

#[derive(Default)]
struct Changes(Vec<Change>);

impl Changes {
    fn add(&mut self, sign: Sign, text: impl Into<String>) {
        self.0.push(Change {
            sign,
            text: text.into(),
        });
    }
}

/// `check --diff OLD NEW [--json]`.
pub fn check_diff(args: &[String]) -> Result<Output, CliError> {
    let mut json_output = false;
    let mut paths = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--json" => json_output = true,
            "--diff" => {}
            flag if flag.starts_with("--") => {
                return Err(CliError::Usage(format!("unknown option {flag}")))
            }
            _ => paths.push(arg.as_str()),
        }
    }
    let [old_path, new_path] = <[&str; 2]>::try_from(paths)
        .map_err(|_| CliError::Usage("check --diff takes an OLD and a NEW file".to_owned()))?;
    let old_bytes = read(old_path)?;
    let new_bytes = read(new_path)?;

    let mut errors = Vec::new();
    let old = load(old_path, &old_bytes, &mut errors);
    let new = load(new_path, &new_bytes, &mut errors);
    let (Some(old), Some(new)) = (old, new) else {
        return Ok(Output {
            code: 1,
            stdout: String::new(),
            stderr: errors.join("\n"),
        });
    };

    let changes = diff(&old, &new);
    let stdout = if json_output {
        let list: Vec<Value> = changes
            .0
            .iter()
            .map(|change| {
                json!({
                    "change": change.sign.name(),
                    "line": change.text,
                })
            })
            .collect();
        json!({ "old": old_path, "new": new_path, "changes": list }).to_string()
    } else {
        let mut lines = vec![
            format!("policy diff {old_path} -> {new_path}"),
            LEGEND.to_owned(),
        ];
        if changes.0.is_empty() {
            lines.push("no changes".to_owned());
        }
        lines.extend(
            changes
                .0
                .iter()
                .map(|change| format!("{} {}", change.sign.mark(), change.text)),
        );
        lines.join("\n")
    };
    Ok(Output {
        code: 0,
        stdout,
        stderr: String::new(),
    })
}

/// The compiled policy, when the filter would load it; its mistakes otherwise.
fn load(path: &str, bytes: &[u8], errors: &mut Vec<String>) -> Option<Policy> {
    match Policy::from_json(bytes) {
        Ok(policy) => Some(policy),
        Err(found) => {
            errors.push(config_errors(path, &found));
            None
        }
    }
}

/// A consumer as the filter evaluates it, in the order a review reads it.
#[derive(PartialEq, Eq)]
struct Effective<'a> {
    approved: BTreeSet<&'a str>,
    mode: Mode,
    opaque: OpaqueContent,
    rules: BTreeSet<&'a str>,
    guards: BTreeSet<&'a str>,
    /// Tokens per window, by the window's key (`tokens_per_minute`, ...), shortest first.
    budget: [(&'static str, Option<u64>); 6],
    output_cap: Option<(u64, CapAction)>,
}

fn effective<'a>(policy: &'a Policy, consumer: &'a Consumer) -> Effective<'a> {
    let rules = policy
        .rules
        .iter()
        .zip(&consumer.rules)
        .filter(|(_, applies)| **applies)
        .map(|(rule, _)| rule.id.as_str())
        .collect();
    let limit = |unit: Unit, window: Window| {
        let limits = consumer
            .budget
            .as_ref()
            .map_or(&[][..], |budget| &budget.limits);
        let found = limits
            .iter()
            .find(|limit| limit.window == window && limit.unit == unit);
        let key = Limit {
            window,
            unit,
            amount: 0,
        }
        .config_key();
        (key, found.map(|limit| limit.amount))
    };
    Effective {
        approved: consumer.approved.iter().map(String::as_str).collect(),
        mode: consumer.mode,
        opaque: consumer.opaque_content,
        rules,
        guards: consumer
            .guards
            .iter()
            .filter_map(|index| policy.guards.get(*index))
            .map(|guard| guard.id.as_str())
            .collect(),
        budget: [
            limit(Unit::Tokens, Window::Minute),
            limit(Unit::Tokens, Window::Hour),
            limit(Unit::Tokens, Window::Day),
            limit(Unit::Tokens, Window::Month),
            limit(Unit::MicroUsd, Window::Day),
            limit(Unit::MicroUsd, Window::Month),
        ],
        output_cap: consumer.output_cap.map(|cap| (cap.limit, cap.action)),
    }
}

/// How the filter treats requests that name `name`: its own entry, else `default`'s, else
/// none (no consumer: refused in enforce mode).
fn evaluated_as<'a>(policy: &'a Policy, name: &str) -> Option<Effective<'a>> {
    policy
        .consumers
        .get(name)
        .or_else(|| policy.consumers.get(DEFAULT_CONSUMER))
        .map(|consumer| effective(policy, consumer))
}

/// The models a consumer may use; none without a consumer.
fn approved<'a>(view: &Option<Effective<'a>>) -> BTreeSet<&'a str> {
    view.as_ref()
        .map(|view| view.approved.clone())
        .unwrap_or_default()
}

fn diff(old: &Policy, new: &Policy) -> Changes {
    let mut changes = Changes::default();
    globals(&mut changes, old, new);
    providers(&mut changes, old, new);
    catalogue(&mut changes, old, new);
    consumers(&mut changes, old, new);
    credentials(&mut changes, old, new);
    rules(&mut changes, old, new);
    guards(&mut changes, old, new);
    passthrough(&mut changes, old, new);
    changes
}

fn mode_change(changes: &mut Changes, subject: &str, old: Mode, new: Mode, loosened: &str) {
    match (old, new) {
        (Mode::Enforce, Mode::Audit) => changes.add(
            Sign::Widen,
            format!("{subject} enforce -> audit ({loosened})"),
        ),
        (Mode::Audit, Mode::Enforce) => {
            changes.add(Sign::Narrow, format!("{subject} audit -> enforce"));
        }
        _ => {}
    }
}

fn opaque_change(changes: &mut Changes, subject: &str, old: OpaqueContent, new: OpaqueContent) {
    if old != new {
        let sign = if new == OpaqueContent::Allow {
            Sign::Widen
        } else {
            Sign::Narrow
        };
        changes.add(
            sign,
            format!("{subject} {} -> {}", old.as_str(), new.as_str()),
        );
    }
}

fn globals(changes: &mut Changes, old: &Policy, new: &Policy) {
    mode_change(
        changes,
        "mode:",
        old.mode,
        new.mode,
        "every denial will be forwarded",
    );
    if identity_name(&old.identity) != identity_name(&new.identity) {
        let (sign, note) = identity_sign(&old.identity, &new.identity);
        changes.add(
            sign,
            format!(
                "identity: {} -> {}{note}",
                identity_name(&old.identity),
                identity_name(&new.identity)
            ),
        );
    }
    if old.max_body_bytes != new.max_body_bytes {
        let sign = if new.max_body_bytes > old.max_body_bytes {
            Sign::Widen
        } else {
            Sign::Narrow
        };
        changes.add(
            sign,
            format!(
                "max_body_bytes: {} -> {}",
                old.max_body_bytes, new.max_body_bytes
            ),
        );
    }
    opaque_change(
        changes,
        "opaque_content:",
        old.opaque_content,
        new.opaque_content,
    );
    if old.route_header != new.route_header {
        changes.add(
            Sign::Neutral,
            format!("route_header: {} -> {}", old.route_header, new.route_header),
        );
    }
    if old.debug_headers != new.debug_headers {
        changes.add(
            Sign::Neutral,
            format!(
                "debug_headers: {} -> {}",
                old.debug_headers, new.debug_headers
            ),
        );
    }
    let (old_inject, new_inject) = (old.inject_stream_usage, new.inject_stream_usage);
    if old_inject != new_inject {
        let (sign, note) = if new_inject {
            (Sign::Narrow, "")
        } else {
            (
                Sign::Widen,
                " (streamed chat completions may report no usage: budgets cannot count them)",
            )
        };
        changes.add(
            sign,
            format!("usage.inject_stream_usage: {old_inject} -> {new_inject}{note}"),
        );
    }
}

/// A limit where `None` is no limit: raising or removing it widens, adding or lowering it
/// narrows.
fn limit_change(changes: &mut Changes, subject: &str, old: Option<u64>, new: Option<u64>) {
    let sign = match (old, new) {
        (Some(before), Some(after)) if after > before => Sign::Widen,
        (Some(_), None) => Sign::Widen,
        (Some(before), Some(after)) if after == before => return,
        (None, None) => return,
        _ => Sign::Narrow,
    };
    let show = |limit: Option<u64>| limit.map_or_else(|| "none".to_owned(), |n| n.to_string());
    changes.add(sign, format!("{subject} {} -> {}", show(old), show(new)));
}

/// A price as USD per million tokens of each kind, or `none`.
fn price_text(price: Option<Price>) -> String {
    price.map_or_else(
        || "none".to_owned(),
        |price| {
            format!(
                "input {} output {} cached_input {} reasoning {} cache_write {} per million \
                 tokens",
                Usd(price.input).exact(),
                Usd(price.output).exact(),
                Usd(price.cached_input).exact(),
                Usd(price.reasoning).exact(),
                Usd(price.cache_write).exact()
            )
        },
    )
}

/// A dollar limit's change, shown in dollars.
fn usd_change(changes: &mut Changes, subject: &str, old: Option<u64>, new: Option<u64>) {
    let mut shown = Changes::default();
    limit_change(&mut shown, subject, old, new);
    let show = |limit: Option<u64>| limit.map_or_else(|| "none".to_owned(), |n| Usd(n).exact());
    for change in shown.0 {
        changes.add(
            change.sign,
            format!("{subject} {} -> {}", show(old), show(new)),
        );
    }
}

fn limits(changes: &mut Changes, subject: &str, before: &Effective, after: &Effective) {
    for ((key, old), (_, new)) in before.budget.iter().zip(&after.budget) {
        if key.starts_with("usd_") {
            usd_change(changes, &format!("{subject}: budget {key}"), *old, *new);
        } else {
            limit_change(changes, &format!("{subject}: budget {key}"), *old, *new);
        }
    }
    let cap = format!("{subject}: max_output_tokens");
    match (before.output_cap, after.output_cap) {
        (None, Some((limit, action))) => changes.add(
            Sign::Narrow,
            format!("{cap} none -> {limit} ({})", action.as_str()),
        ),
        (Some((limit, _)), None) => changes.add(Sign::Widen, format!("{cap} {limit} -> none")),
        (Some((old_limit, old_action)), Some((new_limit, new_action))) => {
            limit_change(changes, &cap, Some(old_limit), Some(new_limit));
            if old_action != new_action {
                // A request over the cap is shortened rather than refused, or the reverse.
                let sign = if new_action == CapAction::Clamp {
                    Sign::Widen
                } else {
                    Sign::Narrow
                };
                changes.add(
                    sign,
                    format!(
                        "{subject}: max_output_tokens_action {} -> {}",
                        old_action.as_str(),
                        new_action.as_str()
                    ),
                );
            }
        }
        (None, None) => {}
    }
}

fn optional(value: Option<&String>) -> &str {
    value.map_or("none", String::as_str)
}

/// The name of the provider at `index` in the compiled policy.
/// How a model is served, for the review: `provider NAME`, or `pool CLUSTER targets [A as M,
/// B as N]` in the configured order.
fn serving_of(policy: &Policy, model: &Model) -> String {
    match &model.pool {
        None => format!("provider {}", provider_name(policy, model.provider)),
        Some(pool) => {
            let targets: Vec<String> = pool
                .targets
                .iter()
                .map(|target| {
                    let provider = provider_name(policy, target.provider);
                    match &target.upstream_model {
                        Some(upstream) => format!("{provider} as {upstream}"),
                        None => provider.to_owned(),
                    }
                })
                .collect();
            format!("pool {} targets [{}]", pool.cluster, targets.join(", "))
        }
    }
}

fn provider_name(policy: &Policy, index: usize) -> &str {
    policy
        .providers
        .get(index)
        .map_or("none", |provider| provider.name.as_str())
}

fn providers(changes: &mut Changes, old: &Policy, new: &Policy) {
    let old_providers: BTreeMap<&str, _> = old
        .providers
        .iter()
        .map(|provider| (provider.name.as_str(), provider))
        .collect();
    let new_providers: BTreeMap<&str, _> = new
        .providers
        .iter()
        .map(|provider| (provider.name.as_str(), provider))
        .collect();
    for (name, provider) in &new_providers {
        let apis: BTreeSet<&str> = provider.families.iter().map(|api| api.as_str()).collect();
        let Some(before) = old_providers.get(name) else {
            changes.add(
                Sign::Neutral,
                format!(
                    "provider {name} added (cluster {}, api {})",
                    provider.cluster,
                    apis.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        if before.cluster != provider.cluster {
            changes.add(
                Sign::Neutral,
                format!(
                    "provider {name}: cluster {} -> {}",
                    before.cluster, provider.cluster
                ),
            );
        }
        let old_apis: BTreeSet<&str> = before.families.iter().map(|api| api.as_str()).collect();
        for api in apis.difference(&old_apis) {
            changes.add(Sign::Widen, format!("provider {name}: api {api} added"));
        }
        for api in old_apis.difference(&apis) {
            changes.add(Sign::Narrow, format!("provider {name}: api {api} removed"));
        }
        if before.base_path != provider.base_path {
            changes.add(
                Sign::Neutral,
                format!(
                    "provider {name}: base_path {} -> {}",
                    optional(before.base_path.as_ref()),
                    optional(provider.base_path.as_ref())
                ),
            );
        }
    }
    for name in old_providers.keys() {
        if !new_providers.contains_key(name) {
            changes.add(Sign::Neutral, format!("provider {name} removed"));
        }
    }
}

fn catalogue(changes: &mut Changes, old: &Policy, new: &Policy) {
    let old_models: BTreeMap<&str, _> = old
        .models
        .iter()
        .map(|(name, model)| (name.as_str(), model))
        .collect();
    let new_models: BTreeMap<&str, _> = new
        .models
        .iter()
        .map(|(name, model)| (name.as_str(), model))
        .collect();
    for (name, model) in &new_models {
        let serving = serving_of(new, model);
        let Some(before) = old_models.get(name) else {
            changes.add(Sign::Neutral, format!("model {name} added ({serving})"));
            continue;
        };
        let old_serving = serving_of(old, before);
        match (&before.pool, &model.pool) {
            (None, None) => {
                let (old_provider, provider) = (
                    provider_name(old, before.provider),
                    provider_name(new, model.provider),
                );
                if old_provider != provider {
                    changes.add(
                        Sign::Neutral,
                        format!("model {name}: provider {old_provider} -> {provider}"),
                    );
                }
                if before.upstream_model != model.upstream_model {
                    changes.add(
                        Sign::Neutral,
                        format!(
                            "model {name}: upstream_model {} -> {}",
                            optional(before.upstream_model.as_ref()),
                            optional(model.upstream_model.as_ref())
                        ),
                    );
                }
            }
            // A pool's cluster and target list, in order, are shown whole when they change.
            _ if old_serving != serving => changes.add(
                Sign::Neutral,
                format!("model {name}: {old_serving} -> {serving}"),
            ),
            _ => {}
        }
        // A price decides what dollar budgets are charged: shown whenever it changes.
        let (old_price, price) = (old.highest_price(name), new.highest_price(name));
        if old_price != price {
            changes.add(
                Sign::Neutral,
                format!(
                    "model {name}: price {} -> {}",
                    price_text(old_price),
                    price_text(price)
                ),
            );
        }
    }
    for name in old_models.keys() {
        if !new_models.contains_key(name) {
            changes.add(Sign::Neutral, format!("model {name} removed"));
        }
    }
}

fn consumers(changes: &mut Changes, old: &Policy, new: &Policy) {
    let names: BTreeSet<&String> = old.consumers.keys().chain(new.consumers.keys()).collect();
    for name in names {
        let subject = format!("consumer {name}");
        let (old_entry, new_entry) = (old.consumers.get(name), new.consumers.get(name));
        match (old_entry, new_entry) {
            (None, Some(_)) => {
                let before = if old.consumers.contains_key(DEFAULT_CONSUMER) {
                    "was evaluated as default"
                } else {
                    "had no consumer to fall back to"
                };
                changes.add(Sign::Neutral, format!("{subject} added ({before})"));
            }
            (Some(_), None) => {
                let after = if new.consumers.contains_key(DEFAULT_CONSUMER) {
                    "now evaluated as default"
                } else {
                    "no default consumer to fall back to"
                };
                changes.add(Sign::Neutral, format!("{subject} removed ({after})"));
            }
            _ => {}
        }
        let before = evaluated_as(old, name);
        let after = evaluated_as(new, name);
        if before == after {
            continue;
        }
        let (old_models, new_models) = (approved(&before), approved(&after));
        for model in new_models.difference(&old_models) {
            changes.add(Sign::Widen, format!("{subject}: model {model} approved"));
        }
        for model in old_models.difference(&new_models) {
            changes.add(Sign::Narrow, format!("{subject}: model {model} withdrawn"));
        }
        let mode = |policy: &Policy, view: &Option<Effective<'_>>| {
            view.as_ref().map_or(policy.mode, |view| view.mode)
        };
        // A change inherited from the global setting is shown once, on the global line; a
        // consumer evaluated by its own entry on only one side shows its own.
        let same_entry = old_entry.is_some() && new_entry.is_some();
        let own = |pick: fn(&Consumer) -> bool| {
            !same_entry || old_entry.is_some_and(pick) || new_entry.is_some_and(pick)
        };
        if own(|consumer| consumer.own.mode) {
            mode_change(
                changes,
                &format!("{subject}: mode"),
                mode(old, &before),
                mode(new, &after),
                "its denials will be forwarded",
            );
        }
        // Without a consumer there is nothing to inspect: only a defined one has these.
        if let (Some(before), Some(after)) = (&before, &after) {
            if own(|consumer| consumer.own.opaque_content) {
                opaque_change(
                    changes,
                    &format!("{subject}: opaque_content"),
                    before.opaque,
                    after.opaque,
                );
            }
            for rule in after.rules.difference(&before.rules) {
                changes.add(Sign::Narrow, format!("{subject}: rule {rule} now applies"));
            }
            for rule in before.rules.difference(&after.rules) {
                changes.add(
                    Sign::Widen,
                    format!("{subject}: rule {rule} no longer applies"),
                );
            }
            for guard in after.guards.difference(&before.guards) {
                changes.add(
                    Sign::Narrow,
                    format!("{subject}: guard {guard} now applies"),
                );
            }
            for guard in before.guards.difference(&after.guards) {
                changes.add(
                    Sign::Widen,
                    format!("{subject}: guard {guard} no longer applies"),
                );
            }
            limits(changes, &subject, before, after);
        }
    }
}

fn passthrough(changes: &mut Changes, old: &Policy, new: &Policy) {
    let entries = |policy: &Policy| -> BTreeSet<String> {
        policy
            .passthrough
            .iter()
            .map(|entry| {
                format!(
                    "{} {} -> provider {}",
                    entry.method,
                    entry.path_prefix,
                    provider_name(policy, entry.provider)
                )
            })
            .collect()
    };
    let (before, after) = (entries(old), entries(new));
    for entry in after.difference(&before) {
        changes.add(Sign::Widen, format!("passthrough added: {entry}"));
    }
    for entry in before.difference(&after) {
        changes.add(Sign::Narrow, format!("passthrough removed: {entry}"));
    }
}
