//! The driver against the fake host: what each callback reads, sets and answers.

// Test arithmetic (clocks, counts) cannot overflow with these small values.
#![allow(clippy::arithmetic_side_effects)]

use std::rc::Rc;

use super::*;
use crate::pipeline::FakeHost;
use crate::policy::budget;

fn filter(host: &FakeHost, policy: Option<Rc<Policy>>) -> Request<&FakeHost> {
    Request::new(host, policy, Rc::default())
}

fn policy() -> Option<Rc<Policy>> {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/policy.json")).unwrap();
    Some(Rc::new(Policy::from_json(&text).unwrap()))
}

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Headers, then the whole body in one callback.
fn run(host: &FakeHost) -> (Flow, Flow) {
    let mut filter = filter(host, policy());
    let on_headers = filter.on_request_headers(host.body.is_empty());
    let on_body = filter.on_request_body(host.body.len(), true);
    (on_headers, on_body)
}

#[test]
fn allowed_request_is_routed_after_the_body() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(run(&host), (Flow::Pause, Flow::Continue));
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
    assert!(host.replies.borrow().is_empty());
    assert!(host.new_body.borrow().is_none());
}

#[test]
fn spoofed_route_header_is_replaced() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("x-posturio-cluster", "anthropic"),
            ("x-posturio-cluster", "gemini"),
        ],
        &chat("gpt-4o-mini"),
    );
    run(&host);
    let values: Vec<_> = host
        .headers
        .borrow()
        .iter()
        .filter(|(key, _)| key == "x-posturio-cluster")
        .map(|(_, value)| value.clone())
        .collect();
    assert_eq!(values, vec![b"openai".to_vec()]);
}

#[test]
fn spoofed_route_header_is_removed_from_refused_and_bodiless_requests() {
    let host = FakeHost::request(
        "GET",
        "/v1/nothing",
        &[("x-posturio-cluster", "openai")],
        "",
    );
    let mut filter = filter(&host, policy());
    assert_eq!(filter.on_request_headers(true), Flow::Pause);
    assert_eq!(host.header("x-posturio-cluster"), None);
    assert_eq!(host.replies.borrow()[0].code, Code::UnsupportedEndpoint);
}

#[test]
fn alias_rewrites_body_length_and_framing() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("transfer-encoding", "chunked")],
        &chat("fast"),
    );
    assert_eq!(run(&host), (Flow::Pause, Flow::Continue));
    let new_body = host.new_body.borrow().clone().unwrap();
    assert_eq!(new_body, chat("gpt-4o-mini").into_bytes());
    assert_eq!(
        host.header("content-length"),
        Some(new_body.len().to_string())
    );
    assert_eq!(host.header("transfer-encoding"), None);
}

#[test]
fn base_path_sets_the_upstream_path() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", "search-team")],
        &chat("gemini-flash"),
    );
    run(&host);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1beta/openai/chat/completions")
    );
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("gemini"));
}

#[test]
fn denied_request_is_answered_and_not_routed() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o"));
    assert_eq!(run(&host), (Flow::Pause, Flow::Pause));
    assert_eq!(host.header("x-posturio-cluster"), None);
    let replies = host.replies.borrow();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, Code::ModelNotApproved);
}

/// A model outside the catalogue is the client's text: the record keeps it short and on one
/// line.
#[test]
fn an_unknown_model_is_recorded_shortened_and_escaped() {
    let forged = format!(
        "gpt-4o-mini\n[warning] forged \u{1b}[2J{}",
        "x".repeat(10_000)
    );
    let body = serde_json::json!({"model": forged, "messages": []}).to_string();
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &body);
    run(&host);
    assert_eq!(host.replies.borrow()[0].code, Code::ModelNotFound);
    let recorded = host.property_value("posturio.model").unwrap_or_default();
    assert!(
        recorded.starts_with("gpt-4o-mini\\n[warning]"),
        "{recorded}"
    );
    assert!(
        !recorded.contains('\n') && !recorded.contains('\u{1b}'),
        "{recorded}"
    );
    assert!(recorded.len() < 100, "{}", recorded.len());
}

#[test]
fn body_is_buffered_until_its_end() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = filter(&host, policy());
    assert_eq!(filter.on_request_headers(false), Flow::Pause);
    assert_eq!(filter.on_request_body(10, false), Flow::Pause);
    assert_eq!(host.header("x-posturio-cluster"), None);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Flow::Continue
    );
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
}

#[test]
fn oversized_body_is_refused_before_its_end() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = filter(&host, policy());
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(4 * 1024 * 1024 + 1, false),
        Flow::Pause
    );
    assert_eq!(host.replies.borrow()[0].code, Code::BodyTooLarge);
    // Later callbacks for the same request pass through without a second reply.
    assert_eq!(
        filter.on_request_body(5 * 1024 * 1024, true),
        Flow::Continue
    );
    assert_eq!(host.replies.borrow().len(), 1);
}

#[test]
fn an_oversized_body_is_counted_with_what_its_headers_said() {
    let policy = r#"{
      "max_body_bytes": 16,
      "providers": { "google": { "cluster": "google", "api": "gemini" },
                     "openai": { "cluster": "openai", "api": "openai" } },
      "models": { "gemini-flash": { "provider": "google", "upstream_model": "gemini-2.5-flash" },
                  "gpt-4o-mini": { "provider": "openai" } },
      "consumers": { "default": { "models": ["*"] } }
    }"#;
    // One line per case: path, the counter the refusal goes to.
    let cases = [
        (
            "/v1beta/models/gemini-flash:generateContent",
            ".consumer=default;.model=gemini-flash;.provider=google;.decision=deny;.code=body_too_large;",
        ),
        (
            "/v1beta/models/made-up:generateContent",
            ".consumer=default;.model=none;.provider=none;.decision=deny;.code=body_too_large;",
        ),
        (
            "/v1/chat/completions",
            ".consumer=default;.model=none;.provider=none;.decision=deny;.code=body_too_large;",
        ),
    ];
    for (path, counter) in cases {
        let host = FakeHost::request("POST", path, &[], "{}");
        let mut filter = filter(&host, policy_with(policy));
        filter.on_request_headers(false);
        assert_eq!(filter.on_request_body(17, false), Flow::Pause, "{path}");
        assert_eq!(host.replies.borrow()[0].code, Code::BodyTooLarge, "{path}");
        let counter = format!("posturio_requests_total{counter}");
        assert_eq!(
            host.counter(&counter),
            1,
            "{path}: {:?}",
            host.counters.borrow()
        );
        assert_eq!(
            host.property_value("posturio.consumer").as_deref(),
            Some("default")
        );
    }
}

#[test]
fn trailers_are_refused() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = filter(&host, policy());
    filter.on_request_headers(false);
    filter.on_request_body(host.body.len(), false);
    assert_eq!(filter.on_request_trailers(), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::InvalidRequest);
    assert_eq!(host.header("x-posturio-cluster"), None);
    // Counted and recorded like every refusal.
    assert_eq!(
        host.counter(
            "posturio_requests_total.consumer=default;.model=none;.provider=none;\
             .decision=deny;.code=invalid_request;"
        ),
        1,
        "{:?}",
        host.counters.borrow()
    );
    assert_eq!(
        host.property_value("posturio.code").as_deref(),
        Some("invalid_request")
    );
}

#[test]
fn no_policy_refuses_everything() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-cluster", "openai")],
        &chat("gpt-4o-mini"),
    );
    let mut filter = filter(&host, None);
    assert_eq!(filter.on_request_headers(false), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::InternalError);
    assert_eq!(host.header("x-posturio-cluster"), None);
}

#[test]
fn host_failure_refuses() {
    let host = FakeHost {
        fail_headers: true,
        ..FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"))
    };
    let mut filter = filter(&host, policy());
    assert_eq!(filter.on_request_headers(false), Flow::Pause);
    assert_eq!(host.replies.borrow()[0].status(), 500);
}

const ANTHROPIC: &str = r#"{"model":"claude-sonnet-4","max_tokens":10,"messages":[]}"#;

/// Every refusal is recorded, and answered in the caller's API shape, whatever refused it:
/// the policy, trailers, a missing policy, or a host call that failed.
#[test]
fn refusals_outside_the_policy_are_recorded_in_the_callers_shape() {
    let deny = |code: &str, consumer: &str| {
        format!(
            "posturio_requests_total.consumer={consumer};.model=none;.provider=none;\
             .decision=deny;.code={code};"
        )
    };
    let anthropic = [("anthropic-version", "2023-06-01")];

    let trailers = FakeHost::request("POST", "/v1/messages", &anthropic, ANTHROPIC);
    let mut request = filter(&trailers, policy());
    request.on_request_headers(false);
    request.on_request_body(trailers.body.len(), false);
    assert_eq!(request.on_request_trailers(), Flow::Pause);
    assert_eq!(trailers.replies.borrow()[0].shape, ApiFamily::Anthropic);
    assert_eq!(trailers.counter(&deny("invalid_request", "default")), 1);

    let no_policy = FakeHost::request("POST", "/v1/messages", &anthropic, ANTHROPIC);
    assert_eq!(
        filter_none(&no_policy).on_request_headers(false),
        Flow::Pause
    );
    let reply = no_policy.replies.borrow()[0].clone();
    assert_eq!(
        (reply.code, reply.shape),
        (Code::InternalError, ApiFamily::Anthropic)
    );
    assert_eq!(no_policy.counter(&deny("internal_error", "none")), 1);
    assert_eq!(
        no_policy.property_value("posturio.decision").as_deref(),
        Some("deny")
    );

    let body_failed = FakeHost {
        fail_body: true,
        ..FakeHost::request("POST", "/v1/messages", &anthropic, ANTHROPIC)
    };
    let mut request = filter(&body_failed, policy());
    request.on_request_headers(false);
    assert_eq!(
        request.on_request_body(body_failed.body.len(), true),
        Flow::Pause
    );
    let reply = body_failed.replies.borrow()[0].clone();
    assert_eq!((reply.status(), reply.shape), (500, ApiFamily::Anthropic));
    assert_eq!(body_failed.counter(&deny("internal_error", "default")), 1);
    assert_eq!(body_failed.header("x-posturio-cluster"), None);

    let headers_failed = FakeHost {
        fail_headers: true,
        ..FakeHost::request("POST", "/v1/messages", &anthropic, ANTHROPIC)
    };
    let mut request = filter(&headers_failed, policy());
    request.on_request_headers(false);
    // The headers could not be read: nothing says which API the caller speaks.
    assert_eq!(headers_failed.replies.borrow()[0].shape, ApiFamily::OpenAi);
    assert_eq!(headers_failed.counter(&deny("internal_error", "none")), 1);
}

/// A forward that fails after the decision was recorded: answered 500, logged and put in
/// filter state as the refusal it became, and counted once, as decided.
#[test]
fn a_failed_forward_is_refused_and_counted_once() {
    let host = FakeHost {
        fail_header: Some("x-posturio-cluster"),
        ..FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"))
    };
    assert_eq!(run(&host), (Flow::Pause, Flow::Pause));
    assert_eq!(host.replies.borrow()[0].status(), 500);
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("deny")
    );
    let counted: u64 = host
        .counters
        .borrow()
        .iter()
        .filter(|(name, _)| name.starts_with("posturio_requests_total"))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(counted, 1, "{:?}", host.counters.borrow());
}

fn filter_none(host: &FakeHost) -> Request<&FakeHost> {
    filter(host, None)
}

#[test]
fn bodiless_passthrough_is_routed_on_headers() {
    let host = FakeHost::request("GET", "/v1/files", &[], "");
    let passthrough = r#"{
      "providers": { "openai": { "cluster": "openai", "api": "openai" } },
      "models": { "gpt-4o-mini": { "provider": "openai" } },
      "consumers": { "default": { "models": ["gpt-4o-mini"] } },
      "passthrough": [ { "method": "GET", "path_prefix": "/v1/files", "provider": "openai" } ]
    }"#;
    let mut filter = filter(&host, policy_with(passthrough));
    assert_eq!(filter.on_request_headers(true), Flow::Continue);
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
}

fn policy_with(text: &str) -> Option<Rc<Policy>> {
    Some(Rc::new(Policy::from_json(text.as_bytes()).unwrap()))
}

const METADATA_POLICY: &str = r#"{
  "identity": { "metadata": { "namespace": "envoy.filters.http.jwt_authn", "path": ["jwt_payload", "team"] } },
  "debug_headers": true,
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" }, "gpt-4o-mini": { "provider": "openai" } },
  "consumers": { "default": { "models": ["gpt-4o-mini"] }, "search": { "models": ["gpt-4o*"] } },
  "rules": [ { "id": "no-email", "detect": "email", "action": "redact" } ]
}"#;

#[test]
fn identity_comes_from_metadata_not_the_header() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", "search")],
        &chat("gpt-4o"),
    );
    run_with(&host, METADATA_POLICY);
    assert_eq!(
        host.replies.borrow()[0].code,
        Code::ModelNotApproved,
        "the header is not read"
    );

    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o"));
    host.properties.borrow_mut().push((
        "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload.team".into(),
        b"search".to_vec(),
    ));
    run_with(&host, METADATA_POLICY);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));

    // A claim that is a list reaches the module serialised: refused, never `default`.
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    host.properties.borrow_mut().push((
        "metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload.team".into(),
        b"\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00search\x00\x00".to_vec(),
    ));
    run_with(&host, METADATA_POLICY);
    assert_eq!(host.replies.borrow()[0].code, Code::IdentityUnusable);
    assert_eq!(host.header("x-posturio-cluster"), None);
}

fn run_with(host: &FakeHost, policy: &str) -> (Flow, Flow) {
    let mut filter = filter(host, policy_with(policy));
    let on_headers = filter.on_request_headers(host.body.is_empty());
    let on_body = filter.on_request_body(host.body.len(), true);
    filter.on_response_headers(false);
    (on_headers, on_body)
}

#[test]
fn decision_goes_to_filter_state_and_debug_header() {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane@example.com"}]}"#;
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], body);
    assert_eq!(
        run_with(&host, METADATA_POLICY),
        (Flow::Pause, Flow::Continue)
    );
    let state: std::collections::HashMap<String, String> = host
        .properties
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(state["posturio.decision"], "allow");
    assert_eq!(state["posturio.consumer"], "default");
    assert_eq!(state["posturio.model"], "gpt-4o-mini");
    assert_eq!(state["posturio.rules"], "no-email:redact");
    assert_eq!(
        host.response_headers.borrow().as_slice(),
        [(
            "x-posturio-decision".to_string(),
            "allow; rules=no-email:redact".to_string()
        )]
    );
    let forwarded = String::from_utf8(host.new_body.borrow().clone().unwrap()).unwrap();
    assert!(forwarded.contains("[REDACTED:no-email]") && !forwarded.contains("jane@"));
}

const BUDGET_POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" },
                 "anthropic": { "cluster": "anthropic", "api": "anthropic" } },
  "models": { "gpt-4.1": { "provider": "openai" },
              "claude-sonnet-4": { "provider": "anthropic" } },
  "consumers": {
    "default": { "models": ["gpt-4.1"] },
    "capped": { "models": ["*"], "budget": { "tokens_per_minute": 100, "tokens_per_day": 1000, "default_output_tokens": 1 } },
    "watched": { "models": ["*"], "mode": "audit", "budget": { "tokens_per_minute": 10, "default_output_tokens": 1 } },
    "bcap": { "models": ["*"], "max_output_tokens": 50, "budget": { "tokens_per_day": 100000 } },
    "roomy": { "models": ["*"], "budget": { "tokens_per_day": 100000, "default_output_tokens": 1 } }
  }
}"#;

/// 90 s into a day, 30 s into a minute.
const NOW_SECS: u64 = 86_400 * 20_000 + 90;

fn upstream(status: &str, content_type: &str, chunks: &[&str]) -> FakeHost {
    let host = FakeHost {
        upstream_headers: vec![
            (":status".into(), status.as_bytes().to_vec()),
            ("content-type".into(), content_type.as_bytes().to_vec()),
        ],
        ..FakeHost::default()
    };
    *host.upstream_chunks.borrow_mut() = chunks.iter().map(|c| c.as_bytes().to_vec()).collect();
    host.properties
        .borrow_mut()
        .push(("response.code_details".into(), b"via_upstream".to_vec()));
    host.now.set(NOW_SECS * 1_000_000_000);
    host
}

/// Sends `body` as `consumer`, then plays the upstream's response chunk by chunk, then ends
/// the stream (`on_log`).
fn exchange(host: &mut FakeHost, consumer: &str, path: &str, body: &str) -> Flow {
    let request = FakeHost::request("POST", path, &[("x-posturio-consumer", consumer)], body);
    host.headers = request.headers;
    host.body = request.body;
    let replies = host.replies.borrow().len();
    let mut filter = filter(host, policy_with(BUDGET_POLICY));
    filter.on_request_headers(false);
    let mut action = filter.on_request_body(host.body.len(), true);
    if host.replies.borrow().len() > replies {
        action = Flow::Pause;
    } else {
        filter.on_response_headers(false);
        host.now.set(host.now.get() + 250_000_000);
        let chunks = host.upstream_chunks.borrow().clone();
        for (index, chunk) in chunks.iter().enumerate() {
            filter.on_response_body(chunk.len(), index + 1 == chunks.len());
        }
    }
    filter.on_log();
    action
}

const CHAT_STREAM: [&str; 3] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\ndata: {\"cho",
    "ices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n",
    "\ndata: [DONE]\n\n",
];

const BY_CAPPED: &str = ".consumer=capped;.model=gpt-4.1;.provider=openai;";

#[test]
fn streamed_usage_is_counted_put_in_filter_state_and_charged() {
    let mut host = upstream("200", "text/event-stream", &CHAT_STREAM);
    let body = r#"{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Continue
    );
    assert_eq!(
        host.counter(&format!("posturio_input_tokens_total{BY_CAPPED}")),
        30
    );
    assert_eq!(
        host.counter(&format!("posturio_output_tokens_total{BY_CAPPED}")),
        12
    );
    assert_eq!(
        host.counter(&format!("posturio_cached_input_tokens_total{BY_CAPPED}")),
        8
    );
    assert_eq!(
        host.counter(&format!(
            "posturio_requests_total{BY_CAPPED}.decision=allow;.code=none;"
        )),
        1
    );
    assert_eq!(
        host.counter(&format!(
            "posturio_upstream_responses_total{BY_CAPPED}.class=2xx;"
        )),
        1
    );
    assert_eq!(
        host.counter(&format!("posturio_usage_unknown_total{BY_CAPPED}")),
        0
    );
    assert_eq!(
        host.property_value("posturio.input_tokens").as_deref(),
        Some("30")
    );
    assert_eq!(
        host.property_value("posturio.output_tokens").as_deref(),
        Some("12")
    );
    assert_eq!(
        host.property_value("posturio.tokens").as_deref(),
        Some("42")
    );
    assert_eq!(
        host.samples.borrow()["posturio_upstream_first_byte_ms.model=gpt-4.1;"],
        [0]
    );
    assert_eq!(
        host.samples.borrow()["posturio_request_duration_ms.model=gpt-4.1;"],
        [250]
    );
    // Both windows were charged 42 tokens; the request asked for usage in the stream.
    for window in [budget::Window::Minute, budget::Window::Day] {
        assert_eq!(host.budget_used("capped", window), 42, "{window:?}");
    }
    // The client did not ask for usage: it receives the stream without the usage chunk.
    let delivered = String::from_utf8(host.delivered.borrow().concat()).unwrap();
    assert_eq!(
        delivered,
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\ndata: [DONE]\n\n"
    );
    assert!(host
        .response_headers
        .borrow()
        .contains(&("content-length".to_string(), "<removed>".to_string())));
    let forwarded = host.new_body.borrow().clone().unwrap();
    let forwarded: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    assert_eq!(host.header("accept-encoding"), None);
}

#[test]
fn a_consumer_over_budget_gets_429_until_the_window_ends() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let json = r#"{"usage":{"prompt_tokens":60,"completion_tokens":40}}"#;
    let mut host = upstream("200", "application/json", &[json]);
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Continue
    );
    // 100 of 100 tokens per minute are used now.
    *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Pause
    );
    let reply = host.replies.borrow().last().cloned().unwrap();
    assert_eq!(reply.code, Code::BudgetExceeded);
    assert_eq!(reply.status(), 429);
    assert_eq!(reply.retry_after, Some(30));
    assert!(
        reply.message.contains("100 of its 100 tokens per minute"),
        "{}",
        reply.message
    );
    assert_eq!(
        host.counter(
            ".consumer=capped;.model=gpt-4.1;.provider=openai;.decision=deny;.code=budget_exceeded;"
                .replace(".consumer", "posturio_requests_total.consumer")
                .as_str()
        ),
        1
    );
    // The refusal is recorded with the model the client asked for, which was approved.
    assert_eq!(
        host.property_value("posturio.model").as_deref(),
        Some("gpt-4.1")
    );
    // Another consumer is not affected, and the next minute the budget is back.
    *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
    assert_eq!(
        exchange(&mut host, "default", "/v1/chat/completions", body),
        Flow::Continue
    );
    host.now.set((NOW_SECS + 30) * 1_000_000_000);
    *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Continue
    );
}

#[test]
fn audit_mode_records_a_budget_overrun_and_forwards() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let json = r#"{"usage":{"prompt_tokens":6,"completion_tokens":6}}"#;
    let mut host = upstream("200", "application/json", &[json]);
    exchange(&mut host, "watched", "/v1/chat/completions", body);
    *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
    assert_eq!(
        exchange(&mut host, "watched", "/v1/chat/completions", body),
        Flow::Continue
    );
    assert!(host.replies.borrow().is_empty());
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("audit")
    );
    assert_eq!(
        host.property_value("posturio.code").as_deref(),
        Some("budget_exceeded")
    );
}

#[test]
fn budget_charges_survive_lost_compare_and_swap_races() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let json = r#"{"usage":{"prompt_tokens":5,"completion_tokens":5}}"#;
    let mut host = upstream("200", "application/json", &[json]);
    exchange(&mut host, "capped", "/v1/chat/completions", body);
    host.cas_losses.set(3);
    *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
    exchange(&mut host, "capped", "/v1/chat/completions", body);
    assert_eq!(host.budget_used("capped", budget::Window::Minute), 20);
}

#[test]
fn unreadable_usage_is_counted_as_unknown_and_errors_are_not() {
    let body = r#"{"model":"claude-sonnet-4","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let by = ".consumer=capped;.model=claude-sonnet-4;.provider=anthropic;";
    // Compressed: the body cannot be read.
    let mut host = upstream("200", "application/json", &["\x1f\u{8b}binary"]);
    host.upstream_headers
        .push(("content-encoding".into(), b"gzip".to_vec()));
    exchange(&mut host, "capped", "/v1/messages", body);
    assert_eq!(
        host.counter(&format!("posturio_usage_unknown_total{by}")),
        1
    );
    assert_eq!(host.counter(&format!("posturio_input_tokens_total{by}")), 0);
    // An error from the provider reports no usage, and that is not "unknown".
    let mut host = upstream("529", "application/json", &[r#"{"type":"error"}"#]);
    exchange(&mut host, "capped", "/v1/messages", body);
    assert_eq!(
        host.counter(&format!("posturio_usage_unknown_total{by}")),
        0
    );
    assert_eq!(
        host.counter(&format!("posturio_upstream_responses_total{by}.class=5xx;")),
        1
    );
}

#[test]
fn denials_are_counted_with_config_names_only() {
    let mut host = upstream("200", "application/json", &[]);
    let body = r#"{"model":"gpt-attacker-chosen","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Pause
    );
    let names: Vec<String> = host.counters.borrow().keys().cloned().collect();
    assert_eq!(
        names,
        ["posturio_requests_total.consumer=capped;.model=none;.provider=none;.decision=deny;.code=model_not_found;"]
    );
}

#[test]
fn a_reply_from_a_later_filter_is_not_an_upstream_response() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut host = upstream("429", "application/json", &[r#"{"error":"rate limited"}"#]);
    host.properties.borrow_mut().clear();
    host.properties.borrow_mut().push((
        "response.code_details".into(),
        b"request_rate_limited".to_vec(),
    ));
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Continue
    );
    let counters = host.counters.borrow();
    assert!(
        counters
            .keys()
            .all(|name| name.starts_with("posturio_requests_total")),
        "{counters:?}"
    );
    assert!(host
        .samples
        .borrow()
        .keys()
        .all(|name| name.starts_with("posturio_request_duration_ms")));
    drop(counters);
    // The request never reached an upstream host: nothing is owed.
    assert_eq!(host.budget_used("capped", budget::Window::Day), 0);
}

#[test]
fn a_client_that_asked_for_stream_usage_gets_the_usage_chunk() {
    let mut host = upstream("200", "text/event-stream", &CHAT_STREAM);
    let body = r#"{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    exchange(&mut host, "capped", "/v1/chat/completions", body);
    assert_eq!(
        host.delivered.borrow().concat(),
        CHAT_STREAM.concat().into_bytes()
    );
    assert_eq!(
        host.counter(&format!("posturio_output_tokens_total{BY_CAPPED}")),
        12
    );
}

/// Host calls are most of what the filter costs Envoy per request (about a microsecond each,
/// see docs/performance.md), so their number is held here, callback by callback: a plain
/// forwarded chat request whose response reports usage, on a worker that has served before.
#[test]
fn a_forwarded_request_costs_these_host_calls() {
    let json = r#"{"usage":{"prompt_tokens":6,"completion_tokens":4}}"#;
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let consumer = [("x-posturio-consumer", "default")];
    let request = FakeHost::request("POST", "/v1/chat/completions", &consumer, body);
    let host = FakeHost {
        body: request.body.clone(),
        ..upstream("200", "application/json", &[])
    };
    let metrics = Rc::default();
    let mut calls_by_callback = Vec::new();
    // The first request defines the worker's metrics; the second is the steady state.
    for _ in 0..2 {
        *host.headers.borrow_mut() = request.headers.borrow().clone();
        *host.upstream_chunks.borrow_mut() = vec![json.as_bytes().to_vec()];
        let mut filter = Request::new(&host, policy_with(BUDGET_POLICY), Rc::clone(&metrics));
        calls_by_callback.clear();
        let mut after = |name: &'static str| {
            calls_by_callback.push((name, host.calls.take()));
        };
        filter.on_request_headers(false);
        after("request headers");
        filter.on_request_body(body.len(), true);
        after("request body");
        filter.on_response_headers(false);
        after("response headers");
        filter.on_response_body(json.len(), true);
        after("response body");
        filter.on_log();
        after("log");
    }
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("request headers", vec!["now_nanos", "request_headers"]),
        (
            "request body",
            [
                &["request_body", "increment_metric"][..],
                &["set_property"; 6],
                &["set_request_header", "now_nanos"],
            ]
            .concat(),
        ),
        (
            "response headers",
            vec![
                "property",
                "now_nanos",
                "response_headers",
                "increment_metric",
                "record_metric",
            ],
        ),
        (
            "response body",
            // The cost of a model without a price is counted as unknown, and what was charged
            // is written for the access log and the fleet limit whatever the consumer.
            [
                &["response_body"][..],
                &["increment_metric"; 3],
                &["set_property"; 5],
            ]
            .concat(),
        ),
        ("log", vec!["now_nanos", "record_metric"]),
    ];
    assert_eq!(calls_by_callback, expected);
}

#[test]
fn headers_the_client_did_not_send_are_not_removed() {
    let body = chat("gpt-4o-mini");
    let quiet = FakeHost::request("POST", "/v1/chat/completions", &[], &body);
    run(&quiet);
    let set_calls = |host: &FakeHost| {
        host.calls
            .borrow()
            .iter()
            .filter(|call| **call == "set_request_header")
            .count()
    };
    assert_eq!(set_calls(&quiet), 1, "only the route header is set");
    let sent = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("X-Posturio-Cluster", "anthropic"),
            ("Accept-Encoding", "gzip"),
        ],
        &body,
    );
    run(&sent);
    assert_eq!(
        set_calls(&sent),
        3,
        "route header removed, accept-encoding removed, route header set"
    );
    assert_eq!(sent.header("accept-encoding"), None);
}

#[test]
fn a_stream_cut_before_its_usage_is_charged_an_estimate() {
    // The client went away after the content: the usage event never passed.
    let chunks = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"hello there\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    ];
    let mut host = upstream("200", "text/event-stream", &chunks);
    let body = r#"{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(
        exchange(&mut host, "capped", "/v1/chat/completions", body),
        Flow::Continue
    );
    assert_eq!(
        host.counter(&format!("posturio_usage_unknown_total{BY_CAPPED}")),
        1
    );
    let relayed: usize = chunks.iter().map(|chunk| chunk.len()).sum();
    let expected = budget::estimate(None, body.len() as u64, relayed as u64, None);
    assert!(expected > 0);
    for window in [budget::Window::Minute, budget::Window::Day] {
        assert_eq!(host.budget_used("capped", window), expected, "{window:?}");
    }
    // No count is made up: the token metrics and filter state stay empty.
    assert_eq!(
        host.counter(&format!("posturio_input_tokens_total{BY_CAPPED}")),
        0
    );
    assert_eq!(host.property_value("posturio.tokens"), None);
}

/// Sends `body` as `consumer` and ends the stream with no response at all: the client left
/// (or the upstream reset) before any response header.
fn forward_then_leave(host: &mut FakeHost, consumer: &str, body: &str) {
    let request = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", consumer)],
        body,
    );
    host.headers = request.headers;
    host.body = request.body;
    let mut filter = filter(host, policy_with(BUDGET_POLICY));
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Flow::Continue
    );
    filter.on_log();
}

#[test]
fn a_request_whose_client_left_before_the_answer_is_charged_its_input() {
    let mut host = upstream("200", "application/json", &[]);
    let body = format!(
        r#"{{"model":"gpt-4.1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4000)
    );
    forward_then_leave(&mut host, "roomy", &body);
    let estimate = budget::estimate(None, body.len() as u64, 0, None);
    assert!(estimate > 1000, "{estimate}");
    // The reservation (the input and the one output token it reserves) is more than the
    // estimate from the bytes, and is kept.
    assert_eq!(host.budget_used("roomy", budget::Window::Day), estimate + 1);
    assert_eq!(
        host.counter(
            "posturio_usage_unknown_total.consumer=roomy;.model=gpt-4.1;.provider=openai;"
        ),
        1
    );
}

#[test]
fn a_request_whose_client_left_is_charged_its_cap_as_output() {
    let mut host = upstream("200", "application/json", &[]);
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    forward_then_leave(&mut host, "bcap", body);
    // The filter added the cap to the request: the body forwarded is what is estimated.
    let forwarded = host.body.len() as u64;
    let input = budget::estimate(None, forwarded, 0, None);
    assert_eq!(host.budget_used("bcap", budget::Window::Day), input + 50);
}

#[test]
fn an_upstream_timeout_after_the_request_went_out_is_charged() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut host = upstream("504", "text/plain", &["upstream request timeout"]);
    host.properties.borrow_mut().clear();
    host.properties.borrow_mut().extend([
        (
            "response.code_details".to_string(),
            b"upstream_response_timeout".to_vec(),
        ),
        ("upstream.address".to_string(), b"10.0.0.7:443".to_vec()),
    ]);
    exchange(&mut host, "capped", "/v1/chat/completions", body);
    // Envoy's own reply body is not the provider's output: the reservation is kept (the
    // input, and the one output token it reserves), more than the estimate from the bytes.
    let expected = budget::estimate(None, body.len() as u64, 0, None) + 1;
    assert_eq!(host.budget_used("capped", budget::Window::Day), expected);
}

#[test]
fn an_error_the_provider_answers_is_not_charged() {
    let body = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    for status in ["400", "429", "500", "503"] {
        let mut host = upstream(status, "application/json", &[r#"{"error":{}}"#]);
        exchange(&mut host, "capped", "/v1/chat/completions", body);
        assert_eq!(
            host.budget_used("capped", budget::Window::Day),
            0,
            "{status}"
        );
    }
}

/// Plays `chunks` as the answer to `body`, then the client leaves (`on_log`) with the body
/// ended only if `ended`.
fn exchange_cut(host: &mut FakeHost, consumer: &str, body: &str, ended: bool) {
    let request = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", consumer)],
        body,
    );
    host.headers = request.headers;
    host.body = request.body;
    let mut filter = filter(host, policy_with(BUDGET_POLICY));
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Flow::Continue
    );
    filter.on_response_headers(false);
    let chunks = host.upstream_chunks.borrow().clone();
    for (index, chunk) in chunks.iter().enumerate() {
        filter.on_response_body(chunk.len(), ended && index + 1 == chunks.len());
    }
    filter.on_log();
}

#[test]
fn a_stream_cut_after_one_of_its_outputs_ended_is_charged_as_unknown_usage() {
    // A server that reports usage on every chunk (vLLM's `continuous_usage_stats`), two
    // outputs asked for: the first ends, the second is still being generated when the client
    // leaves. The chunk's counts are not the answer's.
    let chunks = [concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"},\"finish_reason\":\"stop\"},",
        "{\"index\":1,\"delta\":{\"content\":\"B\"},\"finish_reason\":null}],",
        "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}\n\n"
    )];
    let body =
        r#"{"model":"gpt-4.1","stream":true,"n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut cut = upstream("200", "text/event-stream", &chunks);
    exchange_cut(&mut cut, "capped", body, false);
    assert_eq!(
        cut.counter(&format!("posturio_usage_unknown_total{BY_CAPPED}")),
        1
    );
    assert_eq!(
        cut.counter(&format!("posturio_input_tokens_total{BY_CAPPED}")),
        0
    );
    assert!(cut.budget_used("capped", budget::Window::Day) > 12);

    // The same chunk in a body the provider ended is the answer's usage.
    let mut ended = upstream("200", "text/event-stream", &chunks);
    exchange_cut(&mut ended, "capped", body, true);
    assert_eq!(
        ended.counter(&format!("posturio_usage_unknown_total{BY_CAPPED}")),
        0
    );
    assert_eq!(ended.budget_used("capped", budget::Window::Day), 12);
}
