//! The guard step over the fake host: calls made at once and only for consumers with guards,
//! what a guard is sent, and every verdict's effect on the paused request.

use std::rc::Rc;

use crate::pipeline::{FakeHost, Flow, Request};
use crate::policy::{Code, Policy};

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "claude-x": { "provider": "anthropic" },
    "gemini-x": { "provider": "gemini" }
  },
  "consumers": {
    "default": { "models": ["*"], "guards": ["mod"] },
    "two": { "models": ["*"], "guards": ["mod", "hook"] },
    "audit": { "models": ["*"], "guards": ["watch"] },
    "lenient": { "models": ["*"], "guards": ["lenient"] },
    "trial": { "models": ["*"], "guards": ["mod"], "mode": "audit" },
    "tiny": { "models": ["*"], "guards": ["tiny"] },
    "users": { "models": ["*"], "guards": ["users"] },
    "none": { "models": ["*"], "guards": [] },
    "tiny-lenient": { "models": ["*"], "guards": ["tiny-lenient"] },
    "tiny-watch": { "models": ["*"], "guards": ["tiny-watch"] },
    "hook-only": { "models": ["*"], "rules": [], "guards": ["hook"] },
    "hook-images": { "models": ["*"], "rules": [], "guards": ["hook"], "opaque_content": "allow" },
    "small-images": { "models": ["*"], "rules": [], "guards": ["small"], "opaque_content": "allow" }
  },
  "rules": [ { "id": "no-email", "detect": "email", "action": "redact" } ],
  "guards": [
    { "id": "mod", "cluster": "guard", "api": "openai_moderation" },
    { "id": "hook", "cluster": "guard", "api": "webhook", "path": "/check", "timeout_ms": 250 },
    { "id": "watch", "cluster": "guard", "api": "webhook", "path": "/check", "action": "audit" },
    { "id": "lenient", "cluster": "guard", "api": "webhook", "path": "/check", "on_error": "allow" },
    { "id": "tiny", "cluster": "guard", "api": "webhook", "path": "/check", "max_text_bytes": 4 },
    { "id": "users", "cluster": "guard", "api": "webhook", "path": "/check", "roles": ["user"] },
    { "id": "tiny-lenient", "cluster": "guard", "api": "webhook", "path": "/check",
      "max_text_bytes": 4, "on_error": "allow" },
    { "id": "tiny-watch", "cluster": "guard", "api": "webhook", "path": "/check",
      "max_text_bytes": 4, "action": "audit" },
    { "id": "small", "cluster": "guard", "api": "webhook", "path": "/check",
      "max_text_bytes": 64, "on_error": "allow" }
  ]
}"#;

const ALLOW: &str = r#"{"results":[{"flagged":false}]}"#;
const FLAG: &str = r#"{"results":[{"flagged":true,"categories":{"hate":true}}]}"#;
const HOOK_ALLOW: &str = r#"{"verdict":"allow"}"#;
const HOOK_BLOCK: &str = r#"{"verdict":"block","reason":"no"}"#;

fn policy() -> Option<Rc<Policy>> {
    Some(Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap()))
}

fn host(consumer: &str) -> FakeHost {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]}"#;
    FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("x-posturio-consumer", consumer),
            ("authorization", "Bearer sk-client"),
        ],
        body,
    )
}

/// Headers and body: the request is decided up to its guards.
fn start(host: &FakeHost) -> (Request<&FakeHost>, Flow) {
    let mut request = Request::new(host, policy(), Rc::default());
    assert_eq!(request.on_request_headers(false), Flow::Pause);
    let flow = request.on_request_body(host.body.len(), true);
    (request, flow)
}

/// Delivers call `token`'s answer.
fn answer(request: &mut Request<&FakeHost>, host: &FakeHost, token: u32, status: u16, body: &str) {
    host.answer_call(status, body);
    request.on_guard_answer(token, 1, body.len());
}

fn code(host: &FakeHost) -> Option<Code> {
    host.replies.borrow().last().map(|reply| reply.code)
}

#[test]
fn a_consumer_without_guards_calls_none() {
    let host = host("none");
    let (_, flow) = start(&host);
    assert_eq!(flow, Flow::Continue);
    assert!(!host.calls.borrow().contains(&"dispatch_http_call"));
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
}

#[test]
fn the_request_waits_and_goes_once_the_guard_allows() {
    let host = host("default");
    let (mut request, flow) = start(&host);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(
        host.header("x-posturio-cluster"),
        None,
        "routed before the guard"
    );
    let calls = host.http_calls.borrow().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, "guard");
    assert_eq!(calls[0].timeout_ms, 1000);
    let body: serde_json::Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"input": "be brief\nhello"}));
    assert!(calls[0]
        .headers
        .iter()
        .all(|(name, value)| name != "authorization" && !value.contains("sk-client")));
    answer(&mut request, &host, 0, 200, ALLOW);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
    assert_eq!(
        host.property_value("posturio.guards").as_deref(),
        Some("mod:allow")
    );
    assert_eq!(
        host.counter("posturio_guard_calls_total.guard=mod;.outcome=allow;"),
        1
    );
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn a_flag_refuses_with_guard_blocked_naming_the_guard_only() {
    let host = host("default");
    let (mut request, _) = start(&host);
    answer(&mut request, &host, 0, 200, FLAG);
    assert_eq!(code(&host), Some(Code::GuardBlocked));
    let reply = host.replies.borrow()[0].clone();
    assert_eq!(reply.status(), 403);
    assert!(reply.message.contains("\"mod\""), "{}", reply.message);
    assert!(!reply.message.contains("hate"), "{}", reply.message);
    assert_eq!(host.resumed.get(), 0);
    assert_eq!(host.header("x-posturio-cluster"), None);
    assert_eq!(
        host.property_value("posturio.guards").as_deref(),
        Some("mod:flagged")
    );
}

#[test]
fn every_guard_must_answer_before_the_request_goes() {
    let host = host("two");
    let (mut request, flow) = start(&host);
    assert_eq!(flow, Flow::Pause);
    assert_eq!(host.http_calls.borrow().len(), 2);
    answer(&mut request, &host, 1, 200, HOOK_ALLOW);
    assert_eq!(host.resumed.get(), 0);
    // An unknown token, or one answered already, changes nothing.
    answer(&mut request, &host, 7, 200, FLAG);
    answer(&mut request, &host, 1, 200, HOOK_BLOCK);
    assert_eq!(host.resumed.get(), 0);
    answer(&mut request, &host, 0, 200, ALLOW);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(
        host.property_value("posturio.guards").as_deref(),
        Some("mod:allow,hook:allow")
    );
}

#[test]
fn a_flag_outranks_a_failure() {
    let host = host("two");
    let (mut request, _) = start(&host);
    answer(&mut request, &host, 0, 500, "{}");
    answer(&mut request, &host, 1, 200, HOOK_BLOCK);
    assert_eq!(code(&host), Some(Code::GuardBlocked));
}

#[test]
fn a_failure_refuses_with_guard_unavailable_unless_on_error_allows() {
    for (status, body) in [(500, ALLOW), (200, "not json"), (200, r#"{"results":[]}"#)] {
        let host = host("default");
        let (mut request, _) = start(&host);
        answer(&mut request, &host, 0, status, body);
        assert_eq!(code(&host), Some(Code::GuardUnavailable), "{status} {body}");
        assert_eq!(host.replies.borrow()[0].status(), 503);
    }
    let host = host("lenient");
    let (mut request, _) = start(&host);
    request.on_guard_answer(0, 0, 0);
    assert_eq!(host.resumed.get(), 1);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(
        host.property_value("posturio.guards").as_deref(),
        Some("lenient:error")
    );
}

#[test]
fn an_audit_guard_or_an_audit_consumer_forwards_a_flag() {
    for (consumer, answer_body) in [("audit", HOOK_BLOCK), ("trial", FLAG)] {
        let host = host(consumer);
        let (mut request, _) = start(&host);
        answer(&mut request, &host, 0, 200, answer_body);
        assert_eq!(host.resumed.get(), 1, "{consumer}");
        assert!(host.replies.borrow().is_empty(), "{consumer}");
        let outcome = request.outcome().unwrap();
        assert_eq!(
            outcome.reply.as_ref().map(|r| r.code),
            Some(Code::GuardBlocked)
        );
        assert_eq!(
            host.property_value("posturio.decision").as_deref(),
            Some("audit")
        );
    }
}

#[test]
fn a_call_that_cannot_start_is_decided_at_once() {
    let mut host = host("default");
    host.fail_dispatch = true;
    let (_, flow) = start(&host);
    assert_eq!(code(&host), Some(Code::GuardUnavailable));
    assert_ne!(flow, Flow::Continue);
    let mut lenient = self::host("lenient");
    lenient.fail_dispatch = true;
    let (_, flow) = start(&lenient);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        lenient.resumed.get(),
        0,
        "nothing paused, nothing to resume"
    );
}

#[test]
fn text_over_the_limit_is_never_sent_and_refuses_whatever_on_error_says() {
    for consumer in ["tiny", "tiny-lenient"] {
        let host = host(consumer);
        let (_, flow) = start(&host);
        assert_ne!(flow, Flow::Continue, "{consumer}");
        assert!(host.http_calls.borrow().is_empty(), "{consumer}");
        assert_eq!(code(&host), Some(Code::BodyTooLarge), "{consumer}");
        let reply = host.replies.borrow()[0].clone();
        assert_eq!(reply.status(), 413);
        assert!(
            reply.message.contains("max_text_bytes (4)"),
            "{}",
            reply.message
        );
        assert_eq!(
            host.property_value("posturio.guards"),
            Some(format!("{consumer}:too_large"))
        );
    }
}

#[test]
fn text_over_the_limit_of_a_guard_on_trial_is_recorded() {
    let host = host("tiny-watch");
    let (_, flow) = start(&host);
    assert_eq!(flow, Flow::Continue);
    assert!(host.replies.borrow().is_empty());
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("audit")
    );
}

#[test]
fn a_guard_limited_to_a_role_is_sent_that_roles_text_only() {
    let host = host("users");
    let (_, flow) = start(&host);
    assert_eq!(flow, Flow::Pause);
    let body: serde_json::Value =
        serde_json::from_slice(&host.http_calls.borrow()[0].body).unwrap();
    assert_eq!(body["text"], "hello");
    assert_eq!(body["consumer"], "users");
    assert_eq!(body["endpoint"], "chat");
}

#[test]
fn a_timed_out_call_is_counted_as_a_timeout() {
    let host = host("two");
    let (mut request, _) = start(&host);
    host.now.set(host.now.get() + 300_000_000);
    request.on_guard_answer(1, 0, 0);
    assert_eq!(
        host.counter("posturio_guard_calls_total.guard=hook;.outcome=timeout;"),
        1
    );
    answer(&mut request, &host, 0, 200, ALLOW);
    assert_eq!(code(&host), Some(Code::GuardUnavailable));
}

#[test]
fn a_guard_is_sent_the_text_as_forwarded_never_what_a_rule_redacts() {
    let body =
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"mail jane@example.com now"}]}"#;
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", "default")],
        body,
    );
    let (mut request, _) = start(&host);
    let sent = String::from_utf8(host.http_calls.borrow()[0].body.clone()).unwrap();
    assert!(!sent.contains("jane"), "{sent}");
    assert!(sent.contains("mail [REDACTED:no-email] now"), "{sent}");
    answer(&mut request, &host, 0, 200, ALLOW);
    let forwarded = String::from_utf8(host.new_body.borrow().clone().unwrap()).unwrap();
    assert!(forwarded.contains("[REDACTED:no-email]"), "{forwarded}");
}

#[path = "guards_text_tests.rs"]
mod text;
