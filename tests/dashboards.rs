//! The observability files agree with each other, without running Envoy: every Envoy
//! configuration that loads Posturio carries the same `stats_tags`, those tags turn the label
//! segments of Posturio's metric names into labels, the Grafana dashboard queries only metrics
//! that docs/metrics.md documents with labels the tags produce, the access logs carry every
//! field of Posturio's filter state, and the rate limit example agrees with its service
//! configuration.
//!
//! Envoy's own tag extraction was checked by hand against Envoy 1.40 (docs/metrics.md says
//! how); `extract` below follows the same rules so that a change to the regexes is caught here.

// Test helpers index and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The native build's filter (envoy/envoy-native.yaml), which reports the same metrics.
const NATIVE_FILTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const LABELS: [&str; 11] = [
    "consumer",
    "model",
    "provider",
    "decision",
    "code",
    "rule",
    "action",
    "direction",
    "class",
    "guard",
    "outcome",
];
const FILTER_STATE_KEYS: [&str; 20] = [
    "decision",
    "code",
    "consumer",
    "model",
    "upstream_model",
    "provider",
    "attempts",
    "api",
    "rules",
    "response",
    "response_rules",
    "guards",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "tokens",
    "reasoning_tokens",
    "cost_microusd",
    "charged_tokens",
    "charged_microusd",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `envoy/*.yaml` that load the Posturio filter (inline or through ECDS, Wasm or native), by
/// file name.
fn configs_loading_posturio() -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    for entry in std::fs::read_dir(repo("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains(WASM_FILTER) || text.contains(NATIVE_FILTER) {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                configs.insert(name, text);
            }
        }
    }
    configs
}

/// The top-level `stats_config:` block of a YAML file: that line and every indented or blank
/// line after it, without trailing blank lines.
fn stats_config_block(yaml: &str) -> Option<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines.iter().position(|line| *line == "stats_config:")?;
    let mut block = vec![lines[start]];
    for line in &lines[start + 1..] {
        if !line.is_empty() && !line.starts_with(' ') {
            break;
        }
        block.push(line);
    }
    while block.last().is_some_and(|line| line.trim().is_empty()) {
        block.pop();
    }
    Some(block.join("\n"))
}

/// `(tag_name, regex)` of each entry of a `stats_tags` block (regexes single-quoted).
fn tags(block: &str) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    let mut name = None;
    for line in block.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("- tag_name:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("regex:") {
            let quoted = value.trim();
            assert!(
                quoted.len() >= 2 && quoted.starts_with('\'') && quoted.ends_with('\''),
                "regexes are single-quoted: {line}"
            );
            let regex = quoted[1..quoted.len() - 1].replace("''", "'");
            tags.push((name.take().expect("tag_name before regex"), regex));
        }
    }
    tags
}

fn shipped_tags() -> Vec<(String, String)> {
    tags(&stats_config_block(&read("envoy/envoy.yaml")).expect("stats_config in envoy.yaml"))
}

/// Envoy's tag extraction: every regex runs on the full name; a match's first group is cut
/// from the name and its second group is the tag's value.
fn extract(tags: &[(String, String)], name: &str) -> (String, BTreeMap<String, String>) {
    let mut values = BTreeMap::new();
    let mut cut = vec![false; name.len()];
    for (tag, regex) in tags {
        let regex = Regex::new(regex).unwrap();
        if let Some(captures) = regex.captures(name) {
            let whole = captures.get(1).expect("a first group");
            let value = captures.get(2).unwrap_or(whole);
            values.insert(tag.clone(), value.as_str().to_owned());
            for flag in &mut cut[whole.range()] {
                *flag = true;
            }
        }
    }
    let kept: String = name
        .char_indices()
        .filter(|(i, _)| !cut[*i])
        .map(|(_, c)| c)
        .collect();
    (kept, values)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_config_that_loads_posturio_has_the_same_stats_tags() {
    let configs = configs_loading_posturio();
    let names: Vec<&str> = configs.keys().map(String::as_str).collect();
    for expected in [
        "envoy.yaml",
        "envoy-jwt.yaml",
        "envoy-ecds.yaml",
        "envoy-native.yaml",
        "envoy-providers.yaml",
        "envoy-ratelimit.yaml",
    ] {
        assert!(names.contains(&expected), "{expected} not among {names:?}");
    }
    let reference = stats_config_block(&configs["envoy.yaml"]).expect("envoy.yaml: stats_config");
    for (name, text) in &configs {
        let block = stats_config_block(text)
            .unwrap_or_else(|| panic!("envoy/{name} loads Posturio but has no stats_config"));
        assert_eq!(
            block, reference,
            "envoy/{name}: stats_config differs from envoy/envoy.yaml"
        );
    }
    let tags = shipped_tags();
    let names: BTreeSet<&str> = tags.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, LABELS.into_iter().collect(), "one tag per label");
    assert_eq!(tags.len(), LABELS.len(), "a tag given twice: {tags:?}");
    // docs/metrics.md shows the same block.
    let doc = read("docs/metrics.md");
    for (name, regex) in &tags {
        let entry = format!("  - tag_name: {name}\n    regex: '{regex}'");
        assert!(doc.contains(&entry), "docs/metrics.md lacks:\n{entry}");
    }
}

/// A metric name as Posturio defines it, the name left after tag extraction, and the tags.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn stats_tags_turn_label_segments_into_labels() {
    let tags = shipped_tags();
    let cases: [Case; 6] = [
        (
            "wasmcustom.posturio_requests_total.consumer=team-a;.model=gpt-4.1;.provider=openai;.decision=allow;.code=none;",
            "wasmcustom.posturio_requests_total",
            &[
                ("consumer", "team-a"),
                ("model", "gpt-4.1"),
                ("provider", "openai"),
                ("decision", "allow"),
                ("code", "none"),
            ],
        ),
        (
            "wasmcustom.posturio_input_tokens_total.consumer=search-team;.model=anthropic.claude-3-5-sonnet-20240620-v1:0;.provider=bedrock;",
            "wasmcustom.posturio_input_tokens_total",
            &[
                ("consumer", "search-team"),
                ("model", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
                ("provider", "bedrock"),
            ],
        ),
        (
            "wasmcustom.posturio_rule_hits_total.rule=no-secrets;.action=block;.consumer=default;.direction=response;",
            "wasmcustom.posturio_rule_hits_total",
            &[
                ("rule", "no-secrets"),
                ("action", "block"),
                ("consumer", "default"),
                ("direction", "response"),
            ],
        ),
        (
            "wasmcustom.posturio_upstream_responses_total.consumer=none;.model=none;.provider=none;.class=5xx;",
            "wasmcustom.posturio_upstream_responses_total",
            &[
                ("consumer", "none"),
                ("model", "none"),
                ("provider", "none"),
                ("class", "5xx"),
            ],
        ),
        (
            "wasmcustom.posturio_request_duration_ms.model=fast;",
            "wasmcustom.posturio_request_duration_ms",
            &[("model", "fast")],
        ),
        // A value that looks like another label stays in its own segment.
        (
            "wasmcustom.posturio_requests_total.consumer=x.model=y;.model=gpt-4o;.provider=openai;.decision=deny;.code=prompt_blocked;",
            "wasmcustom.posturio_requests_total",
            &[
                ("consumer", "x.model=y"),
                ("model", "gpt-4o"),
                ("provider", "openai"),
                ("decision", "deny"),
                ("code", "prompt_blocked"),
            ],
        ),
    ];
    for (name, expected_name, expected) in cases {
        let (kept, values) = extract(&tags, name);
        assert_eq!(kept, expected_name, "{name}");
        assert_eq!(values, labels(expected), "{name}");
    }
    // Only Posturio's metrics are touched.
    for name in [
        "wasmcustom.other_requests_total.consumer=x;",
        "cluster.posturio_requests_total.consumer=team-a;.upstream_rq_total",
        "http.llm.downstream_rq_2xx",
    ] {
        assert_eq!(extract(&tags, name), (name.to_owned(), BTreeMap::new()));
    }
}

/// The metrics docs/metrics.md documents: name → (type, labels).
fn documented_metrics() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let doc = read("docs/metrics.md");
    let row = Regex::new(r"^\| `(posturio_[a-z_]+)` \| (counter|histogram) \| ([^|]*) \|").unwrap();
    let label = Regex::new(r"`([a-z_]+)`").unwrap();
    let mut metrics = BTreeMap::new();
    for line in doc.lines() {
        if let Some(captures) = row.captures(line) {
            let labels = label
                .captures_iter(&captures[3])
                .map(|c| c[1].to_owned())
                .collect();
            metrics.insert(captures[1].to_owned(), (captures[2].to_owned(), labels));
        }
    }
    metrics
}

#[test]
fn documented_metrics_are_covered_by_the_stats_tags() {
    let metrics = documented_metrics();
    assert_eq!(metrics.len(), 15, "{metrics:#?}");
    let tags = shipped_tags();
    let base = Regex::new(r"^posturio_[a-z_]+$").unwrap();
    for (name, (_, labels)) in &metrics {
        assert!(base.is_match(name), "{name}");
        assert!(!labels.is_empty(), "{name} has no labels");
        // A name built from the documented labels comes out of the tags with exactly them.
        let mut full = format!("wasmcustom.{name}");
        for label in labels {
            full.push_str(&format!(".{label}=v.1:{label};"));
        }
        let (kept, values) = extract(&tags, &full);
        assert_eq!(kept, format!("wasmcustom.{name}"), "{full}");
        let expected: BTreeMap<String, String> = labels
            .iter()
            .map(|l| (l.clone(), format!("v.1:{l}")))
            .collect();
        assert_eq!(values, expected, "{full}");
    }
}

/// Every PromQL expression of the dashboard (panels and variables), with where it is.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().unwrap();
            queries.push((format!("${}", variable["name"]), query.to_owned()));
        }
    }
    queries
}

#[test]
fn the_dashboard_queries_documented_metrics_with_tagged_labels() {
    let dashboard: Value = serde_json::from_str(&read("envoy/grafana-dashboard.json"))
        .expect("envoy/grafana-dashboard.json is JSON");
    assert_eq!(dashboard["schemaVersion"], 39);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());

    // A Prometheus data source chosen by the user, and the consumer and model filters.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for name in ["consumer", "model"] {
        let query = variable(name)["query"]["query"].as_str().unwrap();
        assert!(
            query.starts_with("label_values(posturio_") && query.ends_with(&format!(", {name})")),
            "${name}: {query}"
        );
    }

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        assert!(
            !panel["targets"].as_array().unwrap().is_empty(),
            "{title}: no query"
        );
    }

    let metrics = documented_metrics();
    let tag_names: BTreeSet<String> = shipped_tags().into_iter().map(|(n, _)| n).collect();
    let metric = Regex::new(r"posturio_[a-z_]+").unwrap();
    let selector = Regex::new(r"(posturio_[a-z_]+)\{([^}]*)\}").unwrap();
    let matcher = Regex::new(r"([a-z_]+)\s*(?:=~|!~|!=|=)").unwrap();
    let grouping = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").unwrap();
    let mut used = BTreeSet::new();
    for (place, expr) in dashboard_queries(&dashboard) {
        // Each metric, with a histogram's series suffix removed, is documented.
        let mut labels_here: BTreeSet<String> = BTreeSet::new();
        assert!(
            metric.is_match(&expr),
            "{place}: no Posturio metric in {expr}"
        );
        for found in metric.find_iter(&expr) {
            let name = found.as_str();
            let (base, suffixed) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| metrics.contains_key(*base))
                .map_or((name, false), |base| (base, true));
            let (kind, labels) = metrics
                .get(base)
                .unwrap_or_else(|| panic!("{place}: {name} is not in docs/metrics.md: {expr}"));
            assert_eq!(
                suffixed,
                kind == "histogram",
                "{place}: {name}: histograms are queried by their series, counters by name"
            );
            used.insert(base.to_owned());
            labels_here.extend(labels.iter().cloned());
            if suffixed {
                labels_here.insert("le".to_owned());
            }
        }
        // Labels in a metric's selector are that metric's labels, and produced by the tags.
        for captures in selector.captures_iter(&expr) {
            let (_, labels) = &metrics[captures[1]
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")];
            for label in matcher.captures_iter(&captures[2]) {
                let label = &label[1];
                assert!(
                    labels.contains(label) && tag_names.contains(label),
                    "{place}: {} has no label {label}: {expr}",
                    &captures[1]
                );
            }
        }
        // Grouping labels belong to the metrics of the expression (or are `le`).
        for captures in grouping.captures_iter(&expr) {
            for label in captures[1].split(',').map(str::trim) {
                assert!(
                    labels_here.contains(label) && (label == "le" || tag_names.contains(label)),
                    "{place}: grouping by {label}, which its metrics lack: {expr}"
                );
            }
        }
    }
    let documented: BTreeSet<String> = metrics.keys().cloned().collect();
    assert_eq!(used, documented, "every documented metric has a panel");
}

#[test]
fn spend_panels_show_dollars() {
    let dashboard: Value = serde_json::from_str(&read("envoy/grafana-dashboard.json")).unwrap();
    let mut spend_panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        let exprs: Vec<&str> = panel["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        if !exprs
            .iter()
            .any(|e| e.contains("posturio_cost_microusd_total"))
        {
            continue;
        }
        spend_panels += 1;
        // Posturio counts micro-dollars (Envoy's counters are integers): shown in dollars.
        assert_eq!(
            panel["fieldConfig"]["defaults"]["unit"], "currencyUSD",
            "{title}"
        );
        for expr in exprs {
            assert!(expr.contains("/ 1e6"), "{title}: not in dollars: {expr}");
        }
    }
    assert_eq!(spend_panels, 4, "total, by consumer, by model, rate");
}

#[test]
fn access_logs_carry_every_posturio_field() {
    let doc = read("docs/metrics.md");
    for path in [
        "envoy/envoy.yaml",
        "envoy/envoy-jwt.yaml",
        "envoy/envoy-ratelimit.yaml",
    ] {
        let yaml = read(path);
        assert!(yaml.contains("json_format:"), "{path}: no JSON access log");
        for field in [
            "start_time: \"%START_TIME%\"",
            "method: \"%REQ(:METHOD)%\"",
            "status: \"%RESPONSE_CODE%\"",
            "response_flags: \"%RESPONSE_FLAGS%\"",
            "duration_ms: \"%DURATION%\"",
            "upstream_cluster: \"%UPSTREAM_CLUSTER%\"",
            "request_id: \"%REQ(X-REQUEST-ID)%\"",
        ] {
            assert!(yaml.contains(field), "{path}: no `{field}`");
        }
        for key in FILTER_STATE_KEYS {
            let field = format!("posturio_{key}: \"%FILTER_STATE(wasm.posturio.{key}:PLAIN)%\"");
            assert!(yaml.contains(&field), "{path}: no `{field}`");
        }
    }
    for key in FILTER_STATE_KEYS {
        let row = format!("| `posturio_{key}` | `{key}` |");
        assert!(doc.contains(&row), "docs/metrics.md: no row {row}");
    }
}

#[test]
fn the_rate_limit_example_agrees_with_its_service_config() {
    let envoy = read("envoy/envoy-ratelimit.yaml");
    let service = read("envoy/ratelimit-config.yaml");
    // Envoy 1.40 ignores hits_addend on a route's rate_limits: it must stay in the filter's.
    let routes = &envoy[envoy.find("route_config:").unwrap()..envoy.find("http_filters:").unwrap()];
    assert!(!routes.contains("rate_limits"), "rate limits on the route");
    let filter = &envoy[envoy.find("envoy.filters.http.ratelimit").unwrap()..];
    assert!(
        !filter.contains("wasm.posturio.tokens:PLAIN"),
        "the fleet is charged the reported tokens: a cut stream would be free"
    );
    for needle in [
        "apply_on_stream_done: true",
        // What Posturio charged, not the reported tokens: a cut stream is charged too.
        "hits_addend: { format: \"%FILTER_STATE(wasm.posturio.charged_tokens:PLAIN)%\" }",
        "hits_addend: { format: \"%FILTER_STATE(wasm.posturio.charged_microusd:PLAIN)%\" }",
        "hits_addend: { number: 0 }",
        "key: wasm.posturio.consumer",
        "key: wasm.posturio.model",
    ] {
        assert!(
            filter.contains(needle),
            "the rate limit filter lacks `{needle}`"
        );
    }
    // The same domain, and each descriptor Envoy sends has its keys in the service's config.
    let domain = Regex::new(r"(?m)^\s*domain: (\S+)$").unwrap();
    assert_eq!(&domain.captures(filter).unwrap()[1], "posturio");
    assert!(service.contains("\ndomain: posturio\n"));
    let generic =
        Regex::new(r"generic_key: \{ descriptor_key: (\w+), descriptor_value: (\w+) \}").unwrap();
    let mut sent = BTreeSet::new();
    for captures in generic.captures_iter(filter) {
        sent.insert((captures[1].to_owned(), captures[2].to_owned()));
    }
    let expected: BTreeSet<(String, String)> = [
        ("posturio", "requests"),
        ("posturio", "tokens"),
        ("posturio", "spend"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(sent, expected);
    for (key, value) in &sent {
        assert!(
            service.contains(&format!("- key: {key}\n  value: {value}\n")),
            "ratelimit-config.yaml has no ({key}, {value})"
        );
    }
    for key in ["consumer", "model"] {
        assert!(filter.contains(&format!("name: {key}\n")));
        assert!(service.contains(&format!("- key: {key}\n")), "{key}");
    }
}
