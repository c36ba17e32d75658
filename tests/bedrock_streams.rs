//! Usage read from answers Posturio used to miss, in real Envoy: Bedrock's `converse-stream`
//! and `invoke-with-response-stream` (the AWS binary event stream, checksums verified), and a
//! Responses stream that ends in `response.incomplete` or `response.failed`. The mock answers
//! with 12 input and 7 output tokens, so every count below is exact.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use posturio::policy::eventstream::{Event, EventStream};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "bedrock": { "cluster": "anthropic", "api": "bedrock" }
  },
  "models": {
    "gpt-4.1": { "provider": "openai" },
    "nova": { "provider": "bedrock", "upstream_model": "amazon.nova-pro-v1:0" },
    "claude": { "provider": "bedrock",
                "upstream_model": "anthropic.claude-3-5-haiku-20241022-v1:0" }
  },
  "consumers": {
    "converse": { "models": ["*"] },
    "converse-cached": { "models": ["*"] },
    "converse-bad-crc": { "models": ["*"] },
    "converse-cut": { "models": ["*"] },
    "invoke": { "models": ["*"] },
    "invoke-cached": { "models": ["*"] },
    "invoke-bad-crc": { "models": ["*"] },
    "invoke-cut": { "models": ["*"] },
    "incomplete": { "models": ["*"] },
    "ended-in-error": { "models": ["*"] }
  }
}"#;

struct Gateway {
    mock: MockProvider,
    envoy: Envoy,
}

impl Gateway {
    fn start() -> Gateway {
        let mock = MockProvider::start();
        let envoy = Envoy::start_with(EnvoyOptions::new(POLICY).mock(&mock));
        Gateway { mock, envoy }
    }

    /// Posts `body` as `consumer`, with the mock's scripting headers `extra`.
    fn post(&self, consumer: &str, path: &str, body: &Value, extra: &[(&str, &str)]) -> Response {
        let mut headers = vec![JSON, ("x-posturio-consumer", consumer)];
        headers.extend_from_slice(extra);
        http::post(
            self.envoy.port(),
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// The access log line of `consumer`'s request (each test request has its own consumer).
    fn access_log_line(&self, consumer: &str) -> Value {
        let needle = format!("\"posturio_consumer\":\"{consumer}\"");
        let line = self
            .envoy
            .wait_for_access_log(&needle, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no access log line:\n{}", self.envoy.access_log()));
        serde_json::from_str(&line).unwrap()
    }

    /// `posturio_usage_unknown_total` of `consumer` on `model` (served by Bedrock), waited for
    /// until it is `expected` (stats are flushed on a timer).
    fn wait_for_unknown(&self, consumer: &str, model: &str, provider: &str, expected: f64) {
        let labels: BTreeMap<String, String> = [
            ("consumer", consumer),
            ("model", model),
            ("provider", provider),
        ]
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let key = ("posturio_usage_unknown_total".to_string(), labels);
        let deadline = Instant::now().checked_add(Duration::from_secs(5)).unwrap();
        loop {
            let samples = self.envoy.posturio_samples();
            let found = samples.get(&key).copied();
            if found == Some(expected) {
                return;
            }
            assert!(Instant::now() < deadline, "{found:?}: {samples:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The event types of an event stream body, every message's checksums verified.
fn event_types(body: &[u8]) -> Vec<String> {
    let mut stream = EventStream::new(&[
        b"messageStart",
        b"contentBlockDelta",
        b"contentBlockStop",
        b"messageStop",
        b"metadata",
        b"chunk",
    ]);
    let mut types = Vec::new();
    stream.feed(body, &mut |event: Event<'_>| {
        types.push(String::from_utf8_lossy(event.event_type).into_owned());
    });
    assert!(!stream.failed() && stream.between_messages(), "{body:?}");
    types
}

fn converse() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
}

fn invoke() -> Value {
    json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// The access log's token fields: input, output, cached (`None` where absent).
fn tokens(line: &Value) -> [Option<String>; 3] {
    [
        "posturio_input_tokens",
        "posturio_output_tokens",
        "posturio_cached_tokens",
    ]
    .map(|field| line[field].as_str().map(str::to_owned))
}

fn known(input: u64, output: u64, cached: u64) -> [Option<String>; 3] {
    [input, output, cached].map(|count| Some(count.to_string()))
}

#[test]
fn bedrock_stream_usage_reaches_the_access_log() {
    let gateway = Gateway::start();
    for (consumer, path, body, cache, expected) in [
        (
            "converse",
            "/model/nova/converse-stream",
            converse(),
            None,
            known(12, 7, 0),
        ),
        (
            "converse-cached",
            "/model/nova/converse-stream",
            converse(),
            Some("4"),
            known(16, 7, 4),
        ),
        (
            "invoke",
            "/model/claude/invoke-with-response-stream",
            invoke(),
            None,
            known(12, 7, 0),
        ),
        (
            "invoke-cached",
            "/model/claude/invoke-with-response-stream",
            invoke(),
            Some("5"),
            known(17, 7, 5),
        ),
    ] {
        let extra: Vec<(&str, &str)> = cache
            .map(|cache| ("x-mock-bedrock-cache", cache))
            .into_iter()
            .collect();
        let response = gateway.post(consumer, path, &body, &extra);
        assert_eq!(response.status, 200, "{consumer}: {response:?}");
        assert_eq!(
            response.header("content-type"),
            Some("application/vnd.amazon.eventstream"),
            "{consumer}"
        );
        // The client gets the stream as the provider sent it, every checksum intact.
        let types = event_types(&response.body);
        let last = if path.ends_with("converse-stream") {
            "metadata"
        } else {
            "chunk"
        };
        assert_eq!(types.last().map(String::as_str), Some(last), "{consumer}");
        let line = gateway.access_log_line(consumer);
        assert_eq!(tokens(&line), expected, "{consumer}: {line:#}");
        assert_eq!(line["posturio_provider"], "bedrock", "{line:#}");
    }
    let upstream: Vec<String> = gateway
        .mock
        .requests()
        .iter()
        .map(|request| request.path.clone())
        .collect();
    assert!(
        upstream
            .iter()
            .any(|path| path.ends_with("/invoke-with-response-stream")),
        "{upstream:?}"
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_bad_checksum_or_a_cut_stream_leaves_bedrock_usage_unknown() {
    let gateway = Gateway::start();
    for (consumer, path, body, model, fault) in [
        (
            "converse-bad-crc",
            "/model/nova/converse-stream",
            converse(),
            "nova",
            "bad-crc",
        ),
        (
            "converse-cut",
            "/model/nova/converse-stream",
            converse(),
            "nova",
            "cut",
        ),
        (
            "invoke-bad-crc",
            "/model/claude/invoke-with-response-stream",
            invoke(),
            "claude",
            "bad-crc",
        ),
    ] {
        let response = gateway.post(consumer, path, &body, &[("x-mock-bedrock-stream", fault)]);
        assert_eq!(response.status, 200, "{consumer}: {response:?}");
        assert!(!response.body.is_empty(), "{consumer}");
        let line = gateway.access_log_line(consumer);
        assert_eq!(tokens(&line), [None, None, None], "{consumer}: {line:#}");
        gateway.wait_for_unknown(consumer, model, "bedrock", 1.0);
    }
    // An invoke stream cut before its last chunk (the one with Bedrock's invocation metrics)
    // still has the model's own final count, from its `message_delta`.
    let response = gateway.post(
        "invoke-cut",
        "/model/claude/invoke-with-response-stream",
        &invoke(),
        &[("x-mock-bedrock-stream", "cut")],
    );
    assert_eq!(response.status, 200, "{response:?}");
    let line = gateway.access_log_line("invoke-cut");
    assert_eq!(tokens(&line), known(12, 7, 0), "{line:#}");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_responses_stream_that_ends_incomplete_is_counted() {
    let gateway = Gateway::start();
    let body = json!({"model": "gpt-4.1", "input": "hi", "stream": true});
    let response = gateway.post(
        "incomplete",
        "/v1/responses",
        &body,
        &[("x-mock-responses-end", "incomplete")],
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.text().contains("event: response.incomplete"),
        "{response:?}"
    );
    let line = gateway.access_log_line("incomplete");
    assert_eq!(tokens(&line), known(12, 7, 0), "{line:#}");

    // A failed response reports `usage: null`: its usage stays unknown.
    // (Named apart from "failed": the harness reads that word in a stat as a VM failure.)
    let response = gateway.post(
        "ended-in-error",
        "/v1/responses",
        &body,
        &[("x-mock-responses-end", "failed")],
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.text().contains("event: response.failed"),
        "{response:?}"
    );
    let line = gateway.access_log_line("ended-in-error");
    assert_eq!(tokens(&line), [None, None, None], "{line:#}");
    gateway.wait_for_unknown("ended-in-error", "gpt-4.1", "openai", 1.0);
    gateway.envoy.assert_no_wasm_failure();
}
