//! The pipeline's metrics as Envoy dynamic module metrics.
//!
//! The pipeline names a metric in full, labels included (`posturio_requests_total.consumer=a;
//! .model=b;...`, see `posturio::pipeline::metrics`), and defines it on first use. Envoy lets a
//! dynamic module define metrics only while its configuration is created, each with fixed
//! label names, and takes the label values at each increment. So the configuration defines
//! every metric the pipeline records (`TEMPLATES`), and a full name is split back into its
//! base and label values: one series per distinct set of values, as in the Wasm build, under
//! the same names and labels once Envoy's stats tags have read the Wasm names.

use posturio::pipeline::metrics as names;
use posturio::pipeline::MetricKind;

/// Every metric the pipeline records, with its label names in the order `/stats/prometheus`
/// lists them for the Wasm build (the order of the shipped `stats_tags`), so that both builds
/// print the same lines. A metric recorded under other labels is not recorded (and logged): a
/// new metric in the pipeline needs its row here.
pub const TEMPLATES: &[(MetricKind, &str, &[&str])] = &[
    (
        MetricKind::Counter,
        names::REQUESTS,
        &["consumer", "model", "provider", "decision", "code"],
    ),
    (
        MetricKind::Counter,
        names::RULE_HITS,
        &["consumer", "rule", "action", "direction"],
    ),
    (MetricKind::Counter, names::INPUT_TOKENS, SETTLED),
    (MetricKind::Counter, names::OUTPUT_TOKENS, SETTLED),
    (MetricKind::Counter, names::CACHED_INPUT_TOKENS, SETTLED),
    (MetricKind::Counter, names::USAGE_UNKNOWN, SETTLED),
    (MetricKind::Counter, names::COST_MICROUSD, SETTLED),
    (MetricKind::Counter, names::COST_UNKNOWN, SETTLED),
    (
        MetricKind::Counter,
        names::UPSTREAM_RESPONSES,
        &["consumer", "model", "provider", "class"],
    ),
    (
        MetricKind::Histogram,
        names::UPSTREAM_FIRST_BYTE,
        &["model"],
    ),
    (MetricKind::Histogram, names::REQUEST_DURATION, &["model"]),
    (
        MetricKind::Counter,
        names::ATTEMPTS,
        &["model", "provider", "class"],
    ),
    (
        MetricKind::Counter,
        names::REPLACED_RESPONSES,
        &["model", "code"],
    ),
    (
        MetricKind::Counter,
        names::GUARD_CALLS,
        &["guard", "outcome"],
    ),
    (MetricKind::Histogram, names::GUARD_DURATION, &["guard"]),
];

const SETTLED: &[&str] = &["consumer", "model", "provider"];

/// A full metric name split: its base and its `(label, value)` pairs, in order. `None` when
/// the name is not `base(.label=value;)*`.
pub fn split(full: &str) -> Option<(&str, Vec<(&str, &str)>)> {
    let (base, mut rest) = match full.find('.') {
        Some(dot) => full.split_at(dot),
        None => return Some((full, Vec::new())),
    };
    let mut labels = Vec::new();
    while let Some(segment) = rest.strip_prefix('.') {
        let end = segment.find(';')?;
        let (pair, after) = segment.split_at(end);
        let (label, value) = pair.split_once('=')?;
        labels.push((label, value));
        rest = after.strip_prefix(';')?;
    }
    rest.is_empty().then_some((base, labels))
}

/// The row of `TEMPLATES` for a metric of this kind, base and label names (in any order),
/// and its label values in the row's order.
pub fn template<'a>(
    kind: MetricKind,
    base: &str,
    labels: &[(&str, &'a str)],
) -> Option<(usize, Vec<&'a str>)> {
    TEMPLATES
        .iter()
        .enumerate()
        .find_map(|(row, (k, name, label_names))| {
            if *k != kind || *name != base || label_names.len() != labels.len() {
                return None;
            }
            let values = label_names
                .iter()
                .map(|expected| {
                    labels
                        .iter()
                        .find(|(label, _)| label == expected)
                        .map(|(_, value)| *value)
                })
                .collect::<Option<Vec<&str>>>()?;
            Some((row, values))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_name_splits_into_its_base_and_labels() {
        assert_eq!(
            split("posturio_requests_total.consumer=a;.model=gpt-4.1;.code=none;"),
            Some((
                "posturio_requests_total",
                vec![("consumer", "a"), ("model", "gpt-4.1"), ("code", "none")]
            ))
        );
        assert_eq!(split("posturio_x"), Some(("posturio_x", vec![])));
        assert_eq!(split("posturio_x.consumer=a"), None, "a value ends at `;`");
        assert_eq!(split("posturio_x.consumer;"), None, "a label has a value");
    }

    #[test]
    fn label_values_follow_the_order_prometheus_lists_them_in() {
        let labels = [
            ("rule", "r"),
            ("action", "block"),
            ("consumer", "c"),
            ("direction", "request"),
        ];
        let (_, values) = template(MetricKind::Counter, names::RULE_HITS, &labels).unwrap();
        assert_eq!(values, ["c", "r", "block", "request"]);
        let repeated = [
            ("rule", "r"),
            ("rule", "r"),
            ("consumer", "c"),
            ("direction", "d"),
        ];
        assert!(template(MetricKind::Counter, names::RULE_HITS, &repeated).is_none());
    }

    #[test]
    fn a_metric_finds_its_template_only_with_the_same_labels() {
        let labels = [("model", "m")];
        assert!(template(MetricKind::Histogram, names::REQUEST_DURATION, &labels).is_some());
        assert!(template(MetricKind::Counter, names::REQUEST_DURATION, &labels).is_none());
        assert!(template(MetricKind::Histogram, names::REQUEST_DURATION, &[]).is_none());
    }
}
