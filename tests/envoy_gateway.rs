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
