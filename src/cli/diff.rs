//! `posturio check --diff OLD NEW`: what a policy change does, one line per fact, for review.
//!
//! Both files are validated by the filter's own loader first. The comparison is then made on
//! what the filter would enforce, not on the text: consumers' globs are expanded against each
//! file's catalogue, a consumer without its own `mode`, `opaque_content` or `rules` gets the
//! inherited value, and a consumer name that is not defined is evaluated as `default` (its
//! budget and output-token cap included).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{config_errors, read, CliError, Output};
use crate::policy::compile::{parse, DEFAULT_CONSUMER};
use crate::policy::config::{
    CapAction, Config, ConsumerConfig, Field, IdentityConfig, Mode, OpaqueContent, RuleAction,
    RuleConfig,
};
use crate::policy::glob::Glob;
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

/// The configuration, when the filter would load it; its mistakes otherwise.
fn load(path: &str, bytes: &[u8], errors: &mut Vec<String>) -> Option<Config> {
    if let Err(found) = Policy::from_json(bytes) {
        errors.push(config_errors(path, &found));
        return None;
    }
    match parse(bytes) {
        Ok(config) => Some(config),
        Err(error) => {
            errors.push(format!("{path}: {error}"));
            None
        }
    }
}

/// A consumer as the filter evaluates it, inherited values filled in.
#[derive(PartialEq, Eq)]
struct Effective {
    approved: BTreeSet<String>,
    mode: Mode,
    opaque: OpaqueContent,
    rules: BTreeSet<String>,
    /// Tokens per window, by the window's key (`tokens_per_minute`, ...), shortest first.
    budget: [(&'static str, Option<u64>); 3],
    output_cap: Option<(u64, CapAction)>,
}

fn global_opaque(config: &Config) -> OpaqueContent {
    config.opaque_content.unwrap_or(OpaqueContent::Block)
}

fn effective(config: &Config, consumer: &ConsumerConfig) -> Effective {
    let mut approved = BTreeSet::new();
    for pattern in &consumer.models {
        if let Ok(glob) = Glob::new(pattern) {
            approved.extend(
                config
                    .models
                    .keys()
                    .filter(|model| glob.matches(model))
                    .cloned(),
            );
        }
    }
    let rules = match &consumer.rules {
        Some(ids) => ids.iter().cloned().collect(),
        None => config.rules.iter().map(|rule| rule.id.clone()).collect(),
    };
    let budget = consumer.budget.as_ref();
    Effective {
        approved,
        mode: consumer.mode.unwrap_or(config.mode),
        opaque: consumer
            .opaque_content
            .unwrap_or_else(|| global_opaque(config)),
        rules,
        budget: [
            (
                "tokens_per_minute",
                budget.and_then(|budget| budget.tokens_per_minute),
            ),
            (
                "tokens_per_hour",
                budget.and_then(|budget| budget.tokens_per_hour),
            ),
            (
                "tokens_per_day",
                budget.and_then(|budget| budget.tokens_per_day),
            ),
        ],
        output_cap: consumer
            .max_output_tokens
            .map(|limit| (limit, consumer.max_output_tokens_action.unwrap_or_default())),
    }
}

/// How the filter treats requests that name `name`: its own entry, else `default`'s, else
/// none (no consumer: refused in enforce mode).
fn evaluated_as(config: &Config, name: &str) -> Option<Effective> {
    config
        .consumers
        .get(name)
        .or_else(|| config.consumers.get(DEFAULT_CONSUMER))
        .map(|consumer| effective(config, consumer))
}

fn diff(old: &Config, new: &Config) -> Changes {
    let mut changes = Changes::default();
    globals(&mut changes, old, new);
    providers(&mut changes, old, new);
    catalogue(&mut changes, old, new);
    consumers(&mut changes, old, new);
    rules(&mut changes, old, new);
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

fn opaque_name(opaque: OpaqueContent) -> &'static str {
    match opaque {
        OpaqueContent::Allow => "allow",
        OpaqueContent::Block => "block",
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
            format!("{subject} {} -> {}", opaque_name(old), opaque_name(new)),
        );
    }
}

fn identity_name(identity: Option<&IdentityConfig>) -> String {
    match identity {
        Some(IdentityConfig {
            header: Some(header),
            ..
        }) => format!("header {header}"),
        Some(IdentityConfig {
            metadata: Some(metadata),
            ..
        }) => format!(
            "metadata {} [{}]",
            metadata.namespace,
            metadata.path.join(", ")
        ),
        _ => "none (every request is consumer default)".to_owned(),
    }
}

fn globals(changes: &mut Changes, old: &Config, new: &Config) {
    mode_change(
        changes,
        "mode:",
        old.mode,
        new.mode,
        "every denial will be forwarded",
    );
    let (old_identity, new_identity) = (
        identity_name(old.identity.as_ref()),
        identity_name(new.identity.as_ref()),
    );
    if old_identity != new_identity {
        let header = |config: &Config| {
            config
                .identity
                .as_ref()
                .is_some_and(|identity| identity.header.is_some())
        };
        let metadata = |config: &Config| {
            config
                .identity
                .as_ref()
                .is_some_and(|identity| identity.metadata.is_some())
        };
        let (sign, note) = if header(new) && !header(old) {
            (
                Sign::Widen,
                " (clients can set a header: any consumer can be claimed)",
            )
        } else if metadata(new) && header(old) {
            (
                Sign::Narrow,
                " (clients can no longer choose their consumer)",
            )
        } else {
            (Sign::Neutral, "")
        };
        changes.add(
            sign,
            format!("identity: {old_identity} -> {new_identity}{note}"),
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
        global_opaque(old),
        global_opaque(new),
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
    let (old_inject, new_inject) = (old.usage.inject_stream_usage, new.usage.inject_stream_usage);
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

fn limits(changes: &mut Changes, subject: &str, before: &Effective, after: &Effective) {
    for ((key, old), (_, new)) in before.budget.iter().zip(&after.budget) {
        limit_change(changes, &format!("{subject}: budget {key}"), *old, *new);
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

fn providers(changes: &mut Changes, old: &Config, new: &Config) {
    for (name, provider) in &new.providers {
        let apis: BTreeSet<&str> = provider.api.0.iter().map(|api| api.as_str()).collect();
        let Some(before) = old.providers.get(name) else {
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
        let old_apis: BTreeSet<&str> = before.api.0.iter().map(|api| api.as_str()).collect();
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
    for name in old.providers.keys() {
        if !new.providers.contains_key(name) {
            changes.add(Sign::Neutral, format!("provider {name} removed"));
        }
    }
}

fn catalogue(changes: &mut Changes, old: &Config, new: &Config) {
    for (name, model) in &new.models {
        let Some(before) = old.models.get(name) else {
            changes.add(
                Sign::Neutral,
                format!("model {name} added (provider {})", model.provider),
            );
            continue;
        };
        if before.provider != model.provider {
            changes.add(
                Sign::Neutral,
                format!(
                    "model {name}: provider {} -> {}",
                    before.provider, model.provider
                ),
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
    for name in old.models.keys() {
        if !new.models.contains_key(name) {
            changes.add(Sign::Neutral, format!("model {name} removed"));
        }
    }
}

fn consumers(changes: &mut Changes, old: &Config, new: &Config) {
    let names: BTreeSet<&String> = old.consumers.keys().chain(new.consumers.keys()).collect();
    for name in names {
        let subject = format!("consumer {name}");
        match (
            old.consumers.contains_key(name),
            new.consumers.contains_key(name),
        ) {
            (false, true) => {
                let before = if old.consumers.contains_key(DEFAULT_CONSUMER) {
                    "was evaluated as default"
                } else {
                    "had no consumer to fall back to"
                };
                changes.add(Sign::Neutral, format!("{subject} added ({before})"));
            }
            (true, false) => {
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
        let empty = BTreeSet::new();
        let approved =
            |view: &Option<Effective>| view.as_ref().map_or(&empty, |view| &view.approved).clone();
        let (old_models, new_models) = (approved(&before), approved(&after));
        for model in new_models.difference(&old_models) {
            changes.add(Sign::Widen, format!("{subject}: model {model} approved"));
        }
        for model in old_models.difference(&new_models) {
            changes.add(Sign::Narrow, format!("{subject}: model {model} withdrawn"));
        }
        let mode = |config: &Config, view: &Option<Effective>| {
            view.as_ref().map_or(config.mode, |view| view.mode)
        };
        // A change inherited from the global setting is shown once, on the global line.
        let own = |pick: fn(&ConsumerConfig) -> bool| {
            old.consumers.get(name).is_some_and(pick) || new.consumers.get(name).is_some_and(pick)
        };
        if own(|consumer| consumer.mode.is_some()) || !same_entry(old, new, name) {
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
            if own(|consumer| consumer.opaque_content.is_some()) || !same_entry(old, new, name) {
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
            limits(changes, &subject, before, after);
        }
    }
}

/// Whether `name` is evaluated by its own entry in both files (not added, removed, or falling
/// back to `default` in either).
fn same_entry(old: &Config, new: &Config, name: &str) -> bool {
    old.consumers.contains_key(name) && new.consumers.contains_key(name)
}

fn action_strength(action: RuleAction) -> u8 {
    match action {
        RuleAction::Block => 2,
        RuleAction::Redact => 1,
        RuleAction::Audit => 0,
    }
}

fn field_name(field: Field) -> &'static str {
    match field {
        Field::Prompt => "prompt",
        Field::System => "system",
        Field::ToolArguments => "tool_arguments",
        Field::ToolResults => "tool_results",
        Field::Other => "other",
    }
}

fn source(rule: &RuleConfig) -> String {
    match (&rule.detect, &rule.pattern) {
        (Some(detect), _) => format!("detect {detect}"),
        (None, Some(pattern)) => format!("pattern {}", Value::from(pattern.as_str())),
        (None, None) => "nothing".to_owned(),
    }
}

fn rule_mode(rule: &RuleConfig) -> Mode {
    // A rule's own mode can only turn it into a record; `enforce` there means "as inherited".
    rule.mode.unwrap_or(Mode::Enforce)
}

/// Which text a rule looks at: `None` is all of it.
fn scope_change(
    changes: &mut Changes,
    subject: &str,
    old: Option<BTreeSet<&str>>,
    new: Option<BTreeSet<&str>>,
) {
    if old == new {
        return;
    }
    let show = |scope: &Option<BTreeSet<&str>>| match scope {
        None => "all".to_owned(),
        Some(items) => format!("[{}]", items.iter().copied().collect::<Vec<_>>().join(", ")),
    };
    let sign = match (&old, &new) {
        (None, Some(_)) => Sign::Widen,
        (Some(_), None) => Sign::Narrow,
        (Some(before), Some(after)) if after.is_subset(before) => Sign::Widen,
        (Some(before), Some(after)) if after.is_superset(before) => Sign::Narrow,
        _ => Sign::Neutral,
    };
    changes.add(sign, format!("{subject} {} -> {}", show(&old), show(&new)));
}

fn roles(rule: &RuleConfig) -> Option<BTreeSet<&str>> {
    rule.roles
        .as_ref()
        .map(|roles| roles.iter().map(String::as_str).collect())
}

fn fields(rule: &RuleConfig) -> Option<BTreeSet<&'static str>> {
    rule.fields
        .as_ref()
        .map(|fields| fields.iter().map(|field| field_name(*field)).collect())
}

fn rules(changes: &mut Changes, old: &Config, new: &Config) {
    let old_rules: BTreeMap<&str, &RuleConfig> = old
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let new_rules: BTreeMap<&str, &RuleConfig> = new
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    for (id, rule) in &new_rules {
        let subject = format!("rule {id}");
        let Some(before) = old_rules.get(id) else {
            changes.add(
                Sign::Narrow,
                format!(
                    "{subject} added ({}, action {}{})",
                    source(rule),
                    rule.action.as_str(),
                    if rule_mode(rule) == Mode::Audit {
                        ", mode audit"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        };
        if before.action != rule.action {
            let sign = if action_strength(rule.action) < action_strength(before.action) {
                Sign::Widen
            } else {
                Sign::Narrow
            };
            changes.add(
                sign,
                format!(
                    "{subject}: action {} -> {}",
                    before.action.as_str(),
                    rule.action.as_str()
                ),
            );
        }
        let (old_source, new_source) = (source(before), source(rule));
        if old_source != new_source {
            changes.add(
                Sign::Neutral,
                format!("{subject}: {old_source} -> {new_source}"),
            );
        }
        scope_change(
            changes,
            &format!("{subject}: roles"),
            roles(before),
            roles(rule),
        );
        scope_change(
            changes,
            &format!("{subject}: fields"),
            fields(before),
            fields(rule),
        );
        mode_change(
            changes,
            &format!("{subject}: mode"),
            rule_mode(before),
            rule_mode(rule),
            "its matches will only be recorded",
        );
    }
    for (id, rule) in &old_rules {
        if !new_rules.contains_key(id) {
            changes.add(
                Sign::Widen,
                format!(
                    "rule {id} removed (was {}, action {})",
                    source(rule),
                    rule.action.as_str()
                ),
            );
        }
    }
}

fn passthrough(changes: &mut Changes, old: &Config, new: &Config) {
    let entries = |config: &Config| -> BTreeSet<String> {
        config
            .passthrough
            .iter()
            .map(|entry| {
                format!(
                    "{} {} -> provider {}",
                    entry.method, entry.path_prefix, entry.provider
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
