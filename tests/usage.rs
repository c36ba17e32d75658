//! Usage visibility in real Envoy: token counts read from the mock provider's responses
//! (streamed and not), Prometheus metrics with their labels, the access log, budgets shared
//! by two worker threads, and the output-token cap. The mock answers every call with 12 input
//! and 7 output tokens, so every count below is exact.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::envoy::Samples;
use common::{http, Connection, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");
const INPUT: u64 = 12;
const OUTPUT: u64 = 7;

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" }
  },
  "models": {
    "gpt-4.1": { "provider": "openai" },
    "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
    "gemini-2.5-flash": { "provider": "gemini" }
  },
  "consumers": {
    "default": { "models": ["gpt-4.1"] },
    "team-a": { "models": ["*"] },
    "capped": { "models": ["*"], "max_output_tokens": 50 },
    "strict": { "models": ["*"], "max_output_tokens": 50, "max_output_tokens_action": "refuse" },
    "metered": { "models": ["*"],
                 "budget": { "tokens_per_minute": 60, "default_output_tokens": 10 } },
    "leaver": { "models": ["*"],
                "budget": { "tokens_per_day": 1225, "default_output_tokens": 1 } },
    "capped-leaver": { "models": ["*"], "max_output_tokens": 50,
                       "budget": { "tokens_per_day": 80 } }
  },
  "rules": [ { "id": "no-secrets", "detect": "secrets", "action": "block" } ]
}"#;

struct Gateway {
    mock: MockProvider,
    envoy: Envoy,
}

impl Gateway {
    fn start(workers: u32) -> Gateway {
        let mock = MockProvider::start();
        let envoy = Envoy::start_with(EnvoyOptions::new(POLICY).mock(&mock).concurrency(workers));
        Gateway { mock, envoy }
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
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn sample(samples: &Samples, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    samples.get(&(name.to_string(), labels(pairs))).copied()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn tokens_requests_rules_and_statuses_are_counted_with_config_labels() {
    let gateway = Gateway::start(1);

    // OpenAI chat, whole and streamed. The stream did not ask for usage: the filter asks for
    // it, counts the tokens, and takes the usage chunk out of what the client receives.
    assert_eq!(
        gateway
            .post("team-a", "/v1/chat/completions", &chat("gpt-4.1"))
            .status,
        200
    );
    let mut streamed = chat("gpt-4.1");
    streamed["stream"] = json!(true);
    let response = gateway.post("team-a", "/v1/chat/completions", &streamed);
    assert_eq!(response.status, 200, "{response:?}");
    let chunks = response.events();
    assert!(chunks.len() >= 2, "{response:?}");
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["choices"].as_array().is_some_and(|c| !c.is_empty())),
        "a chunk without choices reached a client that did not ask for usage: {chunks:#?}"
    );
    assert!(
        response.text().ends_with("data: [DONE]\n\n"),
        "{response:?}"
    );
    let upstream = gateway.mock.requests().pop().unwrap();
    assert_eq!(
        upstream.json()["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(upstream.header("accept-encoding"), None);

    // A client that asked for usage gets its usage chunk.
    streamed["stream_options"] = json!({"include_usage": true});
    let response = gateway.post("team-a", "/v1/chat/completions", &streamed);
    let last = response.events().pop().unwrap();
    assert_eq!(last["choices"], json!([]), "{last}");
    assert_eq!(last["usage"]["prompt_tokens"], INPUT, "{last}");

    // Anthropic and Gemini streams, the Responses API stream.
    assert_eq!(
        gateway
            .post("team-a", "/v1/messages", &anthropic(100, true))
            .status,
        200
    );
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let response = gateway.post(
        "team-a",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &gemini,
    );
    assert_eq!(response.status, 200, "{response:?}");
    let responses = json!({"model": "gpt-4.1", "input": "hi", "stream": true});
    assert_eq!(
        gateway.post("team-a", "/v1/responses", &responses).status,
        200
    );

    // Denials, a rule hit, and an upstream error (which reports no usage, and is not "unknown").
    assert_eq!(
        gateway
            .post("team-a", "/v1/chat/completions", &chat("gpt-9"))
            .status,
        403
    );
    let mut secret = chat("gpt-4.1");
    secret["messages"][0]["content"] = json!("key AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        gateway
            .post("team-a", "/v1/chat/completions", &secret)
            .status,
        403
    );
    let failing = http::post(
        gateway.envoy.port(),
        "/v1/chat/completions",
        &[
            JSON,
            ("x-posturio-consumer", "team-a"),
            ("x-mock-status", "503"),
        ],
        chat("gpt-4.1").to_string().as_bytes(),
    );
    assert_eq!(failing.status, 503);

    let samples = gateway.prometheus();
    let openai = [
        ("consumer", "team-a"),
        ("model", "gpt-4.1"),
        ("provider", "openai"),
    ];
    let claude = [
        ("consumer", "team-a"),
        ("model", "claude-sonnet-4"),
        ("provider", "anthropic"),
    ];
    let gemini = [
        ("consumer", "team-a"),
        ("model", "gemini-2.5-flash"),
        ("provider", "gemini"),
    ];
    // Chat three times and the Responses stream: four OpenAI responses with usage.
    let expected = [
        ("posturio_input_tokens_total", &openai, 4 * INPUT),
        ("posturio_output_tokens_total", &openai, 4 * OUTPUT),
        ("posturio_input_tokens_total", &claude, INPUT),
        ("posturio_output_tokens_total", &claude, OUTPUT),
        ("posturio_input_tokens_total", &gemini, INPUT),
        ("posturio_output_tokens_total", &gemini, OUTPUT),
        ("posturio_cached_input_tokens_total", &openai, 0),
    ];
    for (name, by, value) in expected {
        assert_eq!(
            sample(&samples, name, by.as_slice()),
            Some(value as f64),
            "{name} {by:?} in {samples:#?}"
        );
    }
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = openai.to_vec();
        pairs.extend_from_slice(extra);
        pairs
    };
    let requests = "posturio_requests_total";
    assert_eq!(
        sample(
            &samples,
            requests,
            &with(&[("decision", "allow"), ("code", "none")])
        ),
        Some(5.0),
        "{samples:#?}"
    );
    assert_eq!(
        sample(
            &samples,
            requests,
            &with(&[("decision", "deny"), ("code", "prompt_blocked")])
        ),
        Some(1.0)
    );
    // An unknown model is never a label value: the client chose that name.
    assert_eq!(
        sample(
            &samples,
            requests,
            &[
                ("consumer", "team-a"),
                ("model", "none"),
                ("provider", "none"),
                ("decision", "deny"),
                ("code", "model_not_found")
            ]
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert!(!format!("{samples:?}").contains("gpt-9"));
    assert_eq!(
        sample(
            &samples,
            "posturio_rule_hits_total",
            &[
                ("rule", "no-secrets"),
                ("action", "block"),
                ("consumer", "team-a"),
                ("direction", "request")
            ]
        ),
        Some(1.0)
    );
    let upstream = "posturio_upstream_responses_total";
    assert_eq!(
        sample(&samples, upstream, &with(&[("class", "2xx")])),
        Some(4.0)
    );
    assert_eq!(
        sample(&samples, upstream, &with(&[("class", "5xx")])),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "posturio_usage_unknown_total", &openai),
        None
    );

    // Histograms appear once Envoy flushes its stats (every 5 s by default).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let samples = gateway.prometheus();
        let count = sample(
            &samples,
            "posturio_request_duration_ms_count",
            &[("model", "gpt-4.1")],
        );
        // Chat three times, the Responses stream, the blocked prompt and the failed call.
        if count == Some(6.0) {
            assert!(
                sample(
                    &samples,
                    "posturio_upstream_first_byte_ms_count",
                    &[("model", "gpt-4.1")]
                ) == Some(5.0),
                "{samples:#?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no duration histogram: {samples:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn the_access_log_carries_the_decision_and_the_usage() {
    let gateway = Gateway::start(1);
    let response = gateway.post("team-a", "/v1/messages", &anthropic(100, false));
    assert_eq!(response.status, 200, "{response:?}");
    let line = gateway
        .envoy
        .wait_for_access_log("claude-sonnet-4", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no access log line:\n{}", gateway.envoy.access_log()));
    let entry: Value = serde_json::from_str(&line).unwrap();
    for (field, value) in [
        ("posturio_decision", "allow"),
        ("posturio_consumer", "team-a"),
        ("posturio_model", "claude-sonnet-4"),
        ("posturio_upstream_model", "claude-sonnet-4-20250514"),
        ("posturio_provider", "anthropic"),
        ("posturio_input_tokens", "12"),
        ("posturio_output_tokens", "7"),
    ] {
        assert_eq!(entry[field], value, "{field} in {entry:#}");
    }
}

/// Seconds since the start of the current minute.
fn seconds_into_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60
}

/// The `downstream_cx_total` of each worker of the listener.
fn worker_connections(envoy: &Envoy) -> Vec<u64> {
    let mut counts: Vec<(String, u64)> =
        envoy.stat_values(r"^listener\..*\.worker_[0-9]+\.downstream_cx_total$");
    counts.sort();
    counts.into_iter().map(|(_, value)| value).collect()
}

#[test]
fn a_budget_is_shared_by_every_worker_and_answers_429_with_retry_after() {
    let gateway = Gateway::start(2);
    // The budget is per minute: start well inside one.
    if seconds_into_minute() > 45 {
        std::thread::sleep(Duration::from_secs(62 - seconds_into_minute()));
    }
    // One keep-alive connection on each worker.
    let mut on_worker: Vec<Option<Connection>> = vec![None, None];
    for _ in 0..64 {
        if on_worker.iter().all(Option::is_some) {
            break;
        }
        let before = worker_connections(&gateway.envoy);
        let connection = Connection::open(gateway.envoy.port());
        let deadline = Instant::now() + Duration::from_secs(2);
        let worker = loop {
            let after = worker_connections(&gateway.envoy);
            if let Some(worker) =
                (0..after.len()).find(|&i| after[i] > before.get(i).copied().unwrap_or(0))
            {
                break worker;
            }
            assert!(Instant::now() < deadline, "no worker took the connection");
            std::thread::sleep(Duration::from_millis(20));
        };
        if on_worker[worker].is_none() {
            on_worker[worker] = Some(connection);
        }
    }
    let mut connections: Vec<Connection> = on_worker
        .into_iter()
        .map(|c| c.expect("both workers took a connection"))
        .collect();

    // 60 tokens a minute, 19 a request, 26 reserved (16 of input, 10 of output): requests 1
    // and 2 pass, on each worker; the 3rd's reservation would cross the limit (38 used), and
    // it is refused whichever worker serves it.
    let body = chat("gpt-4.1").to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: metered\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut statuses = Vec::new();
    for round in 0..3 {
        let connection = &mut connections[round % 2];
        connection.send(request.as_bytes());
        let response = connection.read_response();
        statuses.push(response.status);
        if response.status == 429 {
            let retry_after: u64 = response.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry_after), "{response:?}");
            assert_eq!(response.header("x-posturio-code"), Some("budget_exceeded"));
            let error = &response.json()["error"];
            assert_eq!(error["code"], "budget_exceeded", "{error}");
            assert_eq!(error["type"], "rate_limit_error", "{error}");
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains(
                    "has used 38 of its 60 tokens per minute; this request may use up to 26 \
                     tokens"
                ),
                "{message}"
            );
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        gateway.mock.requests().len(),
        2,
        "the refused request never left"
    );
    // The refusal is counted with the model and provider asked for, not as `none`.
    assert_eq!(
        gateway.envoy.counter(
            "wasmcustom.posturio_requests_total.consumer=metered;.model=gpt-4.1;\
             .provider=openai;.decision=deny;.code=budget_exceeded;"
        ),
        Some(1),
        "{}",
        gateway.envoy.stats("posturio_requests_total")
    );
    // Another consumer still passes.
    let other = gateway.post("team-a", "/v1/chat/completions", &chat("gpt-4.1"));
    assert_eq!(other.status, 200);
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn the_output_token_cap_is_clamped_added_or_refused() {
    let gateway = Gateway::start(1);

    // Clamped: the provider receives the cap, with a content-length that matches.
    let mut asked = chat("gpt-4.1");
    asked["max_tokens"] = json!(4000);
    assert_eq!(
        gateway
            .post("capped", "/v1/chat/completions", &asked)
            .status,
        200
    );
    let upstream = gateway.mock.requests().pop().unwrap();
    assert_eq!(upstream.json()["max_tokens"], 50);
    assert_eq!(upstream.json().get("max_completion_tokens"), None);

    // Added where the request named none.
    assert_eq!(
        gateway
            .post("capped", "/v1/chat/completions", &chat("gpt-4.1"))
            .status,
        200
    );
    assert_eq!(
        gateway.mock.requests().pop().unwrap().json()["max_completion_tokens"],
        50
    );
    assert_eq!(
        gateway
            .post("capped", "/v1/messages", &anthropic(4096, false))
            .status,
        200
    );
    assert_eq!(
        gateway.mock.requests().pop().unwrap().json()["max_tokens"],
        50
    );

    // Under the cap: forwarded as sent.
    gateway.mock.reset();
    let small = anthropic(20, false);
    assert_eq!(gateway.post("strict", "/v1/messages", &small).status, 200);
    // Only the model name is rewritten; every other byte is the client's.
    let mut expected = small.clone();
    expected["model"] = json!("claude-sonnet-4-20250514");
    assert_eq!(
        gateway.mock.single_request().body,
        expected.to_string().into_bytes()
    );

    // Refused: never reaches the provider, says what and why.
    gateway.mock.reset();
    let response = gateway.post("strict", "/v1/messages", &anthropic(4096, false));
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some("max_output_tokens_exceeded")
    );
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("4096") && message.contains("50"),
        "{message}"
    );
    assert!(gateway.mock.requests().is_empty());
}

/// Sends a streamed request and leaves once the first event has arrived, while the mock is
/// still waiting to send the rest.
fn leave_mid_stream(envoy: &Envoy, path: &str, body: &Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: team-a\r\nx-mock-event-delay-ms: 400\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data:") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first event: {received:?}");
        received.extend_from_slice(&buf[..n]);
    }
    drop(stream);
}

#[test]
fn a_client_that_leaves_mid_stream_is_counted_as_unknown() {
    let gateway = Gateway::start(1);
    // OpenAI reports usage only at the end of a stream: unknown.
    let mut streamed = chat("gpt-4.1");
    streamed["stream"] = json!(true);
    leave_mid_stream(&gateway.envoy, "/v1/chat/completions", &streamed);
    // Anthropic reports the input tokens at the start, with a placeholder output count that
    // only message_delta makes real: without it the usage is incomplete, unknown too.
    leave_mid_stream(&gateway.envoy, "/v1/messages", &anthropic(100, true));

    let openai = [
        ("consumer", "team-a"),
        ("model", "gpt-4.1"),
        ("provider", "openai"),
    ];
    let claude = [
        ("consumer", "team-a"),
        ("model", "claude-sonnet-4"),
        ("provider", "anthropic"),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let samples = gateway.prometheus();
        let unknown = sample(&samples, "posturio_usage_unknown_total", &openai);
        let claude_unknown = sample(&samples, "posturio_usage_unknown_total", &claude);
        if unknown.is_some() && claude_unknown.is_some() {
            break samples;
        }
        assert!(Instant::now() < deadline, "{samples:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for labels in [&openai, &claude] {
        assert_eq!(
            sample(&samples, "posturio_usage_unknown_total", labels),
            Some(1.0),
            "{labels:?}"
        );
        for counter in [
            "posturio_input_tokens_total",
            "posturio_output_tokens_total",
        ] {
            assert_eq!(
                sample(&samples, counter, labels),
                None,
                "{counter} {labels:?}"
            );
        }
    }

    // The gateway goes on serving.
    let response = gateway.post("team-a", "/v1/chat/completions", &chat("gpt-4.1"));
    assert_eq!(response.status, 200, "{response:?}");
    gateway.envoy.assert_no_wasm_failure();
}

/// Sends a non-streamed request whose answer the mock holds back, and leaves before any
/// response header arrives.
fn leave_before_the_answer(envoy: &Envoy, consumer: &str, body: &Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: {consumer}\r\nx-mock-header-delay-ms: 1500\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) => panic!("an answer came before the client left: {:?}", &buf[..n]),
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{error}"
        ),
    }
    drop(stream);
}

/// Waits until `posturio_usage_unknown_total` of `consumer` on gpt-4.1 reaches `count`.
fn wait_for_unknown(gateway: &Gateway, consumer: &str, count: f64) {
    let labels = [
        ("consumer", consumer),
        ("model", "gpt-4.1"),
        ("provider", "openai"),
    ];
    let deadline = Instant::now().checked_add(Duration::from_secs(5)).unwrap();
    loop {
        let samples = gateway.prometheus();
        let unknown = sample(&samples, "posturio_usage_unknown_total", &labels);
        if unknown == Some(count) {
            return;
        }
        assert!(Instant::now() < deadline, "{unknown:?}: {samples:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_that_leaves_before_the_answer_is_still_charged() {
    let gateway = Gateway::start(1);
    // 1,216 tokens of input by the four-bytes estimate: with the one output token reserved,
    // it fits a budget of 1,225 a day; once charged, a small request's 17 no longer do.
    let mut big = chat("gpt-4.1");
    big["messages"][0]["content"] = json!("lorem ipsum ".repeat(400));
    leave_before_the_answer(&gateway.envoy, "leaver", &big);
    wait_for_unknown(&gateway, "leaver", 1.0);
    // The provider had the whole prompt.
    let received = gateway.mock.requests();
    assert_eq!(received.len(), 1);
    assert!(received[0].body.len() > 4800, "{}", received[0].body.len());
    let response = gateway.post("leaver", "/v1/chat/completions", &chat("gpt-4.1"));
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(
        response.json()["error"]["code"],
        "budget_exceeded",
        "{response:?}"
    );

    // A small prompt that left before its answer is charged the cap as its output: 16 tokens
    // of input and 50 of output, which leave no room for another such reservation in 80.
    leave_before_the_answer(&gateway.envoy, "capped-leaver", &chat("gpt-4.1"));
    wait_for_unknown(&gateway, "capped-leaver", 1.0);
    let response = gateway.post("capped-leaver", "/v1/chat/completions", &chat("gpt-4.1"));
    assert_eq!(response.status, 429, "{response:?}");

    // An error the provider answers itself is not billed, so not charged: each gives its
    // reservation (26 tokens) back, or the third would not fit the 60 a minute.
    let headers = [
        JSON,
        ("x-posturio-consumer", "metered"),
        ("x-mock-status", "500"),
    ];
    for _ in 0..3 {
        let body = chat("gpt-4.1").to_string();
        let response = http::post(
            gateway.envoy.port(),
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(response.status, 500, "{response:?}");
    }
    let response = gateway.post("metered", "/v1/chat/completions", &chat("gpt-4.1"));
    assert_eq!(response.status, 200, "{response:?}");
    gateway.envoy.assert_no_wasm_failure();
}
