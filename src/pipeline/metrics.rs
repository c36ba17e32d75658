//! The pipeline's metrics. Labels travel in the metric's name as `.label=value;` segments, which
//! the `stats_tags` in `envoy/envoy.yaml` turn into Prometheus labels (see docs/metrics.md).
//! Every label value comes from the configuration (consumer, model, provider and rule names)
//! or from a fixed set (decisions, codes, status classes), never from request data, so the
//! number of series is bounded by the policy.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::host::{Host, MetricKind};

pub const REQUESTS: &str = "posturio_requests_total";
pub const RULE_HITS: &str = "posturio_rule_hits_total";
pub const INPUT_TOKENS: &str = "posturio_input_tokens_total";
pub const OUTPUT_TOKENS: &str = "posturio_output_tokens_total";
pub const CACHED_INPUT_TOKENS: &str = "posturio_cached_input_tokens_total";
pub const USAGE_UNKNOWN: &str = "posturio_usage_unknown_total";
/// The cost of each settled request whose usage is known and whose model (or serving target)
/// has a price, in micro-dollars.
pub const COST_MICROUSD: &str = "posturio_cost_microusd_total";
/// One per settled request whose usage is known but whose model has no price.
pub const COST_UNKNOWN: &str = "posturio_cost_unknown_total";
pub const UPSTREAM_RESPONSES: &str = "posturio_upstream_responses_total";
pub const UPSTREAM_FIRST_BYTE: &str = "posturio_upstream_first_byte_ms";
pub const REQUEST_DURATION: &str = "posturio_request_duration_ms";
/// One per attempt at a pool cluster's target, by model, provider and outcome class.
pub const ATTEMPTS: &str = "posturio_attempts_total";
/// A forwarded request's answer the gateway replaced, by model and code
/// (`upstream_unavailable`, or `internal_error` for a pool without its upstream filter).
pub const REPLACED_RESPONSES: &str = "posturio_replaced_responses_total";

/// One per guard call, by guard and outcome (`allow`, `flagged`, `error`, `timeout`).
pub const GUARD_CALLS: &str = "posturio_guard_calls_total";
/// How long each guard call took, by guard.
pub const GUARD_DURATION: &str = "posturio_guard_duration_ms";

/// The value of a label that does not apply or is not known.
pub const NONE: &str = "none";

/// Metric ids by full name, defined on first use. One per Wasm VM (worker): Envoy joins
/// metrics of the same name across workers.
#[derive(Default)]
pub struct MetricIds {
    ids: HashMap<String, u32, BuildHasherDefault<NameHasher>>,
    /// Reused to build names, so a metric already defined costs no allocation.
    name: String,
}

impl MetricIds {
    /// Adds `by` to a counter (defining it, so the series exists, even when `by` is 0).
    pub fn count<H: Host>(&mut self, host: &H, base: &str, labels: &[(&str, &str)], by: u64) {
        if let Some(id) = self.id(host, MetricKind::Counter, base, labels) {
            if by == 0 {
                return;
            }
            if let Err(error) = host.increment_metric(id, by) {
                log::debug!("{error}");
            }
        }
    }

    /// Records one value in a histogram.
    pub fn record<H: Host>(&mut self, host: &H, base: &str, labels: &[(&str, &str)], value: u64) {
        if let Some(id) = self.id(host, MetricKind::Histogram, base, labels) {
            if let Err(error) = host.record_metric(id, value) {
                log::debug!("{error}");
            }
        }
    }

    fn id<H: Host>(
        &mut self,
        host: &H,
        kind: MetricKind,
        base: &str,
        labels: &[(&str, &str)],
    ) -> Option<u32> {
        full_name(&mut self.name, base, labels);
        if let Some(id) = self.ids.get(self.name.as_str()) {
            return Some(*id);
        }
        match host.define_metric(kind, &self.name) {
            Ok(id) => {
                self.ids.insert(self.name.clone(), id);
                Some(id)
            }
            Err(error) => {
                log::warn!("{error}; metric {} is not recorded", self.name);
                None
            }
        }
    }
}

/// `base.label=value;.label=value;` — a `;` inside a value would end it early, so it becomes
/// `_`; an empty value is `none`.
pub fn full_name(out: &mut String, base: &str, labels: &[(&str, &str)]) {
    out.clear();
    out.push_str(base);
    for (label, value) in labels {
        out.push('.');
        out.push_str(label);
        out.push('=');
        if value.is_empty() {
            out.push_str(NONE);
        } else if value.contains(';') {
            out.push_str(&value.replace(';', "_"));
        } else {
            out.push_str(value);
        }
        out.push(';');
    }
}

/// FxHash, eight bytes a step: metric names are trusted (from the configuration), about a
/// hundred bytes long and looked up several times per request, where SipHash, or FNV-1a's byte a
/// step, costs more than the rest of the lookup (in V8, FNV-1a was a tenth of a routed
/// request's time in the module).
#[derive(Default)]
pub struct NameHasher(u64);

impl NameHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in words.by_ref() {
            if let Ok(word) = <[u8; 8]>::try_from(word) {
                self.add(u64::from_le_bytes(word));
            }
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 8];
            if let Some(start) = tail.get_mut(..rest.len()) {
                start.copy_from_slice(rest);
            }
            // The length tells "ab" from "ab\0" in the last, zero-padded word.
            self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `2xx` for 200..=299, and so on; `none` for a status outside 100..=599.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_segments_of_the_name() {
        let mut name = String::new();
        full_name(
            &mut name,
            REQUESTS,
            &[("consumer", "team-a"), ("model", "gpt-4.1"), ("code", "")],
        );
        assert_eq!(
            name,
            "posturio_requests_total.consumer=team-a;.model=gpt-4.1;.code=none;"
        );
        full_name(&mut name, RULE_HITS, &[("rule", "a;b")]);
        assert_eq!(name, "posturio_rule_hits_total.rule=a_b;");
    }

    #[test]
    fn names_that_differ_anywhere_hash_apart() {
        let hash = |name: &[u8]| {
            let mut hasher = NameHasher::default();
            hasher.write(name);
            hasher.finish()
        };
        let name = "posturio_requests_total.consumer=team-a;.model=gpt-4.1;";
        let mut seen = std::collections::HashSet::new();
        for end in 0..=name.len() {
            let prefix = name.as_bytes().get(..end).unwrap_or_default();
            assert!(seen.insert(hash(prefix)), "prefix of {end} bytes");
        }
        assert_ne!(hash(b"ab"), hash(b"ab\0"));
        assert_ne!(hash(b"team-a;.x"), hash(b"team-b;.x"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(42), "none");
    }
}
