//! From the configuration as written to an immutable `Policy`: every name resolved, every glob
//! expanded against the catalogue, every mistake reported with the JSON path of the bad value.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::budget::{Budget, Limit, Unit, Window, DEFAULT_OUTPUT_TOKENS};
use super::classify::is_canonical_path;
use super::compile_guards::consumer_guards;
use super::compile_identity::compile_identity;
use super::compile_models::{compile_model, is_cluster_name};
use super::compiled::{
    Consumer, Identity, Model, OutputCap, OwnSettings, Passthrough, Policy, Provider,
};
use super::config::{
    parse, BudgetConfig, Config, ConfigError, ConsumerConfig, Errors, Mode, OpaqueContent,
    ProviderConfig, MAX_BODY_LIMIT,
};
use super::glob::Glob;
use super::guards::Guard;
use super::rules::Rule;

impl Policy {
    /// Parses and compiles a configuration document, exactly as the filter does on load.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, Vec<ConfigError>> {
        let config = parse(bytes).map_err(|error| vec![error])?;
        compile(config)
    }
}

pub fn compile(config: Config) -> Result<Policy, Vec<ConfigError>> {
    let mut errors = Errors::default();

    check_header_name(&mut errors, "route_header", &config.route_header);
    let identity = compile_identity(
        &mut errors,
        config.identity,
        &config.consumers,
        &config.route_header,
    );
    if let Identity::Header(header) = &identity {
        check_header_name(&mut errors, "identity.header", header);
    }
    let max_body_bytes = match usize::try_from(config.max_body_bytes) {
        Ok(limit) if (1..=MAX_BODY_LIMIT).contains(&config.max_body_bytes) => limit,
        _ => {
            errors.add(
                "max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT} bytes"),
            );
            1
        }
    };

    let providers = compile_providers(&mut errors, config.providers);
    let provider_index: HashMap<&str, usize> = providers
        .iter()
        .enumerate()
        .map(|(index, provider)| (provider.name.as_str(), index))
        .collect();

    if config.models.is_empty() {
        errors.add(
            "models",
            "the catalogue is empty: no request could ever be served",
        );
    }
    let mut models = HashMap::with_capacity(config.models.len());
    for (name, model) in &config.models {
        let path = format!("models.{name}");
        check_name(&mut errors, &path, name, "a model name");
        if name.contains('*') {
            errors.add(
                &path,
                "a model name cannot contain '*', which consumers use as a glob",
            );
        }
        if let Some(model) = compile_model(
            &mut errors,
            (&path, name),
            model,
            &providers,
            &provider_index,
        ) {
            models.insert(name.clone(), model);
        }
    }
    super::compile_models::check_shared_pools(&mut errors, &models, &providers);

    let (rules, scanner) = super::rules::compile_rules(&mut errors, &config.rules);
    let guards = super::compile_guards::compile_guards(&mut errors, &config.guards);
    let opaque_content = config.opaque_content.unwrap_or(OpaqueContent::Block);
    let consumers = compile_consumers(
        &mut errors,
        &config.consumers,
        &config.models,
        (&rules, &guards),
        (config.mode, opaque_content),
    );
    check_budget_prices(&mut errors, &consumers, &models);

    let mut passthrough = Vec::with_capacity(config.passthrough.len());
    for (index, entry) in config.passthrough.into_iter().enumerate() {
        let path = format!("passthrough[{index}]");
        if !matches!(entry.method.as_str(), "GET" | "HEAD" | "DELETE") {
            errors.add(
                format!("{path}.method"),
                "must be GET, HEAD or DELETE: passthrough is for calls without a body",
            );
        }
        if !is_canonical_path(&entry.path_prefix) {
            errors.add(
                format!("{path}.path_prefix"),
                "must be a plain absolute path such as /v1/models (no '//', '.', '..', '%', '?')",
            );
        }
        match provider_index.get(entry.provider.as_str()) {
            Some(&provider) => passthrough.push(Passthrough {
                method: entry.method,
                path_prefix: entry.path_prefix,
                provider,
            }),
            None => errors.add(
                format!("{path}.provider"),
                format!("unknown provider \"{}\"", entry.provider),
            ),
        }
    }

    if let Some(errors) = errors.into_found() {
        return Err(errors);
    }
    Ok(Policy {
        mode: config.mode,
        route_header: config.route_header,
        max_body_bytes,
        identity,
        debug_headers: config.debug_headers,
        inject_stream_usage: config.usage.inject_stream_usage,
        opaque_content,
        providers,
        models,
        consumers,
        passthrough,
        rules,
        scanner,
        guards,
    })
}

fn compile_providers(
    errors: &mut Errors,
    providers: BTreeMap<String, ProviderConfig>,
) -> Vec<Provider> {
    if providers.is_empty() {
        errors.add("providers", "at least one provider is needed");
    }
    let mut compiled = Vec::with_capacity(providers.len());
    for (name, provider) in providers {
        let path = format!("providers.{name}");
        check_name(errors, &path, &name, "a provider name");
        if !is_cluster_name(&provider.cluster) {
            errors.add(
                format!("{path}.cluster"),
                "must be an Envoy cluster name: 1 to 256 visible ASCII characters, no spaces",
            );
        }
        let families = provider.api.0;
        if families.is_empty() {
            errors.add(format!("{path}.api"), "must name at least one API family");
        }
        for (index, family) in families.iter().enumerate() {
            if families
                .get(..index)
                .is_some_and(|before| before.contains(family))
            {
                errors.add(
                    format!("{path}.api[{index}]"),
                    format!("\"{}\" is listed twice", family.as_str()),
                );
            }
        }
        if let Some(base_path) = &provider.base_path {
            if !is_canonical_path(base_path) || base_path == "/" {
                errors.add(
                    format!("{path}.base_path"),
                    "must be a plain absolute path without a trailing '/', such as /v1beta/openai",
                );
            }
        }
        compiled.push(Provider {
            name,
            cluster: provider.cluster,
            families,
            base_path: provider.base_path,
        });
    }
    compiled
}

fn compile_consumers(
    errors: &mut Errors,
    consumers: &BTreeMap<String, ConsumerConfig>,
    catalogue: &BTreeMap<String, super::config::ModelConfig>,
    (rules, guards): (&[Rule], &[Guard]),
    (global_mode, global_opaque): (Mode, OpaqueContent),
) -> HashMap<String, Consumer> {
    let mut compiled = HashMap::with_capacity(consumers.len());
    for (name, consumer) in consumers {
        let path = format!("consumers.{name}");
        check_name(errors, &path, name, "a consumer name");
        if name.contains(',') {
            errors.add(&path, "a consumer name cannot contain ','");
        } else if !name.chars().any(char::is_control)
            && (!super::identity::well_formed(name) || name.trim() != name)
        {
            errors.add(
                &path,
                "a consumer name may hold printable ASCII and letters or digits of any script, \
                 with no white space around it, no invisible, combining or compatibility \
                 character (such as a full-width letter) and no Latin letters mixed with \
                 look-alike Greek, Cyrillic, Armenian or Cherokee ones: an identity must be \
                 able to name it exactly",
            );
        }
        let mut approved = HashSet::new();
        for (index, pattern) in consumer.models.iter().enumerate() {
            let entry = format!("{path}.models[{index}]");
            let glob = match Glob::new(pattern) {
                Ok(glob) => glob,
                Err(message) => {
                    errors.add(&entry, message);
                    continue;
                }
            };
            let mut matched = false;
            for model in catalogue.keys().filter(|model| glob.matches(model)) {
                matched = true;
                approved.insert(model.clone());
            }
            if !matched {
                errors.add(
                    &entry,
                    format!(
                        "\"{pattern}\" matches no model in the catalogue (\"models\"); \
                         consumers can only narrow the catalogue"
                    ),
                );
            }
        }
        // Safe by default: a consumer that does not list its rules gets every rule.
        let mut applies = vec![consumer.rules.is_none(); rules.len()];
        for (index, id) in consumer.rules.iter().flatten().enumerate() {
            match rules.iter().position(|rule| rule.id == *id) {
                Some(rule) => {
                    if let Some(flag) = applies.get_mut(rule) {
                        *flag = true;
                    }
                }
                None => errors.add(
                    format!("{path}.rules[{index}]"),
                    format!("unknown rule \"{id}\"; define it under \"rules\""),
                ),
            }
        }
        let guards = consumer_guards(errors, &path, consumer, guards);
        let output_cap = compile_output_cap(errors, &path, consumer);
        let budget = consumer
            .budget
            .as_ref()
            .and_then(|budget| compile_budget(errors, &format!("{path}.budget"), budget));
        compiled.insert(
            name.clone(),
            Consumer {
                name: name.clone(),
                approved,
                mode: consumer.mode.unwrap_or(global_mode),
                own: OwnSettings {
                    mode: consumer.mode.is_some(),
                    opaque_content: consumer.opaque_content.is_some(),
                },
                rules: applies,
                guards,
                opaque_content: consumer.opaque_content.unwrap_or(global_opaque),
                output_cap,
                budget,
            },
        );
    }
    compiled
}

fn compile_output_cap(
    errors: &mut Errors,
    path: &str,
    consumer: &ConsumerConfig,
) -> Option<OutputCap> {
    match (
        consumer.max_output_tokens,
        consumer.max_output_tokens_action,
    ) {
        (None, None) => None,
        (None, Some(_)) => {
            errors.add(
                format!("{path}.max_output_tokens_action"),
                "needs max_output_tokens: there is no cap to act on",
            );
            None
        }
        (Some(0), _) => {
            errors.add(
                format!("{path}.max_output_tokens"),
                "must be at least 1: a request needs room for one output token",
            );
            None
        }
        (Some(limit), action) => Some(OutputCap {
            limit,
            action: action.unwrap_or_default(),
        }),
    }
}

/// The budget's limits, tokens then dollars, shortest window first; `None` when it has a
/// mistake.
fn compile_budget(errors: &mut Errors, path: &str, budget: &BudgetConfig) -> Option<Budget> {
    let token_limits = [
        (Window::Minute, budget.tokens_per_minute),
        (Window::Hour, budget.tokens_per_hour),
        (Window::Day, budget.tokens_per_day),
        (Window::Month, budget.tokens_per_month),
    ]
    .map(|(window, amount)| (window, Unit::Tokens, amount));
    let usd_limits = [
        (Window::Day, budget.usd_per_day),
        (Window::Month, budget.usd_per_month),
    ]
    .map(|(window, amount)| (window, Unit::MicroUsd, amount.map(|usd| usd.0)));
    let mut limits = Vec::with_capacity(6);
    let mut valid = true;
    for (window, unit, amount) in token_limits.into_iter().chain(usd_limits) {
        let Some(amount) = amount else {
            continue;
        };
        let limit = Limit {
            window,
            unit,
            amount,
        };
        if amount == 0 {
            let least = match unit {
                Unit::Tokens => "must be at least 1",
                Unit::MicroUsd => "must be more than \"0\"",
            };
            errors.add(
                format!("{path}.{}", limit.config_key()),
                format!("{least}; to stop a consumer, withdraw its models instead"),
            );
            valid = false;
        }
        limits.push(limit);
    }
    if valid && limits.is_empty() {
        errors.add(
            path,
            "give at least one of tokens_per_minute, tokens_per_hour, tokens_per_day, \
             tokens_per_month, usd_per_day, usd_per_month",
        );
        valid = false;
    }
    if budget.default_output_tokens == Some(0) {
        errors.add(
            format!("{path}.default_output_tokens"),
            "must be at least 1: a request may produce output",
        );
        valid = false;
    }
    valid.then_some(Budget {
        limits,
        default_output_tokens: budget
            .default_output_tokens
            .unwrap_or(DEFAULT_OUTPUT_TOKENS),
    })
}

/// A dollar budget must never meet a request whose cost it cannot know: every model a
/// consumer with one may use, and every target serving it, has a price.
fn check_budget_prices(
    errors: &mut Errors,
    consumers: &HashMap<String, Consumer>,
    models: &HashMap<String, Model>,
) {
    let mut names: Vec<&String> = consumers.keys().collect();
    names.sort();
    for name in names {
        let Some(consumer) = consumers.get(name) else {
            continue;
        };
        let Some(budget) = &consumer.budget else {
            continue;
        };
        let Some(limit) = budget
            .limits
            .iter()
            .find(|limit| limit.unit == Unit::MicroUsd)
        else {
            continue;
        };
        let mut unpriced: Vec<&str> = consumer
            .approved
            .iter()
            .filter(|model| {
                models.get(*model).is_some_and(|model| match &model.pool {
                    Some(pool) => pool.targets.iter().any(|target| target.price.is_none()),
                    None => model.price.is_none(),
                })
            })
            .map(String::as_str)
            .collect();
        unpriced.sort_unstable();
        if let Some(first) = unpriced.first() {
            errors.add(
                format!("consumers.{name}.budget.{}", limit.config_key()),
                format!(
                    "model \"{first}\"{} has no price, so the cost of its requests cannot be \
                     known; give it (and each of its targets) a \"price\", or leave it out of \
                     this consumer's models",
                    match unpriced.len() {
                        1 => String::new(),
                        more => format!(" (and {} more)", more.saturating_sub(1)),
                    }
                ),
            );
        }
    }
}

/// Header names the filter reads or sets: lowercase token characters, not a pseudo-header,
/// and not one whose meaning Envoy or HTTP owns.
fn check_header_name(errors: &mut Errors, path: &str, name: &str) {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    const RESERVED: [&str; 10] = [
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "keep-alive",
        "authorization",
    ];
    if !token {
        errors.add(
            path,
            "must be a lowercase HTTP header name (a-z, 0-9, '-', '_')",
        );
    } else if RESERVED.contains(&name) {
        errors.add(path, format!("\"{name}\" is a reserved header"));
    }
}

/// Names of things in the config: non-empty, at most 256 bytes, no control characters.
fn check_name(errors: &mut Errors, path: impl Into<String>, name: &str, what: &str) {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        errors.add(
            path,
            format!("{what} must be 1 to 256 bytes without control characters"),
        );
    }
}
