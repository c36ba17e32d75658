//! Every Kubernetes manifest under `deploy/` is well-formed YAML whose documents name their
//! apiVersion, kind and metadata.name; the fields the docs rely on are there; and every
//! policy inside a manifest passes `posturio check`.
// Integration test: failing loudly (unwrap/panic) is how it reports a broken setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Parses every document of a YAML file with PyYAML (tests/requirements.txt) into JSON.
fn documents(path: &Path) -> Vec<Value> {
    let script = "import json,sys,yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let output = Command::new(common::mock::python())
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} is not valid YAML:\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("unexpected {other}"),
    }
}

fn manifests() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    let mut dirs = vec![common::repo_path("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no manifests under deploy/");
    files
        .into_iter()
        .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn of_kind(all: &[(PathBuf, Value)], kind: &str) -> Vec<Value> {
    all.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d.clone())
        .collect()
}

fn check_policy(policy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(&file, policy).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_posturio"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "posturio check rejected a policy in deploy/:\n{}{}\n{policy}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_document_names_itself() {
    for (file, doc) in manifests() {
        for key in ["apiVersion", "kind"] {
            assert!(
                doc[key].is_string(),
                "{}: no {key} in {doc}",
                file.display()
            );
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{}: no metadata.name in {doc}",
            file.display()
        );
    }
}

#[test]
fn istio_wasmplugin_fails_closed_and_its_policy_is_valid() {
    let all = manifests();
    let plugins = of_kind(&all, "WasmPlugin");
    assert_eq!(plugins.len(), 1);
    let spec = &plugins[0]["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert!(spec["sha256"].is_string() && spec["phase"].is_string());
    check_policy(&spec["pluginConfig"].to_string());
}

#[test]
fn istio_envoyfilter_sets_stop_iteration_and_cluster_header() {
    let all = manifests();
    let filters = of_kind(&all, "EnvoyFilter");
    assert_eq!(filters.len(), 1);
    let patches = filters[0]["spec"]["configPatches"].as_array().unwrap();
    let wasm = &patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_FILTER")
        .unwrap()["patch"]["value"]["typed_config"]["config"];
    assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
    let policy = wasm["configuration"]["value"].as_str().unwrap();
    check_policy(policy);
    let route = patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_ROUTE")
        .unwrap();
    assert_eq!(route["patch"]["operation"], "MERGE");
    assert_eq!(
        route["patch"]["value"]["route"]["cluster_header"],
        "x-posturio-cluster"
    );
    // The policy's clusters are the ones Istio makes of the ServiceEntries.
    let policy: Value = serde_json::from_str(policy).unwrap();
    let hosts: Vec<String> = of_kind(&all, "ServiceEntry")
        .iter()
        .map(|s| format!("outbound|443||{}", s["spec"]["hosts"][0].as_str().unwrap()))
        .collect();
    for provider in policy["providers"].as_object().unwrap().values() {
        let cluster = provider["cluster"].as_str().unwrap().to_string();
        assert!(hosts.contains(&cluster), "{cluster} is no ServiceEntry's");
    }
    for rule in of_kind(&all, "DestinationRule") {
        assert_eq!(rule["spec"]["trafficPolicy"]["tls"]["mode"], "SIMPLE");
    }
}

#[test]
fn envoy_gateway_extension_fails_closed_and_its_policy_is_valid() {
    let all = manifests();
    let policies = of_kind(&all, "EnvoyExtensionPolicy");
    assert_eq!(policies.len(), 1);
    let wasm = &policies[0]["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    check_policy(&wasm["config"].to_string());
    let patch = &of_kind(&all, "EnvoyPatchPolicy")[0]["spec"]["jsonPatches"][0]["operation"];
    assert_eq!(patch["path"], "allow_on_headers_stop_iteration");
    assert_eq!(patch["value"], true);
    // Every provider's cluster value is a header value an HTTPRoute rule matches.
    let routes = of_kind(&all, "HTTPRoute");
    let matched: Vec<&Value> = routes[0]["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["matches"][0]["headers"][0]["value"])
        .collect();
    for provider in wasm["config"]["providers"].as_object().unwrap().values() {
        assert!(matched.contains(&&provider["cluster"]), "{provider}");
    }
    assert_eq!(of_kind(&all, "BackendTLSPolicy").len(), 2);
}
