//! Answer inspection in real Envoy: rules with `direction` `response` redact, block and audit
//! the provider's answers, whole and streamed, in every family's format. The mock provider
//! writes the answer each test asks for (`x-mock-answer`); each test asserts what the client
//! received: valid JSON or events, the marker, and never a byte of the secret.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");
/// What the answer rules look for; never in a prompt, only in answers.
const SECRET: &str = "SECRET-123456";
const REDACTED: &str = "[REDACTED:redact-key]";

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "max_body_bytes": 4096,
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "vertex": { "cluster": "gemini", "api": "gemini" },
    "bedrock": { "cluster": "anthropic", "api": "bedrock" }
  },
  "models": {
    "gpt-4o-mini": { "provider": "openai" },
    "claude-haiku-4": { "provider": "anthropic" },
    "gemini-flash": { "provider": "vertex" },
    "titan": { "provider": "bedrock", "upstream_model": "amazon.titan-text-v1" }
  },
  "consumers": {
    "plain": { "models": ["*"], "rules": ["prompt-key"] },
    "redactor": { "models": ["*"], "rules": ["redact-key"] },
    "blocker": { "models": ["*"], "rules": ["block-key"] },
    "auditor": { "models": ["*"], "rules": ["audit-key"] }
  },
  "rules": [
    { "id": "prompt-key", "pattern": "SECRET-[0-9]{6}", "action": "block" },
    { "id": "redact-key", "pattern": "SECRET-[0-9]{6}", "action": "redact", "direction": "response" },
    { "id": "block-key", "pattern": "SECRET-[0-9]{6}", "action": "block", "direction": "response" },
    { "id": "audit-key", "pattern": "SECRET-[0-9]{6}", "action": "block", "direction": "response", "mode": "audit" }
  ]
}"#;

struct Gateway {
    mock: MockProvider,
    envoy: Envoy,
}

/// One family's endpoint: where to send, what to send, and how to read its answer's text.
#[derive(Clone, Copy)]
struct Family {
    name: &'static str,
    path: &'static str,
    stream_path: &'static str,
    body: fn(bool) -> Value,
    /// The answer text of a whole answer.
    text: fn(&Value) -> String,
    /// The text of one stream event.
    delta: fn(&Value) -> String,
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}
fn responses_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "input": "hi"})
}
fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-haiku-4", "max_tokens": 50, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}
fn gemini_body(_: bool) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
}
fn converse_body(_: bool) -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

const CHAT: Family = Family {
    name: "chat",
    path: "/v1/chat/completions",
    stream_path: "/v1/chat/completions",
    body: chat_body,
    text: |v| str_at(v, "/choices/0/message/content"),
    delta: |v| str_at(v, "/choices/0/delta/content"),
};
const COMPLETIONS: Family = Family {
    name: "completions",
    path: "/v1/completions",
    stream_path: "/v1/completions",
    body: |stream| json!({"model": "gpt-4o-mini", "stream": stream, "prompt": "hi"}),
    text: |v| str_at(v, "/choices/0/text"),
    delta: |v| str_at(v, "/choices/0/text"),
};
const RESPONSES: Family = Family {
    name: "responses",
    path: "/v1/responses",
    stream_path: "/v1/responses",
    body: responses_body,
    text: |v| str_at(v, "/output/0/content/0/text"),
    delta: |v| {
        if v["type"] == "response.output_text.delta" {
            str_at(v, "/delta")
        } else {
            String::new()
        }
    },
};
const ANTHROPIC: Family = Family {
    name: "anthropic",
    path: "/v1/messages",
    stream_path: "/v1/messages",
    body: anthropic_body,
    text: |v| str_at(v, "/content/0/text"),
    delta: |v| str_at(v, "/delta/text"),
};
const GEMINI: Family = Family {
    name: "gemini",
    path: "/v1beta/models/gemini-flash:generateContent",
    stream_path: "/v1beta/models/gemini-flash:streamGenerateContent?alt=sse",
    body: gemini_body,
    text: |v| str_at(v, "/candidates/0/content/parts/0/text"),
    delta: |v| str_at(v, "/candidates/0/content/parts/0/text"),
};
const CONVERSE: Family = Family {
    name: "converse",
    path: "/model/titan/converse",
    stream_path: "/model/titan/converse-stream",
    body: converse_body,
    text: |v| str_at(v, "/output/message/content/0/text"),
    delta: |_| String::new(),
};

fn mock_answer(pieces: &[&str], tool_args: Option<&[&str]>) -> String {
    let mut answer = json!({ "pieces": pieces });
    if let Some(tool_args) = tool_args {
        answer["tool_args"] = json!(tool_args);
    }
    base64::engine::general_purpose::STANDARD.encode(answer.to_string())
}

impl Gateway {
    fn start() -> Gateway {
        let mock = MockProvider::start();
        let envoy = Envoy::start_with(EnvoyOptions::new(POLICY).mock(&mock));
        Gateway { mock, envoy }
    }

    /// Asks `family` as `consumer` for an answer made of `pieces`.
    fn ask(&self, consumer: &str, family: &Family, stream: bool, pieces: &[&str]) -> Response {
        self.ask_with(consumer, family, stream, pieces, None, &[])
    }

    fn ask_with(
        &self,
        consumer: &str,
        family: &Family,
        stream: bool,
        pieces: &[&str],
        tool_args: Option<&[&str]>,
        extra: &[(&str, &str)],
    ) -> Response {
        let answer = mock_answer(pieces, tool_args);
        let mut headers = vec![
            JSON,
            ("x-posturio-consumer", consumer),
            ("x-mock-answer", answer.as_str()),
        ];
        headers.extend_from_slice(extra);
        let path = if stream {
            family.stream_path
        } else {
            family.path
        };
        let body = (family.body)(stream);
        http::post(
            self.envoy.port(),
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    fn access_log_line(&self, needle: &str) -> Value {
        let line = self
            .envoy
            .wait_for_access_log(needle, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "no access log line with {needle}:\n{}",
                    self.envoy.access_log()
                )
            });
        serde_json::from_str(&line).unwrap()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn assert_whole_json_with_length(response: &Response, what: &str) -> Value {
    let length: usize = response
        .header("content-length")
        .unwrap_or_else(|| panic!("{what}: no content-length: {response:?}"))
        .parse()
        .unwrap();
    assert_eq!(length, response.body.len(), "{what}: content-length");
    response.json()
}

#[test]
fn whole_answers_are_redacted_in_every_family() {
    let gateway = Gateway::start();
    for family in [CHAT, COMPLETIONS, RESPONSES, ANTHROPIC, GEMINI, CONVERSE] {
        let response = gateway.ask(
            "redactor",
            &family,
            false,
            &[&format!("Your key is {SECRET}, keep it.")],
        );
        assert_eq!(response.status, 200, "{}: {response:?}", family.name);
        let answer = assert_whole_json_with_length(&response, family.name);
        let text = (family.text)(&answer);
        assert_eq!(
            text,
            format!("Your key is {REDACTED}, keep it."),
            "{}",
            family.name
        );
        assert!(
            !response.text().contains(SECRET),
            "{}: {response:?}",
            family.name
        );
    }
    let line = gateway.access_log_line("redact-key:redact");
    assert_eq!(line["posturio_response"], "redacted");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn whole_answers_are_blocked_in_the_callers_shape() {
    let gateway = Gateway::start();
    let pieces = [&format!("Your key is {SECRET}.") as &str];
    for family in [CHAT, RESPONSES, ANTHROPIC, GEMINI, CONVERSE] {
        let response = gateway.ask("blocker", &family, false, &pieces);
        assert_eq!(response.status, 403, "{}: {response:?}", family.name);
        assert_eq!(response.header("x-posturio-code"), Some("response_blocked"));
        let text = response.text();
        assert!(!text.contains(SECRET), "{}: {text}", family.name);
        assert!(text.contains("block-key"), "{}: {text}", family.name);
        let error = response.json();
        match family.name {
            "chat" | "responses" => assert_eq!(error["error"]["code"], "response_blocked"),
            "anthropic" => assert_eq!(error["error"]["type"], "permission_error"),
            "gemini" => assert_eq!(error["error"]["status"], "PERMISSION_DENIED"),
            _ => assert_eq!(
                response.header("x-amzn-errortype"),
                Some("AccessDeniedException"),
                "{response:?}"
            ),
        }
    }
    let line = gateway.access_log_line("block-key:block");
    assert_eq!(line["posturio_response"], "blocked");
    assert_eq!(line["posturio_code"], "response_blocked");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn audited_answers_pass_and_are_recorded() {
    let gateway = Gateway::start();
    let text = format!("Your key is {SECRET}.");
    let response = gateway.ask("auditor", &CHAT, false, &[&text]);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!((CHAT.text)(&response.json()), text);
    let line = gateway.access_log_line("audit-key:audit");
    assert_eq!(line["posturio_response"], "passed");
    assert_eq!(line["posturio_decision"], "allow");
    let samples = gateway.envoy.posturio_samples();
    let hit = labels(&[
        ("rule", "audit-key"),
        ("action", "audit"),
        ("consumer", "auditor"),
        ("direction", "response"),
    ]);
    assert_eq!(
        samples.get(&("posturio_rule_hits_total".to_owned(), hit)),
        Some(&1.0),
        "{samples:#?}"
    );
}

#[test]
fn consumers_without_answer_rules_get_the_answer_untouched() {
    let gateway = Gateway::start();
    let text = format!("Your key is {SECRET}.");
    for family in [CHAT, ANTHROPIC, GEMINI] {
        let response = gateway.ask("plain", &family, false, &[&text]);
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            (family.text)(&assert_whole_json_with_length(&response, family.name)),
            text
        );
        let streamed = gateway.ask("plain", &family, true, &["Your key is SEC", "RET-123456."]);
        let joined: String = streamed.events().iter().map(family.delta).collect();
        assert_eq!(joined, text, "{}", family.name);
    }
    let line = gateway.access_log_line("\"posturio_consumer\":\"plain\"");
    assert!(line["posturio_response"].is_null(), "{line}");
}

/// Every split of the secret over two deltas: `pre SECRET-12` + `3456 post`, and so on.
fn splits() -> Vec<(String, String)> {
    (0..=SECRET.len())
        .map(|at| {
            (
                format!("pre {}", &SECRET[..at]),
                format!("{} post", &SECRET[at..]),
            )
        })
        .collect()
}

#[test]
fn streams_split_at_every_byte_of_the_secret_are_redacted() {
    let gateway = Gateway::start();
    for family in [CHAT, ANTHROPIC, GEMINI, RESPONSES] {
        for (first, second) in splits() {
            let response = gateway.ask("redactor", &family, true, &[&first, &second]);
            let what = format!("{} split {first:?}|{second:?}", family.name);
            assert_eq!(response.status, 200, "{what}: {response:?}");
            assert!(response.header("content-length").is_none(), "{what}");
            let events = response.events();
            let joined: String = events.iter().map(family.delta).collect();
            assert_eq!(
                joined,
                format!("pre {REDACTED} post"),
                "{what}: {response:?}"
            );
            assert!(!response.text().contains(SECRET), "{what}: {response:?}");
        }
    }
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn blocked_streams_end_with_the_familys_error_event() {
    let gateway = Gateway::start();
    for family in [CHAT, ANTHROPIC, GEMINI, RESPONSES] {
        for (first, second) in splits() {
            let response = gateway.ask("blocker", &family, true, &[&first, &second]);
            let what = format!("{} split {first:?}|{second:?}", family.name);
            assert_eq!(response.status, 200, "{what}: {response:?}");
            let text = response.text();
            assert!(!text.contains("SECRET"), "{what}: {text}");
            let events = response.events();
            let last = events.last().unwrap_or_else(|| panic!("{what}: no events"));
            match family.name {
                "chat" => assert_eq!(last["error"]["code"], "response_blocked", "{what}"),
                "responses" => assert_eq!(last["code"], "response_blocked", "{what}"),
                "anthropic" => assert_eq!(last["error"]["type"], "response_blocked", "{what}"),
                _ => assert_eq!(last["error"]["status"], "PERMISSION_DENIED", "{what}"),
            }
            assert!(text.contains("block-key"), "{what}");
        }
    }
    let line = gateway.access_log_line("block-key:block");
    assert_eq!(line["posturio_response"], "blocked");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn tool_call_arguments_are_inspected_in_streams() {
    let gateway = Gateway::start();
    let args = [r#"{"key": "SECRET-12"#, r#"3456"}"#];
    let response = gateway.ask_with("redactor", &CHAT, true, &["ok"], Some(&args), &[]);
    assert_eq!(response.status, 200, "{response:?}");
    let arguments: String = response
        .events()
        .iter()
        .map(|event| str_at(event, "/choices/0/delta/tool_calls/0/function/arguments"))
        .collect();
    assert_eq!(
        arguments,
        format!(r#"{{"key": "{REDACTED}"}}"#),
        "{response:?}"
    );
    assert!(!response.text().contains(SECRET));
}

#[test]
fn usage_is_counted_on_an_edited_stream_and_the_added_usage_chunk_still_removed() {
    let gateway = Gateway::start();
    // The client did not ask for usage: the gateway asks for it, reads it, and takes the
    // usage chunk back out, on the stream it edits.
    // In every form the provider writes it: a chunk of its own, beside Azure's
    // `prompt_filter_results`, on the chunk that ends the choice.
    for style in ["", "azure", "content"] {
        let pieces = ["pre SECRET-1", "23456 post"];
        let extra = [("x-mock-usage-style", style)];
        let response = gateway.ask_with("redactor", &CHAT, true, &pieces, None, &extra);
        assert_eq!(response.status, 200, "{style}: {response:?}");
        let events = response.events();
        assert!(
            events
                .iter()
                .all(|event| event.get("usage").is_none_or(Value::is_null)),
            "{style}: {response:?}"
        );
        let joined: String = events.iter().map(CHAT.delta).collect();
        assert_eq!(joined, format!("pre {REDACTED} post"), "{style}");
    }
    let line = gateway.access_log_line("redact-key:redact");
    assert!(line["posturio_output_tokens"].as_str().is_some(), "{line}");
    let samples = gateway.envoy.posturio_samples();
    let by = labels(&[
        ("consumer", "redactor"),
        ("model", "gpt-4o-mini"),
        ("provider", "openai"),
    ]);
    assert!(
        samples
            .get(&("posturio_output_tokens_total".to_owned(), by))
            .is_some_and(|value| *value > 0.0),
        "{samples:#?}"
    );
}

#[test]
fn an_answer_larger_than_the_bound_is_not_sent() {
    let gateway = Gateway::start();
    // max_body_bytes 4096: a whole answer is held up to 16 KiB.
    let long = "a".repeat(20_000);
    let response = gateway.ask("redactor", &CHAT, false, &[&long]);
    assert_eq!(response.status, 502, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "response_unreadable");
    let line = gateway.access_log_line("unreadable");
    assert_eq!(line["posturio_response"], "unreadable");
}

#[test]
fn bedrock_event_streams_are_refused_when_answers_are_inspected() {
    let gateway = Gateway::start();
    let response = gateway.ask("blocker", &CONVERSE, true, &["hi"]);
    assert_eq!(response.status, 400, "{response:?}");
    assert!(response
        .text()
        .contains("send the request without streaming"));
    assert!(gateway.mock.requests().is_empty(), "nothing forwarded");
}

#[test]
fn the_official_sdks_read_an_edited_answer_and_raise_on_a_cut_stream() {
    let gateway = Gateway::start();
    let redacted = format!("Your key is {REDACTED}, keep it.");
    let openai = common::sdk::run(
        "openai_client",
        &gateway.envoy,
        &[
            "answer_redacted",
            "answer_redacted_stream",
            "answer_blocked",
            "answer_blocked_stream",
            "answer_blocked_responses_stream",
        ],
    );
    assert_eq!(openai.ok("answer_redacted")["content"], redacted.as_str());
    let stream = openai.ok("answer_redacted_stream");
    assert_eq!(stream["content"], redacted.as_str(), "{stream:#}");
    assert_eq!(stream["usage"]["completion_tokens"], 7, "{stream:#}");
    let blocked = openai.refused("answer_blocked", "PermissionDeniedError", 403);
    assert_eq!(blocked["code"], "response_blocked", "{blocked:#}");
    let cut = openai.get("answer_blocked_stream");
    assert_eq!(cut["ok"], false, "{cut:#}");
    assert_eq!(cut["error_class"], "APIError", "{cut:#}");
    assert!(!cut.to_string().contains(SECRET), "{cut:#}");
    // The Responses helper raises the API error too, not a missing completed event.
    let cut = openai.get("answer_blocked_responses_stream");
    assert_eq!(cut["ok"], false, "{cut:#}");
    assert_eq!(cut["error_class"], "APIError", "{cut:#}");
    assert!(cut.to_string().contains("block-key"), "{cut:#}");
    assert!(!cut.to_string().contains(SECRET), "{cut:#}");

    let anthropic = common::sdk::run(
        "anthropic_client",
        &gateway.envoy,
        &["answer_redacted_stream", "answer_blocked_stream"],
    );
    let stream = anthropic.ok("answer_redacted_stream");
    assert_eq!(stream["content"], redacted.as_str(), "{stream:#}");
    let cut = anthropic.get("answer_blocked_stream");
    assert_eq!(cut["ok"], false, "{cut:#}");
    assert!(cut.to_string().contains("block-key"), "{cut:#}");
    assert!(!cut.to_string().contains(SECRET), "{cut:#}");
    gateway.envoy.assert_no_wasm_failure();
}

/// Envoy's own bound on what a filter holds: an answer larger than the listener's buffer limit
/// (here 8 KiB, under the policy's 16 KiB) is answered by Envoy with its own 500 before the
/// filter's bound is reached; the client never receives the answer either way.
#[test]
fn an_answer_over_envoys_buffer_limit_is_not_sent_either() {
    let mock = MockProvider::start();
    let options = EnvoyOptions::new(POLICY).mock(&mock).edit_config(|config| {
        common::envoy::replace_all(
            &config,
            "per_connection_buffer_limit_bytes: 8388608",
            "per_connection_buffer_limit_bytes: 8192",
        )
    });
    let gateway = Gateway {
        envoy: Envoy::start_with(options),
        mock,
    };
    let long = format!("{SECRET} {}", "a".repeat(12_000));
    let response = gateway.ask("redactor", &CHAT, false, &[&long]);
    assert_eq!(response.status, 500, "{response:?}");
    assert!(!response.text().contains(SECRET), "{response:?}");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn tool_calls_in_whole_answers_are_inspected_and_compression_is_not_asked_for() {
    let gateway = Gateway::start();
    let args = [r#"{"key": "SECRET-123456"}"#];
    let gzip = ("accept-encoding", "gzip, br");
    for family in [CHAT, ANTHROPIC] {
        let response = gateway.ask_with("redactor", &family, false, &["ok"], Some(&args), &[gzip]);
        assert_eq!(response.status, 200, "{}: {response:?}", family.name);
        let text = response.text();
        assert!(!text.contains(SECRET), "{}: {text}", family.name);
        assert!(text.contains(REDACTED), "{}: {text}", family.name);
        assert_whole_json_with_length(&response, family.name);
    }
    // Answers are inspected as the provider writes them: no compressed answer is asked for.
    for request in gateway.mock.requests() {
        assert_eq!(request.header("accept-encoding"), None, "{request:?}");
    }
    let blocked = gateway.ask_with(
        "blocker",
        &ANTHROPIC,
        true,
        &["ok"],
        Some(&["{\"k\": \"SECRET-1", "23456\"}"]),
        &[],
    );
    assert!(!blocked.text().contains("SECRET"), "{blocked:?}");
    assert_eq!(
        blocked.events().last().unwrap()["error"]["type"],
        "response_blocked"
    );
}

const GEMINI_JSON_STREAM: Family = Family {
    name: "gemini json stream",
    path: "/v1beta/models/gemini-flash:streamGenerateContent",
    stream_path: "/v1beta/models/gemini-flash:streamGenerateContent",
    body: gemini_body,
    text: |v| str_at(v, "/candidates/0/content/parts/0/text"),
    delta: |v| str_at(v, "/candidates/0/content/parts/0/text"),
};

/// The text of a Gemini stream the client received, SSE or one JSON array.
fn gemini_stream_text(response: &Response) -> String {
    if response
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("text/event-stream"))
    {
        return response.events().iter().map(GEMINI.delta).collect();
    }
    let elements: Vec<Value> = serde_json::from_slice(&response.body)
        .unwrap_or_else(|error| panic!("not a JSON array ({error}): {response:?}"));
    elements.iter().map(GEMINI.delta).collect()
}

/// A Gemini stream asked without `alt=sse` is one JSON array, streamed element by element: it
/// is held whole and inspected, a secret split over two elements included, whatever framing
/// the request asked for and whatever framing the provider answers with.
#[test]
fn gemini_streams_are_inspected_in_either_framing() {
    let gateway = Gateway::start();
    let sse_path = GEMINI.stream_path;
    let json_path = GEMINI_JSON_STREAM.stream_path;
    let other_query = "/v1beta/models/gemini-flash:streamGenerateContent?key=x&alt=json";
    // (path asked, framing the provider answers with: "" = as asked)
    let cases = [
        (json_path, ""),
        (other_query, ""),
        (sse_path, ""),
        (sse_path, "json"),
        (json_path, "sse"),
    ];
    for (path, framing) in cases {
        let family = Family {
            stream_path: path,
            ..GEMINI_JSON_STREAM
        };
        for (first, second) in splits() {
            let what = format!("{path} answered {framing:?}, split {first:?}|{second:?}");
            let extra: &[(&str, &str)] = if framing.is_empty() {
                &[]
            } else {
                &[("x-mock-stream-framing", framing)]
            };
            let response =
                gateway.ask_with("redactor", &family, true, &[&first, &second], None, extra);
            assert_eq!(response.status, 200, "{what}: {response:?}");
            assert!(!response.text().contains(SECRET), "{what}: {response:?}");
            assert_eq!(
                gemini_stream_text(&response),
                format!("pre {REDACTED} post"),
                "{what}: {response:?}"
            );

            let blocked =
                gateway.ask_with("blocker", &family, true, &[&first, &second], None, extra);
            assert!(!blocked.text().contains(SECRET), "{what}: {blocked:?}");
            assert!(blocked.text().contains("block-key"), "{what}: {blocked:?}");
        }
    }
    gateway.envoy.assert_no_wasm_failure();
}

/// Sends a streamed chat request as `consumer` and leaves once the first event has arrived,
/// while the mock still waits to send the rest.
fn leave_mid_stream(envoy: &Envoy, consumer: &str) {
    use std::io::{Read, Write};
    let body = chat_body(true).to_string();
    let answer = mock_answer(&["one ", "two ", "three"], None);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: {consumer}\r\nx-mock-event-delay-ms: 400\r\n\
         x-mock-answer: {answer}\r\ncontent-length: {}\r\n\r\n{body}",
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

/// A stream the client leaves never reached its end, so its inspection never finished: it is
/// recorded `cut_short` (the decision line), never left without a record.
#[test]
fn a_stream_the_client_leaves_is_recorded_cut_short() {
    let gateway = Gateway::start();
    leave_mid_stream(&gateway.envoy, "redactor");
    let line = gateway
        .envoy
        .wait_for_log("\"response\":\"cut_short\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no cut_short line:\n{}", gateway.envoy.log()));
    assert!(line.contains("request_id"), "{line}");
    let logged = gateway.access_log_line("cut_short");
    assert_eq!(logged["posturio_response"], "cut_short", "{logged}");
    gateway.envoy.assert_no_wasm_failure();
}
