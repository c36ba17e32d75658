//! A new policy takes effect without restarting Envoy.
//!
//! Envoy runs with the listener of the shipped `envoy/envoy.yaml` (the one with the Posturio
//! filter and its policy) delivered by LDS from a file that Envoy watches; the clusters stay
//! static. Replacing that file the way Envoy expects (write a new file, then rename it over
//! the old one) hands Posturio a new plugin configuration while traffic flows: a valid policy
//! takes effect in the same Envoy process, and an invalid one is rejected, logged with the
//! JSON path of the mistake, while the previous policy keeps serving.
//!
//! Envoy applies the new policy to connections accepted after the update. A request that
//! arrived earlier, and any later request on a connection accepted earlier, is decided by the
//! policy that connection started with, until Envoy drains it (`--drain-time-s`, 600 s by
//! default).
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::envoy::replace_policy;
use common::rollout::{
    chat, chat_request, forwarded, invalid_policy, not_approved, policy_approving_gated,
    write_atomically, Traffic, GATED,
};
use common::{Connection, Envoy, EnvoyOptions, MockProvider, Response};

/// The file Envoy reads its listeners from, in a directory of the test's own.
const LDS_FILE: &str = "lds.yaml";
const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Envoy 1.40's counters of listener files applied and rejected.
const LDS_SUCCESS: &str = "listener_manager.lds.update_success";
const LDS_REJECTED: &str = "listener_manager.lds.update_rejected";
/// How long a delivered listener file may take to be applied or rejected.
const UPDATE_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// How long the background traffic runs before and after each change.
const TRAFFIC_MARGIN: Duration = Duration::from_millis(300);
/// Background clients that open a connection per request, besides one keep-alive client.
const FRESH_CLIENTS: usize = 3;
/// Markers of a Wasm VM that failed while serving, as opposed to a configuration it refused.
const TRAP_MARKERS: &[&str] = &[
    "Function: proxy_on_",
    "Uncaught RuntimeError",
    "panicked at",
];

thread_local! {
    /// Where `deliver_listeners_by_lds` writes the listener file. The harness runs that edit
    /// on the thread that starts Envoy, and an edit is a plain `fn`, so this is how it learns
    /// the directory.
    static LDS_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Splits a rendered configuration into the bootstrap without `static_resources.listeners`
/// and the listener list, its items moved to the left margin. Panics unless there is exactly
/// one `  listeners:` line, directly under the top-level `static_resources:`.
fn split_listeners(config: &str) -> (String, String) {
    let lines: Vec<&str> = config.lines().collect();
    let heads: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end() == "  listeners:")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        heads.len(),
        1,
        "expected exactly one `  listeners:` line in the rendered configuration, found {}; \
         update tests/reload.rs",
        heads.len()
    );
    let head = heads[0];
    let parent = lines[..head]
        .iter()
        .rev()
        .find(|l| indent_of(l) == 0 && !l.trim().is_empty() && !l.starts_with('#'));
    assert_eq!(
        parent.map(|l| l.trim_end()),
        Some("static_resources:"),
        "`listeners:` is not directly under `static_resources:`; update tests/reload.rs"
    );
    // The list is every line indented deeper than `listeners:`, and its items (`- ` at the
    // same indentation). Blank lines and comments at its end belong to what follows.
    let mut next = head + 1;
    let mut end = head + 1;
    while next < lines.len() {
        let line = lines[next];
        let text = line.trim_start();
        next += 1;
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if indent_of(line) < 2 || (indent_of(line) == 2 && !text.starts_with("- ")) {
            break;
        }
        end = next;
    }
    let listeners: Vec<&str> = lines[head + 1..end]
        .iter()
        .map(|l| l.get(2..).unwrap_or(""))
        .collect();
    let mut rest: Vec<&str> = lines[..head].to_vec();
    rest.extend_from_slice(&lines[end..]);
    (rest.join("\n") + "\n", listeners.join("\n") + "\n")
}

/// The listener file Envoy watches (an LDS response) with `listeners`, a YAML list at the
/// left margin.
fn lds_resources(listeners: &str) -> String {
    let mut out = String::from("resources:\n");
    let mut count = 0;
    for line in listeners.lines() {
        match line.strip_prefix("- ") {
            Some(first) => {
                count += 1;
                out.push_str(&format!("- \"@type\": {LISTENER_TYPE}\n  {first}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(count > 0, "no listener in:\n{listeners}");
    out
}

/// `bootstrap` with its listeners read from the file `lds`, which Envoy watches. Envoy
/// requires a node id and cluster for any xDS source, a file included.
fn bootstrap_with_lds(bootstrap: &str, lds: &Path) -> String {
    let path = serde_json::Value::String(lds.display().to_string());
    format!(
        "{bootstrap}\n\
         node: {{ id: posturio, cluster: posturio }}\n\
         dynamic_resources:\n  lds_config:\n    path_config_source:\n      path: {path}\n"
    )
}

/// The harness's `edit_config`: moves the rendered listener into the listener file, in the
/// directory set in `LDS_DIR`, and points the bootstrap at that file.
fn deliver_listeners_by_lds(config: String) -> String {
    let dir = LDS_DIR
        .with(|d| d.borrow().clone())
        .expect("LDS_DIR is not set on the thread that starts Envoy");
    let (bootstrap, listeners) = split_listeners(&config);
    let lds = dir.join(LDS_FILE);
    write_atomically(&lds, &lds_resources(&listeners));
    bootstrap_with_lds(&bootstrap, &lds)
}

/// An Envoy whose listener comes from a watched listener file. Two workers, each with its
/// own Wasm VM: a new policy has to reach both.
struct LdsEnvoy {
    envoy: Envoy,
    port: u16,
    lds: PathBuf,
    /// The listener file as first delivered; each change replaces only its policy.
    listeners: String,
    _dir: tempfile::TempDir,
}

impl LdsEnvoy {
    fn start(policy: &str, mock: &MockProvider) -> LdsEnvoy {
        let dir = tempfile::Builder::new()
            .prefix("posturio-lds-")
            .tempdir()
            .unwrap();
        LDS_DIR.with(|d| *d.borrow_mut() = Some(dir.path().to_path_buf()));
        let started = Envoy::try_start_with(
            EnvoyOptions::new(policy)
                .mock(mock)
                .concurrency(2)
                .edit_config(deliver_listeners_by_lds),
        );
        LDS_DIR.with(|d| *d.borrow_mut() = None);
        let envoy = started.unwrap_or_else(|e| panic!("{e}"));
        let lds = dir.path().join(LDS_FILE);
        let listeners = std::fs::read_to_string(&lds).unwrap();
        assert_eq!(
            common::embedded_policy(&listeners).trim(),
            policy.trim(),
            "the listener file does not carry the policy"
        );
        assert_eq!(
            envoy.counter(LDS_SUCCESS),
            Some(1),
            "the first listener file was not applied once:\n{}",
            envoy.stats("^listener_manager\\.")
        );
        LdsEnvoy {
            port: envoy.port(),
            envoy,
            lds,
            listeners,
            _dir: dir,
        }
    }

    /// Replaces the listener file with one whose policy is `policy`.
    fn deliver(&self, policy: &str) {
        write_atomically(&self.lds, &replace_policy(&self.listeners, policy));
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.counter(name).unwrap_or(0)
    }

    /// Waits until counter `name` exceeds `before`; panics after `UPDATE_DEADLINE`.
    fn wait_counter_above(&self, name: &str, before: u64) {
        let deadline = Instant::now() + UPDATE_DEADLINE;
        while self.counter(name) <= before {
            assert!(
                Instant::now() < deadline,
                "{name} did not go above {before} within {UPDATE_DEADLINE:?}:\n{}",
                self.envoy.stats("^listener_manager\\.")
            );
            std::thread::sleep(POLL);
        }
    }

    /// Asks for `GATED` on new connections until the answer is `forwarded` (or refused as
    /// not approved, when `forwarded` is false); panics after `UPDATE_DEADLINE`, or on any
    /// other answer. Returns how long it took.
    fn wait_until_gated(&self, want_forwarded: bool) -> Duration {
        let start = Instant::now();
        loop {
            let response = chat(self.port, GATED);
            let is_forwarded = forwarded(&response, GATED);
            assert!(
                is_forwarded || not_approved(&response),
                "neither forwarded nor refused as not approved: {response:?}"
            );
            if is_forwarded == want_forwarded {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < UPDATE_DEADLINE,
                "{GATED} was still {} {UPDATE_DEADLINE:?} after the new policy was delivered",
                if want_forwarded {
                    "refused"
                } else {
                    "forwarded"
                }
            );
            std::thread::sleep(POLL);
        }
    }

    /// Panics unless several requests for `GATED`, on new connections, are all forwarded
    /// (`want_forwarded`) or all refused: every worker serves the same policy.
    fn assert_gated(&self, want_forwarded: bool) {
        for _ in 0..10 {
            let response = chat(self.port, GATED);
            let ok = if want_forwarded {
                forwarded(&response, GATED)
            } else {
                not_approved(&response)
            };
            assert!(ok, "want forwarded: {want_forwarded}; got {response:?}");
        }
    }

    /// Panics unless Envoy is the same process as at start and still running.
    fn assert_same_process(&mut self, pid: u32) {
        assert_eq!(self.envoy.pid(), pid);
        assert!(self.envoy.is_running(), "Envoy exited");
        let info = self.envoy.admin_get("/server_info").json();
        assert_eq!(info["state"], "LIVE", "{info}");
        assert_eq!(info["command_line_options"]["restart_epoch"], 0, "{info}");
    }
}

/// Requests that start before a change and finish after it: the first request on a
/// keep-alive connection is complete, the second has its headers and part of its body sent.
struct Pending {
    keep_alive: Connection,
    in_flight: Connection,
    rest: Vec<u8>,
}

impl Pending {
    /// Returns them with the response to the first request.
    fn start(port: u16, model: &str) -> (Pending, Response) {
        let mut keep_alive = Connection::open(port);
        keep_alive.send(&chat_request(port, model, true));
        let first = keep_alive.read_response();
        assert_ne!(first.header("connection"), Some("close"), "{first:?}");
        let request = chat_request(port, model, true);
        let (head, rest) = request.split_at(request.len() - 10);
        let mut in_flight = Connection::open(port);
        in_flight.send(head);
        let pending = Pending {
            keep_alive,
            in_flight,
            rest: rest.to_vec(),
        };
        (pending, first)
    }

    /// Finishes the request in flight, then sends `model` again on the keep-alive connection.
    fn finish(mut self, port: u16, model: &str) -> (Response, Response) {
        self.in_flight.send(&self.rest);
        let in_flight = self.in_flight.read_response();
        self.keep_alive.send(&chat_request(port, model, true));
        (in_flight, self.keep_alive.read_response())
    }
}

#[test]
fn the_listener_moves_into_the_lds_file() {
    let template = common::read_repo_file(common::envoy::TEMPLATE);
    let (bootstrap, listeners) = split_listeners(&template);
    let lds = lds_resources(&listeners);
    assert!(
        lds.starts_with(&format!(
            "resources:\n- \"@type\": {LISTENER_TYPE}\n  name: llm\n"
        )),
        "{lds}"
    );
    // The listener, with the filter and its policy, is in the listener file only.
    assert_eq!(
        common::embedded_policy(&lds),
        common::embedded_policy(&template)
    );
    assert!(lds.contains("envoy.filters.http.wasm") && lds.contains("per_connection_buffer"));
    assert!(!bootstrap.contains("listeners:") && !bootstrap.contains("value: |"));
    assert!(bootstrap.contains("\nstatic_resources:\n\n  clusters:\n"));
    // No line is lost: the listener file adds `resources:` and an `@type` per listener.
    assert_eq!(
        bootstrap.lines().count() + listeners.lines().count() + 1,
        template.lines().count()
    );
    assert_eq!(lds.lines().count(), listeners.lines().count() + 2);
}

#[test]
fn a_new_policy_takes_effect_without_restarting_envoy() {
    let mock = MockProvider::start();
    let mut gateway = LdsEnvoy::start(&common::example_policy(), &mock);
    let pid = gateway.envoy.pid();
    gateway.assert_gated(false);
    let (pending, first) = Pending::start(gateway.port, GATED);
    assert!(not_approved(&first), "{first:?}");

    let traffic = Traffic::start(gateway.port, FRESH_CLIENTS);
    std::thread::sleep(TRAFFIC_MARGIN);
    gateway.deliver(&policy_approving_gated());
    let took = gateway.wait_until_gated(true);
    gateway.wait_counter_above(LDS_SUCCESS, 1);
    std::thread::sleep(TRAFFIC_MARGIN);
    let sent = traffic.finish().sent;
    eprintln!("new policy in effect {took:?} after delivery; {sent} requests meanwhile");

    gateway.assert_gated(true);
    assert_eq!(gateway.counter(LDS_SUCCESS), 2);
    assert_eq!(gateway.counter(LDS_REJECTED), 0);
    gateway.assert_same_process(pid);

    // Requests on connections accepted before the change are still decided by the old
    // policy: the one in flight, and the next one on the kept-alive connection.
    let (in_flight, kept_alive) = pending.finish(gateway.port, GATED);
    assert!(not_approved(&in_flight), "{in_flight:?}");
    assert!(not_approved(&kept_alive), "{kept_alive:?}");

    let reached = mock
        .requests_to("openai")
        .iter()
        .filter(|r| r.json()["model"] == GATED)
        .count();
    assert!(
        reached > 0,
        "no {GATED} request reached the openai listener"
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn an_invalid_policy_is_rejected_and_the_previous_one_keeps_serving() {
    let mock = MockProvider::start();
    let mut gateway = LdsEnvoy::start(&common::example_policy(), &mock);
    let pid = gateway.envoy.pid();
    let traffic = Traffic::start(gateway.port, FRESH_CLIENTS);

    // A valid change first, so that the policy to keep is not the one Envoy started with.
    gateway.deliver(&policy_approving_gated());
    gateway.wait_until_gated(true);
    gateway.wait_counter_above(LDS_SUCCESS, 1);
    gateway.envoy.assert_no_wasm_failure();

    let delivered = Instant::now();
    gateway.deliver(&invalid_policy());
    gateway.wait_counter_above(LDS_REJECTED, 0);
    let took = delivered.elapsed();
    let error = "invalid configuration: consumerz: unknown field `consumerz`";
    assert!(
        gateway.envoy.wait_for_log(error, UPDATE_DEADLINE).is_some(),
        "the log does not say `{error}`"
    );
    std::thread::sleep(TRAFFIC_MARGIN);
    gateway.assert_gated(true);
    assert_eq!(gateway.counter(LDS_SUCCESS), 2);
    assert_eq!(gateway.counter(LDS_REJECTED), 1);

    // A rejected file does not stop the watch: the next valid one is applied.
    gateway.deliver(&common::example_policy());
    gateway.wait_until_gated(false);
    gateway.wait_counter_above(LDS_SUCCESS, 2);
    std::thread::sleep(TRAFFIC_MARGIN);
    let sent = traffic.finish().sent;
    eprintln!("invalid policy rejected {took:?} after delivery; {sent} requests meanwhile");

    gateway.assert_gated(false);
    assert_eq!(gateway.counter(LDS_REJECTED), 1);
    gateway.assert_same_process(pid);
    // Envoy logs the refused configuration as a plugin that failed to load; no VM failed
    // while serving.
    std::thread::sleep(POLL);
    let log = gateway.envoy.log();
    let traps: Vec<&str> = log
        .lines()
        .filter(|line| TRAP_MARKERS.iter().any(|m| line.contains(m)))
        .collect();
    assert!(
        traps.is_empty(),
        "the Wasm VM failed:\n{}",
        traps.join("\n")
    );
}
