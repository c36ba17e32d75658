//! Each consumer's own model list, through the module in real Envoy: `GET /v1/models` (OpenAI's
//! shape, Anthropic's with `anthropic-version`) and `GET /v1beta/models` (Gemini's) are
//! answered by the gateway from the consumer's approved models, and the provider behind Envoy
//! receives nothing. The official OpenAI and Anthropic SDKs list and retrieve through it.
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::http::{self, Response};
use common::{sdk, Envoy, MockProvider};
use serde_json::{json, Value};

/// Three families, an alias, and two consumers with different lists.
const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "vertex": { "cluster": "gemini", "api": "gemini" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "gpt-4o-mini": { "provider": "openai" },
    "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
    "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
    "claude-haiku-4": { "provider": "anthropic" },
    "gemini-flash": { "provider": "vertex", "upstream_model": "gemini-2.5-flash" }
  },
  "consumers": {
    "default": { "models": ["gpt-4o-mini", "claude-haiku-4"] },
    "search-team": { "models": ["gpt-4o*", "fast", "claude-*", "gemini-*"] }
  }
}"#;

const SEARCH: (&str, &str) = ("x-posturio-consumer", "search-team");
const ANTHROPIC: (&str, &str) = ("anthropic-version", "2023-06-01");

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {list}"))
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect()
}

/// A 200 JSON answer made by the gateway: no error code, JSON content.
fn answered(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(response.header("x-posturio-code"), None, "{response:?}");
    response.json()
}

fn assert_not_found(response: &Response) {
    assert_eq!(response.status, 404, "{response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some("model_not_found"),
        "{response:?}"
    );
}

#[test]
fn lists_are_answered_by_the_gateway_in_each_shape() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(POLICY, &mock);
    let port = envoy.port();

    // OpenAI's shape, one list per consumer, the query ignored.
    let default = answered(&http::get(port, "/v1/models?limit=1", &[]));
    assert_eq!(
        default,
        json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}
        ]})
    );
    let search = answered(&http::get(port, "/v1/models", &[SEARCH]));
    assert_eq!(ids(&search), ["fast", "gpt-4o", "gpt-4o-mini"]);
    let one = answered(&http::get(port, "/v1/models/fast", &[SEARCH]));
    assert_eq!(
        one,
        json!({"id": "fast", "object": "model", "created": 0, "owned_by": "openai"})
    );

    // Anthropic's shape when the request says it speaks Anthropic's API.
    let anthropic = answered(&http::get(
        port,
        "/v1/models?limit=20",
        &[SEARCH, ANTHROPIC],
    ));
    assert_eq!(ids(&anthropic), ["claude-haiku-4", "claude-sonnet-4"]);
    assert_eq!(anthropic["has_more"], false);
    assert_eq!(anthropic["first_id"], "claude-haiku-4");
    assert_eq!(anthropic["last_id"], "claude-sonnet-4");
    let one = answered(&http::get(port, "/v1/models/claude-haiku-4", &[ANTHROPIC]));
    assert_eq!(one["type"], "model", "{one}");
    assert_eq!(one["display_name"], "claude-haiku-4", "{one}");

    // Gemini's shape on Gemini's path.
    let gemini = answered(&http::get(port, "/v1beta/models", &[SEARCH]));
    assert_eq!(
        gemini,
        json!({"models": [{
            "name": "models/gemini-flash",
            "displayName": "gemini-flash",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }]})
    );
    let empty = answered(&http::get(port, "/v1beta/models", &[]));
    assert_eq!(empty, json!({"models": []}));
    let one = answered(&http::get(port, "/v1beta/models/gemini-flash", &[SEARCH]));
    assert_eq!(one["name"], "models/gemini-flash");

    // Never an upstream name.
    for body in [&search, &anthropic, &gemini] {
        let text = body.to_string();
        assert!(
            !text.contains("20250514") && !text.contains("2.5"),
            "{text}"
        );
    }

    // Another consumer's model, and a model that exists nowhere: the same 404, in the
    // caller's shape.
    let other = http::get(port, "/v1/models/gpt-4o", &[]);
    let missing = http::get(port, "/v1/models/gpt-9", &[]);
    assert_not_found(&other);
    assert_not_found(&missing);
    assert_eq!(other.json()["error"]["type"], "not_found_error");
    assert_eq!(
        other.text().replace("gpt-4o", "ID"),
        missing.text().replace("gpt-9", "ID")
    );
    let other = http::get(port, "/v1/models/claude-sonnet-4", &[ANTHROPIC]);
    assert_not_found(&other);
    assert_eq!(other.json()["type"], "error");
    assert_eq!(other.json()["error"]["type"], "not_found_error");
    let other = http::get(port, "/v1beta/models/gemini-flash", &[]);
    assert_not_found(&other);
    assert_eq!(other.json()["error"]["status"], "NOT_FOUND");
    // The upstream name is no model id.
    assert_not_found(&http::get(
        port,
        "/v1/models/claude-sonnet-4-20250514",
        &[SEARCH, ANTHROPIC],
    ));

    // With a body it is no model list: this policy has no passthrough for it.
    let with_body = http::request(port, "GET", "/v1/models", &[], b"{}");
    assert_eq!(with_body.status, 404, "{with_body:?}");
    assert_eq!(
        with_body.header("x-posturio-code"),
        Some("unsupported_endpoint")
    );

    // The provider received nothing, and each list was counted as an allowed request
    // without a provider.
    let received = mock.requests();
    assert!(received.is_empty(), "{received:#?}");
    envoy.assert_no_wasm_failure();
    assert_eq!(
        envoy.counter(
            "wasmcustom.posturio_requests_total.consumer=default;.model=none;.provider=none;\
             .decision=allow;.code=none;"
        ),
        Some(2),
        "{}",
        envoy.stats("posturio_requests_total")
    );
}

#[test]
fn a_passthrough_never_forwards_a_providers_model_list() {
    // GET passthroughs broad enough to cover Azure's, OpenAI's and Gemini's own lists.
    let policy = r#"{
      "identity": { "header": "x-posturio-consumer" },
      "providers": {
        "openai": { "cluster": "openai", "api": "openai" },
        "azure": { "cluster": "openai", "api": "azure_openai" },
        "vertex": { "cluster": "gemini", "api": "gemini" }
      },
      "models": { "gpt-4o": { "provider": "openai" } },
      "consumers": { "default": { "models": ["gpt-4o"] } },
      "passthrough": [
        { "method": "GET", "path_prefix": "/openai", "provider": "azure" },
        { "method": "GET", "path_prefix": "/v1beta", "provider": "vertex" },
        { "method": "GET", "path_prefix": "/v1", "provider": "openai" }
      ]
    }"#;
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(policy, &mock);
    let port = envoy.port();
    for path in [
        "/openai/models?api-version=2024-10-21",
        "/openai/v1/models",
        "/v1beta/openai/models",
        "/v1/models;x=1",
        "/v1/models.json",
        "/v1/Models",
        "/v1/MODELS",
        "/v1/models:list",
        "/v1beta/models:list",
        "/v1/models/gpt-4o/permissions",
        "/v1/models~",
        "/openai/deployments?api-version=2022-12-01",
        "/openai/deployments/prod-gpt4o",
        "/v1beta/tunedModels?pageSize=1000",
        "/v1/engines",
        "/v1/model/info",
    ] {
        let response = http::get(port, path, &[]);
        assert_eq!(response.status, 404, "{path}: {response:?}");
        assert_eq!(
            response.header("x-posturio-code"),
            Some("unsupported_endpoint"),
            "{path}: {response:?}"
        );
        let message = response.json()["error"]["message"].to_string();
        assert!(
            message.contains("/v1/models and /v1beta/models"),
            "{path}: {message}"
        );
        let received = mock.requests();
        assert!(received.is_empty(), "{path}: {received:#?}");
    }
    // The gateway's own list is still answered, and other passthrough paths still pass.
    assert_eq!(
        ids(&answered(&http::get(port, "/v1/models", &[]))),
        ["gpt-4o"]
    );
    for (path, listener) in [
        ("/v1/files?limit=2", "openai"),
        ("/openai/files?api-version=2024-10-21", "openai"),
        ("/v1beta/cachedContents", "gemini"),
    ] {
        mock.reset();
        let response = http::get(port, path, &[]);
        assert_eq!(
            response.header("x-posturio-code"),
            None,
            "{path}: {response:?}"
        );
        let upstream = mock.single_request();
        assert_eq!(upstream.path, path);
        assert_eq!(upstream.listener, listener, "{path}");
    }
    envoy.assert_no_wasm_failure();
}

#[test]
fn the_official_sdks_list_and_retrieve_models() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    let openai = sdk::run(
        "openai_client",
        &envoy,
        &[
            "models_list",
            "models_list_search_team",
            "models_retrieve",
            "models_retrieve_other",
            "models_retrieve_unknown",
        ],
    );
    let anthropic = sdk::run(
        "anthropic_client",
        &envoy,
        &[
            "models_list",
            "models_list_search_team",
            "models_retrieve",
            "models_retrieve_other",
        ],
    );
    envoy.assert_no_wasm_failure();

    // OpenAI: each consumer's OpenAI-family models, and one of them.
    assert_eq!(
        openai.ok("models_list")["models"],
        json!(["fast", "gpt-4o-mini", "text-embedding-3-small"])
    );
    assert_eq!(
        openai.ok("models_list_search_team")["models"],
        json!(["gemini-flash", "gpt-4o", "gpt-4o-mini"])
    );
    assert_eq!(
        openai.ok("models_retrieve"),
        &json!({
            "scenario": "models_retrieve", "ok": true,
            "id": "fast", "object": "model", "owned_by": "openai",
            "sent": openai.sent("models_retrieve"),
        })
    );
    for scenario in ["models_retrieve_other", "models_retrieve_unknown"] {
        let refused = openai.refused(scenario, "NotFoundError", 404);
        assert_eq!(refused["code"], "model_not_found", "{refused:#}");
    }

    // Anthropic: the SDK pages through `has_more` in one request.
    assert_eq!(
        anthropic.ok("models_list")["models"],
        json!(["claude-haiku-4"])
    );
    assert_eq!(anthropic.sent("models_list").len(), 1);
    assert_eq!(
        anthropic.ok("models_list_search_team")["models"],
        json!(["claude-haiku-4", "claude-sonnet-4"])
    );
    let one = anthropic.ok("models_retrieve");
    assert_eq!(one["id"], "claude-haiku-4", "{one:#}");
    assert_eq!(one["type"], "model", "{one:#}");
    let refused = anthropic.refused("models_retrieve_other", "NotFoundError", 404);
    assert_eq!(refused["type"], "not_found_error", "{refused:#}");

    let received = mock.requests();
    assert!(received.is_empty(), "{received:#?}");
}
