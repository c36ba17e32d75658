//! From the configuration as written to an immutable `Policy`: every name resolved, every glob
//! expanded against the catalogue, every mistake reported with the JSON path of the bad value.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::budget::{Budget, Limit, Window};
use super::classify::{is_canonical_path, ApiFamily};
use super::config::{
    BudgetConfig, CapAction, Config, ConsumerConfig, Field, IdentityConfig, Mode, OpaqueContent,
    ProviderConfig, RuleAction,
};
use super::glob::Glob;
use super::inspect::Scanner;

/// A mistake in the configuration, at a JSON path such as `consumers.search-team.models[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The largest body limit accepted: the filter holds a whole body in memory.
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// The name under which requests without a known identity are evaluated.
pub const DEFAULT_CONSUMER: &str = "default";

/// A compiled policy. Built once per configuration and shared by every request.
#[derive(Debug)]
pub struct Policy {
    pub mode: Mode,
    pub route_header: String,
    pub max_body_bytes: usize,
    pub identity: Identity,
    pub debug_headers: bool,
    /// Whether streamed OpenAI-style requests are made to report their usage
    /// (`usage.inject_stream_usage`).
    pub inject_stream_usage: bool,
    /// The global `opaque_content`, which consumers without their own inherit.
    pub opaque_content: OpaqueContent,
    pub(crate) providers: Vec<Provider>,
    pub(crate) models: HashMap<String, Model>,
    pub(crate) consumers: HashMap<String, Consumer>,
    pub(crate) passthrough: Vec<Passthrough>,
    pub(crate) rules: Vec<Rule>,
    /// One scanner over every rule's detectors and patterns; `None` without rules.
    pub(crate) scanner: Option<Scanner>,
}

/// Where the consumer's name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Every request is `default`.
    None,
    /// A request header (clients can set it: see the security model).
    Header(String),
    /// Dynamic metadata written by an earlier filter: `namespace`, then the keys down to a
    /// string.
    Metadata {
        namespace: String,
        path: Vec<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    // Read by `posturio check --diff`, which the Wasm module does not include.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub detection: Detection,
    pub action: RuleAction,
    pub roles: Option<Vec<String>>,
    pub fields: Option<Vec<Field>>,
    pub mode: Option<Mode>,
}

/// What a rule looks for, as written: kept so a review can name it (the scanner holds the
/// compiled form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detection {
    /// A built-in detector (`detect`).
    Detector(String),
    /// A regular expression (`pattern`).
    Pattern(String),
}

#[derive(Debug)]
pub(crate) struct Provider {
    pub name: String,
    pub cluster: String,
    pub families: Vec<ApiFamily>,
    pub base_path: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub provider: usize,
    pub upstream_model: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub name: String,
    /// Catalogue names this consumer may use, globs already expanded.
    pub approved: HashSet<String>,
    pub mode: Mode,
    /// Which settings the consumer's own entry gives rather than inherits (read by
    /// `posturio check --diff`, which the Wasm module does not include).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub own: OwnSettings,
    /// Which rules apply, by index into `Policy::rules`.
    pub rules: Vec<bool>,
    pub opaque_content: OpaqueContent,
    /// The most output tokens one request may ask for.
    pub output_cap: Option<OutputCap>,
    pub budget: Option<Budget>,
}

/// Which of a consumer's settings its own entry gives, rather than inheriting the global one:
/// a review shows a change to an inherited value once, on the global line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OwnSettings {
    pub mode: bool,
    pub opaque_content: bool,
}

/// A consumer's cap on the output tokens of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    pub limit: u64,
    pub action: CapAction,
}

impl Consumer {
    pub fn has_rules(&self) -> bool {
        self.rules.contains(&true)
    }
}

#[derive(Debug)]
pub(crate) struct Passthrough {
    pub method: String,
    pub path_prefix: String,
    pub provider: usize,
}

impl Policy {
    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The token budget of a consumer (by the name `Pending` evaluates it as).
    pub fn budget_for(&self, consumer: &str) -> Option<&Budget> {
        self.consumers.get(consumer)?.budget.as_ref()
    }

    /// A consumer's cap on the output tokens of one request, if it has one.
    pub fn output_cap_for(&self, consumer: &str) -> Option<u64> {
        Some(self.consumers.get(consumer)?.output_cap.as_ref()?.limit)
    }

    /// A consumer's effective mode: its own, else the global one.
    pub fn consumer_mode(&self, consumer: &str) -> Option<Mode> {
        self.consumers.get(consumer).map(|consumer| consumer.mode)
    }

    /// Parses and compiles a configuration document, exactly as the filter does on load.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, Vec<ConfigError>> {
        let config = parse(bytes).map_err(|error| vec![error])?;
        compile(config)
    }
}

/// Deserializes with the path of any error. Duplicate keys are refused: struct fields by serde,
/// the name-keyed maps by `unique_map`.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let config: Config =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| ConfigError {
            path: error.path().to_string(),
            message: error.inner().to_string(),
        })?;
    deserializer.end().map_err(|error| ConfigError {
        path: String::new(),
        message: format!("invalid JSON: {error}"),
    })?;
    Ok(config)
}

/// Collects every mistake rather than stopping at the first, so one `posturio check` run shows
/// them all.
#[derive(Default)]
pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub fn compile(config: Config) -> Result<Policy, Vec<ConfigError>> {
    let mut errors = Errors::default();

    check_header_name(&mut errors, "route_header", &config.route_header);
    let identity = compile_identity(&mut errors, config.identity, &config.route_header);
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
        if let Some(upstream) = &model.upstream_model {
            check_name(
                &mut errors,
                format!("{path}.upstream_model"),
                upstream,
                "a model name",
            );
        }
        match provider_index.get(model.provider.as_str()) {
            Some(&provider) => {
                models.insert(
                    name.clone(),
                    Model {
                        provider,
                        upstream_model: model.upstream_model.clone(),
                    },
                );
            }
            None => errors.add(
                format!("{path}.provider"),
                format!(
                    "unknown provider \"{}\"; define it under \"providers\"",
                    model.provider
                ),
            ),
        }
    }

    let (rules, scanner) = super::rules::compile_rules(&mut errors, &config.rules);
    let opaque_content = config.opaque_content.unwrap_or(OpaqueContent::Block);
    let consumers = compile_consumers(
        &mut errors,
        &config.consumers,
        &config.models,
        &rules,
        (config.mode, opaque_content),
    );

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

    if !errors.0.is_empty() {
        return Err(errors.0);
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
    })
}

fn compile_identity(
    errors: &mut Errors,
    identity: Option<IdentityConfig>,
    route_header: &str,
) -> Identity {
    let Some(identity) = identity else {
        return Identity::None;
    };
    match (identity.header, identity.metadata) {
        (Some(header), None) => {
            check_header_name(errors, "identity.header", &header);
            if header == route_header {
                errors.add(
                    "identity.header",
                    "must differ from route_header: the route header is removed from every request",
                );
            }
            Identity::Header(header)
        }
        (None, Some(metadata)) => {
            if metadata.namespace.is_empty() || metadata.namespace.chars().any(char::is_control) {
                errors.add(
                    "identity.metadata.namespace",
                    "must be a filter name such as envoy.filters.http.jwt_authn",
                );
            }
            if metadata.path.is_empty() {
                errors.add(
                    "identity.metadata.path",
                    "must name at least one key, such as [\"jwt_payload\", \"sub\"]",
                );
            }
            for (index, key) in metadata.path.iter().enumerate() {
                if key.is_empty() {
                    errors.add(
                        format!("identity.metadata.path[{index}]"),
                        "must not be empty",
                    );
                }
            }
            Identity::Metadata {
                namespace: metadata.namespace,
                path: metadata.path,
            }
        }
        _ => {
            errors.add("identity", "give exactly one of \"header\" or \"metadata\"");
            Identity::None
        }
    }
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
        let cluster_ok = !provider.cluster.is_empty()
            && provider.cluster.len() <= 256
            && provider.cluster.bytes().all(|b| b.is_ascii_graphic());
        if !cluster_ok {
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
    rules: &[Rule],
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

/// The budget's limits, shortest window first; `None` when it has a mistake.
fn compile_budget(errors: &mut Errors, path: &str, budget: &BudgetConfig) -> Option<Budget> {
    let windows = [
        (Window::Minute, budget.tokens_per_minute),
        (Window::Hour, budget.tokens_per_hour),
        (Window::Day, budget.tokens_per_day),
    ];
    let mut limits = Vec::with_capacity(windows.len());
    let mut valid = true;
    for (window, tokens) in windows {
        let key = window.config_key();
        match tokens {
            None => {}
            Some(0) => {
                errors.add(
                    format!("{path}.{key}"),
                    "must be at least 1; to stop a consumer, withdraw its models instead",
                );
                valid = false;
            }
            Some(tokens) => limits.push(Limit { window, tokens }),
        }
    }
    if valid && limits.is_empty() {
        errors.add(
            path,
            "give at least one of tokens_per_minute, tokens_per_hour, tokens_per_day",
        );
        valid = false;
    }
    valid.then_some(Budget { limits })
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
