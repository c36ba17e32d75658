//! Changing the policy of a running Envoy: rendering a filter configuration file delivered by
//! ECDS, replacing a watched file the way Envoy expects, policies that differ from the shipped
//! one in a known way, and background clients that must not notice a change.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::build::{for_build, Build};
use super::envoy::{
    render_ports, replace_module_path, replace_once, replace_policy, yaml_path, ConfigParams,
};
use super::http::{self, Connection, Response};

pub const CHAT: &str = "/v1/chat/completions";
/// Approved for the default consumer by the shipped policy and by every variant here.
pub const ALLOWED: &str = "gpt-4o-mini";
/// In the shipped catalogue, but approved for the default consumer only by
/// `policy_approving_gated`.
pub const GATED: &str = "gpt-4o";

/// Renders an ECDS setup: `template` (a bootstrap) with its ports substituted, and the filter
/// configuration file `ecds` (relative to the repository) with the module path and policy
/// substituted, written to `dir`. The bootstrap's `path: <ecds>` is pointed at that copy.
/// Returns the bootstrap and the path of the copy.
pub fn render_ecds(
    template: &str,
    ecds: &str,
    params: &ConfigParams,
    dir: &Path,
) -> (String, PathBuf) {
    let bootstrap = render_ports(template, params);
    // A pool cluster's upstream filter loads the module from the bootstrap itself.
    let bootstrap = if bootstrap.contains("posturio.wasm") {
        replace_module_path(&bootstrap, &params.module)
    } else {
        bootstrap
    };
    let filter = super::read_repo_file(ecds);
    let filter = replace_policy(
        &replace_module_path(&filter, &params.module),
        &params.policy,
    );
    let filter = for_build(&filter, Build::current(), &yaml_path(&params.module));
    let name = Path::new(ecds)
        .file_name()
        .expect("the ECDS file has no name");
    let path = dir.join(name);
    write_atomically(&path, &filter);
    let absolute = serde_json::Value::String(path.display().to_string()).to_string();
    let bootstrap = replace_once(
        &bootstrap,
        &format!("path: {ecds}\n"),
        &format!("path: {absolute}\n"),
    );
    (bootstrap, path)
}

/// Writes `text` to `path` the way Envoy's file watch expects a change: into a new file in
/// the same directory, then renamed over `path`, so that Envoy never reads half a file.
pub fn write_atomically(path: &Path, text: &str) {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn example_policy_json() -> serde_json::Value {
    serde_json::from_str(&super::example_policy()).unwrap()
}

/// The shipped policy with `GATED` also approved for the default consumer.
pub fn policy_approving_gated() -> String {
    let mut policy = example_policy_json();
    let models = policy["consumers"]["default"]["models"]
        .as_array_mut()
        .expect("envoy/policy.json has no list consumers.default.models");
    assert!(
        !models.iter().any(|m| m == GATED),
        "envoy/policy.json already approves {GATED} for the default consumer"
    );
    models.push(GATED.into());
    serde_json::to_string_pretty(&policy).unwrap()
}

/// The shipped policy with a misspelt top-level key `consumerz`, which the filter refuses.
pub fn invalid_policy() -> String {
    let mut policy = example_policy_json();
    policy["consumerz"] = serde_json::json!({});
    serde_json::to_string_pretty(&policy).unwrap()
}

/// A chat request for `model` from the default consumer.
pub fn chat_request(port: u16, model: &str, keep_alive: bool) -> Vec<u8> {
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("x-posturio-consumer", "default"),
    ];
    if keep_alive {
        headers.push(("Connection", "keep-alive"));
    }
    http::build_request(port, "POST", CHAT, &headers, body.to_string().as_bytes())
}

/// A chat request for `model` from the default consumer, on a new connection.
pub fn chat(port: u16, model: &str) -> Response {
    http::send_raw(port, &chat_request(port, model, false))
}

/// Whether `response` is the mock openai provider's answer for `model`: it was forwarded.
pub fn forwarded(response: &Response, model: &str) -> bool {
    response.status == 200
        && response.text().contains("mock openai provider")
        && serde_json::from_slice::<serde_json::Value>(&response.body)
            .is_ok_and(|body| body["model"] == model)
}

/// Whether `response` is Posturio's refusal of a model the consumer may not use.
pub fn not_approved(response: &Response) -> bool {
    response.status == 403
        && serde_json::from_slice::<serde_json::Value>(&response.body)
            .is_ok_and(|body| body["error"]["code"] == "model_not_approved")
}

/// What the background clients saw.
#[derive(Debug, Default)]
pub struct TrafficReport {
    /// Requests sent, by all clients.
    pub sent: usize,
    /// Connections the keep-alive client opened (1 if Envoy never closed its connection).
    pub keep_alive_connections: usize,
    /// Requests sent on the keep-alive client's connections.
    pub keep_alive_requests: usize,
}

/// Clients that request `ALLOWED` in a loop on threads until stopped: `fresh` clients that
/// open a connection per request, and one that keeps its connection open (opening another
/// only when Envoy closes it).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<ClientRun>>,
}

#[derive(Debug, Default)]
struct ClientRun {
    keep_alive: bool,
    sent: usize,
    connections: usize,
    failures: Vec<String>,
}

impl Traffic {
    pub fn start(port: u16, fresh: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..=fresh)
            .map(|client| {
                let stop = Arc::clone(&stop);
                let keep_alive = client == fresh;
                std::thread::spawn(move || Traffic::run(port, keep_alive, &stop))
            })
            .collect();
        Traffic { stop, threads }
    }

    fn run(port: u16, keep_alive: bool, stop: &AtomicBool) -> ClientRun {
        let mut run = ClientRun {
            keep_alive,
            ..ClientRun::default()
        };
        let client = if keep_alive { "keep-alive" } else { "fresh" };
        let mut connection: Option<Connection> = None;
        while !stop.load(Ordering::Relaxed) {
            run.sent += 1;
            let n = run.sent;
            let mut conn = match connection.take() {
                Some(conn) => conn,
                None => match Connection::try_open(port) {
                    Ok(conn) => {
                        run.connections += 1;
                        conn
                    }
                    Err(e) => {
                        run.failures.push(format!("{client} request {n}: {e}"));
                        continue;
                    }
                },
            };
            let result = conn
                .try_send(&chat_request(port, ALLOWED, keep_alive))
                .and_then(|()| conn.try_read_response());
            match result {
                Ok(response) if !forwarded(&response, ALLOWED) => {
                    run.failures
                        .push(format!("{client} request {n}: {response:?}"));
                }
                Ok(response) => {
                    if keep_alive && response.header("connection") != Some("close") {
                        connection = Some(conn);
                    }
                }
                Err(e) => run.failures.push(format!("{client} request {n}: {e}")),
            }
        }
        run
    }

    /// Stops the clients; panics unless every client sent requests and every request was
    /// forwarded.
    pub fn finish(self) -> TrafficReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = TrafficReport::default();
        let mut failures = Vec::new();
        for thread in self.threads {
            let run = thread.join().unwrap();
            assert!(run.sent > 0, "a background client sent nothing");
            report.sent += run.sent;
            if run.keep_alive {
                report.keep_alive_connections = run.connections;
                report.keep_alive_requests = run.sent;
            }
            failures.extend(run.failures);
        }
        assert!(
            failures.is_empty(),
            "{} of {} requests for an allowed model failed during the change; the first:\n{}",
            failures.len(),
            report.sent,
            failures[..failures.len().min(10)].join("\n")
        );
        report
    }
}
