//! The Grafana dashboard against real data: the shipped `envoy/envoy.yaml` in a real Envoy,
//! in front of the mock provider and the mock guard, scraped every second by a real
//! Prometheus (Debian's package, `make prometheus`), and every query of
//! `envoy/grafana-dashboard.json` run through Prometheus's HTTP API as Grafana runs it, each
//! required to return at least one series with a value.
//!
//! The policy is the shipped one plus one guard (the shipped policy has none, and the guard
//! panels need calls): every consumer without a `guards` list is asked about by it, through the
//! config's own `guard` cluster pointed at `tests/mock_guard.py`. Traffic comes in rounds, one
//! a second, each with every kind of request the panels count: allowed chat for several models,
//! a redacted and a blocked prompt, a model not approved, a fallback from a 429 to the pool's
//! second target, an answer Posturio replaced because no provider answered, and a stream cut
//! before its usage. Rounds go on until every query has data (histograms show up only once
//! Envoy has flushed them twice, 5 s apart), within a deadline.
//!
//! Grafana's variables are replaced as Grafana does with "All" selected and a data source whose
//! scrape interval is the one used here (1 s): `$consumer` and `$model` by their `allValue`
//! `.*`; `$__interval` by 1s (the dashboard's range divided by the panel's width in points is
//! far below the 1 s minimum interval); `$__rate_interval` by
//! max(`$__interval` + scrape interval, 4 × scrape interval) = 4s; `$__range` by the
//! dashboard's range, the seconds since Prometheus started. A target with `"instant": true`
//! is an instant query at the end of that range, every other target a range query over it at
//! a 1 s step; a variable's `label_values(SELECTOR, LABEL)` is Prometheus's label values
//! endpoint with SELECTOR as its match.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::cell::Cell;
use std::process::Child;
use std::time::{Duration, Instant};

use common::prometheus::{unix_now, Prometheus, SCRAPE_INTERVAL};
use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const DASHBOARD: &str = "envoy/grafana-dashboard.json";
/// The guard cluster's port in `envoy/envoy.yaml`, replaced by the mock guard's.
const TEMPLATE_GUARD_PORT: u16 = 18090;
/// How long traffic may go on before a query without data fails the test.
const DATA_DEADLINE: Duration = Duration::from_secs(40);
/// `$__interval`: Grafana's minimum interval, the data source's scrape interval.
const INTERVAL_SECS: u64 = 1;
/// `$__rate_interval` = max(`$__interval` + scrape interval, 4 × scrape interval).
const RATE_INTERVAL_SECS: u64 = 4;

thread_local! {
    /// The mock guard's port, for `edit_config` (a plain function) on this test's thread.
    static GUARD_PORT: Cell<u16> = const { Cell::new(0) };
}

/// Points the config's `guard` cluster at this thread's mock guard.
fn point_guard(config: String) -> String {
    let from = format!("port_value: {TEMPLATE_GUARD_PORT} ");
    assert!(
        config.contains(&from),
        "envoy/envoy.yaml has no guard cluster"
    );
    let port = GUARD_PORT.with(Cell::get);
    config.replace(&from, &format!("port_value: {port} "))
}

/// The shipped policy with one guard, which every consumer without a `guards` list gets.
fn policy() -> String {
    let shipped = common::embedded_policy(&common::read_repo_file("envoy/envoy.yaml"));
    let mut policy: Value = serde_json::from_str(&shipped).unwrap();
    policy["guards"] = json!([
        { "id": "moderation", "cluster": "guard", "api": "openai_moderation",
          "model": "omni-moderation-latest", "timeout_ms": 3000 }
    ]);
    policy.to_string()
}

/// Dropped in field order: Prometheus and Envoy before the services behind Envoy.
struct Stack {
    prometheus: Prometheus,
    envoy: Envoy,
    guard: Child,
    mock: MockProvider,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("posturio-dashboard-")
            .tempdir()
            .unwrap();
        let mock = MockProvider::start();
        let (guard, ports) = common::mock::spawn_service(
            "the mock guard",
            "tests/mock_guard.py",
            &["--port".to_string(), "0".to_string()],
            &dir.path().join("guard.stderr.log"),
            &["port"],
        );
        GUARD_PORT.with(|port| port.set(ports["port"]));
        let envoy = Envoy::start_with(
            EnvoyOptions::new(&policy())
                .mock(&mock)
                .edit_config(point_guard),
        );
        let prometheus = Prometheus::scraping(envoy.admin_port());
        Stack {
            prometheus,
            envoy,
            guard,
            mock,
            _dir: dir,
        }
    }

    fn post(&self, consumer: &str, path: &str, body: &Value) -> Result<Response, String> {
        let headers = [
            ("content-type", "application/json"),
            ("x-posturio-consumer", consumer),
        ];
        let bytes = body.to_string();
        let request =
            http::build_request(self.envoy.port(), "POST", path, &headers, bytes.as_bytes());
        http::try_send_raw(self.envoy.port(), &request)
    }

    /// A request that must get `status`.
    fn expect(&self, status: u16, consumer: &str, path: &str, body: &Value) {
        let response = self
            .post(consumer, path, body)
            .unwrap_or_else(|e| panic!("{consumer} {path} {body}: {e}"));
        assert_eq!(
            response.status, status,
            "{consumer} {path} {body}: {response:?}"
        );
    }

    /// A request while `listener` of the mock behaves as `behaviour`; the answer is not
    /// checked (a reset may cut it).
    fn while_behaving(&self, listener: &str, behaviour: Value, consumer: &str, body: &Value) {
        self.mock.behave(listener, behaviour);
        let _ = self.post(consumer, "/v1/chat/completions", body);
        self.mock.behave(listener, json!({}));
    }

    /// One round of every kind of request the dashboard counts.
    fn round(&self) {
        const CHAT: &str = "/v1/chat/completions";
        let chat = |model: &str, text: &str| json!({"model": model, "messages": [{"role": "user", "content": text}]});
        // Allowed, with usage: requests, tokens, upstream responses, both latencies, guard.
        self.expect(200, "default", CHAT, &chat("gpt-4o-mini", "hello"));
        self.expect(200, "search-team", CHAT, &chat("gpt-4o", "hello"));
        let messages = json!({"model": "claude-haiku-4", "max_tokens": 64,
                              "messages": [{"role": "user", "content": "hello"}]});
        self.expect(200, "default", "/v1/messages", &messages);
        // A redaction (rule hit, allowed) and a block (rule hit, denied).
        let email = chat("fast", "write to jane.doe@example.com please");
        self.expect(200, "default", CHAT, &email);
        let secret = chat("gpt-4o", "my key is AKIAIOSFODNN7EXAMPLE");
        self.expect(403, "search-team", CHAT, &secret);
        // A model the consumer may not use.
        self.expect(403, "default", CHAT, &chat("gpt-4o", "hello"));
        // Fallback: the pool's first target answers 429, the second serves (attempts).
        self.mock.behave("openai", json!({"status": 429}));
        self.expect(200, "platform-team", CHAT, &chat("resilient", "hello"));
        self.mock.behave("openai", json!({}));
        // No provider answers: Posturio replaces Envoy's 503 (replaced answers).
        let plain = chat("gpt-4o-mini", "hello");
        self.while_behaving("openai", json!({"reset": "before"}), "default", &plain);
        // A stream cut before its usage (responses without usage).
        let stream = json!({"model": "gpt-4o-mini", "stream": true,
                            "messages": [{"role": "user", "content": "hello"}]});
        let cut = json!({"reset": "after_first_event"});
        self.while_behaving("openai", cut, "default", &stream);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.guard.kill();
        let _ = self.guard.wait();
    }
}

/// One PromQL expression of the dashboard.
struct Query {
    /// Where it is: the panel's title and the target's refId, or the variable.
    place: String,
    expr: String,
    /// Grafana runs it as an instant query (`"instant": true`), else as a range query.
    instant: bool,
}

/// Every target of every panel.
fn panel_queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            queries.push(Query {
                place: format!("panel \"{title}\" ({})", target["refId"].as_str().unwrap()),
                expr: target["expr"].as_str().unwrap().to_owned(),
                instant: target["instant"] == true,
            });
        }
    }
    queries
}

/// `text` with Grafana's variables replaced as described at the top of this file.
fn substitute(text: &str, range_secs: u64) -> String {
    let mut out = text.to_owned();
    for (name, value) in [
        ("__rate_interval", format!("{RATE_INTERVAL_SECS}s")),
        ("__interval", format!("{INTERVAL_SECS}s")),
        ("__range", format!("{range_secs}s")),
        ("consumer", ".*".to_owned()),
        ("model", ".*".to_owned()),
    ] {
        out = out
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    assert!(!out.contains('$'), "a variable left unreplaced: {out}");
    out
}

/// Whether a query's result has a series with at least one finite value: what a panel needs
/// to show something (a NaN, from 0/0 or a quantile of no observations, shows nothing).
fn has_data(data: &Value) -> bool {
    let finite = |sample: &Value| {
        sample[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|series| finite(&series["value"])),
        Some("matrix") => data["result"].as_array().unwrap().iter().any(|series| {
            series["values"]
                .as_array()
                .is_some_and(|values| values.iter().any(finite))
        }),
        Some("scalar") => finite(&data["result"]),
        other => panic!("unexpected result type {other:?}: {data}"),
    }
}

/// The panel queries that have no data yet, each with what it ran and what came back.
fn panels_without_data(prometheus: &Prometheus, queries: &[Query], start: f64) -> Vec<String> {
    let end = unix_now();
    let range_secs = (end - start).ceil() as u64;
    let mut missing = Vec::new();
    for query in queries {
        let expr = substitute(&query.expr, range_secs);
        let data = if query.instant {
            prometheus.query(&expr)
        } else {
            prometheus.query_range(&expr, start, end, INTERVAL_SECS)
        };
        if !has_data(&data) {
            missing.push(format!("{}: no data from {expr}\n  -> {data}", query.place));
        }
    }
    missing
}

/// A variable's `label_values(SELECTOR, LABEL)`: the values Grafana would offer.
fn variable_values(prometheus: &Prometheus, query: &str, start: f64) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values() query: {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let selector = substitute(selector.trim(), 0);
    let (start, end) = (start.to_string(), unix_now().to_string());
    let data = prometheus.api(
        &format!("/api/v1/label/{}/values", label.trim()),
        &[("match[]", &selector), ("start", &start), ("end", &end)],
    );
    data.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dashboard: Value = serde_json::from_str(&common::read_repo_file(DASHBOARD)).unwrap();
    let queries = panel_queries(&dashboard);
    assert!(queries.len() > 20, "only {} queries", queries.len());

    let stack = Stack::start();
    let start = unix_now();
    let deadline = Instant::now() + DATA_DEADLINE;
    // Prometheus scrapes Envoy before any traffic, so every counter's first increase is seen.
    while !stack.prometheus.target_up() {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped Envoy's /stats/prometheus:\n{}",
            stack.prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    loop {
        let round_start = Instant::now();
        stack.round();
        if let Some(rest) = SCRAPE_INTERVAL.checked_sub(round_start.elapsed()) {
            std::thread::sleep(rest);
        }
        let missing = panels_without_data(&stack.prometheus, &queries, start);
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} dashboard queries returned no data within {DATA_DEADLINE:?}:\n{}",
            missing.len(),
            queries.len(),
            missing.join("\n")
        );
    }

    // The spend panels show money, not just zeros: the rounds' priced answers cost something.
    let range_secs = (unix_now() - start).ceil() as u64;
    for query in queries
        .iter()
        .filter(|q| q.instant && q.expr.contains("cost_microusd"))
    {
        let data = stack.prometheus.query(&substitute(&query.expr, range_secs));
        let dollars: f64 = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|series| series["value"][1].as_str()?.parse::<f64>().ok())
            .sum();
        assert!(dollars > 0.0, "{}: no spend: {data}", query.place);
    }

    // The variables offer the consumers and models the traffic used.
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap();
        let values = variable_values(
            &stack.prometheus,
            variable["query"]["query"].as_str().unwrap(),
            start,
        );
        let expected: &[&str] = match name {
            "consumer" => &["default", "platform-team", "search-team"],
            "model" => &[
                "claude-haiku-4",
                "fast",
                "gpt-4o",
                "gpt-4o-mini",
                "resilient",
            ],
            other => panic!("a variable this test does not know: ${other}"),
        };
        for value in expected {
            assert!(
                values.iter().any(|v| v == value),
                "${name} does not offer {value}: {values:?}"
            );
        }
    }
    stack.envoy.assert_no_wasm_failure();
}
