//! Global rate limiting end to end: the shipped `envoy/envoy-ratelimit.yaml` (its policy, its
//! rate limit filter, its local replies) in a real Envoy, in front of the mock provider, with
//! `tests/fake_rls.py` as the rate limit service. The fake records every `ShouldRateLimit`
//! call, answers OVER_LIMIT for the consumer `search-team`, and on OK asks Envoy to add
//! `x-fake-rls-call: N` to the forwarded request, so the provider's copy names the check that
//! let it through. The mock answers every call with 12 input and 7 output tokens, so the
//! tokens charged after each response are exactly 19, and the spend charged is the cost of
//! those tokens at the price the config's policy gives the model, computed here from the
//! price strings.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use common::envoy::Samples;
use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const CONFIG: &str = "envoy/envoy-ratelimit.yaml";
const JSON: (&str, &str) = ("content-type", "application/json");
/// The consumer the fake service says is over its limit.
const OVER: &str = "search-team";
/// The mock's 12 input + 7 output tokens.
const TOKENS: u64 = 19;
const MOCK_INPUT_TOKENS: u128 = 12;
const MOCK_OUTPUT_TOKENS: u128 = 7;
/// The message of the config's `local_reply_config` for a refused request.
const LIMIT_MESSAGE: &str = "the gateway's rate limit for this consumer was reached; retry later";

/// How long the charge after a response may take to arrive at the service.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for calls that must not come.
const SETTLE: Duration = Duration::from_millis(300);

/// A running `tests/fake_rls.py`; killed on drop.
struct FakeRls {
    child: Child,
    grpc: u16,
    control: u16,
    dir: tempfile::TempDir,
}

impl FakeRls {
    /// Starts the service, answering OVER_LIMIT to any descriptor entry valued one of `over`;
    /// panics if it does not report its ports within 30 s.
    fn start(over: &[&str]) -> FakeRls {
        let dir = tempfile::Builder::new()
            .prefix("posturio-rls-")
            .tempdir()
            .unwrap();
        let args: Vec<String> = over
            .iter()
            .flat_map(|value| ["--over".to_string(), value.to_string()])
            .collect();
        let (child, ports) = common::mock::spawn_service(
            "the fake rate limit service",
            "tests/fake_rls.py",
            &args,
            &dir.path().join("rls.stderr.log"),
            &["grpc", "control"],
        );
        let (grpc, control) = (ports["grpc"], ports["control"]);
        FakeRls {
            child,
            grpc,
            control,
            dir,
        }
    }

    /// Every `ShouldRateLimit` call so far, in arrival order.
    fn calls(&self) -> Vec<Value> {
        let response = http::get(self.control, "/calls", &[]);
        assert_eq!(response.status, 200, "GET /calls: {response:?}");
        response.json().as_array().unwrap().clone()
    }

    /// The calls, once there are `count` of them, and after `SETTLE` more without a new
    /// one; panics if fewer arrive within `CALL_DEADLINE` or more within the settle time.
    fn exactly(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now().checked_add(CALL_DEADLINE).unwrap();
        while self.calls().len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(SETTLE);
        let calls = self.calls();
        assert_eq!(
            calls.len(),
            count,
            "expected {count} calls at the rate limit service, got:\n{calls:#?}"
        );
        calls
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rls.stderr.log")).unwrap_or_default()
    }
}

impl Drop for FakeRls {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- fake rate limit service log ----\n{}",
                common::tail(&self.log(), 60)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dropped in field order: Envoy first, so it makes no calls to services already gone.
struct Gateway {
    envoy: Envoy,
    rls: FakeRls,
    mock: MockProvider,
}

impl Gateway {
    /// The shipped configuration with its own policy, two workers (each with its own
    /// connection to the service), `OVER` over its limits.
    fn start() -> Gateway {
        Gateway::start_over(&[OVER])
    }

    /// The same, with the service answering OVER_LIMIT to descriptors with any of `over`.
    fn start_over(over: &[&str]) -> Gateway {
        let mock = MockProvider::start();
        let rls = FakeRls::start(over);
        let policy = common::embedded_policy(&common::read_repo_file(CONFIG));
        let envoy = Envoy::start_with(
            EnvoyOptions::new(&policy)
                .template(CONFIG)
                .mock(&mock)
                .ratelimit(rls.grpc)
                .concurrency(2),
        );
        Gateway { envoy, rls, mock }
    }

    fn post(&self, consumer: &str, path: &str, body: &Value) -> Response {
        let headers = [JSON, ("x-posturio-consumer", consumer)];
        http::post(
            self.envoy.port(),
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// Every `posturio_*` sample of `/stats/prometheus`, by name and labels.
    fn prometheus(&self) -> Samples {
        self.envoy.posturio_samples()
    }

    /// The rate limit filter's counters for `cluster` (Envoy counts them on the cluster the
    /// request was routed to): ok, over_limit, error, failure_mode_allowed.
    fn ratelimit_counters(&self, cluster: &str) -> [u64; 4] {
        ["ok", "over_limit", "error", "failure_mode_allowed"].map(|name| {
            self.envoy
                .counter(&format!("cluster.{cluster}.ratelimit.{name}"))
                .unwrap_or(0)
        })
    }
}

/// The samples of metric `name`, each as its labels (in name order) and value.
fn series(samples: &Samples, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    samples
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, labels), value)| (labels.clone().into_iter().collect(), *value))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let sorted: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sorted.into_iter().collect()
}

fn entry(key: &str, value: &str) -> Value {
    json!({"key": key, "value": value})
}

/// The call before a request: one request for the consumer, and 0-hit checks of its tokens
/// for the model and of its spend.
fn check(call: u64, consumer: &str, model: &str, code: &str) -> Value {
    json!({
        "call": call,
        "domain": "posturio",
        "descriptors": [
            {"entries": [entry("posturio", "requests"), entry("consumer", consumer)],
             "hits_addend": null},
            {"entries": [entry("posturio", "tokens"), entry("consumer", consumer),
                         entry("model", model)],
             "hits_addend": 0},
            {"entries": [entry("posturio", "spend"), entry("consumer", consumer)],
             "hits_addend": 0},
        ],
        "hits_addend": 0,
        "code": code,
    })
}

/// The call after one of the mock's answers: the consumer's tokens for the model, charged
/// `tokens`, and its spend, charged the cost of the mock's usage at the model's price.
fn charge(call: u64, consumer: &str, model: &str, tokens: u64) -> Value {
    charge_exactly(call, consumer, model, tokens, mock_cost(model))
}

/// The call after a response: `tokens` for the consumer and model, and `microusd` for the
/// consumer (no spend descriptor when the model has no price).
fn charge_exactly(
    call: u64,
    consumer: &str,
    model: &str,
    tokens: u64,
    microusd: Option<u64>,
) -> Value {
    let mut descriptors = vec![json!(
        {"entries": [entry("posturio", "tokens"), entry("consumer", consumer),
                     entry("model", model)],
         "hits_addend": tokens}
    )];
    if let Some(microusd) = microusd {
        descriptors.push(json!(
            {"entries": [entry("posturio", "spend"), entry("consumer", consumer)],
             "hits_addend": microusd}
        ));
    }
    json!({
        "call": call,
        "domain": "posturio",
        "descriptors": descriptors,
        "hits_addend": 0,
        "code": "OK",
    })
}

/// A price string of the policy ("2.50", USD per million tokens) in micro-USD per million.
fn micro(price: &Value) -> u128 {
    let text = price
        .as_str()
        .unwrap_or_else(|| panic!("a price is a string: {price}"));
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 6, "{text}");
    let padded = format!("{fraction:0<6}");
    whole.parse::<u128>().unwrap() * 1_000_000 + padded.parse::<u128>().unwrap()
}

/// The cost in micro-USD of the mock's usage (12 input, 7 output, nothing cached) for
/// `model` at the price the config's policy gives it, rounded up; None without a price.
fn mock_cost(model: &str) -> Option<u64> {
    let policy: Value =
        serde_json::from_str(&common::embedded_policy(&common::read_repo_file(CONFIG))).unwrap();
    let price = &policy["models"][model]["price"];
    if price.is_null() {
        return None;
    }
    let per_million =
        MOCK_INPUT_TOKENS * micro(&price["input"]) + MOCK_OUTPUT_TOKENS * micro(&price["output"]);
    Some(u64::try_from(per_million.div_ceil(1_000_000)).unwrap())
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn allowed_requests_are_checked_before_the_provider_and_charged_their_tokens_after() {
    let gateway = Gateway::start();

    // A plain chat request: the check (call 1) lets it through, the provider answers with
    // usage, and the charge (call 2) carries exactly those tokens.
    let response = gateway.post(
        "default",
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let usage = &response.json()["usage"];
    assert_eq!(
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap(),
        TOKENS,
        "{response:?}"
    );
    let upstream = gateway.mock.single_request();
    assert_eq!(upstream.listener, "openai");
    assert_eq!(
        upstream.header("x-fake-rls-call"),
        Some("1"),
        "the provider's request was not let through by the first check: {upstream:#?}"
    );
    assert_eq!(
        gateway.rls.exactly(2),
        vec![
            check(1, "default", "gpt-4o-mini", "OK"),
            charge(2, "default", "gpt-4o-mini", TOKENS),
        ]
    );

    // A streamed chat request for an alias: the descriptors carry the name the client asked
    // for (`fast`), the provider gets its model (`gpt-4o-mini`), and the usage Posturio asked
    // the provider for is charged once the stream is done.
    gateway.mock.reset();
    let response = gateway.post("default", "/v1/chat/completions", &chat("fast", true));
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.text().ends_with("data: [DONE]\n\n"),
        "{response:?}"
    );
    assert!(
        response
            .events()
            .iter()
            .all(|event| event["choices"].as_array().is_some_and(|c| !c.is_empty())),
        "the usage chunk Posturio asked for reached the client: {response:?}"
    );
    let upstream = gateway.mock.single_request();
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    assert_eq!(
        upstream.json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(
        upstream.header("x-fake-rls-call"),
        Some("3"),
        "{upstream:#?}"
    );
    assert_eq!(
        gateway.rls.exactly(4)[2..],
        [
            check(3, "default", "fast", "OK"),
            charge(4, "default", "fast", TOKENS),
        ]
    );

    // Anthropic Messages, streamed: again the catalogue name, not the provider's model id.
    gateway.mock.reset();
    let messages = json!({"model": "claude-haiku-4", "max_tokens": 64, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post("default", "/v1/messages", &messages);
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.mock.single_request();
    assert_eq!(upstream.listener, "anthropic");
    assert_eq!(upstream.json()["model"], "claude-haiku-4-5-20251001");
    assert_eq!(
        upstream.header("x-fake-rls-call"),
        Some("5"),
        "{upstream:#?}"
    );
    assert_eq!(
        gateway.rls.exactly(6)[4..],
        [
            check(5, "default", "claude-haiku-4", "OK"),
            charge(6, "default", "claude-haiku-4", TOKENS),
        ]
    );

    // Every check answered in time (none let through by failing open). Envoy counts the
    // checks on the provider's cluster; the charges, whose answers it ignores, not at all.
    assert_eq!(gateway.ratelimit_counters("openai"), [2, 0, 0, 0]);
    assert_eq!(gateway.ratelimit_counters("anthropic"), [1, 0, 0, 0]);

    let samples = gateway.prometheus();
    let default = |model: &str, provider: &str, class: &str| {
        labels(&[
            ("consumer", "default"),
            ("model", model),
            ("provider", provider),
            ("class", class),
        ])
    };
    assert_eq!(
        series(&samples, "posturio_upstream_responses_total"),
        vec![
            (default("claude-haiku-4", "anthropic", "2xx"), 1.0),
            (default("fast", "openai", "2xx"), 1.0),
            (default("gpt-4o-mini", "openai", "2xx"), 1.0),
        ]
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn refused_requests_never_reach_the_provider_and_denied_ones_never_reach_the_service() {
    let gateway = Gateway::start();

    // Over the limit, OpenAI shape: 429 from the rate limit filter, in the caller's API
    // shape (the config's local_reply_config), and nothing reaches the provider.
    let response = gateway.post(OVER, "/v1/chat/completions", &chat("gpt-4o", false));
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("rate_limited"));
    assert_eq!(response.header("x-envoy-ratelimited"), Some("true"));
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(
        response.json(),
        json!({"error": {"message": LIMIT_MESSAGE, "type": "rate_limit_error",
                         "code": "rate_limited"}})
    );
    // One check, refused; no charge after it (there was no usage to charge).
    assert_eq!(
        gateway.rls.exactly(1),
        vec![check(1, OVER, "gpt-4o", "OVER_LIMIT")]
    );

    // Over the limit, Anthropic shape.
    let messages = json!({"model": "claude-sonnet-4", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post(OVER, "/v1/messages", &messages);
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("rate_limited"));
    assert_eq!(
        response.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error",
                                          "message": LIMIT_MESSAGE, "code": "rate_limited"}})
    );
    assert_eq!(
        gateway.rls.exactly(2)[1..],
        [check(2, OVER, "claude-sonnet-4", "OVER_LIMIT")]
    );

    // A model the consumer may not use: Posturio refuses it, and the rate limit filter,
    // after it, never asks the service.
    let response = gateway.post("default", "/v1/chat/completions", &chat("gpt-4o", false));
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some("model_not_approved")
    );
    gateway.rls.exactly(2);

    assert_eq!(
        gateway.mock.requests(),
        vec![],
        "a refused request reached the provider"
    );
    assert_eq!(gateway.ratelimit_counters("openai"), [0, 1, 0, 0]);
    assert_eq!(gateway.ratelimit_counters("anthropic"), [0, 1, 0, 0]);

    // The access log marks the refusals as the rate limit filter's (flag RL), for the
    // consumer and model Posturio decided on.
    let access = gateway.envoy.access_log();
    let lines: Vec<Value> = access
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let summary: Vec<[String; 5]> = lines
        .iter()
        .map(|line| {
            [
                "status",
                "response_flags",
                "posturio_decision",
                "posturio_consumer",
                "posturio_model",
            ]
            .map(|key| match &line[key] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
        })
        .collect();
    assert_eq!(
        summary,
        [
            ["429", "RL", "allow", OVER, "gpt-4o"],
            ["429", "RL", "allow", OVER, "claude-sonnet-4"],
            ["403", "-", "deny", "default", "gpt-4o"],
        ]
        .map(|line| line.map(String::from)),
        "{access}"
    );

    // Posturio let the two requests through and the rate limit filter answered them: that
    // 429 is not a provider's response, so it is counted as neither a response nor usage.
    let samples = gateway.prometheus();
    assert_eq!(
        series(&samples, "posturio_upstream_responses_total"),
        vec![],
        "{samples:#?}"
    );
    let requests = |consumer: &str, model: &str, provider: &str, decision: &str, code: &str| {
        labels(&[
            ("consumer", consumer),
            ("model", model),
            ("provider", provider),
            ("decision", decision),
            ("code", code),
        ])
    };
    assert_eq!(
        series(&samples, "posturio_requests_total"),
        vec![
            (
                requests("default", "gpt-4o", "openai", "deny", "model_not_approved"),
                1.0
            ),
            (
                requests(OVER, "claude-sonnet-4", "anthropic", "allow", "none"),
                1.0
            ),
            (requests(OVER, "gpt-4o", "openai", "allow", "none"), 1.0),
        ]
    );
    for name in [
        "posturio_input_tokens_total",
        "posturio_output_tokens_total",
    ] {
        assert!(
            series(&samples, name)
                .iter()
                .all(|(_, value)| *value == 0.0),
            "{name}: {samples:#?}"
        );
    }
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_stream_cut_before_its_usage_is_charged_fleet_wide_what_posturio_charged() {
    let gateway = Gateway::start();
    // The provider sends one event, then resets: the usage never comes.
    gateway
        .mock
        .behave("openai", json!({"reset": "after_first_event"}));
    let body = chat("gpt-4o-mini", true).to_string();
    let headers = [JSON, ("x-posturio-consumer", "default")];
    let port = gateway.envoy.port();
    let request = http::build_request(
        port,
        "POST",
        "/v1/chat/completions",
        &headers,
        body.as_bytes(),
    );
    // The answer is cut: what the client read does not matter here.
    let _ = http::try_send_raw(port, &request);
    let calls = gateway.rls.exactly(2);

    // Posturio did not learn the usage, and charged its reservation or estimate instead.
    let access = gateway.envoy.access_log();
    let lines: Vec<Value> = access
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{access}");
    let line = &lines[0];
    assert_eq!(line["posturio_tokens"], Value::Null, "{access}");
    let number = |field: &str| -> Option<u64> {
        line[field].as_str().map(|text| {
            text.parse()
                .unwrap_or_else(|e| panic!("{field}: {e}: {access}"))
        })
    };
    let charged_tokens = number("posturio_charged_tokens")
        .unwrap_or_else(|| panic!("no posturio_charged_tokens for a cut stream: {access}"));
    assert!(charged_tokens > 0, "{access}");
    let charged_microusd = number("posturio_charged_microusd");
    assert!(
        mock_cost("gpt-4o-mini").is_some(),
        "the example policy prices gpt-4o-mini: the spend limit is tested with it"
    );
    assert!(
        charged_microusd.is_some_and(|microusd| microusd > 0),
        "a priced model's cut stream was charged no spend: {access}"
    );

    // The fleet is charged exactly that, as for a complete answer.
    assert_eq!(
        calls,
        vec![
            check(1, "default", "gpt-4o-mini", "OK"),
            charge_exactly(
                2,
                "default",
                "gpt-4o-mini",
                charged_tokens,
                charged_microusd
            ),
        ]
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_consumer_over_its_fleet_spend_limit_is_refused_before_the_provider() {
    // The service finds only the spend descriptor over its limit (its entry `spend`).
    let gateway = Gateway::start_over(&["spend"]);
    let response = gateway.post(
        "default",
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
    );
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("rate_limited"));
    assert_eq!(
        response.json(),
        json!({"error": {"message": LIMIT_MESSAGE, "type": "rate_limit_error",
                         "code": "rate_limited"}})
    );
    assert_eq!(
        gateway.rls.exactly(1),
        vec![check(1, "default", "gpt-4o-mini", "OVER_LIMIT")]
    );
    assert_eq!(
        gateway.mock.requests(),
        vec![],
        "a refused request reached the provider"
    );
    gateway.envoy.assert_no_wasm_failure();
}
