//! The shipped Envoy configurations (Wasm and native) are valid for Envoy 1.40, and the policy inlined in the
//! example configuration is the same as `envoy/policy.json`.

mod common;

use std::process::Command;

use common::build::{native_module_path, NATIVE_MODULE};
use common::envoy::{envoy_binary, module_path, replace_module_path, yaml_path};
use common::mock::python;

/// Throwaway CAs (one per trust domain), server and client certificates in `dir`
/// (tests/peer_tls.py).
#[allow(clippy::unwrap_used)] // test setup: a failure is reported by panicking
fn write_test_certificates(dir: &std::path::Path) {
    let output = Command::new(python())
        .arg(common::repo_path("tests/peer_tls.py"))
        .arg("certs")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tests/peer_tls.py certs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn shipped_envoy_configs_validate() {
    let envoy = envoy_binary();
    let module = module_path();
    let mut yamls: Vec<_> = std::fs::read_dir(common::repo_path("envoy"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        // The rate limit service's configuration (envoyproxy/ratelimit), not Envoy's.
        .filter(|path| !path.ends_with("ratelimit-config.yaml"))
        .collect();
    yamls.sort();
    assert!(!yamls.is_empty(), "no envoy/*.yaml found");
    let dir = tempfile::tempdir().unwrap();
    for yaml in yamls {
        let text = std::fs::read_to_string(&yaml).unwrap();
        let config = dir.path().join(yaml.file_name().unwrap());
        // The shipped paths are relative to the repository root: make them absolute.
        let text = if text.contains("posturio.wasm") {
            replace_module_path(&text, &module)
        } else {
            text
        };
        // Envoy loads the native module to validate a configuration with it (`make native`).
        let text = if text.contains(NATIVE_MODULE) {
            let native = yaml_path(&native_module_path());
            text.replace(
                &format!("filename: {NATIVE_MODULE} "),
                &format!("filename: {native} "),
            )
        } else {
            text
        };
        // envoy-mtls.yaml reads its certificates from /etc/posturio/tls; Envoy loads them.
        if text.contains("/etc/posturio/tls/") {
            write_test_certificates(&dir.path().join("tls"));
        }
        // envoy-providers.yaml reads provider keys from /etc/posturio; Envoy checks they exist.
        let text = if text.contains("/etc/posturio/") {
            for key in ["openai-key", "anthropic-key", "gemini-key", "azure-key"] {
                std::fs::write(dir.path().join(key), "sk-validate").unwrap();
            }
            text.replace("/etc/posturio", &dir.path().display().to_string())
        } else {
            text
        };
        std::fs::write(&config, text).unwrap();
        let output = Command::new(&envoy)
            .arg("--mode")
            .arg("validate")
            .arg("--disable-hot-restart")
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "envoy --mode validate rejected {} ({}):\n{}\n{}",
            yaml.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn embedded_policy_matches_policy_json() {
    let yaml = common::read_repo_file(common::envoy::TEMPLATE);
    let embedded: serde_json::Value = serde_json::from_str(&common::embedded_policy(&yaml))
        .unwrap_or_else(|e| panic!("the policy inlined in envoy/envoy.yaml is not JSON: {e}"));
    let file: serde_json::Value = serde_json::from_str(&common::example_policy())
        .unwrap_or_else(|e| panic!("envoy/policy.json is not JSON: {e}"));
    assert_eq!(
        embedded, file,
        "the policy inlined in envoy/envoy.yaml differs from envoy/policy.json"
    );
}
