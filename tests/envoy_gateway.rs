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

use common::platform::{self, chat, message};

const PLATFORM: &str = "envoy-gateway";
/// Envoy Gateway's listener has no hostname: any Host reaches it.
const HOST: &str = "llm.example.com";

#[test]
fn the_generated_configuration_passes_envoy_validate() {
    platform::validate(PLATFORM).unwrap_or_else(|log| panic!("envoy --mode validate:\n{log}"));
}

#[test]
fn a_request_without_the_route_header_reaches_posturio_and_its_provider() {
    let p = platform::start(PLATFORM);
    let r = p.post(HOST, "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));
    assert_eq!(got.json()["model"], "gpt-4o-mini");
    // Removed on the way out by the rule's RequestHeaderModifier.
    assert_eq!(got.header("x-posturio-cluster"), None);

    p.mock.reset();
    let r = p.post(
        HOST,
        "/v1/messages",
        &[
            ("x-posturio-consumer", "search-team"),
            ("anthropic-version", "2023-06-01"),
        ],
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "anthropic");
    assert_eq!(got.header("host"), Some("api.anthropic.com"));
    assert_eq!(got.json()["model"], "claude-sonnet-4-20250514");
    p.envoy.assert_no_wasm_failure();
}

#[test]
fn a_denied_model_reaches_no_provider() {
    let p = platform::start(PLATFORM);
    // In the catalogue, but not approved for the default consumer.
    let anthropic = [("anthropic-version", "2023-06-01")];
    let r = p.post(
        HOST,
        "/v1/messages",
        &anthropic,
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"]["type"], "permission_error", "{r:?}");
    // A route header from the client changes nothing: Posturio decides first.
    let r = p.post(
        HOST,
        "/v1/messages",
        &[
            ("anthropic-version", "2023-06-01"),
            ("x-posturio-cluster", "anthropic"),
        ],
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Not in the catalogue at all.
    let r = p.post(HOST, "/v1/chat/completions", &[], &chat("gpt-4o"));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());
}

#[test]
fn a_spoofed_route_header_is_ignored() {
    let p = platform::start(PLATFORM);
    // gpt-4o-mini belongs to openai; the client asks for the anthropic rule.
    let r = p.post(
        HOST,
        "/v1/chat/completions",
        &[("x-posturio-cluster", "anthropic")],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));
}

#[test]
fn posturio_metrics_carry_their_labels() {
    let p = platform::start(PLATFORM);
    let r = p.post(HOST, "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(r.status, 200, "{r:?}");
    let anthropic = [("anthropic-version", "2023-06-01")];
    let r = p.post(
        HOST,
        "/v1/messages",
        &anthropic,
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    platform::assert_labelled_metrics(&p.envoy);
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
