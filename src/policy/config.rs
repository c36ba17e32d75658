//! The plugin configuration as written by a security team: serde types only.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently disabled
//! control. Validation and name resolution happen in `compile`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::classify::ApiFamily;
use super::price::Usd;

pub const DEFAULT_ROUTE_HEADER: &str = "x-posturio-cluster";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The filter's role: `request` (the default), the filter that decides. The per-attempt
    /// filter of a pool cluster is configured as `{"role": "upstream"}` alone.
    #[serde(default)]
    pub role: Role,
    /// `enforce` refuses what the policy denies; `audit` records it and forwards the request.
    #[serde(default)]
    pub mode: Mode,
    /// The request header the filter sets to the chosen cluster (the route's `cluster_header`).
    #[serde(default = "default_route_header")]
    pub route_header: String,
    /// The largest request body read, in bytes; a larger one gets 413.
    #[serde(default = "default_max_body_bytes")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = 1, max = MAX_BODY_LIMIT))
    )]
    pub max_body_bytes: u64,
    /// Where the consumer's name comes from; without it every request is `default`.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// Provider name to provider: the Envoy cluster and the API families it accepts.
    #[serde(deserialize_with = "unique_map")]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The catalogue of approved models, by the name clients send.
    #[serde(deserialize_with = "unique_map")]
    pub models: BTreeMap<String, ModelConfig>,
    /// Consumer name to the models and rules that apply to it; `default` serves the rest.
    #[serde(default, deserialize_with = "unique_map")]
    pub consumers: BTreeMap<String, ConsumerConfig>,
    /// Prompt inspection rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Bodiless calls forwarded without inspection, such as `GET /v1/models`.
    #[serde(default)]
    pub passthrough: Vec<PassthroughConfig>,
    /// What to do with content parts that cannot be inspected (images, audio, files) when
    /// inspection rules apply to the request.
    #[serde(default)]
    pub opaque_content: Option<OpaqueContent>,
    /// Adds `x-posturio-decision` to responses, naming the decision and the rules that fired.
    #[serde(default)]
    pub debug_headers: bool,
    /// How the gateway makes responses report their token usage.
    #[serde(default)]
    pub usage: UsageConfig,
    /// External guard services asked about a request's text before it is forwarded.
    #[serde(default)]
    pub guards: Vec<GuardConfig>,
}

fn default_route_header() -> String {
    DEFAULT_ROUTE_HEADER.to_owned()
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

/// The role of a policy-carrying filter: only `request`. (`upstream` takes no policy and is
/// read by `crate::pipeline::configure` before a policy is parsed.)
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Request,
}

/// `enforce` refuses what the policy denies; `audit` records the denial and forwards anyway.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema, serde::Serialize)
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// Where the consumer's name comes from: a request header, or dynamic metadata written by an
/// earlier Envoy filter (such as `jwt_authn`), which clients cannot set.
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// A request header naming the consumer (clients can set it).
    #[serde(default)]
    pub header: Option<String>,
    /// Dynamic metadata written by an earlier filter, such as a verified JWT claim.
    #[serde(default)]
    pub metadata: Option<MetadataIdentity>,
    /// Virtual API keys: a request carries a key the consumers list by its SHA-256
    /// (`consumers.<name>.api_keys`); the key never reaches the provider.
    #[serde(default)]
    pub api_keys: bool,
    /// The SPIFFE ID of the client certificate Envoy verified, matched against the consumers'
    /// `principals`.
    #[serde(default)]
    pub peer_certificate: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MetadataIdentity {
    /// The dynamic metadata namespace, e.g. `envoy.filters.http.jwt_authn`.
    pub namespace: String,
    /// The keys from the namespace down to the string, e.g. `["jwt_payload", "team"]`.
    pub path: Vec<String>,
}

/// For content parts the filter cannot read as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OpaqueContent {
    Allow,
    Block,
}

impl OpaqueContent {
    pub fn as_str(self) -> &'static str {
        match self {
            OpaqueContent::Allow => "allow",
            OpaqueContent::Block => "block",
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The Envoy cluster that serves this provider; the route header is set to it.
    pub cluster: String,
    /// The API families this provider's endpoint speaks: one name or a list.
    pub api: ApiList,
    /// Replaces the `/v1` at the start of the request path, for OpenAI-compatible endpoints
    /// that live elsewhere (for example `/v1beta/openai`).
    #[serde(default)]
    pub base_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("oneOf" = [
        {"required": ["provider"], "not": {"anyOf": [{"required": ["targets"]}, {"required": ["cluster"]}]}},
        {"required": ["targets", "cluster"], "not": {"anyOf": [{"required": ["provider"]}, {"required": ["upstream_model"]}]}}
    ]))
)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The provider that serves this model (or `targets` and `cluster`, never both).
    #[serde(default)]
    pub provider: Option<String>,
    /// The name the provider knows the model by, written into the forwarded body.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The providers that can serve this model, in the intended fallback order: Envoy's pool
    /// cluster (`cluster`) picks one per attempt, by endpoint priority and weight.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1, max = MAX_TARGETS)))]
    pub targets: Option<Vec<TargetConfig>>,
    /// The Envoy pool cluster holding every target's endpoints; the route header is set to it.
    #[serde(default)]
    pub cluster: Option<String>,
    /// What the model costs, in USD per million tokens; without it its cost is unknown.
    #[serde(default)]
    pub price: Option<PriceConfig>,
}

/// USD per million tokens of each kind, as decimal strings such as `"2.50"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"input\": \"2.50\", \"output\": \"10.00\"}"
)]
pub struct PriceConfig {
    /// Input (prompt) tokens.
    pub input: Usd,
    /// Output (completion) tokens, reasoning included unless `reasoning` prices it apart.
    pub output: Usd,
    /// Input tokens read from the provider's prompt cache; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<Usd>,
    /// Reasoning tokens, only when the provider prices them apart; defaults to `output`.
    #[serde(default)]
    pub reasoning: Option<Usd>,
    /// Input tokens written to the provider's prompt cache (Anthropic, Bedrock), which those
    /// providers bill above `input`; defaults to `input`. One rate for every write: give the
    /// 1-hour write rate where clients may ask for 1-hour cache entries.
    #[serde(default)]
    pub cache_write: Option<Usd>,
}

/// The most targets one model may have.
pub const MAX_TARGETS: usize = 8;

/// One provider of a model served through a pool cluster.
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The provider, named as under `providers`; the pool's endpoints carry the same name in
    /// their metadata (`filter_metadata.posturio.provider`).
    pub provider: String,
    /// The name this provider knows the model by; defaults to the catalogue name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// What the model costs from this provider; overrides the model's price for the answers
    /// this target serves.
    #[serde(default)]
    pub price: Option<PriceConfig>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("dependentRequired" = {"max_output_tokens_action": ["max_output_tokens"]}))
)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Catalogue names or `*` globs over them.
    pub models: Vec<String>,
    /// Rule ids that apply to this consumer; absent means every rule.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    /// Guard ids that apply to this consumer; absent means every guard, `[]` none.
    #[serde(default)]
    pub guards: Option<Vec<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub opaque_content: Option<OpaqueContent>,
    /// The most output tokens one request may ask for; a request that asks for none is given
    /// this many.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub max_output_tokens: Option<u64>,
    /// What happens to a request that asks for more than `max_output_tokens`: `clamp` lowers
    /// it to the cap, `refuse` answers 403. Default `clamp`.
    #[serde(default)]
    pub max_output_tokens_action: Option<CapAction>,
    /// Tokens (input plus output) per minute, hour, day or month, and dollars per day or
    /// month, this consumer may use.
    #[serde(default)]
    pub budget: Option<BudgetConfig>,
    /// The SHA-256 of each API key that names this consumer (`posturio key hash`), with an
    /// optional expiry; needs `identity.api_keys`.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// SPIFFE IDs of client certificates that name this consumer; a path segment may be `*`.
    /// Needs `identity.peer_certificate`.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(pattern(r"^spiffe://[a-z0-9._-]+(/([A-Za-z0-9._-]+|\*))+$")))
    )]
    pub principals: Vec<String>,
}

/// An API key by its hash: `"sha256:<64 hex>"`, or `{"hash": ..., "expires": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(untagged))]
pub enum ApiKeyConfig {
    /// `sha256:` and the key's SHA-256 in hex.
    Hash(
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(pattern(r"^sha256:[0-9a-fA-F]{64}$"))
        )]
        String,
    ),
    Expiring(ExpiringKey),
}

impl ApiKeyConfig {
    pub fn hash(&self) -> &str {
        match self {
            ApiKeyConfig::Hash(hash) => hash,
            ApiKeyConfig::Expiring(key) => &key.hash,
        }
    }
}

/// A key with an expiry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExpiringKey {
    /// `sha256:` and the key's SHA-256 in hex.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^sha256:[0-9a-fA-F]{64}$"))
    )]
    pub hash: String,
    /// When the key stops working: an RFC 3339 date-time such as `2027-01-31T00:00:00Z`.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(
            r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        ))
    )]
    pub expires: Option<String>,
}

// By hand rather than `untagged`, so a mistake inside the object form keeps serde's precise
// message ("unknown field `expire`") instead of "did not match any variant".
impl<'de> Deserialize<'de> for ApiKeyConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = ApiKeyConfig;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"sha256:<64 hex digits>\" or {\"hash\": ..., \"expires\": ...}")
            }

            fn visit_str<E: de::Error>(self, hash: &str) -> Result<ApiKeyConfig, E> {
                Ok(ApiKeyConfig::Hash(hash.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ApiKeyConfig, A::Error> {
                ExpiringKey::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ApiKeyConfig::Expiring)
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

/// What to do with a request that asks for more output tokens than its consumer's cap.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CapAction {
    /// Lower the request's value to the cap and forward it.
    #[default]
    Clamp,
    /// Refuse the request (403 `max_output_tokens_exceeded`).
    Refuse,
}

impl CapAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CapAction::Clamp => "clamp",
            CapAction::Refuse => "refuse",
        }
    }
}

/// A consumer's budget: at least one limit, in tokens or dollars.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minProperties" = 1)))]
#[serde(
    deny_unknown_fields,
    expecting = "an object of limits per window, such as {\"tokens_per_minute\": 100000} or {\"usd_per_month\": \"500.00\"}"
)]
pub struct BudgetConfig {
    /// Tokens per minute (UTC, aligned to :00).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per hour (UTC, aligned to the hour).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub tokens_per_hour: Option<u64>,
    /// Tokens per day (UTC, from 00:00).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub tokens_per_day: Option<u64>,
    /// Tokens per calendar month (UTC, from the first day at 00:00).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub tokens_per_month: Option<u64>,
    /// Dollars per day (UTC), as a decimal string such as `"20.00"`; every model the consumer
    /// may use needs a price.
    #[serde(default)]
    pub usd_per_day: Option<Usd>,
    /// Dollars per calendar month (UTC), as a decimal string such as `"500.00"`.
    #[serde(default)]
    pub usd_per_month: Option<Usd>,
    /// The output tokens reserved for a request that neither asks for an output limit nor
    /// has one from the consumer's `max_output_tokens`. Default 4096.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub default_output_tokens: Option<u64>,
}

/// How responses are made to report their token usage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema, serde::Serialize)
)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"inject_stream_usage\": true}"
)]
pub struct UsageConfig {
    /// Adds `stream_options.include_usage: true` to streamed OpenAI-style chat completions and
    /// completions, so their last chunk reports the tokens used; that chunk is taken back out
    /// of the stream when the client did not ask for it.
    #[serde(default = "default_true")]
    pub inject_stream_usage: bool,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            inject_stream_usage: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// A prompt inspection rule: what to look for, where, and what to do about it.
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Named in replies, logs and redaction markers.
    pub id: String,
    /// A built-in detector or group (`secrets`, `secrets.aws_access_key`, `email`, ...).
    #[serde(default)]
    pub detect: Option<String>,
    /// A regular expression in Rust's `regex` syntax.
    #[serde(default)]
    pub pattern: Option<String>,
    pub action: RuleAction,
    /// Message roles the rule looks at; absent means all text, inside messages or not.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub roles: Option<Vec<String>>,
    /// Kinds of text the rule looks at; absent means all.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub fields: Option<Vec<Field>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What the rule reads: the request (default), the model's answer, or both.
    #[serde(default)]
    pub direction: Direction,
}

/// What an inspection rule reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The request the client sends.
    #[default]
    Request,
    /// The answer the provider sends back.
    Response,
    /// Both.
    Both,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
            Direction::Both => "both",
        }
    }

    pub fn reads_requests(self) -> bool {
        self != Direction::Response
    }

    pub fn reads_answers(self) -> bool {
        self != Direction::Request
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Refuse the request (403 `prompt_blocked`).
    Block,
    /// Replace each match with `[REDACTED:<rule id>]` in the forwarded body.
    Redact,
    /// Only record the match.
    Audit,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Block => "block",
            RuleAction::Redact => "redact",
            RuleAction::Audit => "audit",
        }
    }
}

/// Kinds of text a rule can be restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Message content from users and assistants, completions prompts, embeddings input.
    Prompt,
    /// System and developer messages, `system`, `instructions`, `systemInstruction`.
    System,
    /// Tool call arguments (`tool_calls`, `tool_use.input`, `functionCall.args`, ...).
    ToolArguments,
    /// Tool results (`tool` messages, `tool_result`, `functionResponse`, ...).
    ToolResults,
    /// Everything else that reaches the provider: tool definitions, metadata, unknown keys;
    /// in an answer, every string that is neither output nor tool arguments.
    Other,
    /// The model's text in an answer (message content, refusals, reasoning shown to the
    /// client); for rules with `direction` `response` or `both`.
    Output,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Prompt => "prompt",
            Field::System => "system",
            Field::ToolArguments => "tool_arguments",
            Field::ToolResults => "tool_results",
            Field::Other => "other",
            Field::Output => "output",
        }
    }
}

/// An external guard service: an Envoy cluster asked whether a request's text may be
/// forwarded (see docs/inspection.md, "External guard services").
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Named in replies, logs and metrics, as a rule id is.
    pub id: String,
    /// The Envoy cluster that serves the guard.
    pub cluster: String,
    /// The guard's wire shape.
    pub api: GuardApi,
    /// The path called: default `/v1/moderations` for `openai_moderation`; required for
    /// `webhook`.
    #[serde(default)]
    pub path: Option<String>,
    /// The `:authority` of the call; default the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long to wait for the guard's answer, in milliseconds (1 to 60000; default 1000).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1, max = 60000)))]
    pub timeout_ms: Option<u64>,
    /// What a failed call (timeout, error, unreadable answer) does: `block` (default, 503)
    /// or `allow`.
    #[serde(default)]
    pub on_error: Option<GuardOnError>,
    /// What a flagged request gets: `block` (default, 403) or `audit` (recorded, forwarded).
    #[serde(default)]
    pub action: Option<GuardAction>,
    /// The moderation model to ask for (`openai_moderation` only).
    #[serde(default)]
    pub model: Option<String>,
    /// Message roles whose text is sent; absent means all text.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub roles: Option<Vec<String>>,
    /// Kinds of text sent; absent means all.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub fields: Option<Vec<Field>>,
    /// The most text sent, in bytes (default 65536). Longer text is never cut: the call
    /// counts as failed and `on_error` decides.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub max_text_bytes: Option<u64>,
    /// Fixed extra headers sent to the guard (better injected by Envoy: see the docs).
    #[serde(default, deserialize_with = "unique_map")]
    pub headers: BTreeMap<String, String>,
}

/// A guard's wire shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GuardApi {
    /// OpenAI's moderation endpoint: `{"input", "model"?}` → `results[].flagged`.
    OpenaiModeration,
    /// Posturio's webhook contract: `{"text", "consumer", "model", "endpoint", "request_id"}`
    /// → `{"verdict": "allow" | "block", "reason"?}`.
    Webhook,
}

/// What a guard call that fails does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GuardOnError {
    /// Refuse the request (503 `guard_unavailable`).
    #[default]
    Block,
    /// Forward it, and record the failure.
    Allow,
}

/// What a flagged request gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// Refuse the request (403 `guard_blocked`).
    #[default]
    Block,
    /// Record the flag and forward the request.
    Audit,
}

/// A bodiless call forwarded without inspection, such as `GET /v1/models`.
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    /// `GET`, `HEAD` or `DELETE`.
    pub method: String,
    /// This path and everything below it, segment-wise.
    pub path_prefix: String,
    /// The provider whose cluster serves these calls.
    pub provider: String,
}

/// `"openai"` or `["openai", "anthropic"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiList(pub Vec<ApiFamily>);

impl<'de> Deserialize<'de> for ApiList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ApiListVisitor;

        impl<'de> Visitor<'de> for ApiListVisitor {
            type Value = ApiList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an API family name or a list of them")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<ApiList, E> {
                ApiFamily::deserialize(de::value::StrDeserializer::<E>::new(name))
                    .map(|family| ApiList(vec![family]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ApiList, A::Error> {
                let mut families = Vec::new();
                // Read names as strings first, so a wrong type says "expected a string".
                while let Some(name) = seq.next_element::<String>()? {
                    families.push(ApiFamily::deserialize(de::value::StrDeserializer::<
                        A::Error,
                    >::new(&name))?);
                }
                Ok(ApiList(families))
            }
        }

        deserializer.deserialize_any(ApiListVisitor)
    }
}

/// A name-keyed map that refuses a name given twice: serde_json would keep the last copy, and
/// a security team's edit could silently replace an entry.
fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueMapVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMapVisitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object keyed by name")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if entries.contains_key(&name) {
                    return Err(de::Error::custom(format!("\"{name}\" is defined twice")));
                }
                let value = map.next_value()?;
                entries.insert(name, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(UniqueMapVisitor(std::marker::PhantomData))
}

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

    /// How many mistakes were found so far.
    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }

    /// The mistakes found, or `None` when there were none.
    pub(crate) fn into_found(self) -> Option<Vec<ConfigError>> {
        (!self.0.is_empty()).then_some(self.0)
    }
}
