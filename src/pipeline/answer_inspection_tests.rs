//! The answer inspection step against the fake host: which answers are held, streamed,
//! replaced or passed, what is recorded, and which requests are refused before forwarding.

use std::rc::Rc;

use crate::pipeline::{FakeHost, Flow, Request};
use crate::policy::{Code, Policy};

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "max_body_bytes": 1024,
  "providers": { "openai": { "cluster": "openai", "api": ["openai", "bedrock"] } },
  "models": { "gpt-4o": { "provider": "openai" },
              "titan": { "provider": "openai", "upstream_model": "amazon.titan-text-v1" } },
  "consumers": {
    "default": { "models": ["*"], "rules": [] },
    "watched": { "models": ["*"], "rules": ["no-leak"] },
    "trial": { "models": ["*"], "rules": ["no-leak"], "mode": "audit" }
  },
  "rules": [ { "id": "no-leak", "pattern": "s3cr3t", "action": "block", "direction": "response" } ]
}"#;

fn host(
    consumer: &str,
    path: &str,
    status: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
) -> FakeHost {
    let body = if path.starts_with("/model/") {
        r#"{"inputText":"hi"}"#
    } else {
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#
    };
    let request = FakeHost::request("POST", path, &[("x-posturio-consumer", consumer)], body);
    let mut upstream_headers = vec![(":status".to_owned(), status.as_bytes().to_vec())];
    upstream_headers.extend(
        headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())),
    );
    let host = FakeHost {
        upstream_headers,
        ..request
    };
    *host.upstream_chunks.borrow_mut() = chunks.iter().map(|chunk| chunk.to_vec()).collect();
    host.properties
        .borrow_mut()
        .push(("response.code_details".into(), b"via_upstream".to_vec()));
    host
}

fn filter(host: &FakeHost) -> Request<&FakeHost> {
    let policy = Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap());
    Request::new(host, Some(policy), Rc::default())
}

/// The request, forwarded; then the response headers' flow.
fn forwarded(host: &FakeHost) -> (Request<&FakeHost>, Flow) {
    let mut filter = filter(host);
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Flow::Continue
    );
    let flow = filter.on_response_headers(false);
    (filter, flow)
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const SSE: &[(&str, &str)] = &[
    ("content-type", "text/event-stream"),
    ("content-length", "12"),
];

#[test]
fn a_whole_answer_is_held_to_its_end_then_sent() {
    let answer: &[u8] = br#"{"choices":[{"message":{"content":"fine"}}]}"#;
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[answer]);
    let (mut filter, flow) = forwarded(&host);
    assert_eq!(flow, Flow::Pause, "headers held");
    assert_eq!(filter.on_response_body(answer.len(), true), Flow::Continue);
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("passed")
    );
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn a_consumer_without_answer_rules_is_not_held() {
    let answer: &[u8] = br#"{"choices":[]}"#;
    let host = host("default", "/v1/chat/completions", "200", JSON, &[answer]);
    let (mut filter, flow) = forwarded(&host);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(filter.on_response_body(answer.len(), true), Flow::Continue);
    assert_eq!(host.property_value("posturio.response"), None);
}

#[test]
fn an_answer_that_cannot_be_read_is_replaced() {
    for (name, headers) in [
        (
            "compressed",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ][..],
        ),
        ("not json", &[("content-type", "text/plain")][..]),
        ("no type", &[][..]),
        (
            "two types",
            &[
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ][..],
        ),
        (
            "a second encoding",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "identity"),
                ("content-encoding", "gzip"),
            ][..],
        ),
    ] {
        let host = host("watched", "/v1/chat/completions", "200", headers, &[b"x"]);
        let (_, flow) = forwarded(&host);
        assert_eq!(flow, Flow::Pause, "{name}");
        let replies = host.replies.borrow();
        assert_eq!(replies.len(), 1, "{name}");
        assert_eq!(replies[0].code, Code::ResponseUnreadable, "{name}");
        assert_eq!(replies[0].status(), 502, "{name}");
        assert_eq!(
            host.property_value("posturio.response").as_deref(),
            Some("unreadable")
        );
    }
}

#[test]
fn an_error_answer_passes() {
    let host = host("watched", "/v1/chat/completions", "429", JSON, &[b"{}"]);
    let (mut filter, flow) = forwarded(&host);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(filter.on_response_body(2, true), Flow::Continue);
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn a_whole_answer_over_the_bound_is_replaced() {
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[]);
    let (mut filter, _) = forwarded(&host);
    // max_body_bytes × 4.
    assert_eq!(filter.on_response_body(4096, false), Flow::Pause);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(filter.on_response_body(4097, false), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::ResponseUnreadable);
}

#[test]
fn trailers_after_a_held_answer_replace_it() {
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[]);
    let (mut filter, _) = forwarded(&host);
    assert_eq!(filter.on_response_body(10, false), Flow::Pause);
    assert_eq!(filter.on_response_trailers(), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::ResponseUnreadable);
}

#[test]
fn an_empty_success_is_no_answer() {
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[]);
    let mut filter = filter(&host);
    filter.on_request_headers(false);
    filter.on_request_body(host.body.len(), true);
    assert_eq!(filter.on_response_headers(true), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::ResponseUnreadable);
}

#[test]
fn a_stream_loses_its_length_and_passes_chunk_by_chunk() {
    let chunk: &[u8] = b"data: {}\n\n";
    let host = host("watched", "/v1/chat/completions", "200", SSE, &[chunk, b""]);
    let (mut filter, flow) = forwarded(&host);
    assert_eq!(flow, Flow::Continue);
    assert!(host
        .response_headers
        .borrow()
        .contains(&("content-length".to_owned(), "<removed>".to_owned())));
    assert_eq!(filter.on_response_body(chunk.len(), false), Flow::Continue);
    assert_eq!(
        host.property_value("posturio.response"),
        None,
        "not over yet"
    );
    assert_eq!(filter.on_response_body(0, true), Flow::Continue);
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("passed")
    );
}

#[test]
fn a_stream_the_client_leaves_is_recorded_cut_short_once() {
    let chunk: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"s3cr\"}}]}\n\n";
    let host = host("watched", "/v1/chat/completions", "200", SSE, &[chunk]);
    let (mut filter, _) = forwarded(&host);
    assert_eq!(filter.on_response_body(chunk.len(), false), Flow::Continue);
    filter.on_log();
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("cut_short")
    );
    let recorded = host.properties.borrow().len();
    filter.on_log();
    assert_eq!(host.properties.borrow().len(), recorded, "recorded once");
}

#[test]
fn a_stream_ended_by_trailers_is_recorded_cut_short() {
    let chunk: &[u8] = b"data: {}\n\n";
    let host = host("watched", "/v1/chat/completions", "200", SSE, &[chunk]);
    let (mut filter, _) = forwarded(&host);
    assert_eq!(filter.on_response_body(chunk.len(), false), Flow::Continue);
    assert_eq!(filter.on_response_trailers(), Flow::Continue);
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("cut_short")
    );
}

#[test]
fn a_finished_stream_is_not_recorded_again_when_the_request_ends() {
    let chunk: &[u8] = b"data: {}\n\n";
    let host = host("watched", "/v1/chat/completions", "200", SSE, &[chunk, b""]);
    let (mut filter, _) = forwarded(&host);
    filter.on_response_body(chunk.len(), false);
    filter.on_response_body(0, true);
    filter.on_log();
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("passed")
    );
}

#[test]
fn a_bedrock_event_stream_is_refused_when_a_rule_enforces() {
    let path = "/model/titan/invoke-with-response-stream";
    let host = host("watched", path, "200", JSON, &[]);
    let mut filter = filter(&host);
    filter.on_request_headers(false);
    assert_eq!(filter.on_request_body(host.body.len(), true), Flow::Pause);
    let reply = &host.replies.borrow()[0];
    assert_eq!(reply.code, Code::InvalidRequest);
    assert!(reply.message.contains("send the request without streaming"));

    // Audit mode: forwarded, recorded as an audit.
    let host = self::host("trial", path, "200", JSON, &[]);
    let mut filter = self::filter(&host);
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Flow::Continue
    );
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("audit")
    );
}

#[test]
fn a_whole_answer_is_edited_with_its_new_length() {
    let answer: &[u8] = br#"{"choices":[{"message":{"role":"assistant","content":"a s3cr3t b"}}]}"#;
    let policy = POLICY.replace(r#""action": "block""#, r#""action": "redact""#);
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[answer]);
    let mut filter = Request::new(
        &host,
        Some(Rc::new(Policy::from_json(policy.as_bytes()).unwrap())),
        Rc::default(),
    );
    filter.on_request_headers(false);
    filter.on_request_body(host.body.len(), true);
    assert_eq!(filter.on_response_headers(false), Flow::Pause);
    assert_eq!(filter.on_response_body(answer.len(), true), Flow::Continue);
    let sent = host.delivered.borrow().concat();
    let expected =
        br#"{"choices":[{"message":{"role":"assistant","content":"a [REDACTED:no-leak] b"}}]}"#;
    assert_eq!(
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(expected)
    );
    let headers = host.response_headers.borrow();
    assert!(headers.contains(&("transfer-encoding".to_owned(), "<removed>".to_owned())));
    assert!(headers.contains(&("content-length".to_owned(), expected.len().to_string())));
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("redacted")
    );
    assert_eq!(
        host.property_value("posturio.response_rules").as_deref(),
        Some("no-leak:redact")
    );
}

#[test]
fn a_blocked_whole_answer_is_replaced_by_an_error_naming_the_rule() {
    let answer: &[u8] = br#"{"choices":[{"message":{"role":"assistant","content":"a s3cr3t b"}}]}"#;
    let host = host("watched", "/v1/chat/completions", "200", JSON, &[answer]);
    let (mut filter, _) = forwarded(&host);
    assert_eq!(filter.on_response_body(answer.len(), true), Flow::Pause);
    let replies = host.replies.borrow();
    assert_eq!(replies[0].code, Code::ResponseBlocked);
    assert_eq!(replies[0].status(), 403);
    assert!(replies[0].message.contains("\"no-leak\""));
    assert!(!replies[0].message.contains("s3cr3t"));
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("blocked")
    );
    assert_eq!(
        host.property_value("posturio.code").as_deref(),
        Some("response_blocked")
    );
}

#[test]
fn an_audited_answer_passes_and_is_recorded() {
    let answer: &[u8] = br#"{"choices":[{"message":{"role":"assistant","content":"a s3cr3t b"}}]}"#;
    let host = host("trial", "/v1/chat/completions", "200", JSON, &[answer]);
    let (mut filter, _) = forwarded(&host);
    assert_eq!(filter.on_response_body(answer.len(), true), Flow::Continue);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(host.delivered.borrow().concat(), answer);
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("passed")
    );
    assert_eq!(
        host.property_value("posturio.response_rules").as_deref(),
        Some("no-leak:audit")
    );
    let counted = host.counters.borrow().keys().any(|name| {
        name.contains("posturio_rule_hits_total") && name.contains(".direction=response;")
    });
    assert!(counted, "{:?}", host.counters.borrow());
}

#[test]
fn a_blocked_stream_is_cut_and_later_chunks_dropped() {
    let first: &[u8] =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a s3cr3t\"}}]}\n\n";
    let last: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" more\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let host = host(
        "watched",
        "/v1/chat/completions",
        "200",
        SSE,
        &[first, last],
    );
    let (mut filter, _) = forwarded(&host);
    filter.on_response_body(first.len(), false);
    filter.on_response_body(last.len(), true);
    let sent = String::from_utf8(host.delivered.borrow().concat()).unwrap();
    assert!(!sent.contains("s3cr3t"), "{sent}");
    assert!(sent.contains("response_blocked"), "{sent}");
    assert!(!sent.contains("more"), "nothing after the cut: {sent}");
    assert_eq!(
        host.property_value("posturio.response").as_deref(),
        Some("blocked")
    );
}
