//! Posturio on Envoy Gateway, proven on the configuration Envoy Gateway generates for
//! `deploy/envoy-gateway/` (tests/platforms/generate.py, which follows Envoy Gateway's own
//! translation rules and applies its EnvoyPatchPolicy and EnvoyProxy bootstrap patches), run in
//! real Envoy with the module, in front of mock providers that speak TLS.
// Integration test: failing loudly (unwrap/panic) is how it reports a broken setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::platform;
use common::platform_cases::{self as cases, Target};

const PLATFORM: &str = "envoy-gateway";
/// Envoy Gateway's listener has no hostname: any Host reaches it.
const HOST: &str = "llm.example.com";
const TARGET: Target = Target {
    platform: PLATFORM,
    host: HOST,
    anthropic_cluster: "anthropic",
};

#[test]
fn the_generated_configuration_passes_envoy_validate() {
    platform::validate(PLATFORM).unwrap_or_else(|log| panic!("envoy --mode validate:\n{log}"));
}

#[test]
fn a_request_without_the_route_header_reaches_posturio_and_its_provider() {
    cases::a_request_without_the_route_header_reaches_posturio_and_its_provider(&TARGET);
}

#[test]
fn a_denied_model_reaches_no_provider() {
    cases::a_denied_model_reaches_no_provider(&TARGET);
}

#[test]
fn a_spoofed_route_header_is_ignored() {
    cases::a_spoofed_route_header_is_ignored(&TARGET);
}

#[test]
fn posturio_metrics_carry_their_labels() {
    cases::posturio_metrics_carry_their_labels(&TARGET);
}

/// The EnvoyPatchPolicy sets the flag on Posturio's filter and on no other team's.
#[test]
fn the_stop_iteration_patch_touches_posturio_s_filter_only() {
    let config = platform::generated(
        PLATFORM,
        &["tests/platforms/fixtures/envoy-gateway-other-team.yaml"],
    );
    let filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let flag = |name: &str| {
        let filter = filters
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no filter {name} in {filters:#?}"));
        assert_eq!(filter["disabled"], true, "{filter}");
        filter["typed_config"]["config"]["allow_on_headers_stop_iteration"].clone()
    };
    assert_eq!(
        flag("envoy.filters.http.wasm/envoyextensionpolicy/posturio/posturio/wasm/0"),
        true
    );
    assert_eq!(
        flag("envoy.filters.http.wasm/envoyextensionpolicy/posturio/other-team/wasm/0"),
        serde_json::Value::Null
    );
}

/// deploy/envoy-gateway/fallback/: the pool cluster Envoy Gateway generates for the pool rule,
/// with the EnvoyPatchPolicy applied, passes `envoy --mode validate`, and holds what the
/// fallback policy needs (names, order, filters, retry policy).
#[test]
fn the_fallback_pool_passes_envoy_validate_and_matches_its_policy() {
    let config = platform::validate_pool(PLATFORM)
        .unwrap_or_else(|log| panic!("envoy --mode validate:\n{log}"));
    platform::assert_fallback_pool(PLATFORM, &config, "gpt-4o", "gpt-4o-pool");
}

const FALLBACK: [&str; 2] = [
    "deploy/envoy-gateway/fallback/fallback.yaml",
    "deploy/envoy-gateway/fallback/provider-keys.yaml",
];
const FALLBACK_POLICY: &str = "deploy/envoy-gateway/fallback/policy.json";

/// The proxy with deploy/envoy-gateway/fallback/ applied and its policy rendered; `endpoints`
/// override where names resolve.
fn start_fallback(endpoints: &[(&str, u16)]) -> platform::Platform {
    platform::start_with(platform::Generate {
        extra: &FALLBACK,
        endpoints,
        policy: Some(FALLBACK_POLICY),
        ..platform::Generate::new(PLATFORM)
    })
}

/// With OpenAI up, a pooled request goes to OpenAI only, rewritten for it by the upstream
/// filter, with OpenAI's key from the mounted file and not the caller's.
#[test]
fn a_pooled_model_is_served_by_its_first_target_with_that_target_s_key() {
    let p = start_fallback(&[]);
    let r = p.post(
        HOST,
        "/v1/chat/completions",
        &[
            ("x-posturio-consumer", "search-team"),
            ("authorization", "Bearer caller-key"),
        ],
        &platform::chat("gpt-4o"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.json()["model"], "gpt-4o-2024-08-06");
    assert_eq!(got.header("authorization"), Some("Bearer sk-REPLACE-ME"));
    assert_eq!(got.header("api-key"), None);
    assert_eq!(got.header("x-posturio-target"), None);
    assert_eq!(got.header("x-posturio-cluster"), None);
    p.envoy.assert_no_wasm_failure();
}

/// OpenAI's endpoint refuses connections: the retry moves to the fallback Backend (priority 1),
/// which gets the request rewritten for Azure, with Azure's key and nothing of OpenAI's.
#[test]
fn a_pooled_model_falls_back_to_azure_with_azure_s_key_path_and_model() {
    // Port 1: nothing listens, so every connection to OpenAI is refused.
    let p = start_fallback(&[("api.openai.com", 1)]);
    let r = p.post(
        HOST,
        "/v1/chat/completions",
        &[
            ("x-posturio-consumer", "search-team"),
            ("authorization", "Bearer caller-key"),
            ("x-posturio-target", "openai"),
        ],
        &platform::chat("gpt-4o"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "azure");
    assert_eq!(
        got.header("host"),
        Some("example-resource.openai.azure.com")
    );
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.json()["model"], "gpt-4o-prod");
    assert_eq!(got.header("api-key"), Some("REPLACE-ME"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.header("x-posturio-target"), None);
    p.envoy.assert_no_wasm_failure();
}
