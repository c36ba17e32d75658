//! Provider fallback and weighted routing, in real Envoy with the built module: the shipped
//! `envoy/envoy.yaml` sends the model `resilient` to the pool cluster `resilient-pool`, whose
//! endpoints are the mock's `openai` listener (priority 0) and its `azure` listener (priority
//! 1, an Azure v1 style provider with base path `/openai/v1`). Envoy's retries move a failed
//! attempt to the next priority; Posturio's upstream filter rewrites every attempt for the
//! provider it reached; the credential injector adds that provider's key. Each test makes a
//! listener fail (`MockProvider::behave`) and asserts on the client's answer and on what each
//! listener received.
// Test code: failing loudly is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::time::Duration;

use common::envoy::ProviderPorts;
use common::{http, sdk, Connection, Envoy, EnvoyOptions, MockProvider, Recorded};
use serde_json::{json, Value};

const MODEL: &str = "resilient";
const POOL: &str = "resilient-pool";
/// What each target is told to call the model (`envoy/policy.json`).
const OPENAI_MODEL: &str = "gpt-4o";
const AZURE_MODEL: &str = "gpt-4o-prod";
/// The keys the pool's credential injector adds (`envoy/envoy.yaml`).
const OPENAI_KEY: &str = "Bearer sk-mock-openai";
const AZURE_KEY: &str = "sk-mock-azure";
/// The client's own key: it must reach neither provider of the pool.
const CLIENT_KEY: &str = "Bearer sk-client-own-key";
/// The headers that carry a provider credential, in the spellings a provider accepts.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

fn chat_body(stream: bool) -> String {
    json!({
        "model": MODEL,
        "messages": [{ "role": "user", "content": "Hello" }],
        "stream": stream,
    })
    .to_string()
}

fn headers(consumer: &str) -> Vec<(&str, &str)> {
    vec![
        ("content-type", "application/json"),
        ("x-posturio-consumer", consumer),
        ("authorization", CLIENT_KEY),
    ]
}

fn chat(envoy: &Envoy, consumer: &str) -> http::Response {
    http::request(
        envoy.port(),
        "POST",
        "/v1/chat/completions",
        &headers(consumer),
        chat_body(false).as_bytes(),
    )
}

/// What a request with `chat_body(false)` reserves: its body at four bytes a token, and the
/// one output token the `budgeted` consumer's requests reserve.
fn reservation() -> u64 {
    chat_body(false).len().div_ceil(4) as u64 + 1
}

/// The shipped policy, with a consumer `budgeted` that may use `resilient` for just enough
/// tokens a day that a third answer fits beside two (the mock reports 19 per answer) when each
/// is charged once, and no more.
fn policy() -> String {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["consumers"]["budgeted"] = json!({ "models": [MODEL], "budget": {
        "tokens_per_day": 2 * 19 + reservation(), "default_output_tokens": 1 } });
    policy.to_string()
}

fn start(mock: &MockProvider) -> Envoy {
    Envoy::start_with(EnvoyOptions::new(&policy()).mock(mock))
}

/// What the listener received for the pool's model: the path it was sent to, the model in
/// the body, and the credential headers it got.
fn assert_sent_to(record: &Recorded, listener: &str) {
    assert_eq!(record.listener, listener, "{record:#?}");
    let (path, model, key_header, key) = match listener {
        "openai" => (
            "/v1/chat/completions",
            OPENAI_MODEL,
            "authorization",
            OPENAI_KEY,
        ),
        "azure" => (
            "/openai/v1/chat/completions",
            AZURE_MODEL,
            "api-key",
            AZURE_KEY,
        ),
        other => panic!("no such target {other}"),
    };
    assert_eq!(record.path, path, "{record:#?}");
    assert_eq!(record.json()["model"], model, "{record:#?}");
    let content_length: usize = record.header("content-length").unwrap().parse().unwrap();
    assert_eq!(content_length, record.body.len(), "{record:#?}");
    // Exactly this target's key: not the client's, not the other target's.
    for name in CREDENTIAL_HEADERS {
        let expected: Vec<&str> = if name == key_header {
            vec![key]
        } else {
            vec![]
        };
        assert_eq!(record.header_values(name), expected, "{name}: {record:#?}");
    }
    // Posturio's routing headers never reach a provider.
    assert_eq!(record.header("x-posturio-target"), None, "{record:#?}");
    assert_eq!(record.header("x-posturio-cluster"), None, "{record:#?}");
}

/// A wiring failure's message: what failed and what to quote, nothing of the gateway's
/// clusters, endpoints or metadata.
fn assert_misconfigured(message: &str, model: Option<&str>) {
    let routing = match model {
        Some(model) => format!("the gateway's routing for model {model} is misconfigured"),
        None => "the gateway's routing for this request is misconfigured".to_owned(),
    };
    assert!(message.contains(&routing), "{message}");
    assert!(message.contains("not a fault in your request"), "{message}");
    assert!(message.contains("quote request id "), "{message}");
    for internal in [
        POOL,
        "cluster",
        "metadata",
        "upstream filter",
        "posturio_plan",
    ] {
        assert!(!message.contains(internal), "{internal}: {message}");
    }
}

fn attempts(envoy: &Envoy, provider: &str, class: &str) -> f64 {
    let labels = [("model", MODEL), ("provider", provider), ("class", class)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    envoy
        .posturio_samples()
        .get(&("posturio_attempts_total".to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

/// The access-log line of the request to `resilient` (the last one), as JSON.
fn access_record(envoy: &Envoy) -> Value {
    let line = envoy
        .wait_for_access_log("\"posturio_model\":\"resilient\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no access log line for {MODEL}:\n{}", envoy.access_log()));
    serde_json::from_str(&line).unwrap()
}

#[test]
fn a_429_from_the_primary_is_served_by_the_secondary_with_its_own_model_path_and_key() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));

    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 200, "{answer:?}");
    let content = &answer.json()["choices"][0]["message"]["content"];
    assert_eq!(content, "Hello from the mock azure provider.", "{answer:?}");

    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_sent_to(&records[0], "openai");
    assert_sent_to(&records[1], "azure");

    assert_eq!(attempts(&envoy, "openai", "429"), 1.0);
    assert_eq!(attempts(&envoy, "azure", "2xx"), 1.0);
    let record = access_record(&envoy);
    assert_eq!(record["posturio_provider"], "azure", "{record:#}");
    assert_eq!(record["posturio_attempts"], "2", "{record:#}");
    assert_eq!(record["status"], 200, "{record:#}");
    envoy.assert_no_wasm_failure();
}

#[test]
fn concurrent_requests_all_fall_back_while_the_primary_answers_429() {
    // Envoy allows 3 retries in flight per cluster unless the cluster says otherwise; the
    // pool's retry budget must let every one of these fall back at once.
    const CLIENTS: usize = 16;
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));
    let port = envoy.port();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut request_headers = headers("platform-team");
                // The secondary holds each answer a while, so the retries overlap.
                request_headers.push(("x-mock-header-delay-ms", "300"));
                http::request(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    &request_headers,
                    chat_body(false).as_bytes(),
                )
            })
        })
        .collect();
    let statuses: Vec<u16> = workers
        .into_iter()
        .map(|worker| worker.join().unwrap().status)
        .collect();
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(mock.requests_to("azure").len(), CLIENTS);
    assert_eq!(attempts(&envoy, "azure", "2xx"), CLIENTS as f64);
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_healthy_primary_serves_alone() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_sent_to(&records[0], "openai");
    assert_eq!(attempts(&envoy, "openai", "2xx"), 1.0);
    assert_eq!(access_record(&envoy)["posturio_provider"], "openai");
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_primary_that_resets_is_replaced_by_the_secondary() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "reset": "before" }));

    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_sent_to(&records[0], "openai");
    assert_sent_to(&records[1], "azure");
    assert_eq!(attempts(&envoy, "openai", "reset"), 1.0);
    assert_eq!(attempts(&envoy, "azure", "2xx"), 1.0);
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_primary_that_refuses_connections_is_replaced_by_the_secondary() {
    let mock = MockProvider::start();
    let ports = ProviderPorts {
        openai: ProviderPorts::closed().openai,
        ..ProviderPorts::of(&mock)
    };
    let envoy = Envoy::start_with(EnvoyOptions::new(&policy()).providers(ports));

    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_sent_to(&records[0], "azure");
    assert_eq!(access_record(&envoy)["posturio_provider"], "azure");
    envoy.assert_no_wasm_failure();
}

#[test]
fn when_every_target_answers_an_error_the_last_answer_reaches_the_client() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));
    mock.behave("azure", json!({ "status": 429, "retry_after": "7" }));

    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("7"), "{answer:?}");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(message, "mock: azure answers 429", "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(attempts(&envoy, "openai", "429"), 1.0);
    assert_eq!(attempts(&envoy, "azure", "429"), 1.0);
    envoy.assert_no_wasm_failure();
}

#[test]
fn when_no_target_answers_the_client_gets_one_error_in_its_shape() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "reset": "before" }));
    mock.behave("azure", json!({ "reset": "before" }));

    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 503, "{answer:?}");
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "upstream_unavailable", "{answer:?}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(MODEL), "{message}");
    // A plain reason; Envoy's code details stay in the log.
    assert!(message.ends_with(": connection reset"), "{message}");
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(attempts(&envoy, "openai", "reset"), 1.0);
    assert_eq!(attempts(&envoy, "azure", "reset"), 1.0);

    // Envoy's own reply for a single-provider model gets the same treatment.
    let ports = ProviderPorts {
        openai: ProviderPorts::closed().openai,
        ..ProviderPorts::of(&mock)
    };
    let envoy = Envoy::start_with(EnvoyOptions::new(&policy()).providers(ports));
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hi" }] });
    let answer = http::request(
        envoy.port(),
        "POST",
        "/v1/chat/completions",
        &headers("platform-team"),
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.json()["error"]["code"],
        "upstream_unavailable",
        "{answer:?}"
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_stream_that_failed_after_its_first_byte_is_not_retried() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "reset": "after_first_event" }));

    let mut connection = Connection::open(envoy.port());
    connection.send(&http::build_request(
        envoy.port(),
        "POST",
        "/v1/chat/completions",
        &headers("platform-team"),
        chat_body(true).as_bytes(),
    ));
    let raw = connection.read_until_close().unwrap_or_default();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains(r#""listener": "openai""#), "{raw}");
    assert!(!raw.contains("azure"), "{raw}");
    let records = mock.requests();
    assert_eq!(records.len(), 1, "only the primary was tried: {records:#?}");
    assert_sent_to(&records[0], "openai");
    envoy.assert_no_wasm_failure();
}

/// The pool with both endpoints at priority 0, weights 3 (openai) and 1 (azure), picked at
/// drawn at random by weight (`lb_policy: MAGLEV` with no hash policy on the route, as
/// docs/providers.md recommends for a weighted split: round robin alternates strictly, and
/// Envoy's RANDOM ignores the weights).
fn weighted_pool(config: String) -> String {
    let config = common::envoy::replace_once(
        &config,
        "  - name: resilient-pool\n    type: STATIC\n",
        "  - name: resilient-pool\n    type: STATIC\n    lb_policy: MAGLEV\n",
    );
    let config =
        common::envoy::replace_once(&config, "      - priority: 1\n        lb_endpoints:\n", "");
    let config = common::envoy::replace_once(
        &config,
        "metadata: { filter_metadata: { posturio: { provider: openai } } }",
        "metadata: { filter_metadata: { posturio: { provider: openai } } }\n          \
         load_balancing_weight: 3",
    );
    common::envoy::replace_once(
        &config,
        "metadata: { filter_metadata: { posturio: { provider: azure } } }",
        "metadata: { filter_metadata: { posturio: { provider: azure } } }\n          \
         load_balancing_weight: 1",
    )
}

#[test]
fn endpoint_weights_split_the_traffic_and_each_target_gets_its_own_rewrite() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&policy())
            .mock(&mock)
            .concurrency(2)
            .edit_config(weighted_pool),
    );
    let port = envoy.port();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut connection = Connection::open(port);
                let mut request_headers = headers("platform-team");
                request_headers.push(("connection", "keep-alive"));
                let request = http::build_request(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    &request_headers,
                    chat_body(false).as_bytes(),
                );
                for _ in 0..PER_THREAD {
                    connection.send(&request);
                    let answer = connection.read_response();
                    assert_eq!(answer.status, 200, "{answer:?}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let records = mock.requests();
    assert_eq!(records.len(), THREADS * PER_THREAD);
    let to_openai = records.iter().filter(|r| r.listener == "openai").count();
    let share = to_openai as f64 * 100.0 / records.len() as f64;
    assert!(
        (71.0..=79.0).contains(&share),
        "openai got {share:.1}%, expected 75 ± 4"
    );
    for record in &records {
        assert_sent_to(record, &record.listener);
    }
    envoy.assert_no_wasm_failure();
}

#[test]
fn usage_and_budget_are_charged_once_per_answer() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));

    // 19 tokens per answer: the third answer's reservation fits beside two answers charged
    // once each, not beside two charged per attempt (76 spent); the fourth does not fit.
    for n in 1..=3 {
        let answer = chat(&envoy, "budgeted");
        assert_eq!(answer.status, 200, "request {n}: {answer:?}");
    }
    let refused = chat(&envoy, "budgeted");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(
        refused.json()["error"]["code"],
        "budget_exceeded",
        "{refused:?}"
    );

    let samples = envoy.posturio_samples();
    let tokens = |name: &str, provider: &str| -> f64 {
        let labels = [
            ("consumer", "budgeted"),
            ("model", MODEL),
            ("provider", provider),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(tokens("posturio_input_tokens_total", "azure"), 36.0);
    assert_eq!(tokens("posturio_output_tokens_total", "azure"), 21.0);
    assert_eq!(tokens("posturio_input_tokens_total", "openai"), 0.0);
    envoy.assert_no_wasm_failure();
}

#[test]
fn the_openai_sdk_sees_a_normal_answer_when_fallback_saved_the_request() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));
    let outcomes = sdk::run("openai_client", &envoy, &["resilient"]);
    let chat = outcomes.ok("resilient");
    assert_eq!(
        chat["content"], "Hello from the mock azure provider.",
        "{chat:#}"
    );
    assert_eq!(chat["usage"]["total_tokens"], 19, "{chat:#}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0].listener, "openai");
    assert_eq!(records[1].listener, "azure");
    // The SDK's own key reaches neither provider.
    for record in &records {
        assert_eq!(
            record.header_values("authorization").len(),
            usize::from(record.listener == "openai")
        );
    }
    envoy.assert_no_wasm_failure();
}

/// The pool cluster without Posturio's upstream filter.
fn without_upstream_filter(config: String) -> String {
    let pool = config.find("  - name: resilient-pool\n").unwrap();
    let start = pool
        + config[pool..]
            .find("        - name: envoy.filters.http.wasm\n")
            .unwrap();
    let end = start
        + config[start..]
            .find("        - name: envoy.filters.http.match_delegate\n")
            .unwrap();
    format!("{}{}", &config[..start], &config[end..])
}

#[test]
fn a_pool_without_the_upstream_filter_is_refused_and_the_provider_body_never_reaches_the_client() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&policy())
            .mock(&mock)
            .edit_config(without_upstream_filter),
    );
    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "internal_error", "{answer:?}");
    let message = error["message"].as_str().unwrap();
    assert_misconfigured(message, Some(MODEL));
    assert!(!answer.text().contains("Hello from the mock"), "{answer:?}");
    envoy.assert_no_wasm_failure();
}

/// Envoy's cluster `openai` is the pool (with Posturio's upstream filter), which the policy
/// cannot see: a single-provider model reaches the upstream filter without a plan. (The
/// policy itself refuses a provider whose cluster is a pool's.)
fn openai_cluster_is_a_pool(config: String) -> String {
    let config =
        common::envoy::replace_once(&config, "  - name: openai\n", "  - name: openai-direct\n");
    let config = common::envoy::replace_once(
        &config,
        "cluster_name: openai\n",
        "cluster_name: openai-direct\n",
    );
    let config =
        common::envoy::replace_once(&config, "  - name: resilient-pool\n", "  - name: openai\n");
    let config = common::envoy::replace_once(
        &config,
        "cluster_name: resilient-pool\n",
        "cluster_name: openai\n",
    );
    common::envoy::replace_once(&config, "cluster: resilient-pool\n", "cluster: openai\n")
}

#[test]
fn a_pool_reached_without_a_plan_is_refused_and_charged_nothing() {
    let mock = MockProvider::start();
    let mut policy: Value = serde_json::from_str(&policy()).unwrap();
    // The two answers below (19 each) fit the budget only if the refusals cost nothing and
    // gave their reservations back.
    policy["consumers"]["budgeted"]["models"] = json!(["gpt-4o-mini", MODEL]);
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&policy.to_string())
            .mock(&mock)
            .edit_config(openai_cluster_is_a_pool),
    );
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Hi" }] });
    let send = || {
        http::request(
            envoy.port(),
            "POST",
            "/v1/chat/completions",
            &headers("budgeted"),
            body.to_string().as_bytes(),
        )
    };
    for _ in 0..4 {
        let answer = send();
        assert_eq!(answer.status, 500, "{answer:?}");
        let error = &answer.json()["error"];
        assert_eq!(error["code"], "internal_error", "{answer:?}");
        assert_misconfigured(error["message"].as_str().unwrap(), Some("gpt-4o-mini"));
    }
    assert!(mock.requests().is_empty(), "{:#?}", mock.requests());
    let line = envoy
        .wait_for_access_log(
            "\"posturio_code\":\"internal_error\"",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no refusal in the access log:\n{}", envoy.access_log()));
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["posturio_decision"], "deny", "{record:#}");
    let unknown = envoy
        .posturio_samples()
        .iter()
        .filter(|((name, _), _)| name == "posturio_usage_unknown_total")
        .map(|(_, value)| *value)
        .sum::<f64>();
    assert_eq!(unknown, 0.0, "a refusal owes no usage");

    // The pooled model still has its plan (its route header names the pool): two answers of
    // 19 tokens fit only if the four refusals were charged nothing.
    for n in 1..=2 {
        let answer = chat(&envoy, "budgeted");
        assert_eq!(answer.status, 200, "answer {n}: {answer:?}");
    }
    envoy.assert_no_wasm_failure();
}

/// The pool's endpoints name providers that the policy's targets do not have.
fn unknown_providers(config: String) -> String {
    let config = common::envoy::replace_once(
        &config,
        "posturio: { provider: openai }",
        "posturio: { provider: mystery-a }",
    );
    common::envoy::replace_once(
        &config,
        "posturio: { provider: azure }",
        "posturio: { provider: mystery-b }",
    )
}

#[test]
fn an_endpoint_naming_a_provider_outside_the_plan_is_refused() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&policy())
            .mock(&mock)
            .edit_config(unknown_providers),
    );
    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "internal_error", "{answer:?}");
    let message = error["message"].as_str().unwrap();
    assert_misconfigured(message, Some(MODEL));
    assert!(!message.contains("mystery-"), "{message}");
    assert!(mock.requests().is_empty(), "{:#?}", mock.requests());
    // The refusal is the request's record, and nothing reached a provider.
    let record = access_record(&envoy);
    assert_eq!(record["posturio_decision"], "deny", "{record:#}");
    assert_eq!(record["posturio_code"], "internal_error", "{record:#}");
    envoy.assert_no_wasm_failure();
}

/// OpenAI's key is injected under a header that is no credential header Posturio knows.
fn openai_key_in_another_header(config: String) -> String {
    common::envoy::replace_once(
        &config,
        "credential: { name: openai-key }\n                                  header: authorization",
        "credential: { name: openai-key }\n                                  header: x-other-token",
    )
}

#[test]
fn a_key_injected_under_any_header_never_reaches_the_next_target() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&policy())
            .mock(&mock)
            .edit_config(openai_key_in_another_header),
    );
    mock.behave("openai", json!({ "status": 429 }));
    let answer = chat(&envoy, "platform-team");
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0].listener, "openai");
    assert_eq!(records[0].header_values("x-other-token"), [OPENAI_KEY]);
    assert_sent_to(&records[1], "azure");
    assert!(
        records[1].header_values("x-other-token").is_empty(),
        "OpenAI's key reached Azure: {:#?}",
        records[1]
    );

    // The client sends a header of the injector's name: the injector overwrites it with
    // OpenAI's key, and the retry puts the client's value back.
    mock.reset();
    let mut with_header = headers("platform-team");
    with_header.push(("x-other-token", "client-value"));
    let answer = http::request(
        envoy.port(),
        "POST",
        "/v1/chat/completions",
        &with_header,
        chat_body(false).as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0].header_values("x-other-token"), [OPENAI_KEY]);
    assert_eq!(
        records[1].header_values("x-other-token"),
        ["client-value"],
        "OpenAI's key reached Azure: {:#?}",
        records[1]
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn the_clients_query_credentials_reach_no_target() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("openai", json!({ "status": 429 }));
    // The shipped policy reads no keys (identity.header): a pool strips them all the same.
    let answer = http::request(
        envoy.port(),
        "POST",
        "/v1/chat/completions?key=QKEY&api-key=QAPIKEY&alt=json&X-Amz-Signature=S&access_token=AT",
        &headers("platform-team"),
        chat_body(false).as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(
        records[0].path, "/v1/chat/completions?alt=json",
        "{records:#?}"
    );
    assert_eq!(
        records[1].path, "/openai/v1/chat/completions?alt=json",
        "{records:#?}"
    );
    for record in &records {
        for secret in ["QKEY", "QAPIKEY", "AT", "Signature"] {
            assert!(!record.path.contains(secret), "{secret}: {record:#?}");
        }
    }
    envoy.assert_no_wasm_failure();
}

/// A policy whose consumers read the pool's answers: one redacts a key, one blocks it.
fn answer_rules_policy() -> String {
    let mut policy: Value = serde_json::from_str(&policy()).unwrap();
    let rules = policy["rules"].as_array_mut().unwrap();
    rules.push(
        json!({ "id": "answer-key", "pattern": "SECRET-[0-9]{6}", "action": "redact",
                       "direction": "response" }),
    );
    rules.push(
        json!({ "id": "answer-block", "pattern": "SECRET-[0-9]{6}", "action": "block",
                       "direction": "response" }),
    );
    policy["consumers"]["pool-redactor"] = json!({ "models": [MODEL], "rules": ["answer-key"] });
    policy["consumers"]["pool-blocker"] = json!({ "models": [MODEL], "rules": ["answer-block"] });
    policy.to_string()
}

/// Asks `resilient` as `consumer` for an answer whose text is these pieces.
fn ask_pool(envoy: &Envoy, consumer: &str, stream: bool, pieces: &[&str]) -> http::Response {
    use base64::Engine as _;
    let answer =
        base64::engine::general_purpose::STANDARD.encode(json!({ "pieces": pieces }).to_string());
    let mut request_headers = headers(consumer);
    request_headers.push(("x-mock-answer", &answer));
    http::request(
        envoy.port(),
        "POST",
        "/v1/chat/completions",
        &request_headers,
        chat_body(stream).as_bytes(),
    )
}

/// The access-log line of the `n`th request (counting from 1), once Envoy has written it.
fn nth_access_record(envoy: &Envoy, n: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = envoy.access_log();
        if let Some(line) = log.lines().filter(|line| line.starts_with('{')).nth(n - 1) {
            return serde_json::from_str(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no line {n}:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The chat text the client received, whole or streamed.
fn chat_text(response: &http::Response, stream: bool) -> String {
    if !stream {
        return response.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    response
        .events()
        .iter()
        .filter_map(|event| {
            event
                .pointer("/choices/0/delta/content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The pool's answer is inspected whichever target serves it: the primary, or the secondary
/// after Envoy retried the primary's 429; whole and streamed; redacted and blocked.
#[test]
fn answers_from_any_target_of_a_pool_are_inspected() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(EnvoyOptions::new(&answer_rules_policy()).mock(&mock));
    let secret = "SECRET-123456";
    let mut asked = 0;
    for failing_primary in [false, true] {
        if failing_primary {
            mock.behave("openai", json!({ "status": 429 }));
        }
        let served_by = if failing_primary { "azure" } else { "openai" };
        for stream in [false, true] {
            let what = format!("served by {served_by}, stream {stream}");
            let response = ask_pool(
                &envoy,
                "pool-redactor",
                stream,
                &["pre SECRET-1", "23456 post"],
            );
            asked += 1;
            assert_eq!(response.status, 200, "{what}: {response:?}");
            assert!(!response.text().contains(secret), "{what}: {response:?}");
            assert_eq!(
                chat_text(&response, stream),
                "pre [REDACTED:answer-key] post",
                "{what}: {response:?}"
            );
            let record = nth_access_record(&envoy, asked);
            assert_eq!(record["posturio_provider"], served_by, "{what}: {record:#}");
            assert_eq!(
                record["posturio_response"], "redacted",
                "{what}: {record:#}"
            );

            let blocked = ask_pool(
                &envoy,
                "pool-blocker",
                stream,
                &["pre SECRET-1", "23456 post"],
            );
            assert!(!blocked.text().contains(secret), "{what}: {blocked:?}");
            asked += 1;
            assert!(
                blocked.text().contains("answer-block"),
                "{what}: {blocked:?}"
            );
            if stream {
                let last = blocked.events().last().cloned().unwrap_or_default();
                assert_eq!(
                    last["error"]["code"], "response_blocked",
                    "{what}: {blocked:?}"
                );
            } else {
                assert_eq!(blocked.status, 403, "{what}: {blocked:?}");
                assert_eq!(blocked.header("x-posturio-code"), Some("response_blocked"));
            }
            let record = nth_access_record(&envoy, asked);
            assert_eq!(record["posturio_provider"], served_by, "{what}: {record:#}");
            assert_eq!(record["posturio_response"], "blocked", "{what}: {record:#}");
        }
    }
    let records = mock.requests();
    assert!(
        records.iter().any(|record| record.listener == "azure"),
        "{records:#?}"
    );
    envoy.assert_no_wasm_failure();
}
