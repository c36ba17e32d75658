//! The cases every platform must pass, run by `tests/istio.rs` and `tests/envoy_gateway.rs` on
//! the configuration each control plane generates: Posturio is reached without the route header,
//! routes to the right provider with that provider's Host, refuses before any provider, ignores a
//! spoofed route header, and its metrics keep their labels.
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::platform::{self, chat, message};

/// One platform's generated configuration, as the cases address it.
pub struct Target {
    /// The name `tests/platforms/generate.py` knows the platform by.
    pub platform: &'static str,
    /// The Host the gateway listener serves.
    pub host: &'static str,
    /// The route header value that names the anthropic cluster on this platform.
    pub anthropic_cluster: &'static str,
}

pub fn a_request_without_the_route_header_reaches_posturio_and_its_provider(t: &Target) {
    let p = platform::start(t.platform);
    let r = p.post(t.host, "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));
    assert_eq!(got.json()["model"], "gpt-4o-mini");
    // The platform removes the route header on the way out.
    assert_eq!(got.header("x-posturio-cluster"), None);

    p.mock.reset();
    let r = p.post(
        t.host,
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

pub fn a_denied_model_reaches_no_provider(t: &Target) {
    let p = platform::start(t.platform);
    // In the catalogue, but not approved for the default consumer.
    let anthropic = [("anthropic-version", "2023-06-01")];
    let r = p.post(
        t.host,
        "/v1/messages",
        &anthropic,
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"]["type"], "permission_error", "{r:?}");
    // A route header from the client changes nothing: Posturio decides first.
    let r = p.post(
        t.host,
        "/v1/messages",
        &[
            ("anthropic-version", "2023-06-01"),
            ("x-posturio-cluster", t.anthropic_cluster),
        ],
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Not in the catalogue at all.
    let r = p.post(t.host, "/v1/chat/completions", &[], &chat("gpt-4o"));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());
}

pub fn a_spoofed_route_header_is_ignored(t: &Target) {
    let p = platform::start(t.platform);
    // gpt-4o-mini belongs to openai; the client asks for anthropic's cluster.
    let r = p.post(
        t.host,
        "/v1/chat/completions",
        &[("x-posturio-cluster", t.anthropic_cluster)],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));
}

pub fn posturio_metrics_carry_their_labels(t: &Target) {
    let p = platform::start(t.platform);
    let r = p.post(t.host, "/v1/chat/completions", &[], &chat("gpt-4o-mini"));
    assert_eq!(r.status, 200, "{r:?}");
    let anthropic = [("anthropic-version", "2023-06-01")];
    let r = p.post(
        t.host,
        "/v1/messages",
        &anthropic,
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    platform::assert_labelled_metrics(&p.envoy);
}
