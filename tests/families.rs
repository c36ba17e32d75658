//! The API families that name the model in the path, through real Envoy: Gemini
//! (`/v1beta/models/{model}:generateContent`), Azure OpenAI
//! (`/openai/deployments/{deployment}/...`) and Bedrock (`/model/{modelId}/converse`, the id
//! percent-decoded). Each is routed to its provider's cluster with the path rewritten to the
//! upstream name, refused in its own error shape, and inspected where its text lives. Every
//! test asserts on what the provider actually received.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{http, Envoy, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");
const RESEARCH: (&str, &str) = ("x-posturio-consumer", "research");
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

/// One provider per family, on the mock's three clusters (Bedrock on `anthropic`'s).
const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "vertex": { "cluster": "gemini", "api": "gemini" },
    "azure": { "cluster": "openai", "api": "azure_openai" },
    "bedrock": { "cluster": "anthropic", "api": "bedrock" }
  },
  "models": {
    "gemini-flash": { "provider": "vertex", "upstream_model": "gemini-2.5-flash" },
    "gemini-2.5-pro": { "provider": "vertex" },
    "prod-4o": { "provider": "azure", "upstream_model": "gpt-4o-prod" },
    "gpt-4o-dev": { "provider": "azure" },
    "anthropic.claude-3-5-sonnet-20240620-v1:0": { "provider": "bedrock" },
    "claude-bedrock": { "provider": "bedrock", "upstream_model": "anthropic.claude-3-5-haiku-20241022-v1:0" },
    "anthropic.claude-3-opus-20240229-v1:0": { "provider": "bedrock" }
  },
  "consumers": {
    "default": { "models": ["gemini-flash", "prod-4o", "anthropic.claude-3-5-sonnet-*", "claude-bedrock"] },
    "research": { "models": ["*"] }
  },
  "rules": [
    { "id": "no-secrets", "detect": "secrets", "action": "block" },
    { "id": "no-email", "detect": "email", "action": "redact" }
  ]
}"#;

fn gateway() -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(POLICY, &mock);
    (mock, envoy)
}

/// A local reply: status, `x-posturio-code`, JSON content type.
fn assert_refused(response: &Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some(code),
        "{response:?}"
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

/// Google's error shape: `{"error": {"code": <status>, "message", "status", ...}}`.
fn assert_google_error(response: &Response, status: u16, google_status: &str, code: &str) {
    let body = assert_refused(response, status, code);
    let error = &body["error"];
    assert_eq!(error["code"], status, "{body:#}");
    assert_eq!(error["status"], google_status, "{body:#}");
    assert_eq!(error["reason"], code, "{body:#}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// OpenAI's error shape, which Azure OpenAI shares.
fn assert_openai_error(response: &Response, status: u16, code: &str) {
    let body = assert_refused(response, status, code);
    assert_eq!(body["error"]["code"], code, "{body:#}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["type"].is_string(), "{body:#}");
}

/// Bedrock's: `{"message": ...}` and the error type in `x-amzn-errortype`.
fn assert_bedrock_error(response: &Response, status: u16, error_type: &str, code: &str) -> String {
    let body = assert_refused(response, status, code);
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some(error_type),
        "{response:?}"
    );
    assert_eq!(body["code"], code, "{body:#}");
    body["message"].as_str().unwrap().to_owned()
}

fn gemini_body(text: &str) -> String {
    json!({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64}
    })
    .to_string()
}

fn azure_body(text: &str) -> String {
    json!({"messages": [{"role": "user", "content": text}], "max_tokens": 16}).to_string()
}

fn converse_body(text: &str) -> String {
    json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 64}
    })
    .to_string()
}

#[test]
fn gemini_routes_by_the_model_in_the_path() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let body = gemini_body("Say hi");

    // An alias: the path is rewritten to the upstream name, the query (an API key) kept, the
    // body forwarded byte for byte.
    let response = http::post(
        port,
        "/v1beta/models/gemini-flash:generateContent?key=client-key",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let reply = response.json();
    assert_eq!(
        reply["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from the mock gemini provider."
    );
    assert_eq!(reply["modelVersion"], "gemini-2.5-flash");
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "gemini");
    assert_eq!(upstream.method, "POST");
    assert_eq!(
        upstream.path,
        "/v1beta/models/gemini-2.5-flash:generateContent?key=client-key"
    );
    assert_eq!(upstream.text(), body);
    assert_eq!(upstream.header("x-posturio-cluster"), None);

    // Streaming, and the v1 path.
    mock.reset();
    let response = http::post(
        port,
        "/v1beta/models/gemini-flash:streamGenerateContent?alt=sse",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert!(response.text().contains("data: {"), "{response:?}");
    let response = http::post(
        port,
        "/v1/models/gemini-flash:generateContent",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    // A catalogue name that is the provider's own: the path is left as sent.
    let response = http::post(
        port,
        "/v1beta/models/gemini-2.5-pro:generateContent",
        &[JSON, RESEARCH],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let paths: Vec<(String, String)> = mock
        .requests()
        .into_iter()
        .map(|r| (r.listener.clone(), r.path.clone()))
        .collect();
    let expected = [
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/v1/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-pro:generateContent",
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|p| ("gemini".to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(paths, expected);

    // Refusals, in Google's shape.
    mock.reset();
    let not_approved = http::post(
        port,
        "/v1beta/models/gemini-2.5-pro:generateContent",
        &[JSON],
        body.as_bytes(),
    );
    assert_google_error(
        &not_approved,
        403,
        "PERMISSION_DENIED",
        "model_not_approved",
    );
    let message = not_approved.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("gemini-2.5-pro") && message.contains("default"),
        "{message}"
    );
    let unknown = http::post(
        port,
        "/v1beta/models/gemini-ultra:generateContent",
        &[JSON],
        body.as_bytes(),
    );
    assert_google_error(&unknown, 403, "PERMISSION_DENIED", "model_not_found");
    let mismatch = http::post(
        port,
        "/v1beta/models/prod-4o:generateContent",
        &[JSON],
        body.as_bytes(),
    );
    assert_google_error(&mismatch, 400, "INVALID_ARGUMENT", "provider_api_mismatch");
    let invalid = http::post(
        port,
        "/v1beta/models/gemini-flash:generateContent",
        &[JSON],
        b"{\"contents\": [",
    );
    assert_google_error(&invalid, 400, "INVALID_ARGUMENT", "invalid_json");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    envoy.assert_no_wasm_failure();
}

#[test]
fn azure_deployment_is_the_model() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let body = azure_body("Say hi");
    let azure_key = ("api-key", "azure-client-key");

    let response = http::post(
        port,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
        &[JSON, azure_key],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["object"], "chat.completion");
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "openai");
    assert_eq!(
        upstream.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(upstream.text(), body, "the body has no model to rewrite");
    assert_eq!(upstream.header("api-key"), Some("azure-client-key"));

    // The deployment named as the provider knows it: the path is left as sent.
    mock.reset();
    let response = http::post(
        port,
        "/openai/deployments/gpt-4o-dev/chat/completions?api-version=2024-10-21",
        &[JSON, RESEARCH],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        mock.single_request().path,
        "/openai/deployments/gpt-4o-dev/chat/completions?api-version=2024-10-21"
    );

    // Refusals, in OpenAI's shape (what Azure's SDKs parse).
    mock.reset();
    let not_approved = http::post(
        port,
        "/openai/deployments/gpt-4o-dev/chat/completions?api-version=2024-10-21",
        &[JSON],
        body.as_bytes(),
    );
    assert_openai_error(&not_approved, 403, "model_not_approved");
    let error = &not_approved.json()["error"];
    assert_eq!(error["type"], "permission_error");
    assert_eq!(error["param"], "model");
    assert!(
        error["message"].as_str().unwrap().contains("gpt-4o-dev"),
        "{error}"
    );
    let unknown = http::post(
        port,
        "/openai/deployments/nope/chat/completions?api-version=2024-10-21",
        &[JSON],
        body.as_bytes(),
    );
    assert_openai_error(&unknown, 403, "model_not_found");
    let mismatch = http::post(
        port,
        "/openai/deployments/gemini-flash/chat/completions",
        &[JSON],
        body.as_bytes(),
    );
    assert_openai_error(&mismatch, 400, "provider_api_mismatch");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    envoy.assert_no_wasm_failure();
}

#[test]
fn bedrock_model_id_is_decoded_before_lookup() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let body = converse_body("Say hi");

    // The id as the AWS SDKs send it, `:` percent-encoded; a catalogue name with no
    // upstream_model: forwarded exactly as sent.
    let encoded = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    let response = http::post(port, encoded, &[JSON], body.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    let reply = response.json();
    assert_eq!(
        reply["output"]["message"]["content"][0]["text"],
        "Hello from the mock anthropic provider."
    );
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "anthropic");
    assert_eq!(upstream.path, encoded);
    assert_eq!(upstream.text(), body);

    // The same id unencoded, and lower-case hex: the same model.
    mock.reset();
    for path in [
        "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse",
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3a0/converse",
    ] {
        let response = http::post(port, path, &[JSON], body.as_bytes());
        assert_eq!(response.status, 200, "{path}: {response:?}");
    }
    // An alias: the upstream id is written into the path, encoded. converse-stream and
    // invoke are routed too (the mock answers converse-stream; it has no plain invoke
    // without `x-mock-bedrock-cache`: its 404 comes back as is).
    let response = http::post(
        port,
        "/model/claude-bedrock/converse",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let response = http::post(
        port,
        "/model/claude-bedrock/converse-stream",
        &[JSON],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let invoke = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16,
                        "messages": [{"role": "user", "content": "Say hi"}]})
    .to_string();
    let response = http::post(
        port,
        "/model/claude-bedrock/invoke",
        &[JSON],
        invoke.as_bytes(),
    );
    assert_eq!(response.status, 404, "the mock's own 404: {response:?}");
    let requests = mock.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse",
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3a0/converse",
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke",
        ]
    );
    assert!(requests.iter().all(|r| r.listener == "anthropic"));
    assert_eq!(requests[2].text(), body);
    assert_eq!(requests[4].text(), invoke);

    // Refusals: `{"message"}` and `x-amzn-errortype`, naming the decoded id.
    mock.reset();
    let not_approved = http::post(
        port,
        "/model/anthropic.claude-3-opus-20240229-v1%3A0/converse",
        &[JSON],
        body.as_bytes(),
    );
    let message = assert_bedrock_error(
        &not_approved,
        403,
        "AccessDeniedException",
        "model_not_approved",
    );
    assert!(
        message.contains("anthropic.claude-3-opus-20240229-v1:0"),
        "{message}"
    );
    let unknown = http::post(
        port,
        "/model/anthropic.claude-v2%3A1/converse",
        &[JSON],
        body.as_bytes(),
    );
    assert_bedrock_error(&unknown, 403, "AccessDeniedException", "model_not_found");
    let mismatch = http::post(port, "/model/prod-4o/converse", &[JSON], body.as_bytes());
    assert_bedrock_error(
        &mismatch,
        400,
        "ValidationException",
        "provider_api_mismatch",
    );
    // An id that decodes to something no server may read as one segment is not an endpoint.
    let dots = http::post(port, "/model/%2e%2e/converse", &[JSON], body.as_bytes());
    assert!((400..500).contains(&dots.status), "{dots:?}");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    envoy.assert_no_wasm_failure();
}

/// Inspection reads each family's text where it lives: Gemini `parts[].text`, Azure
/// `messages[].content`, Bedrock `content[].text`.
#[test]
fn each_family_is_inspected_and_refused_in_its_shape() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let secret = format!("deploy with {AWS} today");

    let gemini = http::post(
        port,
        "/v1beta/models/gemini-flash:generateContent",
        &[JSON],
        gemini_body(&secret).as_bytes(),
    );
    assert_google_error(&gemini, 403, "PERMISSION_DENIED", "prompt_blocked");
    assert_eq!(gemini.json()["error"]["rule"], "no-secrets");
    let azure = http::post(
        port,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
        &[JSON],
        azure_body(&secret).as_bytes(),
    );
    assert_openai_error(&azure, 403, "prompt_blocked");
    assert_eq!(azure.json()["error"]["rule"], "no-secrets");
    let bedrock = http::post(
        port,
        "/model/claude-bedrock/converse",
        &[JSON],
        converse_body(&secret).as_bytes(),
    );
    assert_bedrock_error(&bedrock, 403, "AccessDeniedException", "prompt_blocked");
    assert_eq!(bedrock.json()["rule"], "no-secrets");
    for refused in [&gemini, &azure, &bedrock] {
        assert!(!refused.text().contains("AKIA"), "{refused:?}");
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    // Redaction: the text changes in place, the path is still rewritten.
    let text = "write to jane.doe@example.com please";
    let redacted = "write to [REDACTED:no-email] please";
    let cases = [
        (
            "/v1beta/models/gemini-flash:generateContent",
            gemini_body(text),
            gemini_body(redacted),
            "/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        (
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
            azure_body(text),
            azure_body(redacted),
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
        ),
        (
            "/model/claude-bedrock/converse",
            converse_body(text),
            converse_body(redacted),
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
        ),
    ];
    for (path, body, expected, upstream_path) in cases {
        mock.reset();
        let response = http::post(port, path, &[JSON], body.as_bytes());
        assert_eq!(response.status, 200, "{path}: {response:?}");
        let upstream = mock.single_request();
        assert_eq!(upstream.path, upstream_path);
        assert_eq!(upstream.text(), expected, "{path}");
        assert_eq!(
            upstream.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "{path}"
        );
    }
    envoy.assert_no_wasm_failure();
}
