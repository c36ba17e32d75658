//! Posturio on an Istio ingress gateway, proven on the configuration istiod generates for
//! `deploy/istio/` (tests/platforms/generate.py, which follows Istio's own
//! translation rules, applies the EnvoyFilter and passes the bootstrap override as the agent does), run in
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
use common::platform_cases::{self as cases, Target};

const PLATFORM: &str = "istio";
/// The host of the Gateway server and the VirtualService.
const HOST: &str = "llm.example.com";
const TARGET: Target = Target {
    platform: PLATFORM,
    host: HOST,
    anthropic_cluster: "outbound|443||api.anthropic.com",
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

/// The no-app-change path (deploy/istio/egress.yaml): a workload calls the provider by its
/// name; its sidecar sends the request to the gateway, where Posturio decides, and the gateway
/// originates TLS to the provider.
#[test]
fn a_workload_calling_the_provider_by_name_goes_through_posturio() {
    let p = platform::start(PLATFORM);
    let sidecar = platform::start_istio_sidecar(p.envoy.port());
    let send = |host: &str, path: &str, headers: &[(&str, &str)], body: &serde_json::Value| {
        let mut all: Vec<(&str, &str)> = vec![("Host", host)];
        all.extend_from_slice(headers);
        common::http::post_json(sidecar.port(), path, &all, body)
    };
    let r = send(
        "api.openai.com",
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = p.mock.single_request();
    assert_eq!(got.listener, "openai");
    assert_eq!(got.header("host"), Some("api.openai.com"));

    p.mock.reset();
    let anthropic = [("anthropic-version", "2023-06-01")];
    let r = send(
        "api.anthropic.com",
        "/v1/messages",
        &anthropic,
        &message("claude-sonnet-4"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"]["type"], "permission_error", "{r:?}");
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());
}

/// Why the EnvoyFilter and not the WasmPlugin: as istiod delivers `wasmplugin.yaml` (by ECDS,
/// with no `allow_on_headers_stop_iteration`), Posturio is loaded and answers a request that
/// ends with its headers, but a request with a body, which it holds, is never answered.
#[test]
fn the_wasmplugin_form_loads_posturio_but_stalls_requests_with_a_body() {
    let p = platform::start("istio-wasmplugin");
    let r = common::http::get(p.envoy.port(), "/v1/unknown", &[("Host", HOST)]);
    assert!(
        r.status >= 400 && r.json()["error"].is_object(),
        "Posturio's refusal expected: {r:?}"
    );

    let body = chat("gpt-4o-mini").to_string();
    let request = common::http::build_request(
        p.envoy.port(),
        "POST",
        "/v1/chat/completions",
        &[("Host", HOST), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let mut conn = common::Connection::open(p.envoy.port());
    conn.send(&request);
    conn.set_read_timeout(std::time::Duration::from_secs(3));
    let answer = conn.try_read_response();
    assert!(answer.is_err(), "expected a stall, got {answer:?}");
    assert!(p.mock.requests().is_empty(), "{:?}", p.mock.requests());
}

/// deploy/istio/fallback/: the pool cluster and route the EnvoyFilter adds pass `envoy --mode
/// validate`, and hold what the fallback policy needs (names, order, filters, retry policy).
#[test]
fn the_fallback_pool_passes_envoy_validate_and_matches_its_policy() {
    let config = platform::validate_pool(PLATFORM)
        .unwrap_or_else(|log| panic!("envoy --mode validate:\n{log}"));
    platform::assert_fallback_pool(PLATFORM, &config, "gpt-4o", "posturio-pool-gpt-4o");
}

const FALLBACK: [&str; 2] = [
    "deploy/istio/fallback/fallback.yaml",
    "deploy/istio/fallback/provider-keys.yaml",
];
const FALLBACK_POLICY: &str = "deploy/istio/fallback/policy.json";

/// The gateway with deploy/istio/fallback/ applied and its policy rendered; `endpoints`
/// override where names resolve.
fn start_fallback(endpoints: &[(&str, u16)]) -> platform::Platform {
    platform::start_with(platform::Generate {
        extra: &FALLBACK,
        endpoints,
        policy: Some(FALLBACK_POLICY),
        ..platform::Generate::new(PLATFORM)
    })
}

/// The pool's upstream filter fetches the module by the same remote fetch as the listener's
/// filter. While that fetch is in progress at startup, Envoy logs the pool's filter as not
/// loaded ("failed to load (in progress)"), then loads it before the workers start. So: no Wasm
/// failure in the log once the workers run, and no Wasm failure stat at all.
fn assert_no_wasm_failure_once_serving(envoy: &common::Envoy) {
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let log = envoy.log();
    let late: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("starting workers"))
        .filter(|l| {
            common::envoy::WASM_FAILURE_MARKERS
                .iter()
                .any(|m| l.contains(m))
        })
        .collect();
    assert!(
        log.contains("starting workers"),
        "Envoy never started its workers:\n{log}"
    );
    assert!(late.is_empty(), "the Wasm VM failed:\n{}", late.join("\n"));
    for (name, value) in envoy.stat_values("^wasm") {
        let failure = name.contains("fail") || name.ends_with(".vm_reload");
        assert!(!failure || value == 0, "stat {name}: {value}");
    }
    assert!(
        log.matches("configured as the upstream filter of a pool cluster")
            .next()
            .is_some(),
        "the pool's upstream filter never loaded:\n{log}"
    );
}

/// With OpenAI up, a pooled request goes to OpenAI only, rewritten for it by the upstream
/// filter: OpenAI's model name and path, OpenAI's key from the mounted file, no caller key and
/// no target header.
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
        &chat("gpt-4o"),
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
    assert_no_wasm_failure_once_serving(&p.envoy);
}

/// OpenAI's endpoint refuses connections: the retry moves to Azure (priority 1), which gets
/// the request rewritten for Azure, with Azure's key and nothing of OpenAI's.
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
        &chat("gpt-4o"),
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
    assert_no_wasm_failure_once_serving(&p.envoy);
}
