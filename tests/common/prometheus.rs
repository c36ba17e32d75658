//! A real Prometheus (Debian's package, which `make prometheus` unpacks into `.prometheus/`)
//! scraping one Envoy's `/stats/prometheus` every second, queried through its HTTP API as
//! Grafana queries it. Started on a free port with its data in a temporary directory, killed
//! on drop (its log printed if the test is failing).
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::envoy::reserve_port;
use super::{http, repo_path, tail};

/// How often Prometheus scrapes Envoy; the dashboard's `$__rate_interval` follows from it.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
const READY_DEADLINE: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// The Prometheus binary: `$POSTURIO_PROMETHEUS`, else `<repo>/.prometheus/usr/bin/prometheus`.
/// Panics if it is missing: the dashboard test never skips.
pub fn prometheus_binary() -> PathBuf {
    let path = match std::env::var_os("POSTURIO_PROMETHEUS").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => repo_path(".prometheus/usr/bin/prometheus"),
    };
    assert!(
        path.exists(),
        "Prometheus is not installed: {} does not exist. `make test` unpacks Debian's \
         prometheus package into .prometheus/ before running the tests (`make prometheus` alone \
         does just that); or set POSTURIO_PROMETHEUS to a Prometheus 2.x binary.",
        path.display()
    );
    path
}

/// A running Prometheus that scrapes one Envoy admin port.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `http://127.0.0.1:<envoy_admin_port>/stats/prometheus`
    /// every second (the scrape configuration of docs/metrics.md), and waits until it is
    /// ready; panics with its log if it is not within 30 s.
    pub fn scraping(envoy_admin_port: u16) -> Prometheus {
        let binary = prometheus_binary();
        let dir = tempfile::Builder::new()
            .prefix("posturio-prometheus-")
            .tempdir()
            .unwrap();
        let secs = SCRAPE_INTERVAL.as_secs();
        let config = format!(
            "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n\
             scrape_configs:\n- job_name: posturio\n  metrics_path: /stats/prometheus\n  \
             static_configs:\n  - targets: [\"127.0.0.1:{envoy_admin_port}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let listener = reserve_port();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("prometheus.log")).unwrap())
            .stderr(File::create(dir.path().join("prometheus.stderr.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Prometheus {}: {e}", binary.display()));
        let mut prometheus = Prometheus { child, port, dir };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "Prometheus exited during startup ({status}):\n{}",
                    self.log()
                );
            }
            if let Ok(response) = http::try_send_raw(
                self.port,
                &http::build_request(self.port, "GET", "/-/ready", &[], b""),
            ) {
                if response.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within {READY_DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prometheus's log (its stderr).
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("prometheus.stderr.log").unwrap_or_default(),
            read("prometheus.log").unwrap_or_default()
        )
    }

    /// GET `path` with `params` (percent-encoded here) on the HTTP API; the `data` of a
    /// successful answer; panics with Prometheus's error (a PromQL parse error, say) otherwise.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", http::percent_encode(k), http::percent_encode(v)))
            .collect();
        let target = format!("{path}?{}", query.join("&"));
        let response = http::get(self.port, &target, &[]);
        let body: Value = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
            panic!("{target}: answer is not JSON ({e}): {response:?}");
        });
        assert!(
            response.status == 200 && body["status"] == "success",
            "{target}: {} {body}",
            response.status
        );
        body["data"].clone()
    }

    /// The value of an instant query at the current time (a vector, or a scalar).
    pub fn query(&self, promql: &str) -> Value {
        self.api("/api/v1/query", &[("query", promql)])
    }

    /// The series of a range query from `start` to `end` (Unix seconds) at `step` seconds,
    /// as Grafana runs a time series or stat panel.
    pub fn query_range(&self, promql: &str, start: f64, end: f64, step: u64) -> Value {
        let (start, end, step) = (start.to_string(), end.to_string(), format!("{step}s"));
        self.api(
            "/api/v1/query_range",
            &[
                ("query", promql),
                ("start", &start),
                ("end", &end),
                ("step", &step),
            ],
        )
    }

    /// Whether the Envoy target has been scraped successfully (`up` is 1).
    pub fn target_up(&self) -> bool {
        let data = self.query("up");
        data["result"]
            .as_array()
            .is_some_and(|r| r.iter().any(|s| s["value"][1] == "1"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- Prometheus log (last {LOG_TAIL_LINES} lines), port {} ----\n{}",
                self.port,
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
