//! The integration-test harness itself works: Envoy starts from the shipped example
//! configuration, the mock provider records requests, and the raw client reads responses.

mod common;

use common::envoy::{render_config, ConfigParams, ProviderPorts};
use common::{http, Envoy, EnvoyOptions, MockProvider};
use std::time::Duration;

#[test]
fn rendered_config_substitutes_every_token() {
    let template = common::read_repo_file(common::envoy::TEMPLATE);
    let policy = "{\n  \"mode\": \"enforce\",\n\n  \"x\": [1, 2]\n}\n";
    let params = ConfigParams {
        listener_port: 41000,
        admin_port: 41001,
        providers: ProviderPorts {
            openai: 41002,
            anthropic: 41003,
            gemini: 41004,
            azure: 41005,
        },
        module: "/abs/posturio.wasm".into(),
        policy: policy.to_string(),
    };
    let rendered = render_config(&template, &params);
    for port in ["10000", "9901", "18081", "18082", "18083", "18084"] {
        assert!(
            !rendered.contains(&format!("port_value: {port}\n")),
            "{port} left in"
        );
        assert!(
            !rendered.contains(&format!("port_value: {port} ")),
            "{port} left in"
        );
    }
    for port in 41000..=41005 {
        assert!(
            rendered.contains(&format!("port_value: {port}")),
            "{port} missing"
        );
    }
    assert!(rendered.contains("filename: \"/abs/posturio.wasm\""));
    assert_eq!(common::embedded_policy(&rendered), policy);
    // Only the policy block's lines changed in number: everything after it is kept.
    let old_policy_lines = common::embedded_policy(&template).lines().count();
    assert_eq!(
        rendered.lines().count() + old_policy_lines,
        template.lines().count() + policy.lines().count()
    );
}

#[test]
fn envoy_and_mock_start_and_answer() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(EnvoyOptions::new(&common::example_policy()).mock(&mock));

    let ready = http::get(envoy.admin_port(), "/ready", &[]);
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.text().trim(), "LIVE");

    // Whatever the module decides, Envoy answers on the listener with a complete response.
    let response = http::post_json(
        envoy.port(),
        "/v1/chat/completions",
        &[("x-posturio-consumer", "default")],
        &serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!((200..600).contains(&response.status), "{response:?}");
    assert_eq!(envoy.counter("http.llm.downstream_rq_total"), Some(1));
    // The module of the build under test is loaded and running.
    match common::build::Build::current() {
        common::build::Build::Wasm => {
            assert!(envoy.stats("^wasm\\.").contains("wasm."), "no wasm stats")
        }
        common::build::Build::Native => assert!(
            envoy
                .wait_for_log("Dynamic module ABI version", Duration::from_secs(5))
                .is_some(),
            "the native module was not loaded"
        ),
    }
    assert!(envoy
        .wait_for_access_log("/v1/chat/completions", std::time::Duration::from_secs(5))
        .is_some());
    envoy.assert_no_wasm_failure();

    // The mock is reachable directly, records what it receives, and resets.
    mock.reset();
    let direct = http::post_json(
        mock.port("anthropic"),
        "/v1/messages",
        &[("x-test", "a"), ("X-Test", "b")],
        &serde_json::json!({"model": "m", "max_tokens": 1, "messages": []}),
    );
    assert_eq!(direct.status, 200, "{direct:?}");
    assert_eq!(direct.json()["type"], "message");
    let recorded = mock.single_request();
    assert_eq!(recorded.listener, "anthropic");
    assert_eq!(
        (recorded.method.as_str(), recorded.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(recorded.header_values("x-test"), ["a", "b"]);
    assert_eq!(recorded.json()["model"], "m");
    mock.reset();
    assert!(mock.requests().is_empty());
}

#[test]
fn raw_client_reads_chunked_and_keep_alive_responses() {
    let mock = MockProvider::start();
    let port = mock.port("openai");
    // Chunked request body, two requests on one connection, chunked (streamed) response.
    let body = br#"{"model":"m","stream":true,"messages":[]}"#;
    let mut conn = common::Connection::open(port);
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    conn.send(&request);
    let streamed = conn.read_response();
    assert_eq!(streamed.status, 200, "{streamed:?}");
    assert!(
        streamed.chunked && streamed.chunk_sizes.len() > 1,
        "{streamed:?}"
    );
    assert!(
        streamed.text().ends_with("data: [DONE]\n\n"),
        "{streamed:?}"
    );
    conn.send(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_response();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    conn.send(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.read_response().json()["object"], "list");
    assert_eq!(mock.requests()[0].json()["stream"], true);

    // A body shorter than its Content-Length, then end of input: no complete response.
    let truncated = http::try_send_raw_then_close(
        port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mod",
    );
    match truncated {
        Ok(response) => assert_eq!(response.status, 400, "{response:?}"),
        Err(e) => assert!(e.contains("closed"), "{e}"),
    }
}
