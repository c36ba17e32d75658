//! The upstream filter against the fake host: each per-attempt step and each way an attempt
//! is refused.

// Test arithmetic (small lengths) cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use std::rc::Rc;

use super::*;
use crate::pipeline::FakeHost;
use crate::policy::plan::{PlanTarget, Targets, PLAN_VERSION};

const BODY: &str = r#"{"model":"gpt-4o","x":1}"#;

fn plan() -> Plan {
    let target = |path: &str, name: &str| PlanTarget {
        path: path.to_owned(),
        texts: vec![format!("\"{name}\"")],
        body_length: Some(BODY.len() - 6 + name.len()),
    };
    Plan {
        v: PLAN_VERSION,
        model: "gpt-4o".to_owned(),
        family: ApiFamily::OpenAi,
        shape: ApiFamily::OpenAi,
        body_length: Some(BODY.len()),
        spans: vec![[9, 17]],
        targets: Targets(vec![
            (
                "openai".to_owned(),
                target("/v1/chat/completions", "gpt-4o"),
            ),
            (
                "azure".to_owned(),
                target("/openai/v1/chat/completions", "gpt-4o-prod"),
            ),
        ]),
    }
}

/// A request as the pool cluster receives it, with `plan` and the endpoint's `provider`.
fn host(plan: Option<&[u8]>, provider: Option<&str>, body: &str) -> FakeHost {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("content-length", &body.len().to_string()),
            ("x-request-id", "req-7"),
        ],
        body,
    );
    if let Some(plan) = plan {
        host.properties
            .borrow_mut()
            .push((PLAN_PROPERTY.into(), plan.to_vec()));
    }
    if let Some(provider) = provider {
        host.properties
            .borrow_mut()
            .push((TARGET_METADATA.join("."), provider.as_bytes().to_vec()));
    }
    host
}

fn run<'a>(host: &'a FakeHost, metrics: &Rc<RefCell<MetricIds>>) -> Attempt<&'a FakeHost> {
    let mut attempt = Attempt::new(host, Rc::clone(metrics));
    if attempt.on_request_headers(host.body.is_empty()) == Flow::Pause {
        attempt.on_request_body(host.body.len(), true);
    }
    attempt
}

fn refused(host: &FakeHost) -> (u16, String) {
    let answers = host.answers.borrow();
    let answer = answers.last().expect("an answer");
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

fn attempts(host: &FakeHost, provider: &str, class: &str) -> u64 {
    host.counter(&format!(
        "posturio_attempts_total.model=gpt-4o;.provider={provider};.class={class};"
    ))
}

#[test]
fn the_second_target_gets_its_path_length_and_model() {
    let plan = plan().to_json().unwrap();
    let host = host(Some(&plan), Some("azure"), BODY);
    run(&host, &Rc::default());
    assert!(host.answers.borrow().is_empty());
    assert_eq!(
        host.new_body.borrow().as_deref(),
        Some(&br#"{"model":"gpt-4o-prod","x":1}"#[..])
    );
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/openai/v1/chat/completions")
    );
    assert_eq!(host.header("content-length").as_deref(), Some("29"));
    assert_eq!(host.header("x-posturio-target").as_deref(), Some("azure"));
}

#[test]
fn the_first_target_costs_no_body_call() {
    let plan = plan().to_json().unwrap();
    let host = host(Some(&plan), Some("openai"), BODY);
    run(&host, &Rc::default());
    assert!(host.answers.borrow().is_empty());
    let calls = host.calls.borrow();
    assert!(!calls.contains(&"replace_request_body"), "{calls:?}");
}

#[test]
fn without_a_readable_plan_the_attempt_is_refused_500() {
    for plan in [None, Some(&b"{not json"[..]), Some(&br#"{"v":2}"#[..])] {
        let host = host(plan, Some("openai"), BODY);
        let flow = Attempt::new(&host, Rc::default()).on_request_headers(false);
        assert_eq!(flow, Flow::Pause);
        let (status, body) = refused(&host);
        assert_eq!(status, 500);
        assert!(body.contains("internal_error"), "{body}");
        assert!(
            body.contains("the gateway's routing for this request is misconfigured"),
            "{body}"
        );
        assert!(body.contains("quote request id req-7"), "{body}");
        assert!(!body.contains("posturio_plan"), "{body}");
        assert_eq!(
            host.property_value("posturio_refused").as_deref(),
            Some("internal_error")
        );
        assert!(host.header("x-posturio-target").is_none());
        assert_eq!(
            host.counter("posturio_attempts_total.model=none;.provider=none;.class=refused;"),
            1
        );
    }
}

#[test]
fn without_a_plan_the_refusal_takes_the_shape_the_path_names() {
    for (path, headers, shape) in [
        ("/v1/messages", &[][..], ApiFamily::Anthropic),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            &[][..],
            ApiFamily::Gemini,
        ),
        (
            "/model/anthropic.claude-v2/invoke",
            &[][..],
            ApiFamily::Bedrock,
        ),
        ("/v1/chat/completions", &[][..], ApiFamily::OpenAi),
        (
            "/somewhere/else",
            &[("anthropic-version", "2023-06-01")][..],
            ApiFamily::Anthropic,
        ),
    ] {
        let host = FakeHost::request("POST", path, headers, BODY);
        Attempt::new(&host, Rc::default()).on_request_headers(false);
        let replies = host.replies.borrow();
        assert_eq!(replies.len(), 1, "{path}");
        assert_eq!(replies[0].shape, shape, "{path}");
        assert_eq!(replies[0].status(), 500, "{path}");
    }
}

#[test]
fn an_endpoint_naming_no_target_of_the_plan_is_refused_502() {
    let plan = plan().to_json().unwrap();
    for provider in [None, Some("anthropic\n\"x")] {
        let host = host(Some(&plan), provider, BODY);
        run(&host, &Rc::default());
        let (status, body) = refused(&host);
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("internal_error"));
        assert!(
            body.contains("the gateway's routing for model gpt-4o is misconfigured"),
            "{body}"
        );
        // Neither the endpoint's provider value nor the metadata key reaches the client.
        assert!(!body.contains("anthropic"), "{body}");
        assert!(!body.contains("filter_metadata"), "{body}");
        assert!(!body.contains('\n'));
        assert_eq!(
            host.property_value("posturio_refused").as_deref(),
            Some("internal_error")
        );
        assert!(host.header(":path").as_deref() == Some("/v1/chat/completions"));
    }
}

#[test]
fn a_body_that_does_not_match_the_plan_is_never_sent() {
    let plan = plan().to_json().unwrap();
    for body in [
        r#"{"model":"gpt-4o","x":12}"#,
        r#"{"model":"gpt-4x","x":1}"#,
    ] {
        let host = host(Some(&plan), Some("azure"), body);
        let metrics = Rc::default();
        run(&host, &metrics);
        let (status, reply) = refused(&host);
        assert_eq!(status, 500, "{body}");
        assert!(reply.contains("is misconfigured"), "{reply}");
        assert!(host.new_body.borrow().is_none());
        assert_eq!(attempts(&host, "azure", "refused"), 1);
    }
}

#[test]
fn a_header_only_request_continues_with_its_headers_set() {
    let mut plan = plan();
    plan.body_length = None;
    plan.spans.clear();
    for (_, target) in &mut plan.targets.0 {
        target.texts.clear();
        target.body_length = None;
    }
    let json = plan.to_json().unwrap();
    let host = host(Some(&json), Some("azure"), "");
    let flow = Attempt::new(&host, Rc::default()).on_request_headers(true);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/openai/v1/chat/completions")
    );
    assert!(!host.calls.borrow().contains(&"request_body"));

    // A plan with a body and a request without one do not agree.
    let json = self::plan().to_json().unwrap();
    let bodiless = self::host(Some(&json), Some("azure"), "");
    Attempt::new(&bodiless, Rc::default()).on_request_headers(true);
    assert_eq!(refused(&bodiless).0, 500);
}

#[test]
fn every_attempt_removes_every_credential_and_counts_itself() {
    let plan = plan().to_json().unwrap();
    let mut host = host(Some(&plan), Some("openai"), BODY);
    host.upstream_headers = vec![(":status".into(), b"429".to_vec())];
    host.headers
        .borrow_mut()
        .push(("x_api_key".into(), b"client".to_vec()));
    let metrics = Rc::default();
    let mut first = run(&host, &metrics);
    assert!(host.header("x_api_key").is_none());
    // The credential injector adds the first target's key to the shared header map, and the
    // attempt is answered 429.
    host.headers
        .borrow_mut()
        .push(("authorization".into(), b"Bearer sk-openai".to_vec()));
    first.on_response_headers();
    assert_eq!(attempts(&host, "openai", "429"), 1);
    first.on_done();
    assert_eq!(
        host.property_value("posturio_attempts").as_deref(),
        Some("1")
    );

    // The retry: the same header map, the same filter state, another endpoint.
    host.properties
        .borrow_mut()
        .push((TARGET_METADATA.join("."), b"azure".to_vec()));
    let mut second = run(&host, &metrics);
    assert!(
        host.header("authorization").is_none(),
        "openai's key is gone"
    );
    assert_eq!(host.header("x-posturio-target").as_deref(), Some("azure"));
    assert_eq!(
        host.property_value("posturio_attempts").as_deref(),
        Some("2")
    );
    second.on_done();
    assert_eq!(attempts(&host, "azure", "reset"), 1);
}

#[test]
fn the_answer_names_the_serving_provider_and_its_class() {
    let plan = plan().to_json().unwrap();
    let mut host = host(Some(&plan), Some("azure"), BODY);
    host.upstream_headers = vec![(":status".into(), b"429".to_vec())];
    let metrics = Rc::default();
    let mut attempt = run(&host, &metrics);
    attempt.on_response_headers();
    attempt.on_done();
    assert_eq!(
        host.property_value("posturio_served").as_deref(),
        Some("azure")
    );
    assert_eq!(attempts(&host, "azure", "429"), 1);
    assert_eq!(attempts(&host, "azure", "reset"), 0);
}

#[test]
fn status_classes() {
    for (status, class) in [
        (200, "2xx"),
        (301, "3xx"),
        (404, "4xx"),
        (429, "429"),
        (503, "5xx"),
        (0, "5xx"),
    ] {
        assert_eq!(status_class(status), class, "{status}");
    }
}

#[test]
fn a_retry_removes_every_header_an_earlier_attempt_added() {
    let plan = plan().to_json().unwrap();
    let mut host = host(Some(&plan), Some("other"), BODY);
    host.upstream_headers = vec![(":status".into(), b"429".to_vec())];
    host.headers
        .borrow_mut()
        .insert(0, (":authority".into(), b"gateway.example".to_vec()));
    host.headers
        .borrow_mut()
        .push(("x-client-trace".into(), b"t-1".to_vec()));
    // The client sends a header under the name an injector writes a key to.
    host.headers
        .borrow_mut()
        .push(("x-openai-secret".into(), b"client-value".to_vec()));
    let metrics = Rc::default();
    host.properties
        .borrow_mut()
        .push((TARGET_METADATA.join("."), b"openai".to_vec()));
    let mut first = run(&host, &metrics);
    assert_eq!(
        host.property_value("posturio_headers").as_deref(),
        Some(
            r#"{"authority":"gateway.example","headers":[["content-type",["application/json"]],["content-length",["24"]],["x-request-id",["req-7"]],["x-client-trace",["t-1"]],["x-openai-secret",["client-value"]]]}"#
        )
    );
    // After this filter: an injector's key under a name that is no credential header, and
    // Envoy's host rewrite, with its record of the host it replaced.
    host.headers.borrow_mut().extend([
        ("x-other-token".to_owned(), b"Bearer sk-other".to_vec()),
        (
            "x-envoy-original-host".to_owned(),
            b"gateway.example".to_vec(),
        ),
    ]);
    for (name, value) in host.headers.borrow_mut().iter_mut() {
        if name == ":authority" {
            *value = b"openai.example".to_vec();
        }
        // The injector overwrites the client's header of that name with OpenAI's key.
        if name == "x-openai-secret" {
            *value = b"Bearer sk-openai".to_vec();
        }
    }
    first.on_response_headers();
    first.on_done();

    host.properties
        .borrow_mut()
        .push((TARGET_METADATA.join("."), b"azure".to_vec()));
    run(&host, &metrics);
    assert!(host.answers.borrow().is_empty());
    assert!(host.header("x-other-token").is_none());
    assert!(host.header("x-envoy-original-host").is_none());
    // What the client sent and the attempt's own headers stay.
    assert_eq!(host.header("x-client-trace").as_deref(), Some("t-1"));
    assert_eq!(host.header("x-request-id").as_deref(), Some("req-7"));
    // A header an injector overwrote gets the client's value back: OpenAI's key never
    // reaches the next target under a name the client also sent.
    assert_eq!(
        host.header("x-openai-secret").as_deref(),
        Some("client-value")
    );
    assert_eq!(
        host.header(":authority").as_deref(),
        Some("gateway.example"),
        "the client's host, for Envoy to rewrite to this target's"
    );
    assert_eq!(host.header("x-posturio-target").as_deref(), Some("azure"));
    assert_eq!(host.header("content-length").as_deref(), Some("29"));
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/openai/v1/chat/completions")
    );
}

#[test]
fn a_retry_without_the_first_attempts_record_is_refused() {
    let plan = plan().to_json().unwrap();
    let host = host(Some(&plan), Some("azure"), BODY);
    host.properties
        .borrow_mut()
        .push(("posturio_attempts".into(), b"1".to_vec()));
    run(&host, &Rc::default());
    assert_eq!(refused(&host).0, 500);
    assert_eq!(attempts(&host, "azure", "refused"), 1);
}
