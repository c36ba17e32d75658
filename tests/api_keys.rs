//! Virtual API keys (`identity.api_keys`) through real Envoy: each family's client sends its
//! key where its SDK puts it, the key's consumer is applied, and the provider never sees the
//! key; refusals in each family's shape; the official SDKs; a key rotated and revoked by an
//! ECDS push under traffic, without restarting Envoy; and the README's quick start, step by
//! step.
//!
//! The policy stores SHA-256 digests only; the keys below are hashed here the way
//! `posturio key hash` does.
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::envoy::replace_policy;
use common::mock::python;
use common::rollout::write_atomically;
use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const JSON: (&str, &str) = ("content-type", "application/json");
const SEARCH_KEY: &str = "pst_search-team-7Qx2k9VbLmZ4nR8tYw3uPa6sDf1gHj5KcXe0oIqN";
const OPS_KEY: &str = "pst_ops-bot-Zk3mW8qR2tYv6uXa9bLc4nDe7fGh1jKp5sTo0iQw";
/// Listed for `search-team` with an expiry in the past.
const EXPIRED_KEY: &str = "pst_expired-2Hd8Kq4Lw9Zx3Cv7Bn1Mf6Gt5Rp0Ys8Ua2Ei4Oj";
const EXPIRED_AT: &str = "2020-01-01T00:00:00Z";
/// Listed nowhere.
const UNKNOWN_KEY: &str = "pst_unknown-9Pq1Wr5Ty3Ui7Op2As6Df4Gh8Jk0Lz3Xc5Vb7Nm1";
/// The headers a client key may arrive in; none of them may reach a provider.
const KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];
/// The other credential headers a provider (or the gateway in front of it) reads; removed too.
const OTHER_CREDENTIAL_HEADERS: [&str; 3] = [
    "proxy-authorization",
    "x-amz-security-token",
    "ocp-apim-subscription-key",
];
/// Held by every other client credential the rows below send: none may reach a provider.
const CLIENT_CREDENTIAL: &str = "client-credential";
const REALM: &str = "Bearer realm=\"posturio\"";

/// `sha256:<hex>` of a key's bytes, as the policy lists it.
fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One provider per family on the mock's three clusters; `search-team` may use every model,
/// `ops-bot` only `gpt-4o-mini`, so a model refused for `ops-bot` and forwarded for
/// `search-team` shows which consumer the key named.
fn policy() -> String {
    json!({
        "identity": { "api_keys": true },
        "providers": {
            "openai": { "cluster": "openai", "api": "openai" },
            "azure": { "cluster": "openai", "api": "azure_openai" },
            "azure-v1": { "cluster": "openai", "api": "openai", "base_path": "/openai/v1" },
            "anthropic": { "cluster": "anthropic", "api": "anthropic" },
            "vertex": { "cluster": "gemini", "api": "gemini" },
            "bedrock": { "cluster": "anthropic", "api": "bedrock" }
        },
        "models": {
            "gpt-4o": { "provider": "openai" },
            "gpt-4o-mini": { "provider": "openai" },
            "prod-4o": { "provider": "azure", "upstream_model": "gpt-4o-prod" },
            "azure-4o": { "provider": "azure-v1", "upstream_model": "gpt-4o" },
            "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
            "gemini-flash": { "provider": "vertex", "upstream_model": "gemini-2.5-flash" },
            "claude-bedrock": { "provider": "bedrock",
                                "upstream_model": "anthropic.claude-3-5-haiku-20241022-v1:0" }
        },
        "consumers": {
            "search-team": {
                "models": ["*"],
                "api_keys": [
                    hash(SEARCH_KEY),
                    { "hash": hash(EXPIRED_KEY), "expires": EXPIRED_AT }
                ]
            },
            "ops-bot": { "models": ["gpt-4o-mini"], "api_keys": [hash(OPS_KEY)] }
        },
        "passthrough": [
            { "method": "GET", "path_prefix": "/v1/files", "provider": "openai" }
        ]
    })
    .to_string()
}

fn gateway() -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&policy(), &mock);
    (mock, envoy)
}

/// The API shape a family answers refusals in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
}

/// Where a request puts its key.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// `authorization: <scheme> <key>`, the scheme spelt as given.
    Bearer(&'static str),
    Header(&'static str),
    /// The `key` query parameter, appended to the path's query.
    Query,
    /// `k%65y=<key with its `_` percent-encoded>`: name and value are compared decoded.
    EncodedQuery,
    /// `$key=<key>`: Google reads its system parameters with or without `$`.
    DollarQuery,
}

/// One family's request, without its key.
struct Call {
    name: &'static str,
    method: &'static str,
    /// With the query the client sends besides its key (`?` included, or empty).
    path: &'static str,
    body: Value,
    extra_headers: &'static [(&'static str, &'static str)],
    shape: Shape,
    /// Where the mock must have received it, the `key` parameter removed.
    listener: &'static str,
    upstream_path: &'static str,
    /// Whether `ops-bot` is refused it as `model_not_approved` (false: a passthrough).
    names_a_model: bool,
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

fn messages(model: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
}

fn gemini() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]})
}

fn azure() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16})
}

fn converse() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "Say hi"}]}]})
}

/// The request target and headers of `call` with `key` at `place`.
fn with_key(call: &Call, key: &str, place: Place) -> (String, Vec<(String, String)>) {
    let mut path = call.path.to_owned();
    let mut headers: Vec<(String, String)> = vec![(JSON.0.into(), JSON.1.into())];
    headers.extend(
        call.extra_headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let separator = if path.contains('?') { '&' } else { '?' };
    match place {
        Place::Bearer(scheme) => headers.push(("authorization".into(), format!("{scheme}{key}"))),
        Place::Header(name) => headers.push((name.into(), key.into())),
        Place::Query => path = format!("{path}{separator}key={key}"),
        Place::EncodedQuery => {
            path = format!("{path}{separator}k%65y={}", key.replace('_', "%5F"));
        }
        Place::DollarQuery => path = format!("{path}{separator}$key={key}"),
    }
    (path, headers)
}

fn send(port: u16, call: &Call, path: &str, headers: &[(String, String)]) -> Response {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = if call.method == "GET" {
        Vec::new()
    } else {
        call.body.to_string().into_bytes()
    };
    http::request(port, call.method, path, &headers, &body)
}

fn calls() -> Vec<(Call, Place)> {
    let openai_chat = || Call {
        name: "OpenAI chat",
        method: "POST",
        path: "/v1/chat/completions",
        body: chat("gpt-4o"),
        extra_headers: &[],
        shape: Shape::OpenAi,
        listener: "openai",
        upstream_path: "/v1/chat/completions",
        names_a_model: true,
    };
    let gemini_call = |name, path, upstream_path| Call {
        name,
        method: "POST",
        path,
        body: gemini(),
        extra_headers: &[],
        shape: Shape::Gemini,
        listener: "gemini",
        upstream_path,
        names_a_model: true,
    };
    vec![
        (openai_chat(), Place::Bearer("Bearer ")),
        (
            Call {
                name: "OpenAI responses, lowercase scheme, several spaces",
                path: "/v1/responses",
                body: json!({"model": "gpt-4o", "input": "Say hi"}),
                upstream_path: "/v1/responses",
                ..openai_chat()
            },
            Place::Bearer("bearer   "),
        ),
        (
            Call {
                name: "Azure OpenAI deployment, api-key",
                path: "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
                body: azure(),
                upstream_path:
                    "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
                ..openai_chat()
            },
            Place::Header("api-key"),
        ),
        (
            Call {
                name: "Azure OpenAI v1, Bearer",
                body: chat("azure-4o"),
                upstream_path: "/openai/v1/chat/completions",
                ..openai_chat()
            },
            Place::Bearer("Bearer "),
        ),
        (
            Call {
                name: "Anthropic, x-api-key beside a Basic authorization",
                method: "POST",
                path: "/v1/messages",
                body: messages("claude-sonnet-4"),
                extra_headers: &[
                    ("anthropic-version", "2023-06-01"),
                    ("authorization", "Basic dXNlcjpwYXNz"),
                ],
                shape: Shape::Anthropic,
                listener: "anthropic",
                upstream_path: "/v1/messages",
                names_a_model: true,
            },
            Place::Header("x-api-key"),
        ),
        (
            gemini_call(
                "Gemini, x-goog-api-key",
                "/v1beta/models/gemini-flash:generateContent",
                "/v1beta/models/gemini-2.5-flash:generateContent",
            ),
            Place::Header("x-goog-api-key"),
        ),
        (
            gemini_call(
                "Gemini, ?key= between other parameters",
                "/v1beta/models/gemini-flash:generateContent?alt=json&trace=a%2Cb",
                "/v1beta/models/gemini-2.5-flash:generateContent?alt=json&trace=a%2Cb",
            ),
            Place::Query,
        ),
        (
            gemini_call(
                "Gemini, percent-encoded key parameter",
                "/v1beta/models/gemini-flash:generateContent?x=1",
                "/v1beta/models/gemini-2.5-flash:generateContent?x=1",
            ),
            Place::EncodedQuery,
        ),
        (
            Call {
                name: "Bedrock Converse, Bearer",
                method: "POST",
                path: "/model/claude-bedrock/converse",
                body: converse(),
                extra_headers: &[],
                shape: Shape::Bedrock,
                listener: "anthropic",
                upstream_path: "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
                names_a_model: true,
            },
            Place::Bearer("Bearer "),
        ),
        (
            gemini_call(
                "Gemini, $key beside OAuth tokens in the query",
                "/v1beta/models/gemini-flash:generateContent?access_token=client-credential-1\
                 &alt=json&%24oauth_token=client-credential-2&Key=client-credential-3",
                "/v1beta/models/gemini-2.5-flash:generateContent?alt=json",
            ),
            Place::DollarQuery,
        ),
        (
            Call {
                name: "Bedrock Converse, a session token and a presigned query beside the key",
                method: "POST",
                path: "/model/claude-bedrock/converse?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                       &X-Amz-Credential=client-credential%2F20260101%2Fus-east-1\
                       &X-Amz-Security-Token=client-credential-sts&trace=1\
                       &X-Amz-Signature=client-credential-sig&x-amz-signedheaders=host",
                body: converse(),
                extra_headers: &[("x-amz-security-token", "client-credential-sts")],
                shape: Shape::Bedrock,
                listener: "anthropic",
                upstream_path: "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse?trace=1",
                names_a_model: true,
            },
            Place::Bearer("Bearer "),
        ),
        (
            Call {
                name: "Azure OpenAI deployment, API Management's key and a proxy's credentials",
                path: "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21\
                       &subscription-key=client-credential-q",
                body: azure(),
                extra_headers: &[
                    ("ocp-apim-subscription-key", "client-credential-apim"),
                    ("proxy-authorization", "Basic client-credential-proxy"),
                ],
                upstream_path:
                    "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
                ..openai_chat()
            },
            Place::Header("api-key"),
        ),
        (
            Call {
                name: "OpenAI chat, credentials spelt with underscores and API gateways' keys",
                extra_headers: &[
                    ("x_api_key", "client-credential-u1"),
                    ("x_goog_api_key", "client-credential-u2"),
                    ("api_key", "client-credential-u3"),
                    ("apikey", "client-credential-kong"),
                    ("x-apikey", "client-credential-apigee"),
                    ("x-litellm-api-key", "client-credential-litellm"),
                    ("cf-aig-authorization", "Bearer client-credential-cf"),
                    ("x-serverless-authorization", "Bearer client-credential-run"),
                    ("x-goog-iam-authorization-token", "client-credential-iam"),
                ],
                ..openai_chat()
            },
            Place::Bearer("Bearer "),
        ),
        (
            gemini_call(
                "Gemini generateContent, Google's bearer_token beside the key",
                "/v1beta/models/gemini-flash:generateContent?bearer_token=client-credential-b\
                 &alt=json&%24bearer_token=client-credential-c",
                "/v1beta/models/gemini-2.5-flash:generateContent?alt=json",
            ),
            Place::Header("x-goog-api-key"),
        ),
        (
            Call {
                name: "passthrough, ?key= first",
                method: "GET",
                path: "/v1/files?limit=2&order=asc",
                body: Value::Null,
                extra_headers: &[],
                shape: Shape::OpenAi,
                listener: "openai",
                upstream_path: "/v1/files?limit=2&order=asc",
                names_a_model: false,
            },
            Place::Query,
        ),
    ]
}

/// Panics if the recorded request carries a client key anywhere: in one of the key headers,
/// in any header value, or in its target.
fn assert_no_client_key(upstream: &common::Recorded, keys: &[&str], context: &str) {
    for name in KEY_HEADERS.iter().chain(&OTHER_CREDENTIAL_HEADERS) {
        assert_eq!(
            upstream.header(name),
            None,
            "{context}: {name} reached the provider: {upstream:#?}"
        );
    }
    for (name, value) in &upstream.headers {
        assert!(
            !value.contains(CLIENT_CREDENTIAL),
            "{context}: a client credential is in {name}"
        );
    }
    assert!(
        !upstream.path.contains(CLIENT_CREDENTIAL),
        "{context}: a client credential is in the target {}",
        upstream.path
    );
    for key in keys {
        let encoded = key.replace('_', "%5F");
        for (name, value) in &upstream.headers {
            assert!(!value.contains(key), "{context}: the key is in {name}");
        }
        assert!(
            !upstream.path.contains(key) && !upstream.path.contains(&encoded),
            "{context}: the key is in the target {}",
            upstream.path
        );
        assert!(
            !upstream.text().contains(key),
            "{context}: the key is in the body"
        );
    }
    let query = upstream.path.split_once('?').map_or("", |(_, q)| q);
    assert!(
        !query
            .split('&')
            .any(|pair| ["key=", "k%65y=", "$key=", "%24key="]
                .iter()
                .any(|name| pair.starts_with(name))),
        "{context}: a key parameter reached the provider: {}",
        upstream.path
    );
}

#[test]
fn each_family_gets_its_keys_consumer_and_the_provider_never_sees_the_key() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    for (call, place) in calls() {
        mock.reset();
        let (path, headers) = with_key(&call, SEARCH_KEY, place);
        let response = send(port, &call, &path, &headers);
        assert_eq!(
            response.header("x-posturio-code"),
            None,
            "{}: {response:?}",
            call.name
        );
        let upstream = mock.single_request();
        assert_eq!(upstream.listener, call.listener, "{}", call.name);
        assert_eq!(upstream.method, call.method, "{}", call.name);
        assert_eq!(
            upstream.path, call.upstream_path,
            "{}: every other query parameter kept, byte for byte and in order",
            call.name
        );
        assert_no_client_key(&upstream, &[SEARCH_KEY], call.name);
        if call.names_a_model {
            assert_eq!(response.status, 200, "{}: {response:?}", call.name);
            // The same request with the other consumer's key is refused by that consumer's
            // model list: the key, not anything else, chose the consumer.
            mock.reset();
            let (path, headers) = with_key(&call, OPS_KEY, place);
            let refused = send(port, &call, &path, &headers);
            assert_eq!(refused.status, 403, "{}: {refused:?}", call.name);
            assert_eq!(
                refused.header("x-posturio-code"),
                Some("model_not_approved"),
                "{}: {refused:?}",
                call.name
            );
            assert!(
                refused.text().contains("ops-bot"),
                "{}: the refusal names the key's consumer: {}",
                call.name,
                refused.text()
            );
            assert!(mock.requests().is_empty(), "{}: forwarded", call.name);
        } else {
            // The passthrough reached the mock (which has no such endpoint and says 404).
            assert_eq!(response.status, 404, "{}: {response:?}", call.name);
            let line = envoy
                .wait_for_access_log("\"path\":\"/v1/files\"", Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no access log line:\n{}", envoy.access_log()));
            let line: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(line["posturio_consumer"], "search-team", "{line:#}");
        }
    }

    // The same key in every place at once is one key.
    mock.reset();
    let bearer = format!("Bearer {SEARCH_KEY}");
    let response = http::post(
        port,
        &format!("/v1/chat/completions?key={SEARCH_KEY}&x=1"),
        &[
            JSON,
            ("authorization", &bearer),
            ("x-api-key", SEARCH_KEY),
            ("api-key", SEARCH_KEY),
            ("x-goog-api-key", SEARCH_KEY),
        ],
        chat("gpt-4o").to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = mock.single_request();
    assert_eq!(upstream.path, "/v1/chat/completions?x=1");
    assert_no_client_key(&upstream, &[SEARCH_KEY], "the same key everywhere");
    envoy.assert_no_wasm_failure();
}

/// Panics unless `response` is Posturio's 401 `code` in `shape`, and its body names neither
/// a key, nor a hash, nor a consumer.
fn assert_unauthenticated(response: &Response, shape: Shape, code: &str, context: &str) -> String {
    assert_eq!(response.status, 401, "{context}: {response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some(code),
        "{context}: {response:?}"
    );
    assert_eq!(
        response.header("www-authenticate"),
        Some(REALM),
        "{context}: {response:?}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{context}"
    );
    let body = response.json();
    let message = match shape {
        Shape::OpenAi => {
            assert_eq!(
                body["error"]["type"], "authentication_error",
                "{context}: {body:#}"
            );
            assert_eq!(body["error"]["code"], code, "{context}: {body:#}");
            &body["error"]["message"]
        }
        Shape::Anthropic => {
            assert_eq!(body["type"], "error", "{context}: {body:#}");
            assert_eq!(
                body["error"]["type"], "authentication_error",
                "{context}: {body:#}"
            );
            &body["error"]["message"]
        }
        Shape::Gemini => {
            assert_eq!(body["error"]["code"], 401, "{context}: {body:#}");
            assert_eq!(
                body["error"]["status"], "UNAUTHENTICATED",
                "{context}: {body:#}"
            );
            &body["error"]["message"]
        }
        Shape::Bedrock => {
            assert_eq!(
                response.header("x-amzn-errortype"),
                Some("UnrecognizedClientException"),
                "{context}: {response:?}"
            );
            &body["message"]
        }
    };
    let message = message
        .as_str()
        .unwrap_or_else(|| panic!("{context}: {body:#}"));
    assert!(!message.is_empty(), "{context}");
    let text = response.text();
    for key in [SEARCH_KEY, OPS_KEY, EXPIRED_KEY, UNKNOWN_KEY] {
        let hex = hash(key);
        let hex = hex.trim_start_matches("sha256:");
        assert!(
            !text.contains(key),
            "{context}: the reply echoes a key: {text}"
        );
        assert!(
            !text.contains(hex),
            "{context}: the reply echoes a hash: {text}"
        );
        assert!(
            !text.contains(&hex[..16]),
            "{context}: part of a hash: {text}"
        );
    }
    for consumer in ["search-team", "ops-bot"] {
        assert!(
            !text.contains(consumer),
            "{context}: the reply names a consumer: {text}"
        );
    }
    message.to_owned()
}

#[test]
fn missing_unknown_expired_repeated_and_conflicting_keys_are_refused_in_each_shape() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    // One call per family and shape.
    let families: Vec<(Call, Place)> = calls()
        .into_iter()
        .filter(|(call, _)| {
            [
                "OpenAI chat",
                "Azure OpenAI deployment, api-key",
                "Anthropic, x-api-key beside a Basic authorization",
                "Gemini, x-goog-api-key",
                "Bedrock Converse, Bearer",
                "passthrough, ?key= first",
            ]
            .contains(&call.name)
        })
        .collect();
    assert_eq!(families.len(), 6);
    for (call, place) in &families {
        let context = |case: &str| format!("{}: {case}", call.name);
        // No key anywhere (the Anthropic call still carries its Basic authorization, which
        // is not a key).
        let (_, headers) = with_key(call, "", Place::Query);
        let response = send(port, call, call.path, &headers);
        let message =
            assert_unauthenticated(&response, call.shape, "missing_api_key", &context("no key"));
        for place in [
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "key",
        ] {
            assert!(
                message.contains(place),
                "{}: the message lists {place}: {message}",
                call.name
            );
        }

        // A key nobody lists.
        let (path, headers) = with_key(call, UNKNOWN_KEY, *place);
        let response = send(port, call, &path, &headers);
        let message = assert_unauthenticated(
            &response,
            call.shape,
            "invalid_api_key",
            &context("unknown"),
        );
        assert!(message.contains("not known"), "{message}");

        // A key past its expiry.
        let (path, headers) = with_key(call, EXPIRED_KEY, *place);
        let response = send(port, call, &path, &headers);
        let message = assert_unauthenticated(
            &response,
            call.shape,
            "invalid_api_key",
            &context("expired"),
        );
        assert!(
            message.contains(&format!("expired at {EXPIRED_AT}")),
            "{message}"
        );

        // The same key header twice.
        let (path, mut headers) = with_key(call, SEARCH_KEY, Place::Header("x-api-key"));
        headers.push(("x-api-key".into(), SEARCH_KEY.into()));
        let response = send(port, call, &path, &headers);
        let message =
            assert_unauthenticated(&response, call.shape, "invalid_api_key", &context("twice"));
        assert!(message.contains("twice"), "{message}");

        // The key parameter twice.
        let (path, headers) = with_key(call, SEARCH_KEY, Place::Query);
        let path = format!("{path}&key={SEARCH_KEY}");
        let response = send(port, call, &path, &headers);
        assert_unauthenticated(
            &response,
            call.shape,
            "invalid_api_key",
            &context("parameter twice"),
        );

        // Two places, two different keys (each valid on its own).
        let (path, mut headers) = with_key(call, SEARCH_KEY, *place);
        let elsewhere = match place {
            Place::Header("x-goog-api-key") => "x-api-key",
            _ => "x-goog-api-key",
        };
        headers.push((elsewhere.into(), OPS_KEY.into()));
        let response = send(port, call, &path, &headers);
        let message = assert_unauthenticated(
            &response,
            call.shape,
            "invalid_api_key",
            &context("different keys"),
        );
        assert!(message.contains("different keys"), "{message}");

        // An empty key.
        let (path, headers) = with_key(call, "", Place::Header("x-api-key"));
        let response = send(port, call, &path, &headers);
        assert_unauthenticated(&response, call.shape, "invalid_api_key", &context("empty"));
    }
    assert!(
        mock.requests().is_empty(),
        "refused, yet forwarded: {:#?}",
        mock.requests()
    );
    envoy.assert_no_wasm_failure();
}

/// The official SDKs, each with a good and a bad key: the good one is answered, the bad one
/// raises the SDK's own `AuthenticationError`.
const SDK_SCRIPT: &str = r#"
import json, sys
import anthropic, openai

base, good, bad = sys.argv[1], sys.argv[2], sys.argv[3]
http_openai = openai.DefaultHttpxClient(trust_env=False)
http_anthropic = anthropic.DefaultHttpxClient(trust_env=False)

def outcome(call):
    try:
        return {"ok": True, "value": call()}
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        return {"ok": False, "class": type(e).__name__, "status": e.status_code, "body": e.body}

def openai_call(key):
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0,
                           http_client=http_openai)
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Say hi"}])
    return reply.choices[0].message.content

def anthropic_call(key):
    client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0,
                                 http_client=http_anthropic)
    reply = client.messages.create(
        model="claude-sonnet-4", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    return reply.content[0].text

for name, call in [("openai", openai_call), ("anthropic", anthropic_call)]:
    for which, key in [("good", good), ("bad", bad)]:
        print(json.dumps({"sdk": name, "key": which, **outcome(lambda: call(key))}), flush=True)
"#;

#[test]
fn the_official_sdks_authenticate_with_a_key_and_raise_authentication_error_without() {
    let (mock, envoy) = gateway();
    let args = [
        "-c".into(),
        SDK_SCRIPT.into(),
        format!("http://127.0.0.1:{}", envoy.port()).into(),
        SEARCH_KEY.into(),
        UNKNOWN_KEY.into(),
    ];
    let (outcomes, report) = common::sdk::python_json_lines("the SDK script", &args);
    assert_eq!(outcomes.len(), 4, "{report}");
    for outcome in &outcomes {
        if outcome["key"] == "good" {
            assert_eq!(outcome["ok"], true, "{outcome:#}");
            assert!(
                outcome["value"]
                    .as_str()
                    .unwrap()
                    .contains("Hello from the mock"),
                "{outcome:#}"
            );
        } else {
            assert_eq!(outcome["ok"], false, "{outcome:#}");
            assert_eq!(outcome["class"], "AuthenticationError", "{outcome:#}");
            assert_eq!(outcome["status"], 401, "{outcome:#}");
        }
    }
    let forwarded = mock.requests();
    assert_eq!(forwarded.len(), 2, "{forwarded:#?}");
    for upstream in &forwarded {
        assert_no_client_key(upstream, &[SEARCH_KEY, UNKNOWN_KEY], "SDK");
    }
    envoy.assert_no_wasm_failure();
}

const ECDS_TEMPLATE: &str = "envoy/envoy-ecds.yaml";
const ECDS_FILTER: &str = "envoy/ecds/posturio.yaml";
const APPLIED: &str = "extension_config_discovery.http_filter.posturio.update_success";
const REJECTED: &str = "extension_config_discovery.http_filter.posturio.update_rejected";

/// The test policy with `search-team`'s keys replaced by `key` alone.
fn policy_listing(key: &str) -> String {
    let mut policy: Value = serde_json::from_str(&policy()).unwrap();
    policy["consumers"]["search-team"]["api_keys"] = json!([hash(key)]);
    policy.to_string()
}

/// One request of the rotation's client loop.
#[derive(Debug)]
struct Sent {
    key: &'static str,
    started: Instant,
    status: u16,
    code: Option<String>,
}

fn uptime_seconds(envoy: &Envoy) -> f64 {
    let info = envoy.admin_get("/server_info").json();
    let uptime = info["uptime_current_epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("{info}"));
    uptime.trim_end_matches('s').parse().unwrap()
}

/// Key rotation and revocation are a policy push: while a client loop sends requests with
/// the old key A and the new key B, the policy is replaced by ECDS with one that lists B
/// instead of A. Every request that starts after Envoy counts the new configuration as
/// applied is decided by it: A is refused 401, B is answered. Envoy is the same process
/// throughout.
#[test]
fn a_key_is_rotated_and_revoked_by_an_ecds_push_under_traffic() {
    const OLD: &str = SEARCH_KEY;
    const NEW: &str = "pst_rotated-4Nb7Vc1Xz5Lk9Jh3Gf8Ds2Ap6Oi0Uy4Tr7Ew1Qm3";
    let mock = MockProvider::start();
    let mut envoy = Envoy::start_with(
        EnvoyOptions::new(&policy_listing(OLD))
            .mock(&mock)
            .concurrency(2)
            .template(ECDS_TEMPLATE)
            .ecds(ECDS_FILTER),
    );
    let pid = envoy.pid();
    let port = envoy.port();
    let file = envoy.ecds_path().unwrap().to_path_buf();
    let filter = std::fs::read_to_string(&file).unwrap();
    assert_eq!(envoy.counter(APPLIED), Some(1));
    let uptime_before = uptime_seconds(&envoy);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let clients: Vec<_> = [OLD, NEW]
        .into_iter()
        .map(|key| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let bearer = format!("Bearer {key}");
                let body = chat("gpt-4o").to_string();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let response = http::post(
                        port,
                        "/v1/chat/completions",
                        &[JSON, ("authorization", &bearer)],
                        body.as_bytes(),
                    );
                    let code = response.header("x-posturio-code").map(str::to_owned);
                    sent.lock().unwrap().push(Sent {
                        key,
                        started,
                        status: response.status,
                        code,
                    });
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    let delivered = Instant::now();
    write_atomically(&file, &replace_policy(&filter, &policy_listing(NEW)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while envoy.counter(APPLIED).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the new policy was not applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let applied = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }

    let sent = sent.lock().unwrap();
    let margin = Duration::from_millis(100);
    let before: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.started + margin < delivered)
        .collect();
    let after: Vec<&Sent> = sent.iter().filter(|s| s.started > applied).collect();
    let count = |list: &[&Sent], key| list.iter().filter(|s| s.key == key).count();
    assert!(
        count(&before, OLD) > 5 && count(&before, NEW) > 5,
        "too little traffic before the push: {}",
        before.len()
    );
    assert!(
        count(&after, OLD) > 5 && count(&after, NEW) > 5,
        "too little traffic after the push: {}",
        after.len()
    );
    let outcome = |s: &Sent| (s.status, s.code.clone());
    let (accepted, revoked) = ((200, None), (401, Some("invalid_api_key".to_owned())));
    for s in &before {
        let want = if s.key == OLD { &accepted } else { &revoked };
        assert_eq!(&outcome(s), want, "before the push: {s:?}");
    }
    for s in &after {
        let want = if s.key == OLD { &revoked } else { &accepted };
        assert_eq!(
            &outcome(s),
            want,
            "after Envoy reported the push applied: {s:?}"
        );
    }
    assert_eq!(envoy.counter(REJECTED), Some(0));
    assert_eq!(envoy.pid(), pid);
    assert!(envoy.is_running(), "Envoy exited");
    let uptime_after = uptime_seconds(&envoy);
    assert!(
        uptime_after > uptime_before,
        "admin uptime went from {uptime_before}s to {uptime_after}s: Envoy restarted"
    );
    envoy.assert_no_wasm_failure();
}

/// The fenced block of README.md whose first line is "```<info>" and that contains `needle`.
fn readme_block(info: &str, needle: &str) -> String {
    let readme = common::read_repo_file("README.md");
    let fence = format!("```{info}\n");
    readme
        .split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block.to_owned()))
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("README.md has no ```{info} block with {needle:?}"))
}

/// README's "A key for each team", step by step: the key from `posturio key new`, its line
/// put into envoy/policy.json as the README shows, and the README's OpenAI SDK snippet run
/// with that key against Envoy.
#[test]
fn the_readme_key_quick_start_runs() {
    // 1. The command, as the README gives it.
    let command = readme_block("sh", "posturio key new");
    assert_eq!(command.trim(), "posturio key new --consumer search-team");
    let output = Command::new(env!("CARGO_BIN_EXE_posturio"))
        .args(["key", "new", "--consumer", "search-team"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let key = stdout.lines().next().unwrap().to_owned();
    assert!(key.starts_with("pst_") && key.len() == 47, "{key}");
    let printed = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let line = format!("add to consumers.search-team.api_keys: \"{}\"", hash(&key));
    assert!(printed.contains(&line), "{printed}");
    assert!(readme_block("text", "add to consumers")
        .contains("add to consumers.search-team.api_keys: \"sha256:…\""));

    // 2. The policy change the README shows, applied to envoy/policy.json.
    let shown = readme_block("json", "\"api_keys\": true");
    let shown: Value =
        serde_json::from_str(&format!("{{{}}}", shown.trim().trim_end_matches(','))).unwrap();
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["identity"] = shown["identity"].clone();
    let mut consumers = shown["consumers"].clone();
    assert_eq!(consumers["search-team"]["api_keys"], json!(["sha256:…"]));
    consumers["search-team"]["api_keys"] = json!([hash(&key)]);
    for (name, consumer) in consumers.as_object().unwrap() {
        let mut unchanged = consumer.clone();
        unchanged.as_object_mut().unwrap().remove("api_keys");
        assert_eq!(
            unchanged, policy["consumers"][name],
            "the README's {name} differs from envoy/policy.json's"
        );
    }
    policy["consumers"] = consumers;

    // 3. The README's SDK snippet, against Envoy with that policy.
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&policy.to_string(), &mock);
    let snippet = readme_block("python", "POSTURIO_KEY");
    assert!(snippet.contains("127.0.0.1:10000"), "{snippet}");
    let snippet = snippet.replace("127.0.0.1:10000", &format!("127.0.0.1:{}", envoy.port()));
    let run = |key: &str| {
        Command::new(python())
            .arg("-c")
            .arg(&snippet)
            .env("POSTURIO_KEY", key)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap()
    };
    let output = run(&key);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "Hello from the mock openai provider."
    );
    let upstream = mock.single_request();
    assert_eq!(upstream.json()["model"], "gpt-4o");
    assert_no_client_key(&upstream, &[&key], "README");
    // Another key: the SDK raises AuthenticationError, nothing is forwarded.
    let output = run(UNKNOWN_KEY);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("openai.AuthenticationError"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mock.requests().len(), 1);
    envoy.assert_no_wasm_failure();
}
