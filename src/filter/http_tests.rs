//! The HTTP state machine against a fake host: what it reads, sets and answers, per callback.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::types::Action;

use super::*;

/// Records every call; serves canned headers and body; can be told to fail.
#[derive(Default)]
struct FakeHost {
    headers: RefCell<Vec<(String, Vec<u8>)>>,
    body: Vec<u8>,
    replies: RefCell<Vec<Reply>>,
    new_body: RefCell<Option<Vec<u8>>>,
    fail_headers: bool,
    properties: RefCell<Vec<(String, Vec<u8>)>>,
    response_headers: RefCell<Vec<(String, String)>>,
}

impl FakeHost {
    fn request(method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Self {
        let mut headers = vec![
            (":method".to_string(), method.as_bytes().to_vec()),
            (":path".to_string(), path.as_bytes().to_vec()),
            ("content-type".to_string(), b"application/json".to_vec()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        FakeHost {
            headers: RefCell::new(headers),
            body: body.as_bytes().to_vec(),
            ..FakeHost::default()
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .borrow()
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }
}

impl Host for &FakeHost {
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        if self.fail_headers {
            return Err(HostError {
                call: "get_map_bytes",
                status: "InternalFailure".into(),
            });
        }
        Ok(self.headers.borrow().clone())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(key, _)| key != name);
        if let Some(value) = value {
            headers.push((name.to_string(), value.as_bytes().to_vec()));
        }
        Ok(())
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(self.body[..size.min(self.body.len())].to_vec())
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        assert_eq!(size, self.body.len(), "the whole body is replaced");
        *self.new_body.borrow_mut() = Some(body.to_vec());
        Ok(())
    }

    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        self.replies.borrow_mut().push(reply.clone());
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .properties
            .borrow()
            .iter()
            .find(|(key, _)| key == &path.join("."))
            .map(|(_, value)| value.clone()))
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.properties
            .borrow_mut()
            .push((path.join("."), value.to_vec()));
        Ok(())
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.response_headers
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
        Ok(())
    }
}

fn policy() -> Option<Rc<Policy>> {
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/policy.json")).unwrap();
    Some(Rc::new(Policy::from_json(&text).unwrap()))
}

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Headers, then the whole body in one callback.
fn run(host: &FakeHost) -> (Action, Action) {
    let mut filter = HttpFilter::new(host, policy());
    let on_headers = filter.on_request_headers(host.body.is_empty());
    let on_body = filter.on_request_body(host.body.len(), true);
    (on_headers, on_body)
}

#[test]
fn allowed_request_is_routed_after_the_body() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(run(&host), (Action::Pause, Action::Continue));
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
    let mut filter = HttpFilter::new(&host, policy());
    assert_eq!(filter.on_request_headers(true), Action::Pause);
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
    assert_eq!(run(&host), (Action::Pause, Action::Continue));
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
    assert_eq!(run(&host), (Action::Pause, Action::Pause));
    assert_eq!(host.header("x-posturio-cluster"), None);
    let replies = host.replies.borrow();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, Code::ModelNotApproved);
}

#[test]
fn body_is_buffered_until_its_end() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = HttpFilter::new(&host, policy());
    assert_eq!(filter.on_request_headers(false), Action::Pause);
    assert_eq!(filter.on_request_body(10, false), Action::Pause);
    assert_eq!(host.header("x-posturio-cluster"), None);
    assert_eq!(
        filter.on_request_body(host.body.len(), true),
        Action::Continue
    );
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
}

#[test]
fn oversized_body_is_refused_before_its_end() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = HttpFilter::new(&host, policy());
    filter.on_request_headers(false);
    assert_eq!(
        filter.on_request_body(4 * 1024 * 1024 + 1, false),
        Action::Pause
    );
    assert_eq!(host.replies.borrow()[0].code, Code::BodyTooLarge);
    // Later callbacks for the same request pass through without a second reply.
    assert_eq!(
        filter.on_request_body(5 * 1024 * 1024, true),
        Action::Continue
    );
    assert_eq!(host.replies.borrow().len(), 1);
}

#[test]
fn trailers_are_refused() {
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    let mut filter = HttpFilter::new(&host, policy());
    filter.on_request_headers(false);
    filter.on_request_body(host.body.len(), false);
    assert_eq!(filter.on_request_trailers(), Action::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::InvalidRequest);
    assert_eq!(host.header("x-posturio-cluster"), None);
}

#[test]
fn no_policy_refuses_everything() {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-cluster", "openai")],
        &chat("gpt-4o-mini"),
    );
    let mut filter = HttpFilter::new(&host, None);
    assert_eq!(filter.on_request_headers(false), Action::Pause);
    assert_eq!(host.replies.borrow()[0].code, Code::InternalError);
    assert_eq!(host.header("x-posturio-cluster"), None);
}

#[test]
fn host_failure_refuses() {
    let host = FakeHost {
        fail_headers: true,
        ..FakeHost::request("POST", "/v1/chat/completions", &[], &chat("gpt-4o-mini"))
    };
    let mut filter = HttpFilter::new(&host, policy());
    assert_eq!(filter.on_request_headers(false), Action::Pause);
    assert_eq!(host.replies.borrow()[0].status(), 500);
}

#[test]
fn bodiless_passthrough_is_routed_on_headers() {
    let host = FakeHost::request("GET", "/v1/models", &[], "");
    let mut filter = HttpFilter::new(&host, policy());
    assert_eq!(filter.on_request_headers(true), Action::Continue);
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
}

fn run_with(host: &FakeHost, policy: &str) -> (Action, Action) {
    let mut filter = HttpFilter::new(host, policy_with(policy));
    let on_headers = filter.on_request_headers(host.body.is_empty());
    let on_body = filter.on_request_body(host.body.len(), true);
    filter.on_response_headers();
    (on_headers, on_body)
}

#[test]
fn decision_goes_to_filter_state_and_debug_header() {
    let body =
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane@example.com"}]}"#;
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], body);
    assert_eq!(
        run_with(&host, METADATA_POLICY),
        (Action::Pause, Action::Continue)
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
