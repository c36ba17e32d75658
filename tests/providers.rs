//! `envoy/envoy-providers.yaml`, the configuration for the real providers, validates once its
//! key files exist, and the credentials it injects reach the providers: run against the mock
//! provider with TLS taken out, the mock receives each provider's own key from its file, in
//! that provider's header, and never the key the client sent.
// Integration test: failing loudly (unwrap/panic) is how it reports a broken setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::envoy::{envoy_binary, module_path, replace_module_path};
use common::{http, Envoy, EnvoyOptions, MockProvider};

const CONFIG: &str = "envoy/envoy-providers.yaml";
/// The directory the shipped configuration reads its key files from.
const KEY_DIR: &str = "/etc/posturio";
/// (cluster, provider host, port of the same provider in `envoy/envoy.yaml`).
const PROVIDERS: [(&str, &str, u16); 4] = [
    ("openai", "api.openai.com", 18081),
    ("anthropic", "api.anthropic.com", 18082),
    ("gemini", "generativelanguage.googleapis.com", 18083),
    ("azure", "your-resource.openai.azure.com", 18084),
];
/// Credential injectors: one per provider cluster, and one per target in the fallback
/// pool's composite filter (openai, azure).
const INJECTORS: usize = PROVIDERS.len() + 2;

/// Writes one key file per provider into `dir` (as an operator would into /etc/posturio)
/// and returns the shipped configuration reading its keys from there.
fn with_key_files(dir: &Path) -> String {
    for (cluster, _, _) in PROVIDERS {
        std::fs::write(dir.join(format!("{cluster}-key")), key_of(cluster)).unwrap();
    }
    let text = common::read_repo_file(CONFIG);
    assert!(
        text.contains(KEY_DIR),
        "{CONFIG} no longer reads its keys from {KEY_DIR}"
    );
    text.replace(KEY_DIR, &dir.display().to_string())
}

fn key_of(cluster: &str) -> String {
    format!("sk-{cluster}-from-the-key-file")
}

/// Removes every `transport_socket:` block (the line and the lines indented below it).
fn without_tls(text: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut skipping: Option<usize> = None;
    for line in text.lines() {
        if let Some(level) = skipping {
            if line.trim().is_empty() || indent(line) > level {
                continue;
            }
            skipping = None;
        }
        if line.trim_start().starts_with("transport_socket:") {
            skipping = Some(indent(line));
            continue;
        }
        out.push(line);
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

/// The shipped configuration as a template the harness can run: keys from `dir`, the
/// provider clusters at the ports `envoy/envoy.yaml` uses for the mock, in plain HTTP/1.1.
fn plain_template(dir: &Path) -> String {
    let mut text = with_key_files(dir);
    for (_, host, port) in PROVIDERS {
        let from = format!("address: {host}, port_value: 443");
        assert_eq!(
            text.matches(&from).count(),
            1,
            "{CONFIG}: expected one endpoint `{from}`"
        );
        text = text.replace(&from, &format!("address: 127.0.0.1, port_value: {port}"));
    }
    // HTTP/2-or-1 by ALPN needs TLS; the mock speaks HTTP/1.1.
    let auto =
        "auto_config:\n          http_protocol_options: {}\n          http2_protocol_options: {}";
    assert_eq!(
        text.matches(auto).count(),
        PROVIDERS.len(),
        "{CONFIG}: expected auto_config per cluster"
    );
    let text = text.replace(
        auto,
        "explicit_http_config:\n          http_protocol_options: {}",
    );
    let text = without_tls(&text);
    assert!(!text.contains("UpstreamTlsContext"));
    text
}

#[test]
fn providers_config_validates_with_its_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = replace_module_path(&with_key_files(dir.path()), &module_path());
    let config = dir.path().join("envoy-providers.yaml");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "envoy --mode validate rejected {CONFIG}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn providers_config_keeps_tls_and_credentials_per_cluster() {
    let text = common::read_repo_file(CONFIG);
    for (_, host, _) in PROVIDERS {
        assert!(text.contains(&format!("sni: {host}")), "no SNI for {host}");
        assert!(
            text.contains(&format!("matcher: {{ exact: {host} }}")),
            "the certificate of {host} is not checked against its name"
        );
    }
    assert_eq!(text.matches("UpstreamTlsContext").count(), PROVIDERS.len());
    assert_eq!(
        text.matches("/etc/ssl/certs/ca-certificates.crt").count(),
        PROVIDERS.len()
    );
    assert_eq!(
        text.matches("credential_injector.v3.CredentialInjector")
            .count(),
        INJECTORS
    );
    assert_eq!(text.matches("overwrite: true").count(), INJECTORS);
    assert!(text.contains("auto_host_rewrite: true"));
    assert_eq!(
        common::embedded_policy(&text),
        common::embedded_policy(&common::read_repo_file(common::envoy::TEMPLATE)),
        "{CONFIG} should carry the same policy as envoy/envoy.yaml"
    );
}

#[test]
fn envoy_injects_each_providers_key_and_drops_the_clients() {
    let mock = MockProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("envoy-providers-plain.yaml");
    std::fs::write(&template, plain_template(dir.path())).unwrap();
    // The harness joins the template to the repository root; an absolute path stays as is.
    let template: &'static str = Box::leak(template.display().to_string().into_boxed_str());
    let policy = common::embedded_policy(&common::read_repo_file(CONFIG));
    let envoy = Envoy::start_with(EnvoyOptions::new(&policy).template(template).mock(&mock));

    let client_key = "sk-client-must-not-pass";
    let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]});
    let response = http::post_json(
        envoy.port(),
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {client_key}")),
            ("x-api-key", client_key),
        ],
        &chat,
    );
    assert_eq!(response.status, 200, "openai: {response:?}");

    let messages = serde_json::json!({"model": "claude-haiku-4", "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hi"}]});
    let response = http::post_json(
        envoy.port(),
        "/v1/messages",
        &[
            ("x-api-key", client_key),
            ("Authorization", &format!("Bearer {client_key}")),
            ("anthropic-version", "2023-06-01"),
        ],
        &messages,
    );
    assert_eq!(response.status, 200, "anthropic: {response:?}");

    let gemini = serde_json::json!({"model": "gemini-flash", "messages": [{"role": "user", "content": "Hi"}]});
    let response = http::post_json(
        envoy.port(),
        "/v1/chat/completions",
        &[
            ("x-posturio-consumer", "search-team"),
            ("Authorization", &format!("Bearer {client_key}")),
            // Azure OpenAI's and Gemini's key headers: the route strips them too.
            ("api-key", client_key),
            ("x-goog-api-key", client_key),
        ],
        &gemini,
    );
    assert_eq!(response.status, 200, "gemini: {response:?}");

    let openai = mock.requests_to("openai");
    assert_eq!(openai.len(), 1, "{openai:#?}");
    assert_eq!(
        openai[0].header_values("authorization"),
        [format!("Bearer {}", key_of("openai"))]
    );
    assert!(
        openai[0].header_values("x-api-key").is_empty(),
        "{openai:#?}"
    );

    let anthropic = mock.requests_to("anthropic");
    assert_eq!(anthropic.len(), 1, "{anthropic:#?}");
    assert_eq!(
        anthropic[0].header_values("x-api-key"),
        [key_of("anthropic")]
    );
    assert!(
        anthropic[0].header_values("authorization").is_empty(),
        "{anthropic:#?}"
    );
    assert_eq!(anthropic[0].header("anthropic-version"), Some("2023-06-01"));

    let gemini = mock.requests_to("gemini");
    assert_eq!(gemini.len(), 1, "{gemini:#?}");
    assert_eq!(gemini[0].path, "/v1beta/openai/chat/completions");
    assert_eq!(
        gemini[0].header_values("authorization"),
        [format!("Bearer {}", key_of("gemini"))]
    );

    for record in mock.requests() {
        for (name, value) in &record.headers {
            assert!(
                !value.contains(client_key),
                "the client's key reached {} in {name}",
                record.listener
            );
        }
        // auto_host_rewrite: the cluster's host, not the one the client called.
        let host = record.header("host").unwrap_or_default();
        assert!(host.starts_with("127.0.0.1"), "host {host:?}");
    }
    envoy.assert_no_wasm_failure();
}

/// The host name OpenAI's endpoint is given in the aggregate pool's test.
const OPENAI_HOST: &str = "openai.example.test";

#[test]
fn the_aggregate_pool_falls_back_to_azure_with_azures_key_and_path() {
    let mock = MockProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("envoy-providers-plain.yaml");
    // OpenAI's endpoint keeps a host name of its own, as api.openai.com would.
    let plain = plain_template(dir.path()).replacen(
        "port_value: 18081 } } }",
        &format!("port_value: 18081 }} }}, hostname: {OPENAI_HOST} }}"),
        1,
    );
    std::fs::write(&template, plain).unwrap();
    let template: &'static str = Box::leak(template.display().to_string().into_boxed_str());
    let policy = common::embedded_policy(&common::read_repo_file(CONFIG));
    let envoy = Envoy::start_with(EnvoyOptions::new(&policy).template(template).mock(&mock));
    mock.behave("openai", serde_json::json!({ "status": 429 }));

    let client_key = "sk-client-must-not-pass";
    let chat =
        serde_json::json!({"model": "resilient", "messages": [{"role": "user", "content": "Hi"}]});
    let response = http::post_json(
        envoy.port(),
        "/v1/chat/completions",
        &[
            ("x-posturio-consumer", "platform-team"),
            ("Authorization", &format!("Bearer {client_key}")),
        ],
        &chat,
    );
    assert_eq!(response.status, 200, "{response:?}");

    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    let (openai, azure) = (&records[0], &records[1]);
    assert_eq!(openai.listener, "openai");
    assert_eq!(openai.path, "/v1/chat/completions");
    assert_eq!(openai.json()["model"], "gpt-4o");
    assert_eq!(
        openai.header_values("authorization"),
        [format!("Bearer {}", key_of("openai"))]
    );
    assert!(openai.header_values("api-key").is_empty(), "{openai:#?}");
    assert_eq!(azure.listener, "azure");
    assert_eq!(azure.path, "/openai/v1/chat/completions");
    assert_eq!(azure.json()["model"], "gpt-4o-prod");
    assert_eq!(azure.header_values("api-key"), [key_of("azure")]);
    assert!(
        azure.header_values("authorization").is_empty(),
        "OpenAI's key reached Azure: {azure:#?}"
    );
    // The fallback never learns the first target's host: auto_host_rewrite keeps the host it
    // replaced in x-envoy-original-host, on the header map all attempts share, after the
    // upstream filters ran. The router's suppress_envoy_headers drops the header, and
    // Posturio's filter puts the client's host back on every retry besides.
    assert_eq!(openai.header("host"), Some(OPENAI_HOST));
    for record in &records {
        assert_eq!(record.header("x-envoy-original-host"), None, "{record:#?}");
        assert_eq!(record.header("x-posturio-target"), None, "{record:#?}");
        for (name, value) in &record.headers {
            if record.listener != "openai" {
                assert!(!value.contains(OPENAI_HOST), "{name}: {record:#?}");
            }
            assert!(
                !value.contains(client_key),
                "the client's key reached {name}"
            );
        }
    }
    envoy.assert_no_wasm_failure();
}
