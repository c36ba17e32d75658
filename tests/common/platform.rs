//! Runs, in real Envoy, the configuration that Istio or Envoy Gateway generates for the
//! manifests in `deploy/` (built by `tests/platforms/generate.py`), in front of the mock
//! provider speaking TLS with a throwaway certificate for the providers' host names.
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::envoy::{envoy_binary, module_path};
use super::mock::{python, TlsMock};
use super::{repo_path, Envoy, MockProvider};

/// The hosts the manifests name, and the mock listener that plays each.
pub const HOSTS: [(&str, &str); 4] = [
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("artifacts.example.com", "artifacts"),
    // The Azure OpenAI resource of the fallback manifests (deploy/*/fallback/).
    ("example-resource.openai.azure.com", "azure"),
];

/// Where deploy/istio/envoyfilter.yaml fetches the module from (on artifacts.example.com).
pub const MODULE_URL_PATH: &str = "/posturio/0.1.0/posturio.wasm";

/// A throwaway CA and a server certificate it signed for every host in `HOSTS`.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// Makes them with the openssl command-line tool; no key is ever kept.
    pub fn new() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("posturio-certs-")
            .tempdir()
            .unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| panic!("cannot run openssl (needed for test TLS): {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let sans: Vec<String> = HOSTS.iter().map(|(h, _)| format!("DNS:{h}")).collect();
        std::fs::write(
            dir.path().join("ext.cnf"),
            format!("subjectAltName={}\n", sans.join(",")),
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=posturio test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        run(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=mock provider",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        Certs { dir }
    }
}

/// The generated configuration of one platform, running, with its mock providers.
pub struct Platform {
    pub envoy: Envoy,
    pub mock: MockProvider,
    pub certs: Certs,
}

/// What to build with `tests/platforms/generate.py`.
pub struct Generate<'a> {
    pub platform: &'a str,
    /// Where the providers' and the artifact server's names resolve; none: a closed port.
    pub mock: Option<&'a MockProvider>,
    /// More manifests (relative to the repository), applied beside the platform's own.
    pub extra: &'a [&'a str],
    /// More names and the local ports they resolve to (they win over `mock`'s).
    pub endpoints: &'a [(&'a str, u16)],
    /// A policy file (relative to the repository) rendered in place of the manifests' own.
    pub policy: Option<&'a str>,
}

impl Generate<'_> {
    pub fn new(platform: &str) -> Generate<'_> {
        Generate {
            platform,
            mock: None,
            extra: &[],
            endpoints: &[],
            policy: None,
        }
    }

    /// Builds the configuration into `dir`; returns the configuration file and the extra
    /// Envoy arguments the platform passes. Panics with the builder's message when the
    /// manifests cannot produce a working configuration.
    pub fn run(
        &self,
        dir: &Path,
        listener_port: u16,
        admin_port: u16,
        certs: &Certs,
    ) -> (PathBuf, Vec<String>) {
        let mut command = Command::new(python());
        command
            .arg(repo_path("tests/platforms/generate.py"))
            .arg(self.platform)
            .arg("--out")
            .arg(dir)
            .arg("--module")
            .arg(module_path())
            .args(["--listen-port", &listener_port.to_string()])
            .args(["--admin-port", &admin_port.to_string()])
            .arg("--ca")
            .arg(certs.ca());
        for (host, listener) in HOSTS {
            // Without a mock, the endpoints are a port nothing listens on.
            let port = self.mock.map_or(1, |m| m.port(listener));
            command.arg("--endpoint");
            command.arg(format!("{host}={port}"));
        }
        for (host, port) in self.endpoints {
            command.arg("--endpoint");
            command.arg(format!("{host}={port}"));
        }
        for relative in self.extra {
            command.arg("--extra").arg(repo_path(relative));
        }
        if let Some(policy) = self.policy {
            command.arg("--policy").arg(repo_path(policy));
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "tests/platforms/generate.py {} failed:\n{}",
            self.platform,
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let config = PathBuf::from(line["config"].as_str().unwrap());
        let args = line["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        (config, args)
    }
}

/// Starts the mock providers (TLS) and Envoy with the platform's generated configuration.
pub fn start(platform: &str) -> Platform {
    start_with(Generate::new(platform))
}

/// The same with more manifests, name overrides or another policy (`build.mock` is set here).
pub fn start_with(build: Generate<'_>) -> Platform {
    envoy_binary();
    let certs = Certs::new();
    let mock = MockProvider::start_tls(&TlsMock {
        listeners: HOSTS.iter().map(|(_, l)| l.to_string()).collect(),
        cert: certs.cert(),
        key: certs.key(),
        files: vec![(MODULE_URL_PATH.to_string(), module_path())],
    });
    let build = Generate {
        mock: Some(&mock),
        ..build
    };
    let envoy =
        Envoy::start_generated(&|listener, admin, dir| build.run(dir, listener, admin, &certs));
    Platform { envoy, mock, certs }
}

/// The Service of the Istio gateway, as a workload's sidecar routes to it (egress.yaml).
pub const ISTIO_GATEWAY_SERVICE: &str = "istio-ingress.istio-ingress.svc.cluster.local";

/// A workload's sidecar as Istio generates it for deploy/istio/egress.yaml, sending the
/// providers' names to the gateway listening on `gateway_port`.
pub fn start_istio_sidecar(gateway_port: u16) -> Envoy {
    let certs = Certs::new();
    let endpoints = [(ISTIO_GATEWAY_SERVICE, gateway_port)];
    let build = Generate {
        endpoints: &endpoints,
        ..Generate::new("istio-sidecar")
    };
    Envoy::start_generated(&|listener, admin, dir| build.run(dir, listener, admin, &certs))
}

/// `envoy --mode validate` on the platform's generated configuration; returns Envoy's output
/// when it is rejected.
pub fn validate(platform: &str) -> Result<(), String> {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    // Ports are only written into the configuration: validate mode binds nothing.
    let (config, args) = Generate::new(platform).run(dir.path(), 10080, 15000, &certs);
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c"])
        .arg(&config)
        .args(&args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The generated configuration (JSON) with the manifests `extra` (relative to the repository)
/// applied beside the platform's own; for tests that read it rather than run it.
pub fn generated(platform: &str, extra: &[&str]) -> serde_json::Value {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let build = Generate {
        extra,
        ..Generate::new(platform)
    };
    let (config, _) = build.run(dir.path(), 10080, 15000, &certs);
    serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap()
}

/// A chat request for `model` in the OpenAI shape, as a client of the gateway sends it.
pub fn chat(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]})
}

/// A Messages request for `model` in the Anthropic shape.
pub fn message(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "max_tokens": 16,
                       "messages": [{"role": "user", "content": "Hi"}]})
}

impl Platform {
    /// Posts `body` to `path` through the gateway with `host` and `headers`.
    pub fn post(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> super::Response {
        let mut all: Vec<(&str, &str)> = vec![("Host", host)];
        all.extend_from_slice(headers);
        super::http::post_json(self.envoy.port(), path, &all, body)
    }
}

/// After one allowed gpt-4o-mini request and one denied claude-sonnet-4 request from the default
/// consumer: Posturio's request counter has one sample for each, labelled, in Prometheus.
pub fn assert_labelled_metrics(envoy: &Envoy) {
    let samples = envoy.posturio_samples();
    let find = |model: &str, decision: &str| {
        samples
            .iter()
            .find(|((name, labels), _)| {
                name == "posturio_requests_total"
                    && labels.get("model").map(String::as_str) == Some(model)
                    && labels.get("decision").map(String::as_str) == Some(decision)
                    && labels.get("consumer").map(String::as_str) == Some("default")
            })
            .map(|(_, value)| *value)
    };
    assert_eq!(
        find("gpt-4o-mini", "allow"),
        Some(1.0),
        "no labelled allow sample: {samples:#?}\n{}",
        envoy.admin_get("/stats/prometheus").text()
    );
    assert_eq!(
        find("claude-sonnet-4", "deny"),
        Some(1.0),
        "no labelled deny sample: {samples:#?}"
    );
}

/// The fallback pool of `deploy/<platform>/fallback/` as the platform hands it to Envoy
/// (`tests/platforms/pool.py`): `envoy --mode validate` on it, then the configuration (JSON), or
/// Envoy's output when it is rejected.
pub fn validate_pool(platform: &str) -> Result<serde_json::Value, String> {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(python())
        .arg(repo_path("tests/platforms/pool.py"))
        .arg(platform)
        .arg("--out")
        .arg(dir.path())
        .arg("--ca-file")
        .arg(certs.ca())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/platforms/pool.py {platform} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = PathBuf::from(line["config"].as_str().unwrap());
    let checked = Command::new(envoy_binary())
        .args(["--mode", "validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    if !checked.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ));
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap())
}

/// The policy shipped beside a platform's fallback manifests.
pub fn fallback_policy(platform: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo_path(&format!(
        "deploy/{platform}/fallback/policy.json"
    )))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What every platform's pool must hold, read from the configuration Envoy accepted and the
/// platform's fallback policy: the
/// endpoints name the policy's providers of `model` in its target order, one priority each;
/// the upstream filters are Posturio (upstream role), the per-provider key injector with one
/// entry per target, the target header's removal, the codec; the route that sends
/// `route_value` to the pool retries 429, 5xx, resets and refused connections into the next
/// priority after one attempt, keeps the body for it, and lets no target header through.
pub fn assert_fallback_pool(
    platform: &str,
    config: &serde_json::Value,
    model: &str,
    route_value: &str,
) {
    use serde_json::json;
    let policy = fallback_policy(platform);
    let targets: Vec<&str> = policy["models"][model]["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets for {model} in {policy}"))
        .iter()
        .map(|t| t["provider"].as_str().unwrap())
        .collect();
    assert_eq!(policy["models"][model]["cluster"], route_value);

    let routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    let route = routes
        .iter()
        .find(|r| {
            r["match"]["headers"].as_array().is_some_and(|h| {
                h.iter().any(|h| {
                    h["name"] == "x-posturio-cluster" && h["string_match"]["exact"] == route_value
                })
            })
        })
        .unwrap_or_else(|| panic!("no route matches x-posturio-cluster: {route_value}"));
    let action = &route["route"];
    let retry = &action["retry_policy"];
    let retry_on: Vec<&str> = retry["retry_on"].as_str().unwrap().split(',').collect();
    for wanted in ["5xx", "reset", "connect-failure", "retriable-status-codes"] {
        assert!(
            retry_on.contains(&wanted),
            "retry_on lacks {wanted}: {retry}"
        );
    }
    assert!(
        retry["retriable_status_codes"]
            .as_array()
            .unwrap()
            .contains(&json!(429)),
        "{retry}"
    );
    assert!(retry["num_retries"].as_u64().unwrap() >= 1, "{retry}");
    assert_eq!(
        retry["retry_priority"]["name"],
        "envoy.retry_priorities.previous_priorities"
    );
    assert_eq!(
        retry["retry_priority"]["typed_config"]["update_frequency"],
        1
    );
    assert_eq!(action["auto_host_rewrite"], true, "{action}");
    let removed = route["request_headers_to_remove"].as_array().unwrap();
    for header in ["x-posturio-cluster", "x-posturio-target"] {
        assert!(removed.contains(&json!(header)), "{route}");
    }

    // The pool: the route names it, or takes it from the header Posturio sets.
    let pool_name = action["cluster"].as_str().unwrap_or(route_value);
    let clusters = config["static_resources"]["clusters"].as_array().unwrap();
    let pool = clusters
        .iter()
        .find(|c| c["name"] == pool_name)
        .unwrap_or_else(|| panic!("no cluster {pool_name}"));
    let mut by_priority: Vec<(u64, Vec<String>)> = pool["load_assignment"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let providers = l["lb_endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    e["metadata"]["filter_metadata"]["posturio"]["provider"]
                        .as_str()
                        .unwrap_or_else(|| panic!("endpoint without posturio.provider: {e}"))
                        .to_string()
                })
                .collect();
            (l["priority"].as_u64().unwrap_or(0), providers)
        })
        .collect();
    by_priority.sort();
    let in_order: Vec<String> = by_priority.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(
        in_order, targets,
        "endpoints by priority vs the policy's targets"
    );
    if let Some(limit) = route["per_request_buffer_limit_bytes"].as_u64() {
        let max_body = policy["max_body_bytes"].as_u64().unwrap_or(4_194_304);
        assert!(limit >= max_body, "buffer limit {limit} < max_body_bytes");
    }

    let filters = pool["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.wasm",
            "envoy.filters.http.match_delegate",
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.upstream_codec"
        ]
    );
    let wasm = &filters[0]["typed_config"]["config"];
    let role: serde_json::Value =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(role, json!({"role": "upstream"}));
    assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
    let tree = &filters[1]["typed_config"]["xds_matcher"]["matcher_tree"];
    assert_eq!(
        tree["input"]["typed_config"]["header_name"],
        "x-posturio-target"
    );
    let mut keyed: Vec<&str> = tree["exact_match_map"]["map"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keyed.sort_unstable();
    let mut expected = targets.clone();
    expected.sort_unstable();
    assert_eq!(keyed, expected, "one key per target provider");
    assert_eq!(
        filters[2]["typed_config"]["mutations"]["request_mutations"][0]["remove"],
        "x-posturio-target"
    );
}
