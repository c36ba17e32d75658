//! The core gateway in real Envoy: approvals, routing, rewriting and strict reading, asserted
//! on what the client got back and on what the provider actually received.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{http, Envoy, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
        .to_string()
        .into_bytes()
}

fn gateway() -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    (mock, envoy)
}

fn gateway_with(policy: &str) -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(policy, &mock);
    (mock, envoy)
}

/// Asserts a local reply: its status, its `code`, and that it is in OpenAI's error shape.
fn assert_openai_error(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{response:?}");
    let body = response.json();
    assert_eq!(body["error"]["code"], code, "{response:?}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("x-posturio-code"), Some(code));
}

#[test]
fn allowed_request_reaches_its_provider_unchanged() {
    let (mock, envoy) = gateway();
    let body = br#"{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00"}],"temperature":0.5}"#;
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions?trace=1,2",
        &[JSON],
        body,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["object"], "chat.completion");

    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "openai");
    assert_eq!(upstream.path, "/v1/chat/completions?trace=1,2");
    assert_eq!(
        upstream.body, body,
        "a body that needs no rewrite is forwarded byte for byte"
    );
    assert_eq!(
        upstream.header("x-posturio-cluster"),
        None,
        "the route header stays inside Envoy"
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn denied_requests_never_reach_any_provider() {
    let (mock, envoy) = gateway();
    let port = envoy.port();

    let not_approved = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-4o"));
    assert_openai_error(&not_approved, 403, "model_not_approved");
    let message = not_approved.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("gpt-4o") && message.contains("default"),
        "{message}"
    );
    assert_eq!(not_approved.json()["error"]["param"], "model");

    let unknown = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-5"));
    assert_openai_error(&unknown, 403, "model_not_found");

    let upstream_name = http::post(
        port,
        "/v1/messages",
        &[JSON, ("x-posturio-consumer", "search-team")],
        &chat("claude-sonnet-4-20250514"),
    );
    assert_eq!(
        upstream_name.status, 403,
        "upstream names are not catalogue names"
    );

    let anthropic = http::post(port, "/v1/messages", &[JSON], &chat("claude-sonnet-4"));
    assert_eq!(anthropic.status, 403);
    let body = anthropic.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(body["error"]["code"], "model_not_approved");

    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
}

#[test]
fn spoofed_route_header_is_ignored() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let spoof = ("x-posturio-cluster", "anthropic");

    // Allowed request: routed by the policy, not by the client.
    let response = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, spoof],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(response.status, 200, "{response:?}");
    // A model list, which the gateway answers itself: never routed by the header either.
    let models = http::get(
        port,
        "/v1/models",
        &[spoof, ("x-posturio-cluster", "gemini")],
    );
    assert_eq!(models.status, 200, "{models:?}");
    assert_eq!(models.json()["object"], "list", "{models:?}");
    // Denied request with a spoofed header: still refused, nothing forwarded.
    let denied = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, spoof],
        &chat("gpt-4o"),
    );
    assert_eq!(denied.status, 403);
    // Unknown endpoint with a spoofed header: refused, not routed by the header.
    let unknown = http::request(port, "POST", "/v1/files", &[JSON, spoof], b"{}");
    assert_openai_error(&unknown, 404, "unsupported_endpoint");

    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].listener, "openai", "{:?}", requests[0]);
    assert_eq!(requests[0].header("x-posturio-cluster"), None);
}

#[test]
fn alias_arrives_rewritten_with_a_matching_length() {
    let (mock, envoy) = gateway();
    let body = br#"{"messages":[{"role":"user","content":"fast"}],"model":"fast","n":1}"#;
    let response = http::post(envoy.port(), "/v1/chat/completions", &[JSON], body);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["model"], "gpt-4o-mini");

    // Chunked upload of an alias: the upstream gets one consistent framing.
    let chunked = br#"{"model":"claude-haiku-4","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut raw = b"POST /v1/messages HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in chunked.chunks(20) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let response = http::send_raw(envoy.port(), &raw);
    assert_eq!(response.status, 200, "{response:?}");

    // HTTP/1 trailers: Envoy drops them (enable_trailers is off), and the body is decided
    // as usual, so the request is inspected and routed like any other.
    let mut raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n{\"model\":\"gpt-4o\r\n".to_vec();
    raw.extend_from_slice(b"2\r\n\"}\r\n0\r\nX-Trailer: 1\r\n\r\n");
    let response = http::send_raw(envoy.port(), &raw);
    assert_eq!(response.status, 403, "{response:?}");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let openai = &requests[0];
    assert_eq!(openai.listener, "openai");
    assert_eq!(
        openai.body,
        br#"{"messages":[{"role":"user","content":"fast"}],"model":"gpt-4o-mini","n":1}"#,
        "only the model value changes"
    );
    assert_eq!(
        openai.header("content-length"),
        Some(openai.body.len().to_string().as_str())
    );

    let anthropic = &requests[1];
    assert_eq!(anthropic.listener, "anthropic");
    assert_eq!(anthropic.json()["model"], "claude-haiku-4-5-20251001");
    assert_eq!(
        anthropic.header("content-length"),
        Some(anthropic.body.len().to_string().as_str())
    );
    assert_eq!(anthropic.header("transfer-encoding"), None);
}

#[test]
fn provider_base_path_and_consumer_globs() {
    let (mock, envoy) = gateway();
    let team = ("x-posturio-consumer", "search-team");
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions?x=1",
        &[JSON, team],
        &chat("gemini-flash"),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions",
        &[JSON, team],
        &chat("gpt-4o"),
    );
    assert_eq!(
        response.status, 200,
        "gpt-4o* approves gpt-4o: {response:?}"
    );
    // A family the model's provider does not speak.
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions",
        &[JSON, team],
        &chat("claude-sonnet-4"),
    );
    assert_openai_error(&response, 400, "provider_api_mismatch");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].listener, "gemini");
    assert_eq!(requests[0].path, "/v1beta/openai/chat/completions?x=1");
    assert_eq!(requests[0].json()["model"], "gemini-2.5-flash");
    assert_eq!(requests[1].listener, "openai");
    assert_eq!(requests[1].json()["model"], "gpt-4o");
}

#[test]
fn identity_header_given_twice_is_refused() {
    let (mock, envoy) = gateway();
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions",
        &[
            JSON,
            ("x-posturio-consumer", "default"),
            ("x-posturio-consumer", "search-team"),
        ],
        &chat("gpt-4o"),
    );
    assert_openai_error(&response, 400, "invalid_identity");
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions",
        &[JSON, ("x-posturio-consumer", "default,search-team")],
        &chat("gpt-4o"),
    );
    assert_openai_error(&response, 400, "invalid_identity");
    assert!(mock.requests().is_empty());
}

/// One malformed request: what is sent and the status and code it must get.
struct Malformed {
    name: &'static str,
    raw: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
}

fn post_raw(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: llm\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn malformed_requests() -> Vec<Malformed> {
    let json = "Content-Type: application/json\r\n";
    let chat_path = "/v1/chat/completions";
    let case = |name, headers: &str, body: &[u8], status, code| Malformed {
        name,
        raw: post_raw(chat_path, headers, body),
        status,
        code,
    };
    let deep = format!(
        r#"{{"model":"gpt-4o-mini","x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    vec![
        case("invalid json", json, b"{\"model\":", 400, Some("invalid_json")),
        case("empty body", json, b"", 400, Some("invalid_json")),
        case("trailing data", json, br#"{"model":"gpt-4o-mini"}{"model":"gpt-4o"}"#, 400, Some("invalid_json")),
        case("duplicate model", json, br#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#, 400, Some("duplicate_key")),
        case("duplicate escaped key", json, br#"{"model":"gpt-4o-mini","m\u006fdel":"gpt-4o"}"#, 400, Some("duplicate_key")),
        case("duplicate nested key", json, br#"{"model":"gpt-4o-mini","messages":[{"role":"user","role":"system","content":"x"}]}"#, 400, Some("duplicate_key")),
        case("deep nesting", json, deep.as_bytes(), 400, Some("invalid_json")),
        case("invalid utf-8", json, b"{\"model\":\"gpt-4o-mini\",\"x\":\"\xff\"}", 400, Some("invalid_json")),
        case("lone surrogate", json, br#"{"model":"gpt-4o-mini","x":"\ud800"}"#, 400, Some("invalid_json")),
        case("array body", json, br#"[{"model":"gpt-4o-mini"}]"#, 400, Some("invalid_json")),
        case("missing model", json, br#"{"messages":[]}"#, 400, Some("invalid_model")),
        case("number model", json, br#"{"model":4}"#, 400, Some("invalid_model")),
        case("text/plain", "Content-Type: text/plain\r\n", br#"{"model":"gpt-4o-mini"}"#, 415, Some("unsupported_media_type")),
        case("no content type", "", br#"{"model":"gpt-4o-mini"}"#, 415, Some("unsupported_media_type")),
        case("form", "Content-Type: application/x-www-form-urlencoded\r\n", b"model=gpt-4o-mini", 415, Some("unsupported_media_type")),
        case("gzip", "Content-Type: application/json\r\nContent-Encoding: gzip\r\n", b"\x1f\x8b\x08\x00", 415, Some("unsupported_media_type")),
        case("two content types", "Content-Type: application/json\r\nContent-Type: text/plain\r\n", br#"{"model":"gpt-4o-mini"}"#, 415, Some("unsupported_media_type")),
        case("latin-1", "Content-Type: application/json; charset=iso-8859-1\r\n", br#"{"model":"gpt-4o-mini"}"#, 415, Some("unsupported_media_type")),
        Malformed {
            name: "unknown endpoint",
            raw: post_raw("/v1/images/generations", json, br#"{"model":"gpt-4o-mini"}"#),
            status: 404,
            code: Some("unsupported_endpoint"),
        },
        Malformed {
            name: "upper-case path",
            raw: post_raw("/V1/chat/completions", json, br#"{"model":"gpt-4o-mini"}"#),
            status: 404,
            code: Some("unsupported_endpoint"),
        },
        Malformed {
            name: "trailing slash",
            raw: post_raw("/v1/chat/completions/", json, br#"{"model":"gpt-4o-mini"}"#),
            status: 404,
            code: Some("unsupported_endpoint"),
        },
        Malformed {
            name: "encoded slash (Envoy rejects it first)",
            raw: post_raw("/v1/chat%2Fcompletions", json, br#"{"model":"gpt-4o-mini"}"#),
            status: 400,
            code: None,
        },
    ]
}

#[test]
fn malformed_requests_are_refused_and_the_vm_survives() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    for _round in 0..5 {
        for case in malformed_requests() {
            let response = http::send_raw(port, &case.raw);
            assert_eq!(response.status, case.status, "{}: {response:?}", case.name);
            if let Some(code) = case.code {
                assert_eq!(
                    response.json()["error"]["code"],
                    code,
                    "{}: {response:?}",
                    case.name
                );
            }
        }
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    // Valid requests are still served: no trap took the worker's VM down.
    for _ in 0..20 {
        let response = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-4o-mini"));
        assert_eq!(response.status, 200, "{response:?}");
    }
    assert_eq!(mock.requests().len(), 20);
    envoy.assert_no_wasm_failure();
}

#[test]
fn path_variants_are_routed_as_canonical_or_refused() {
    let (mock, envoy) = gateway();
    let variants = [
        "/v1/./chat/completions",
        "//v1/chat/completions",
        "/v1//chat/completions",
        "/v1/x/../chat/completions",
        "/v1/chat/completions/.",
        "/v1/chat/completions/",
        "/v1/chat/%63ompletions",
        "/v1/chat%2fcompletions",
        "/v1/chat/completions%00",
        "/v1/chat/completions;a=b",
        "/v1/chat/completions#frag",
        "/V1/CHAT/COMPLETIONS",
        "/v1/chat\\completions",
    ];
    for variant in variants {
        for (model, allowed) in [("gpt-4o-mini", true), ("gpt-4o", false)] {
            mock.reset();
            let response = http::send_raw(
                envoy.port(),
                &post_raw(variant, "Content-Type: application/json\r\n", &chat(model)),
            );
            let requests = mock.requests();
            if response.status == 200 {
                assert!(
                    allowed,
                    "{variant} let a denied model through: {response:?}"
                );
                assert_eq!(requests.len(), 1, "{variant}");
                assert_eq!(
                    requests[0].path, "/v1/chat/completions",
                    "{variant} reached the provider unnormalised"
                );
            } else {
                assert!(
                    (400..500).contains(&response.status),
                    "{variant}: {response:?}"
                );
                assert!(
                    requests.is_empty(),
                    "{variant} was refused but forwarded: {requests:?}"
                );
            }
        }
    }
    envoy.assert_no_wasm_failure();
}

#[test]
fn oversized_body_is_refused_without_reading_the_rest() {
    let (mock, envoy) = gateway();
    // Declared over the limit: refused on the headers.
    let declared = 5 * 1024 * 1024;
    let mut conn = common::Connection::open(envoy.port());
    conn.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").as_bytes());
    let response = conn.read_response();
    assert_openai_error(&response, 413, "body_too_large");

    // Chunked, so the size is only known as it arrives: refused once the limit is crossed, while
    // the client has not finished sending (it never sends the final chunk here).
    let mut conn = common::Connection::open(envoy.port());
    conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b' '; 64 * 1024];
    let started = Instant::now();
    for _ in 0..(4 * 1024 * 1024 / chunk.len() + 2) {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if conn.try_send(&piece).is_err() {
            break;
        }
    }
    conn.set_read_timeout(Duration::from_secs(20));
    let response = conn.read_response();
    assert_openai_error(&response, 413, "body_too_large");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Anthropic callers get their own shape.
    let mut conn = common::Connection::open(envoy.port());
    conn.send(format!("POST /v1/messages HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").as_bytes());
    let response = conn.read_response();
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"]["type"], "request_too_large");
    assert!(mock.requests().is_empty());
    envoy.assert_no_wasm_failure();
}

#[test]
fn audit_mode_forwards_what_can_be_routed() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["mode"] = json!("audit");
    let (mock, envoy) = gateway_with(&policy.to_string());
    let port = envoy.port();

    let response = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-4o"));
    assert_eq!(
        response.status, 200,
        "not approved, but audit mode forwards: {response:?}"
    );
    let unknown = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-5"));
    assert_openai_error(&unknown, 403, "model_not_found");
    let malformed = http::post(
        port,
        "/v1/chat/completions",
        &[JSON],
        br#"{"model":"gpt-4o","model":"x"}"#,
    );
    assert_openai_error(&malformed, 400, "duplicate_key");

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["model"], "gpt-4o");
    let logged = envoy.wait_for_log("\"decision\":\"audit\"", Duration::from_secs(5));
    let logged = logged.expect("the audit decision is logged");
    assert!(logged.contains("model_not_approved"), "{logged}");
}

#[test]
fn no_default_consumer_denies_unidentified_requests() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["consumers"]
        .as_object_mut()
        .unwrap()
        .remove("default");
    let (mock, envoy) = gateway_with(&policy.to_string());
    let port = envoy.port();

    let anonymous = http::post(port, "/v1/chat/completions", &[JSON], &chat("gpt-4o-mini"));
    assert_openai_error(&anonymous, 403, "consumer_not_allowed");
    let stranger = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, ("x-posturio-consumer", "nobody")],
        &chat("gpt-4o-mini"),
    );
    assert_openai_error(&stranger, 403, "consumer_not_allowed");
    let team = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, ("x-posturio-consumer", "search-team")],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(team.status, 200, "{team:?}");
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn invalid_policy_is_rejected_with_its_json_path() {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["consumers"]["search-team"]["models"] = json!(["gpt-4o*", "gtp-5*"]);
    let options = common::EnvoyOptions::new(&policy.to_string());
    let error = match Envoy::try_start_with(options) {
        Ok(_) => panic!("Envoy accepted an invalid policy"),
        Err(error) => error,
    };
    assert!(
        error
            .log
            .contains("consumers.search-team.models[1]: \"gtp-5*\" matches no model"),
        "{}",
        error.log
    );
}

/// HTTP/2 trailers after a body: refused, since the held body can no longer be rewritten, in
/// the caller's API shape, and recorded like every refusal, in the request counter and the
/// decision log line.
#[test]
fn trailers_are_refused_in_the_callers_shape_and_recorded() {
    use base64::Engine;
    use std::io::Write;

    let (mock, envoy) = gateway();
    let body = json!({"model": "claude-haiku-4", "max_tokens": 5, "messages": []}).to_string();
    let requests = json!([{
        "method": "POST",
        "path": "/v1/messages",
        "headers": [["content-type", "application/json"], ["anthropic-version", "2023-06-01"]],
        "body_b64": base64::engine::general_purpose::STANDARD.encode(body),
        "trailers": [["x-checksum", "1"]],
    }]);
    let mut child = std::process::Command::new(common::mock::python())
        .arg(common::repo_path("tests/h2c_client.py"))
        .arg(envoy.port().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(requests.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let results: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let result = &results[0];
    assert_eq!(result["status"], 400, "{result}");
    let reply: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(result["body_b64"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["type"], "invalid_request_error", "{reply}");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    let counter = "wasmcustom.posturio_requests_total.consumer=default;.model=none;\
                   .provider=none;.decision=deny;.code=invalid_request;";
    let deadline = Instant::now() + Duration::from_secs(5);
    while envoy.counter(counter) != Some(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        envoy.counter(counter),
        Some(1),
        "{}",
        envoy.stats("posturio")
    );
    let line = envoy
        .wait_for_log("\"code\":\"invalid_request\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no decision logged:\n{}", envoy.log()));
    assert!(line.contains("\"decision\":\"deny\""), "{line}");
}

/// `posturio eval` on a request, from the repository root, with the example policy.
fn eval(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    use std::io::Write;
    let mut args = vec![
        "eval".to_owned(),
        "envoy/policy.json".to_owned(),
        "--path".to_owned(),
        path.to_owned(),
    ];
    for (name, value) in headers {
        args.push("--header".to_owned());
        args.push(format!("{name}: {value}"));
    }
    args.push("-".to_owned());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_posturio"))
        .args(&args)
        .current_dir(common::repo_path("."))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A request by name: path, headers besides the content type, body.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

/// `posturio eval` says what the filter does: the same requests through eval and through
/// Envoy get the same decision, and what eval says is forwarded (cluster, path, body) is what
/// the provider receives.
#[test]
fn eval_says_what_the_filter_does() {
    let (mock, envoy) = gateway();
    let anthropic = ("anthropic-version", "2023-06-01");
    let search = ("x-posturio-consumer", "search-team");
    let mail = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]});
    let cases: Vec<Case> = vec![
        ("alias", "/v1/chat/completions", vec![], chat("fast")),
        (
            "base path",
            "/v1/chat/completions?trace=1",
            vec![search],
            chat("gemini-flash"),
        ),
        (
            "not approved",
            "/v1/messages",
            vec![anthropic],
            chat("claude-sonnet-4"),
        ),
        (
            "redacted",
            "/v1/chat/completions",
            vec![search],
            mail.to_string().into_bytes(),
        ),
        (
            "invalid json",
            "/v1/chat/completions",
            vec![],
            b"{\"model\":".to_vec(),
        ),
        ("unknown endpoint", "/v1/nothing", vec![], chat("fast")),
    ];
    for (name, path, headers, body) in cases {
        let verdict = eval(path, &headers, &body);
        let mut sent = headers.clone();
        sent.push(JSON);
        let before = mock.requests().len();
        let response = http::post(envoy.port(), path, &sent, &body);
        if verdict["decision"] == "deny" {
            assert_eq!(
                u64::from(response.status),
                verdict["status"],
                "{name}: {response:?}"
            );
            assert_eq!(
                response.header("x-posturio-code"),
                verdict["code"].as_str(),
                "{name}"
            );
            assert_eq!(response.json(), verdict["reply"], "{name}");
            assert_eq!(mock.requests().len(), before, "{name}: forwarded");
            continue;
        }
        assert_eq!(response.status, 200, "{name}: {response:?} {verdict}");
        let requests = mock.requests();
        let got = requests.last().unwrap();
        assert_eq!(got.listener, verdict["cluster"], "{name}");
        assert_eq!(got.path, verdict["path"], "{name}");
        let forwarded = match verdict["body_rewritten"].as_bool().unwrap() {
            true => verdict["forwarded_body"].clone(),
            false => serde_json::from_slice(&body).unwrap(),
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&got.body).unwrap(),
            forwarded,
            "{name}"
        );
    }
}
