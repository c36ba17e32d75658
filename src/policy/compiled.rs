//! The compiled policy: what every request reads. Built once per configuration by `compile`,
//! immutable after, shared by every request of a worker.

use std::collections::{HashMap, HashSet};

use super::api_keys::KeyTable;
use super::budget::Budget;
use super::classify::ApiFamily;
use super::config::{CapAction, Mode, OpaqueContent};
use super::guards::Guard;
use super::inspect::Scanner;
use super::price::Price;
use super::principals::Principals;
use super::rules::Rule;

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
    /// External guard services, in the configured order.
    pub guards: Vec<Guard>,
}

/// Where the consumer's name comes from: the identity sources the policy configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Every request is `default`.
    None,
    /// A request header, alone (clients can set it: see the security model). A request
    /// without it is `default`.
    Header(String),
    /// Dynamic metadata written by an earlier filter, alone: `namespace`, then the keys down
    /// to a string. A request without it is `default`.
    Metadata {
        namespace: String,
        path: Vec<String>,
    },
    /// API keys or the peer certificate, with or without metadata: every source is required,
    /// all must name the same consumer, and nothing falls back to `default`.
    Verified(Verified),
}

/// The sources of an `Identity::Verified`: at least one of `api_keys` and
/// `peer_certificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub metadata: Option<MetadataSource>,
    pub api_keys: Option<KeyTable>,
    pub peer_certificate: Option<Principals>,
}

/// Where in the dynamic metadata a verified claim is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataSource {
    pub namespace: String,
    pub path: Vec<String>,
}

impl Identity {
    /// The metadata namespace and path the identity reads, if it reads one.
    pub fn metadata(&self) -> Option<(&str, &[String])> {
        match self {
            Identity::Metadata { namespace, path } => Some((namespace, path)),
            Identity::Verified(Verified {
                metadata: Some(source),
                ..
            }) => Some((&source.namespace, &source.path)),
            _ => None,
        }
    }

    /// The API key table, when requests are identified by key.
    pub fn api_keys(&self) -> Option<&KeyTable> {
        match self {
            Identity::Verified(verified) => verified.api_keys.as_ref(),
            _ => None,
        }
    }

    /// The consumers' SPIFFE patterns, when requests are identified by peer certificate.
    pub fn peer_certificate(&self) -> Option<&Principals> {
        match self {
            Identity::Verified(verified) => verified.peer_certificate.as_ref(),
            _ => None,
        }
    }
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
    /// The provider that serves the model; for a pool, the first target's.
    pub provider: usize,
    /// The provider's name for it; for a pool, the first target's.
    pub upstream_model: Option<String>,
    /// Set for a model served through a pool cluster (`targets` + `cluster`).
    pub pool: Option<Pool>,
    /// The model's price; `None` when the policy gives none (its cost is then unknown).
    pub price: Option<Price>,
}

/// A model's targets behind one Envoy pool cluster. The policy says what each target needs;
/// Envoy picks which target an attempt goes to.
#[derive(Debug)]
pub(crate) struct Pool {
    pub cluster: String,
    /// Every target, in the configured order; the first is the model's `provider`.
    pub targets: Vec<Target>,
    /// The API families every target's provider accepts.
    pub families: Vec<ApiFamily>,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub provider: usize,
    pub upstream_model: Option<String>,
    /// The target's own price, else the model's.
    pub price: Option<Price>,
}

impl Policy {
    /// The API families a model can be asked through: its provider's, or for a pool those
    /// every target accepts.
    pub(crate) fn model_families<'a>(&'a self, model: &'a Model) -> &'a [ApiFamily] {
        match &model.pool {
            Some(pool) => &pool.families,
            None => self
                .providers
                .get(model.provider)
                .map_or(&[], |provider| provider.families.as_slice()),
        }
    }
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
    /// Which guards apply, by index into `Policy::guards`, in order.
    pub guards: Vec<usize>,
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

/// Whether rule `index` applies to the consumer (`None`: no consumer, every rule).
fn applies_to(consumer: Option<&Consumer>, index: usize) -> bool {
    consumer.is_none_or(|consumer| consumer.rules.get(index).copied().unwrap_or(false))
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

    /// The price of an answer for `model` served by `provider`: the target's own for a pool
    /// (else the model's); `None` when the model has no price, so its cost is unknown.
    pub fn price(&self, model: &str, provider: &str) -> Option<Price> {
        let model = self.models.get(model)?;
        let Some(pool) = &model.pool else {
            return model.price;
        };
        pool.targets
            .iter()
            .find(|target| {
                self.providers
                    .get(target.provider)
                    .is_some_and(|known| known.name == provider)
            })
            .map_or(model.price, |target| target.price)
    }

    /// The highest rate of each kind among the model and the targets that may serve it: what
    /// a reservation is priced at before anyone knows which target answers. `None` when any
    /// of them has no price.
    pub fn highest_price(&self, model: &str) -> Option<Price> {
        let model = self.models.get(model)?;
        let Some(pool) = &model.pool else {
            return model.price;
        };
        pool.targets
            .iter()
            .try_fold(model.price, |highest, target| {
                let price = target.price?;
                Some(Some(highest.map_or(price, |so_far| so_far.highest(price))))
            })
            .flatten()
    }

    /// A consumer's cap on the output tokens of one request, if it has one.
    pub fn output_cap_for(&self, consumer: &str) -> Option<u64> {
        Some(self.consumers.get(consumer)?.output_cap.as_ref()?.limit)
    }

    /// A consumer's effective mode: its own, else the global one.
    pub fn consumer_mode(&self, consumer: &str) -> Option<Mode> {
        self.consumers.get(consumer).map(|consumer| consumer.mode)
    }

    /// Whether any rule that reads requests applies to the consumer (`None`: no consumer,
    /// every rule).
    pub(crate) fn inspects_requests(&self, consumer: Option<&Consumer>) -> bool {
        self.rules
            .iter()
            .enumerate()
            .any(|(index, rule)| rule.direction.reads_requests() && applies_to(consumer, index))
    }

    /// The rules that read answers and apply to the consumer, by index; empty for most
    /// consumers, and computed without a host call.
    pub(crate) fn answer_rules(&self, consumer: Option<&Consumer>) -> Vec<usize> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(index, rule)| rule.reads_answers() && applies_to(consumer, *index))
            .map(|(index, _)| index)
            .collect()
    }

    /// The guards that apply to a consumer, by index into `guards` (`None`: a request with
    /// no consumer, refused or audited; every guard applies, as every rule does).
    pub fn guards_for(&self, consumer: Option<&str>) -> Vec<usize> {
        match consumer.and_then(|name| self.consumers.get(name)) {
            Some(consumer) => consumer.guards.clone(),
            None => (0..self.guards.len()).collect(),
        }
    }

    /// A rule's id by its index, for replies and logs.
    pub(crate) fn rule_id(&self, index: usize) -> &str {
        self.rules.get(index).map_or("?", |rule| rule.id.as_str())
    }
}
