//! Model lists through the driver, over the fake host: answered by the gateway at the
//! headers, recorded as allowed, never forwarded.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::pipeline::fake_host::Sent;
use crate::pipeline::{FakeHost, Flow, Request};
use crate::policy::{Code, Policy};

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "google": { "cluster": "google", "api": "gemini" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "gpt-4o-mini": { "provider": "openai" },
    "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
    "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
    "gemini-flash": { "provider": "google", "upstream_model": "gemini-2.5-flash" }
  },
  "consumers": {
    "default": { "models": ["gpt-4o-mini"] },
    "search": { "models": ["gpt-4o*", "fast", "claude-*", "gemini-*"] }
  },
  "passthrough": [ { "method": "GET", "path_prefix": "/v1/models", "provider": "openai" } ]
}"#;

/// A bodiless GET through the driver: what the headers callback returned, and the host.
fn get(policy: &str, path: &str, extra: &[(&str, &str)]) -> (Flow, FakeHost) {
    let mut headers = vec![
        (":method".to_owned(), b"GET".to_vec()),
        (":path".to_owned(), path.as_bytes().to_vec()),
        ("x-posturio-cluster".to_owned(), b"anthropic".to_vec()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())),
    );
    let host = FakeHost::new(headers, Vec::new());
    let policy = Rc::new(Policy::from_json(policy.as_bytes()).unwrap());
    let flow = Request::new(&host, Some(policy), Rc::default()).on_request_headers(true);
    (flow, host)
}

fn only_answer(host: &FakeHost) -> Sent {
    let answers = host.answers.borrow();
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers[0].clone()
}

fn json_body(sent: &Sent) -> Value {
    serde_json::from_slice(&sent.body).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_list_is_answered_at_the_headers_and_never_forwarded() {
    let (flow, host) = get(POLICY, "/v1/models?limit=5", &[]);
    assert_eq!(flow, Flow::Pause);
    let sent = only_answer(&host);
    assert_eq!(sent.status, 200);
    assert_eq!(
        sent.headers,
        vec![("content-type".to_owned(), "application/json".to_owned())]
    );
    assert_eq!(
        json_body(&sent),
        json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}
        ]})
    );
    assert!(host.replies.borrow().is_empty(), "no refusal");
    // The client's route header is gone, and none was set: nothing is forwarded.
    assert_eq!(host.header("x-posturio-cluster"), None);
    assert!(!host.calls.borrow().contains(&"request_body"));
}

#[test]
fn a_list_is_recorded_as_allowed_without_a_provider() {
    let (_, host) = get(POLICY, "/v1/models", &[("x-team", "search")]);
    assert_eq!(
        host.counter(
            "posturio_requests_total.consumer=search;.model=none;.provider=none;\
             .decision=allow;.code=none;"
        ),
        1,
        "{:?}",
        host.counters.borrow()
    );
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("allow")
    );
    assert_eq!(
        host.property_value("posturio.consumer").as_deref(),
        Some("search")
    );
    assert_eq!(
        host.property_value("posturio.api").as_deref(),
        Some("openai")
    );
    assert_eq!(host.property_value("posturio.provider"), None);
    assert_eq!(host.property_value("posturio.code"), None);
}

#[test]
fn two_consumers_see_their_own_lists() {
    let (_, default) = get(POLICY, "/v1/models", &[]);
    let (_, search) = get(POLICY, "/v1/models", &[("x-team", "search")]);
    assert_eq!(ids(&json_body(&only_answer(&default))), ["gpt-4o-mini"]);
    assert_eq!(
        ids(&json_body(&only_answer(&search))),
        ["fast", "gpt-4o", "gpt-4o-mini"]
    );
}

#[test]
fn anthropic_version_asks_for_anthropics_list() {
    let (_, host) = get(
        POLICY,
        "/v1/models?limit=20",
        &[("x-team", "search"), ("anthropic-version", "2023-06-01")],
    );
    let list = json_body(&only_answer(&host));
    assert_eq!(ids(&list), ["claude-sonnet-4"]);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "claude-sonnet-4");
}

#[test]
fn gemini_lists_its_own_models() {
    let (_, host) = get(POLICY, "/v1beta/models", &[("x-team", "search")]);
    assert_eq!(
        json_body(&only_answer(&host))["models"][0]["name"],
        "models/gemini-flash"
    );
}

#[test]
fn one_model_is_recorded_with_its_name() {
    let (_, host) = get(POLICY, "/v1/models/fast", &[("x-team", "search")]);
    let sent = only_answer(&host);
    assert_eq!(sent.status, 200);
    assert_eq!(json_body(&sent)["id"], "fast");
    assert_eq!(
        host.property_value("posturio.model").as_deref(),
        Some("fast")
    );
    assert_eq!(host.property_value("posturio.upstream_model"), None);
}

#[test]
fn an_unknown_id_is_recorded_shortened() {
    let long = "m".repeat(5_000);
    let (_, host) = get(POLICY, &format!("/v1/models/{long}"), &[]);
    assert_eq!(only_answer(&host).status, 404);
    let recorded = host.property_value("posturio.model").unwrap_or_default();
    assert!(
        recorded.starts_with("mmm") && recorded.len() < 100,
        "{}",
        recorded.len()
    );
}

#[test]
fn another_consumers_model_is_refused_as_not_found() {
    let (flow, host) = get(POLICY, "/v1/models/gpt-4o", &[]);
    assert_eq!(flow, Flow::Pause);
    let sent = only_answer(&host);
    assert_eq!(sent.status, 404);
    assert!(sent
        .headers
        .contains(&("x-posturio-code".to_owned(), "model_not_found".to_owned())));
    assert_eq!(host.replies.borrow()[0].code, Code::ModelNotInList);
    assert_eq!(
        host.property_value("posturio.decision").as_deref(),
        Some("deny")
    );
    assert_eq!(host.header("x-posturio-cluster"), None);
}

#[test]
fn without_a_consumer_there_is_no_list_even_in_audit_mode() {
    let no_default = POLICY.replace(r#""default": { "models": ["gpt-4o-mini"] },"#, "");
    for policy in [
        no_default.clone(),
        no_default.replacen('{', r#"{ "mode": "audit","#, 1),
    ] {
        let (_, host) = get(&policy, "/v1/models", &[]);
        assert_eq!(only_answer(&host).status, 403);
        assert_eq!(host.replies.borrow()[0].code, Code::ConsumerNotAllowed);
        assert_eq!(host.header("x-posturio-cluster"), None);
    }
}

#[test]
fn a_list_with_a_body_is_no_list() {
    let host = FakeHost::request("GET", "/v1/models", &[], "{}");
    let policy = Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap());
    let mut request = Request::new(&host, Some(policy), Rc::default());
    assert_eq!(request.on_request_headers(false), Flow::Pause);
    assert!(host.answers.borrow().is_empty(), "held for its body");
    request.on_request_body(2, true);
    // Nor is it forwarded by the passthrough that covers it: that would be the provider's list.
    assert_eq!(host.replies.borrow()[0].code, Code::UnsupportedEndpoint);
}

#[test]
fn head_is_not_a_list() {
    let mut headers = vec![
        (":method".to_owned(), b"HEAD".to_vec()),
        (":path".to_owned(), b"/v1/models".to_vec()),
    ];
    headers.push(("x-team".to_owned(), b"search".to_vec()));
    let host = FakeHost::new(headers, Vec::new());
    let policy = Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap());
    Request::new(&host, Some(policy), Rc::default()).on_request_headers(true);
    assert_eq!(host.replies.borrow()[0].code, Code::UnsupportedEndpoint);
}
