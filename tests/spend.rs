//! Spend in real Envoy: each answer's cost from the provider's usage at the policy's prices,
//! in the access log and in `posturio_cost_microusd_total`, computed here independently; a
//! model without a price counted as unknown, never as free; a dollar budget that refuses the
//! request whose reservation would cross it before it reaches the provider, the output the
//! request itself asks for reserved; and a stream cut before its usage charged at least what
//! it reserved.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::{Duration, Instant};

use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

/// The mock's usage for every answer.
const INPUT: u64 = 12;
const OUTPUT: u64 = 7;

/// Prices in micro-dollars per million tokens, as the policy writes them in dollars.
const PRICE_IN: u64 = 1_234_567;
const PRICE_OUT: u64 = 3_333_333;

/// The output tokens the `monthly` consumer's requests reserve.
const RESERVED_OUTPUT: u64 = 10;

/// Requests the `monthly` consumer can afford before its limit.
const AFFORDABLE: u64 = 3;

fn policy(monthly_limit: &str) -> String {
    r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" },
                 "gemini": { "cluster": "gemini", "api": "gemini" } },
  "models": {
    "gpt-4.1": { "provider": "openai",
                 "price": { "input": "1.234567", "output": "3.333333" } },
    "gemini-2.5-flash": { "provider": "gemini",
                          "price": { "input": "1.234567", "output": "3.333333" } },
    "unpriced": { "provider": "openai", "upstream_model": "gpt-4.1" }
  },
  "consumers": {
    "payer": { "models": ["*"] },
    "monthly": { "models": ["gpt-4.1"],
                 "budget": { "usd_per_month": "LIMIT", "default_output_tokens": 10 } },
    "streamer": { "models": ["gpt-4.1", "gemini-2.5-flash"],
                  "budget": { "usd_per_day": "100.00", "tokens_per_day": 1000000,
                              "default_output_tokens": 2000 } }
  }
}"#
    .replace("LIMIT", monthly_limit)
}

/// The cost of a usage in micro-dollars, rounded up once: the policy's formula, here apart.
fn cost(input: u64, output: u64) -> u64 {
    (u128::from(input) * u128::from(PRICE_IN) + u128::from(output) * u128::from(PRICE_OUT))
        .div_ceil(1_000_000) as u64
}

/// Dollars as the policy writes them, from micro-dollars.
fn dollars(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Dollars exactly, with at least the cents, as a message shows a limit finer than a cent.
fn exact(micros: u64) -> String {
    let text = dollars(micros);
    let (whole, decimals) = text.split_once('.').unwrap();
    let trimmed = decimals.trim_end_matches('0');
    let decimals = if trimmed.len() < 2 {
        &decimals[..2]
    } else {
        trimmed
    };
    format!("{whole}.{decimals}")
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "what does it cost?"}]})
}

/// What a request with `body` reserves: its bytes at 4 a token, and the reserved output.
fn reservation(body: &Value) -> u64 {
    let input = (body.to_string().len() as u64).div_ceil(4);
    cost(input, RESERVED_OUTPUT)
}

struct Gateway {
    mock: MockProvider,
    envoy: Envoy,
}

impl Gateway {
    fn start(monthly_limit: &str) -> Gateway {
        let mock = MockProvider::start();
        let envoy = Envoy::start_with(EnvoyOptions::new(&policy(monthly_limit)).mock(&mock));
        Gateway { mock, envoy }
    }

    fn post(&self, consumer: &str, body: &Value, request_id: &str) -> Response {
        http::post(
            self.envoy.port(),
            "/v1/chat/completions",
            &[
                JSON,
                ("x-posturio-consumer", consumer),
                ("x-request-id", request_id),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// The access log's line for `request_id`, as JSON.
    fn logged(&self, request_id: &str) -> Value {
        let line = self
            .envoy
            .wait_for_access_log(request_id, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no access log line:\n{}", self.envoy.access_log()));
        serde_json::from_str(&line).unwrap()
    }

    /// The sum of a Posturio counter's series for `consumer`, waiting up to 5 s for it to
    /// reach `at_least`.
    fn counter(&self, name: &str, consumer: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self
                .envoy
                .posturio_samples()
                .iter()
                .filter(|((metric, labels), _)| {
                    metric == name && labels.get("consumer").map(String::as_str) == Some(consumer)
                })
                .map(|(_, value)| *value)
                .sum();
            if value >= at_least || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_cost_in_the_access_log_and_the_metric_is_the_usage_at_the_policy_s_prices() {
    let gateway = Gateway::start("100.00");
    let expected = cost(INPUT, OUTPUT);
    // 12·1.234567 + 7·3.333333 = 38.148135 micro-dollars, rounded up once.
    assert_eq!(expected, 39);
    for id in ["priced-1", "priced-2"] {
        let response = gateway.post("payer", &chat("gpt-4.1"), id);
        assert_eq!(response.status, 200, "{response:?}");
        let entry = gateway.logged(id);
        for (field, value) in [
            ("posturio_input_tokens", INPUT.to_string()),
            ("posturio_output_tokens", OUTPUT.to_string()),
            ("posturio_cost_microusd", expected.to_string()),
            ("posturio_charged_tokens", (INPUT + OUTPUT).to_string()),
            ("posturio_charged_microusd", expected.to_string()),
        ] {
            assert_eq!(entry[field], value, "{field} in {entry:#}");
        }
        // None reported: left out rather than written as 0.
        assert_eq!(entry["posturio_reasoning_tokens"], Value::Null, "{entry:#}");
    }
    let total = gateway.counter(
        "posturio_cost_microusd_total",
        "payer",
        2.0 * expected as f64,
    );
    assert_eq!(total, 2.0 * expected as f64);

    // A model without a price: its cost is unknown, counted as such, and never logged as 0.
    let response = gateway.post("payer", &chat("unpriced"), "unpriced-1");
    assert_eq!(response.status, 200, "{response:?}");
    let entry = gateway.logged("unpriced-1");
    assert_eq!(entry["posturio_tokens"], (INPUT + OUTPUT).to_string());
    assert_eq!(entry["posturio_cost_microusd"], Value::Null, "{entry:#}");
    assert_eq!(entry["posturio_charged_microusd"], Value::Null, "{entry:#}");
    assert_eq!(
        entry["posturio_charged_tokens"],
        (INPUT + OUTPUT).to_string()
    );
    assert_eq!(
        gateway.counter("posturio_cost_unknown_total", "payer", 1.0),
        1.0
    );
    // The priced total is unchanged by the unpriced answer.
    assert_eq!(
        gateway.counter("posturio_cost_microusd_total", "payer", 0.0),
        2.0 * expected as f64
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn the_request_whose_reservation_would_cross_a_dollar_budget_is_refused_before_it_goes() {
    let body = chat("gpt-4.1");
    let reserved = reservation(&body);
    let spent = cost(INPUT, OUTPUT);
    assert!(
        reserved > spent,
        "the reservation is the larger: {reserved} {spent}"
    );
    // Just enough for AFFORDABLE requests: the last one still fits its reservation beside
    // the ones before it, the next does not.
    let limit = AFFORDABLE * spent + reserved - 1;
    let gateway = Gateway::start(&dollars(limit));
    for index in 0..AFFORDABLE {
        let response = gateway.post("monthly", &body, &format!("within-{index}"));
        assert_eq!(response.status, 200, "request {index}: {response:?}");
        let entry = gateway.logged(&format!("within-{index}"));
        assert_eq!(entry["posturio_charged_microusd"], spent.to_string());
    }
    gateway.mock.reset();
    let response = gateway.post("monthly", &body, "crossing");
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("budget_exceeded"));
    let retry_after: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // The month ends at its first second in UTC: at most 31 days away.
    assert!((1..=31 * 86_400).contains(&retry_after), "{retry_after}");
    let answer = response.json();
    assert_eq!(answer["error"]["code"], "budget_exceeded", "{answer:#}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "consumer \"monthly\" has used ${} of its ${} per month (UTC); this request may \
             cost up to ${}; retry after {retry_after} s",
            exact(AFFORDABLE * spent),
            exact(limit),
            exact(reserved)
        )
    );
    assert!(
        gateway.mock.requests().is_empty(),
        "reached the provider: {:?}",
        gateway.mock.requests()
    );
    let entry = gateway.logged("crossing");
    assert_eq!(entry["posturio_decision"], "deny");
    assert_eq!(entry["posturio_code"], "budget_exceeded");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_request_whose_own_output_limit_crosses_a_dollar_budget_is_refused_before_it_goes() {
    // A dollar a month, and no cap: the request's own `max_tokens` is what is reserved. A
    // million output tokens cost $3.33, more than the whole limit; fifty fit.
    let gateway = Gateway::start("1.00");
    let mut body = chat("gpt-4.1");
    body["max_tokens"] = json!(1_000_000);
    let reserved = cost((body.to_string().len() as u64).div_ceil(4), 1_000_000);
    assert!(reserved > 1_000_000, "{reserved}");
    let response = gateway.post("monthly", &body, "asks-too-much");
    assert_eq!(response.status, 429, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("budget_exceeded"));
    assert!(response.header("retry-after").is_some(), "{response:?}");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(
            "consumer \"monthly\": this request may cost up to $3.34, more than \
             its whole limit of $1.00 per month (UTC); lower the request's output limit"
        ),
        "{message}"
    );
    assert!(
        gateway.mock.requests().is_empty(),
        "reached the provider: {:?}",
        gateway.mock.requests()
    );
    let entry = gateway.logged("asks-too-much");
    assert_eq!(entry["posturio_code"], "budget_exceeded", "{entry:#}");

    body["max_tokens"] = json!(50);
    let response = gateway.post("monthly", &body, "asks-little");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.mock.requests().len(), 1);
    let sent: Value = serde_json::from_slice(&gateway.mock.requests()[0].body).unwrap();
    assert_eq!(sent["max_tokens"], 50, "forwarded as asked");

    // A value the reservation cannot read is refused, not guessed at.
    body["max_tokens"] = json!("1000000");
    let response = gateway.post("monthly", &body, "asks-in-text");
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.header("x-posturio-code"), Some("invalid_request"));
    assert_eq!(gateway.mock.requests().len(), 1, "nothing more arrived");
    gateway.envoy.assert_no_wasm_failure();
}

/// Sends a streamed request and leaves once the first event has arrived, while the mock is
/// still waiting to send the rest (and its usage).
fn leave_after_first_event(gateway: &Gateway, path: &str, body: &Value, request_id: &str) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: streamer\r\nx-request-id: {request_id}\r\n\
         x-mock-event-delay-ms: 400\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gateway.envoy.port())).unwrap();
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
}

#[test]
fn a_stream_cut_before_its_usage_is_charged_at_least_its_reservation() {
    let gateway = Gateway::start("100.00");
    let body = json!({"model": "gpt-4.1", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "count to a thousand"}]});
    let input = (body.to_string().len() as u64).div_ceil(4);
    let reserved_tokens = input + 2_000;
    let reserved_microusd = cost(input, 2_000);
    leave_after_first_event(&gateway, "/v1/chat/completions", &body, "cut-stream");
    let entry = gateway.logged("cut-stream");
    // The usage never came: unknown, so no cost is logged; the budgets were charged the
    // reservation, more than the bytes that passed would give.
    assert_eq!(entry["posturio_tokens"], Value::Null, "{entry:#}");
    assert_eq!(entry["posturio_cost_microusd"], Value::Null, "{entry:#}");
    let charged_tokens: u64 = entry["posturio_charged_tokens"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let charged_microusd: u64 = entry["posturio_charged_microusd"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        charged_tokens >= reserved_tokens,
        "{charged_tokens} {reserved_tokens}"
    );
    assert!(
        charged_microusd >= reserved_microusd,
        "{charged_microusd} {reserved_microusd}"
    );
    assert!(gateway.counter("posturio_usage_unknown_total", "streamer", 1.0) >= 1.0);
    gateway.envoy.assert_no_wasm_failure();
}

/// Gemini repeats its usage in every chunk of a stream, the prompt's count from the first:
/// a client that leaves before the chunk that ends the answer must not be settled as if the
/// first chunk's usage were all of it.
#[test]
fn a_gemini_stream_cut_before_its_last_chunk_is_charged_at_least_its_reservation() {
    let gateway = Gateway::start("100.00");
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "count to a thousand"}]}]});
    let input = (body.to_string().len() as u64).div_ceil(4);
    let reserved_tokens = input + 2_000;
    let reserved_microusd = cost(input, 2_000);
    leave_after_first_event(
        &gateway,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &body,
        "cut-gemini",
    );
    let entry = gateway.logged("cut-gemini");
    assert_eq!(entry["posturio_api"], "gemini", "{entry:#}");
    assert_eq!(entry["posturio_tokens"], Value::Null, "{entry:#}");
    assert_eq!(entry["posturio_cost_microusd"], Value::Null, "{entry:#}");
    let charged = |field: &str| -> u64 { entry[field].as_str().unwrap().parse().unwrap() };
    assert!(
        charged("posturio_charged_tokens") >= reserved_tokens,
        "{entry:#}"
    );
    assert!(
        charged("posturio_charged_microusd") >= reserved_microusd,
        "{entry:#}"
    );
    assert!(gateway.counter("posturio_usage_unknown_total", "streamer", 1.0) >= 1.0);
    gateway.envoy.assert_no_wasm_failure();
}
