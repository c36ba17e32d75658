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

/// Where the manifests of the native build (an Envoy dynamic module) are; the others load the
/// Wasm module.
const NATIVE_DIR: &str = "deploy/envoy-gateway/native";

/// The documents outside `NATIVE_DIR`: the Wasm build's.
fn wasm_build(all: Vec<(PathBuf, Value)>) -> Vec<(PathBuf, Value)> {
    let native = common::repo_path(NATIVE_DIR);
    all.into_iter()
        .filter(|(f, _)| !f.starts_with(&native))
        .collect()
}

fn of_kind(all: &[(PathBuf, Value)], kind: &str) -> Vec<Value> {
    all.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d.clone())
        .collect()
}

/// The one document of `kind` named `name`.
fn named(all: &[(PathBuf, Value)], kind: &str, name: &str) -> Value {
    let found: Vec<Value> = of_kind(all, kind)
        .into_iter()
        .filter(|d| d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}: {found:?}");
    found.into_iter().next().unwrap()
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
    let filters = named(&all, "EnvoyFilter", "posturio");
    let patches = filters["spec"]["configPatches"].as_array().unwrap();
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
    let all = wasm_build(manifests());
    let policies = of_kind(&all, "EnvoyExtensionPolicy");
    assert_eq!(policies.len(), 1);
    let wasm = &policies[0]["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    check_policy(&wasm["config"].to_string());
    let patch = &named(&all, "EnvoyPatchPolicy", "posturio-stop-iteration")["spec"]["jsonPatches"]
        [0]["operation"];
    assert_eq!(patch["path"], "allow_on_headers_stop_iteration");
    assert_eq!(patch["value"], true);
    // Every provider's cluster value is a header value an HTTPRoute rule matches.
    let route = named(&all, "HTTPRoute", "llm");
    let matched: Vec<&Value> = route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["matches"][0]["headers"][0]["value"])
        .collect();
    for provider in wasm["config"]["providers"].as_object().unwrap().values() {
        assert!(matched.contains(&&provider["cluster"]), "{provider}");
    }
    let tls: Vec<Value> = of_kind(&all, "BackendTLSPolicy")
        .into_iter()
        .filter(|p| p["metadata"]["name"] == "openai" || p["metadata"]["name"] == "anthropic")
        .collect();
    assert_eq!(tls.len(), 2);
}

/// Runs tests/platforms/validate_crds.py on `files`; returns its report and whether it passed.
fn validate_crds(platform: &str, files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(common::mock::python())
        .arg(common::repo_path("tests/platforms/validate_crds.py"))
        .arg(platform)
        .args(files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::repo_path(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_validates_against_the_crds_of_the_versions_the_docs_name() {
    for platform in ["istio", "envoy-gateway"] {
        let mut files = yaml_files(&format!("deploy/{platform}"));
        files.extend(yaml_files(&format!("deploy/{platform}/fallback")));
        let (ok, report) = validate_crds(platform, &files);
        assert!(ok, "deploy/{platform} against its CRDs:\n{report}");
    }
    // Dynamic modules exist since Envoy Gateway v1.8.0: checked against v1.9.0 only.
    let (ok, report) = validate_crds("envoy-gateway-native", &yaml_files(NATIVE_DIR));
    assert!(ok, "{NATIVE_DIR} against its CRDs:\n{report}");
}

/// The native build on Envoy Gateway: the EnvoyExtensionPolicy names a module the EnvoyProxy
/// registers by an absolute path, with a valid policy, and the patch that gives its metrics the
/// Wasm build's prefix names the filter Envoy Gateway generates for that policy.
#[test]
fn envoy_gateway_native_module_is_registered_configured_and_named() {
    let docs = file_documents(&format!("{NATIVE_DIR}/posturio.yaml"));
    let of = |kind: &str| -> Value {
        let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "{NATIVE_DIR}: one {kind}");
        found[0].clone()
    };
    let (proxy, policy, patch) = (
        of("EnvoyProxy"),
        of("EnvoyExtensionPolicy"),
        of("EnvoyPatchPolicy"),
    );
    let module = &policy["spec"]["dynamicModule"][0];
    assert_eq!(module["filterName"], "posturio");
    let registered = &proxy["spec"]["dynamicModules"][0];
    assert_eq!(registered["name"], module["name"]);
    assert_eq!(registered["source"]["type"], "Local");
    let path = registered["source"]["local"]["path"].as_str().unwrap();
    assert!(
        path.starts_with('/') && path.ends_with("/libposturio.so"),
        "{path}"
    );
    check_policy(&module["config"].to_string());
    // The same policy as the Wasm build's EnvoyExtensionPolicy.
    let wasm = file_documents("deploy/envoy-gateway/extension.yaml");
    assert_eq!(module["config"], wasm[0]["spec"]["wasm"][0]["config"]);
    // envoyproxy/gateway internal/xds/translator/dynamicmodule.go: dynamicModuleFilterName.
    let filter = format!(
        "envoy.filters.http.dynamic_modules/envoyextensionpolicy/{}/{}/dynamic-module/0",
        policy["metadata"]["namespace"].as_str().unwrap(),
        policy["metadata"]["name"].as_str().unwrap()
    );
    let operation = &patch["spec"]["jsonPatches"][0]["operation"];
    assert!(
        operation["jsonPath"]
            .as_str()
            .unwrap()
            .contains(&format!("'{filter}'")),
        "{operation}"
    );
    assert_eq!(operation["path"], "metrics_namespace");
    assert_eq!(operation["value"], "wasmcustom");
}

/// The CRD check refuses what the API server would refuse (one case a line: name, platform,
/// manifest, words the report must contain).
#[test]
fn the_crd_check_refuses_what_the_api_server_refuses() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("backendtlspolicy_v1alpha3", "envoy-gateway", "apiVersion: gateway.networking.k8s.io/v1alpha3\nkind: BackendTLSPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{group: '', kind: Service, name: a}], validation: {hostname: a.example, wellKnownCACertificates: System}}\n", "v1alpha3 BackendTLSPolicy is not served"),
        ("unknown_field", "envoy-gateway", "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\nspec: {rules: [{filters: [{type: URLRewrite, urlRewrite: {hostnme: a.example}}]}]}\n", "'hostnme' was unexpected"),
        ("missing_required", "envoy-gateway", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyPatchPolicy\nmetadata: {name: a}\nspec: {targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: a}}\n", "'type' is a required property"),
        ("bad_enum", "istio", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: a}\nspec: {url: oci://a/b, failStrategy: FAIL_CLOSED}\n", "FAIL_CLOSED"),
        ("eep_dynamic_modules_plural", "envoy-gateway-native", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {name: a}\nspec: {targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: a}], dynamicModules: [{name: a}]}\n", "'dynamicModules' was unexpected"),
        ("unknown_istio_field", "istio", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.example], exportTO: ['.']}\n", "'exportTO' was unexpected"),
    ];
    for (name, platform, manifest, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        let (ok, report) = validate_crds(platform, &[file]);
        assert!(!ok, "{name}: accepted");
        assert!(report.contains(expected), "{name}: {report}");
    }
}

/// A ServiceEntry that declares 443 as plain HTTP (for TLS origination at the gateway) would,
/// seen by the whole mesh, make every sidecar send plain HTTP to that host's port 443. Each such
/// object, and the DestinationRule beside it, stays in the gateway's namespace.
#[test]
fn istio_tls_origination_objects_stay_in_the_gateway_namespace() {
    let all = manifests();
    let mut hosts = Vec::new();
    for entry in of_kind(&all, "ServiceEntry") {
        let plain_http_443 = entry["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["number"] == 443 && p["protocol"] == "HTTP");
        if plain_http_443 {
            assert_eq!(
                entry["spec"]["exportTo"],
                serde_json::json!(["."]),
                "{entry}"
            );
            hosts.extend(entry["spec"]["hosts"].as_array().unwrap().iter().cloned());
        }
    }
    assert!(!hosts.is_empty());
    for rule in of_kind(&all, "DestinationRule") {
        if hosts.contains(&rule["spec"]["host"]) {
            assert_eq!(rule["spec"]["exportTo"], serde_json::json!(["."]), "{rule}");
        }
    }
}

/// Each platform's doc names the versions that work and the settings the manifests need.
#[test]
fn the_docs_name_the_version_floors_and_the_settings() {
    let cases: &[(&str, &str)] = &[
        ("docs/istio.md", "Istio 1.28"),
        ("docs/istio.md", "helm install istio-ingress istio/gateway"),
        ("docs/istio.md", "sidecar.istio.io/bootstrapOverride"),
        ("docs/envoy-gateway.md", "v1.6.0"),
        ("docs/envoy-gateway.md", "1.5.7"),
        ("docs/envoy-gateway.md", "enableBackend: true"),
        ("docs/envoy-gateway.md", "enableEnvoyPatchPolicy: true"),
    ];
    for (doc, words) in cases {
        let text = common::read_repo_file(doc);
        assert!(text.contains(words), "{doc} does not say {words:?}");
    }
}

/// The stats tags each platform adds (Envoy Gateway's EnvoyProxy bootstrap patch, Istio's
/// bootstrap override) are exactly envoy/envoy.yaml's, so a label documented in metrics.md
/// exists on every platform.
#[test]
fn platform_stats_tags_are_the_shipped_ones() {
    let envoy_yaml = common::repo_path("envoy/envoy.yaml");
    let shipped = documents(&envoy_yaml)[0]["stats_config"]["stats_tags"].clone();
    assert!(shipped.as_array().is_some_and(|t| !t.is_empty()));

    let all = manifests();
    let proxies = of_kind(&all, "EnvoyProxy");
    // envoyproxy.yaml, and fallback/envoyproxy.yaml and native/posturio.yaml that replace it.
    assert_eq!(proxies.len(), 3);
    for proxy in &proxies {
        let patched: Vec<Value> = proxy["spec"]["bootstrap"]["jsonPatches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["op"] == "add" && p["path"] == "/stats_config/stats_tags/-")
            .map(|p| p["value"].clone())
            .collect();
        assert_eq!(
            Value::Array(patched),
            shipped,
            "deploy/envoy-gateway: {proxy}"
        );
    }
    assert_eq!(
        proxies[0]["spec"]["bootstrap"], proxies[1]["spec"]["bootstrap"],
        "fallback/envoyproxy.yaml replaces envoyproxy.yaml: same bootstrap"
    );
    // native/posturio.yaml replaces it too: the same patches after the native build's runtime
    // flag.
    let mut native = proxies[2]["spec"]["bootstrap"].clone();
    let first = native["jsonPatches"].as_array_mut().unwrap().remove(0);
    assert_eq!(
        first["path"],
        "/layered_runtime/layers/0/static_layer/\
         envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix"
    );
    assert_eq!(proxies[0]["spec"]["bootstrap"], native);

    let map = of_kind(&all, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "posturio-bootstrap")
        .unwrap();
    let overlay: Value =
        serde_json::from_str(map["data"]["custom_bootstrap.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        overlay["stats_config"]["stats_tags"], shipped,
        "deploy/istio/gateway.yaml"
    );
}

/// The documents of one file under `deploy/`.
fn file_documents(relative: &str) -> Vec<Value> {
    documents(&common::repo_path(relative))
}

fn read_json(relative: &str) -> Value {
    serde_json::from_str(&common::read_repo_file(relative)).unwrap()
}

/// Every object in `value` (depth first) that has `key`.
fn objects_with<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            if map.contains_key(key) {
                found.push(value);
            }
            map.values().for_each(|v| objects_with(v, key, found));
        }
        Value::Array(items) => items.iter().for_each(|v| objects_with(v, key, found)),
        _ => {}
    }
}

const PLATFORMS: [&str; 2] = ["istio", "envoy-gateway"];

#[test]
fn every_fallback_policy_passes_posturio_check() {
    for platform in PLATFORMS {
        check_policy(&common::read_repo_file(&format!(
            "deploy/{platform}/fallback/policy.json"
        )));
    }
}

/// A fallback policy is its platform's policy plus the Azure provider and the pooled model,
/// so that rendering it in place of the other changes nothing else.
#[test]
fn each_fallback_policy_is_the_base_policy_plus_the_pool() {
    for platform in PLATFORMS {
        let base = read_json(&format!("deploy/{platform}/policy.json"));
        let mut fallback = read_json(&format!("deploy/{platform}/fallback/policy.json"));
        let targets = fallback["models"]["gpt-4o"]["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 2, "{platform}");
        fallback["providers"]
            .as_object_mut()
            .unwrap()
            .remove("azure");
        fallback["models"].as_object_mut().unwrap().remove("gpt-4o");
        assert_eq!(fallback, base, "deploy/{platform}/fallback/policy.json");
    }
}

/// Every key file an injector reads (`/etc/posturio/keys/<file>`) is a key of the Secret that
/// is mounted there, holding the SDS secret of the name the injector asks for.
#[test]
fn the_fallback_keys_are_where_the_injectors_read_them() {
    for platform in PLATFORMS {
        let pool = file_documents(&format!("deploy/{platform}/fallback/fallback.yaml"));
        let keys = file_documents(&format!("deploy/{platform}/fallback/provider-keys.yaml"));
        let secret = &keys[0];
        assert_eq!(secret["kind"], "Secret");
        let mut credentials = Vec::new();
        for doc in &pool {
            objects_with(doc, "sds_config", &mut credentials);
        }
        let files: Vec<&Value> = credentials
            .into_iter()
            .filter(|c| c["sds_config"]["path_config_source"].is_object())
            .collect();
        assert_eq!(files.len(), 2, "{platform}: one key per target");
        for credential in files {
            let path = credential["sds_config"]["path_config_source"]["path"]
                .as_str()
                .unwrap();
            let file = path
                .strip_prefix("/etc/posturio/keys/")
                .unwrap_or_else(|| panic!("{platform}: {path} is not under the keys mount"));
            let text = secret["stringData"][file]
                .as_str()
                .unwrap_or_else(|| panic!("{platform}: the Secret has no {file}"));
            let sds: Value = serde_yaml_like(text);
            let resource = &sds["resources"][0];
            assert_eq!(resource["name"], credential["name"], "{platform}: {file}");
            assert!(
                resource["generic_secret"]["secret"]["inline_string"].is_string(),
                "{platform}: {file}"
            );
        }
    }
    // Envoy Gateway: the EnvoyProxy mounts that Secret there, and the Secret lives where the
    // proxy pods run.
    let proxy = &file_documents("deploy/envoy-gateway/fallback/envoyproxy.yaml")[0];
    let deployment = &proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"];
    let volume = &deployment["pod"]["volumes"][0];
    let keys = &file_documents("deploy/envoy-gateway/fallback/provider-keys.yaml")[0];
    assert_eq!(volume["secret"]["secretName"], keys["metadata"]["name"]);
    assert_eq!(keys["metadata"]["namespace"], "envoy-gateway-system");
    let mount = &deployment["container"]["volumeMounts"][0];
    assert_eq!(mount["name"], volume["name"]);
    assert_eq!(mount["mountPath"], "/etc/posturio/keys");
    assert_eq!(mount["readOnly"], true);
}

/// One SDS file (YAML) as JSON, parsed as the manifests are.
fn serde_yaml_like(text: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sds.yaml");
    std::fs::write(&file, text).unwrap();
    documents(&file).into_iter().next().unwrap()
}

/// Istio: the upstream filter's VM is the listener filter's (one VM for both), the pool route
/// goes before the route envoyfilter.yaml patches, and every provider of the fallback policy
/// is a ServiceEntry's cluster.
#[test]
fn istio_fallback_names_agree_with_the_base_manifests() {
    let base = named(&manifests(), "EnvoyFilter", "posturio");
    let base_patches = base["spec"]["configPatches"].as_array().unwrap();
    let listener_vm = &base_patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_FILTER")
        .unwrap()["patch"]["value"]["typed_config"]["config"]["vm_config"];
    let base_route = base_patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_ROUTE")
        .unwrap()["match"]["routeConfiguration"]["vhost"]["route"]["name"]
        .clone();

    let pool = file_documents("deploy/istio/fallback/fallback.yaml");
    let filter = pool.iter().find(|d| d["kind"] == "EnvoyFilter").unwrap();
    assert_eq!(
        filter["spec"]["workloadSelector"],
        base["spec"]["workloadSelector"]
    );
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let cluster = &patches.iter().find(|p| p["applyTo"] == "CLUSTER").unwrap()["patch"];
    assert_eq!(cluster["operation"], "ADD");
    let mut wasm = Vec::new();
    objects_with(&cluster["value"], "vm_config", &mut wasm);
    assert_eq!(wasm.len(), 1);
    assert_eq!(
        &wasm[0]["vm_config"], listener_vm,
        "one VM for both filters"
    );
    let route = patches
        .iter()
        .find(|p| p["applyTo"] == "HTTP_ROUTE")
        .unwrap();
    assert_eq!(route["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        route["match"]["routeConfiguration"]["vhost"]["route"]["name"],
        base_route
    );

    let policy = read_json("deploy/istio/fallback/policy.json");
    let hosts: Vec<String> = of_kind(&manifests(), "ServiceEntry")
        .iter()
        .map(|s| format!("outbound|443||{}", s["spec"]["hosts"][0].as_str().unwrap()))
        .collect();
    for provider in policy["providers"].as_object().unwrap().values() {
        let cluster = provider["cluster"].as_str().unwrap().to_string();
        assert!(hosts.contains(&cluster), "{cluster} is no ServiceEntry's");
    }
    assert_eq!(
        policy["models"]["gpt-4o"]["cluster"],
        cluster["value"]["name"]
    );
}

/// Envoy Gateway: every cluster value of the fallback policy (providers and the pooled model)
/// is a header value an HTTPRoute rule matches, and the patched cluster is the pool rule's.
#[test]
fn envoy_gateway_fallback_names_agree_with_the_routes() {
    let all = manifests();
    let mut matched = Vec::new();
    for route in of_kind(&all, "HTTPRoute") {
        for (index, rule) in route["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            if let Some(value) = rule["matches"][0]["headers"][0]["value"].as_str() {
                let cluster = format!(
                    "httproute/{}/{}/rule/{index}",
                    route["metadata"]["namespace"].as_str().unwrap(),
                    route["metadata"]["name"].as_str().unwrap()
                );
                matched.push((value.to_string(), cluster));
            }
        }
    }
    let policy = read_json("deploy/envoy-gateway/fallback/policy.json");
    let mut values: Vec<&Value> = policy["providers"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| &p["cluster"])
        .collect();
    values.push(&policy["models"]["gpt-4o"]["cluster"]);
    for value in values {
        assert!(
            matched.iter().any(|(v, _)| v == value),
            "no HTTPRoute rule matches x-posturio-cluster: {value}"
        );
    }
    let pool_rule = &matched
        .iter()
        .find(|(v, _)| policy["models"]["gpt-4o"]["cluster"] == v.as_str())
        .unwrap()
        .1;
    let patch = named(&all, "EnvoyPatchPolicy", "posturio-fallback");
    for op in patch["spec"]["jsonPatches"].as_array().unwrap() {
        if op["name"] != "posturio-artifacts" {
            assert_eq!(&op["name"], pool_rule, "{op}");
        }
    }
}
