//! A new policy is rolled out by ECDS without restarting Envoy, and reaches open connections.
//!
//! Envoy runs the shipped `envoy/envoy-ecds.yaml`, whose Posturio filter is configured from a
//! watched file (a copy of `envoy/ecds/posturio.yaml` with the test's policy). Replacing that
//! file the way Envoy expects (write a new file, then rename it over the old) while traffic
//! flows: a valid policy is applied in place, in the same Envoy process, to new connections
//! and to connections that were already open; an invalid one is rejected, counted, logged
//! with the JSON path of the mistake, and the previous policy keeps serving.
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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::envoy::replace_policy;
use common::rollout::{
    chat, chat_request, forwarded, invalid_policy, not_approved, policy_approving_gated,
    write_atomically, Traffic, GATED,
};
use common::{Connection, Envoy, EnvoyOptions, MockProvider, Response};

const TEMPLATE: &str = "envoy/envoy-ecds.yaml";
const FILTER_FILE: &str = "envoy/ecds/posturio.yaml";
/// Envoy 1.40's ECDS counters for the filter named `posturio`.
const STATS: &str = "extension_config_discovery.http_filter.posturio.";
/// Files whose configuration was applied.
const APPLIED: &str = "extension_config_discovery.http_filter.posturio.update_success";
/// Files whose configuration was refused (by Posturio or by Envoy).
const REJECTED: &str = "extension_config_discovery.http_filter.posturio.update_rejected";
/// Configurations handed to the filter factory, applied or not.
const RELOADS: &str = "extension_config_discovery.http_filter.posturio.config_reload";
/// Configurations the filter factory refused.
const FAILS: &str = "extension_config_discovery.http_filter.posturio.config_fail";
/// How long a delivered file may take to be applied or rejected.
const UPDATE_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// How long the background traffic runs before and after each change.
const TRAFFIC_MARGIN: Duration = Duration::from_millis(300);
/// Background clients that open a connection per request, besides one keep-alive client.
const FRESH_CLIENTS: usize = 3;
const INVALID_ERROR: &str = "invalid configuration: consumerz: unknown field `consumerz`";
/// Markers of a Wasm VM that failed while serving, as opposed to a configuration it refused
/// (which Envoy logs as a plugin that "failed to load").
const TRAP_MARKERS: &[&str] = &[
    "Function: proxy_on_",
    "Uncaught RuntimeError",
    "panicked at",
];

/// An Envoy whose Posturio filter is configured from a watched file. Two workers, each with
/// its own Wasm VM: a new policy has to reach both.
struct EcdsEnvoy {
    envoy: Envoy,
    port: u16,
    file: PathBuf,
    /// The filter configuration as first delivered; each change replaces only its policy.
    filter: String,
}

impl EcdsEnvoy {
    fn options(policy: &str, mock: &MockProvider) -> EnvoyOptions {
        EnvoyOptions::new(policy)
            .mock(mock)
            .concurrency(2)
            .template(TEMPLATE)
            .ecds(FILTER_FILE)
    }

    fn start(policy: &str, mock: &MockProvider) -> EcdsEnvoy {
        let envoy = Envoy::start_with(EcdsEnvoy::options(policy, mock));
        let gateway = EcdsEnvoy::from(envoy);
        assert_eq!(
            common::embedded_policy(&gateway.filter).trim(),
            policy.trim(),
            "the filter file does not carry the policy"
        );
        assert_eq!(
            (gateway.counter(APPLIED), gateway.counter(REJECTED)),
            (1, 0),
            "the first filter file was not applied once:\n{}",
            gateway.stats()
        );
        gateway
    }

    fn from(envoy: Envoy) -> EcdsEnvoy {
        let file = envoy
            .ecds_path()
            .expect("started without an ECDS file")
            .to_path_buf();
        assert!(
            !envoy.config().contains(&format!("path: {FILTER_FILE}")),
            "the bootstrap still names the shipped filter file"
        );
        let filter = std::fs::read_to_string(&file).unwrap();
        EcdsEnvoy {
            port: envoy.port(),
            envoy,
            file,
            filter,
        }
    }

    /// Replaces the watched file with one whose policy is `policy`.
    fn deliver(&self, policy: &str) {
        write_atomically(&self.file, &replace_policy(&self.filter, policy));
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.counter(name).unwrap_or(0)
    }

    fn stats(&self) -> String {
        self.envoy.stats(&format!("^{}", STATS.replace('.', "\\.")))
    }

    /// Waits until counter `name` exceeds `before`; panics after `UPDATE_DEADLINE`.
    fn wait_counter_above(&self, name: &str, before: u64) -> Duration {
        let start = Instant::now();
        while self.counter(name) <= before {
            assert!(
                start.elapsed() < UPDATE_DEADLINE,
                "{name} did not go above {before} within {UPDATE_DEADLINE:?}:\n{}",
                self.stats()
            );
            std::thread::sleep(POLL);
        }
        start.elapsed()
    }

    /// Asks for `GATED` on new connections until the answer is forwarded (or refused as not
    /// approved, when `want_forwarded` is false); panics after `UPDATE_DEADLINE`, or on any
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
            assert!(
                gated_as(&response, want_forwarded),
                "want forwarded: {want_forwarded}; got {response:?}"
            );
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

    /// Panics if the log shows a Wasm VM that failed while serving.
    fn assert_no_trap(&self) {
        std::thread::sleep(POLL);
        let log = self.envoy.log();
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
}

fn gated_as(response: &Response, want_forwarded: bool) -> bool {
    if want_forwarded {
        forwarded(response, GATED)
    } else {
        not_approved(response)
    }
}

/// Connections opened before a change: one kept alive after a complete request, and one
/// with a request whose headers and part of its body are sent.
struct Open {
    keep_alive: Connection,
    in_flight: Connection,
    rest: Vec<u8>,
}

impl Open {
    /// Returns them with the response to the first request on the kept-alive connection.
    fn start(port: u16) -> (Open, Response) {
        let mut keep_alive = Connection::open(port);
        keep_alive.send(&chat_request(port, GATED, true));
        let first = keep_alive.read_response();
        assert_ne!(first.header("connection"), Some("close"), "{first:?}");
        let request = chat_request(port, GATED, true);
        let (head, rest) = request.split_at(request.len() - 10);
        let mut in_flight = Connection::open(port);
        in_flight.send(head);
        let open = Open {
            keep_alive,
            in_flight,
            rest: rest.to_vec(),
        };
        (open, first)
    }

    /// Finishes the request in flight, then asks for `GATED` again on the kept-alive
    /// connection; returns both responses.
    fn finish(mut self, port: u16) -> (Response, Response) {
        self.in_flight.send(&self.rest);
        let in_flight = self.in_flight.read_response();
        self.keep_alive.send(&chat_request(port, GATED, true));
        (in_flight, self.keep_alive.read_response())
    }
}

#[test]
fn the_shipped_filter_file_carries_the_example_policy() {
    let filter = common::read_repo_file(FILTER_FILE);
    let embedded: serde_json::Value = serde_json::from_str(&common::embedded_policy(&filter))
        .unwrap_or_else(|e| panic!("the policy in {FILTER_FILE} is not JSON: {e}"));
    let file: serde_json::Value = serde_json::from_str(&common::example_policy()).unwrap();
    assert_eq!(
        embedded, file,
        "the policy in {FILTER_FILE} differs from envoy/policy.json"
    );
    assert!(
        filter.contains("name: posturio\n  typed_config:"),
        "{filter}"
    );
    // The bootstrap names that file and holds no policy of its own, and no default one.
    let bootstrap = common::read_repo_file(TEMPLATE);
    assert!(bootstrap.contains(&format!("path: {FILTER_FILE}\n")));
    assert!(bootstrap.contains("apply_default_config_without_warming: false"));
    assert!(!bootstrap.contains("value: |") && !bootstrap.contains("default_config:"));
}

#[test]
fn a_new_policy_is_applied_in_place_without_restarting_envoy() {
    let mock = MockProvider::start();
    let mut gateway = EcdsEnvoy::start(&common::example_policy(), &mock);
    let pid = gateway.envoy.pid();
    gateway.assert_gated(false);
    let (open, first) = Open::start(gateway.port);
    assert!(not_approved(&first), "{first:?}");
    let reloads = gateway.counter(RELOADS);

    let traffic = Traffic::start(gateway.port, FRESH_CLIENTS);
    std::thread::sleep(TRAFFIC_MARGIN);
    let delivered = Instant::now();
    gateway.deliver(&policy_approving_gated());
    gateway.wait_until_gated(true);
    let took = delivered.elapsed();
    gateway.wait_counter_above(APPLIED, 1);
    std::thread::sleep(TRAFFIC_MARGIN);
    let report = traffic.finish();
    eprintln!("new policy in effect {took:?} after delivery; background traffic: {report:?}");
    assert_eq!(
        report.keep_alive_connections, 1,
        "Envoy closed the kept-alive connection: {report:?}"
    );

    gateway.assert_gated(true);
    assert_eq!(gateway.counter(APPLIED), 2, "{}", gateway.stats());
    assert_eq!(gateway.counter(REJECTED), 0, "{}", gateway.stats());
    assert_eq!(gateway.counter(RELOADS), reloads + 1, "{}", gateway.stats());
    assert_eq!(gateway.counter(FAILS), 0, "{}", gateway.stats());
    gateway.assert_same_process(pid);

    // Unlike a new listener (LDS), a new filter configuration reaches connections that were
    // open before it: the next request on the kept-alive connection is decided by the new
    // policy. A request that had started before the change keeps the filter it started with.
    let (in_flight, kept_alive) = open.finish(gateway.port);
    assert!(not_approved(&in_flight), "{in_flight:?}");
    assert!(forwarded(&kept_alive, GATED), "{kept_alive:?}");

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

/// How long Envoy takes, at most here, to free the stats scope of a configuration no stream
/// uses any more.
const SCOPE_RELEASE: Duration = Duration::from_secs(2);

/// `posturio_requests_total` of the default consumer's requests for `gpt-4o-mini`, which
/// every policy of this file allows.
const ALLOWED_MINI: &str = "wasmcustom.posturio_requests_total.consumer=default;\
    .model=gpt-4o-mini;.provider=openai;.decision=allow;.code=none;";

/// Posturio's counters live on across a policy update: the new policy neither starts them
/// from zero nor loses a request that started under the old one. (The native build defines
/// its metrics with each filter configuration, and Envoy frees a series once no configuration
/// holds it.)
#[test]
fn counters_go_on_across_a_policy_update_and_count_the_request_in_flight() {
    let mock = MockProvider::start();
    let gateway = EcdsEnvoy::start(&common::example_policy(), &mock);
    for _ in 0..3 {
        let response = chat(gateway.port, "gpt-4o-mini");
        assert!(forwarded(&response, "gpt-4o-mini"), "{response:?}");
    }
    assert_eq!(gateway.counter(ALLOWED_MINI), 3);
    let request = chat_request(gateway.port, "gpt-4o-mini", false);
    let (head, rest) = request.split_at(request.len() - 10);
    let mut in_flight = Connection::open(gateway.port);
    in_flight.send(head);

    gateway.deliver(&policy_approving_gated());
    gateway.wait_until_gated(true);
    gateway.wait_counter_above(APPLIED, 1);
    assert_eq!(
        gateway.counter(ALLOWED_MINI),
        3,
        "the policy update changed the counter"
    );
    in_flight.send(rest);
    let response = in_flight.read_response();
    assert!(forwarded(&response, "gpt-4o-mini"), "{response:?}");
    // Envoy lets go of a replaced configuration's stats scope on its main thread once the
    // workers have: give it time to, so that a series only that scope held would be gone.
    std::thread::sleep(SCOPE_RELEASE);
    let response = chat(gateway.port, "gpt-4o-mini");
    assert!(forwarded(&response, "gpt-4o-mini"), "{response:?}");
    assert_eq!(
        gateway.counter(ALLOWED_MINI),
        5,
        "the request in flight and the one after the update are counted"
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn an_invalid_policy_is_rejected_and_the_previous_one_keeps_serving() {
    let mock = MockProvider::start();
    let mut gateway = EcdsEnvoy::start(&common::example_policy(), &mock);
    let pid = gateway.envoy.pid();
    let traffic = Traffic::start(gateway.port, FRESH_CLIENTS);

    // A valid change first, so that the policy to keep is not the one Envoy started with.
    gateway.deliver(&policy_approving_gated());
    gateway.wait_until_gated(true);
    gateway.wait_counter_above(APPLIED, 1);
    let mut kept = Connection::open(gateway.port);
    kept.send(&chat_request(gateway.port, GATED, true));
    let before = kept.read_response();
    assert!(forwarded(&before, GATED), "{before:?}");

    let delivered = Instant::now();
    gateway.deliver(&invalid_policy());
    gateway.wait_counter_above(REJECTED, 0);
    let took = delivered.elapsed();
    assert!(
        gateway
            .envoy
            .wait_for_log(INVALID_ERROR, UPDATE_DEADLINE)
            .is_some(),
        "the log does not say `{INVALID_ERROR}`"
    );
    std::thread::sleep(TRAFFIC_MARGIN);
    gateway.assert_gated(true);
    kept.send(&chat_request(gateway.port, GATED, true));
    let after = kept.read_response();
    assert!(forwarded(&after, GATED), "{after:?}");
    assert_eq!(gateway.counter(APPLIED), 2, "{}", gateway.stats());
    assert_eq!(gateway.counter(REJECTED), 1, "{}", gateway.stats());
    assert_eq!(gateway.counter(FAILS), 1, "{}", gateway.stats());

    // A rejected file does not stop the watch: the next valid one is applied.
    gateway.deliver(&common::example_policy());
    gateway.wait_until_gated(false);
    gateway.wait_counter_above(APPLIED, 2);
    std::thread::sleep(TRAFFIC_MARGIN);
    let report = traffic.finish();
    eprintln!("invalid policy rejected {took:?} after delivery; background traffic: {report:?}");

    gateway.assert_gated(false);
    kept.send(&chat_request(gateway.port, GATED, true));
    let restored = kept.read_response();
    assert!(not_approved(&restored), "{restored:?}");
    assert_eq!(gateway.counter(REJECTED), 1, "{}", gateway.stats());
    assert_eq!(gateway.counter(FAILS), 1, "{}", gateway.stats());
    gateway.assert_same_process(pid);
    gateway.assert_no_trap();
}

#[test]
fn without_a_valid_policy_envoy_forwards_nothing() {
    let mock = MockProvider::start();
    // Envoy starts: the listener waited for the first file, and that file was rejected.
    let envoy = Envoy::start_with(EcdsEnvoy::options(&invalid_policy(), &mock));
    let gateway = EcdsEnvoy::from(envoy);
    assert_eq!(
        (gateway.counter(APPLIED), gateway.counter(REJECTED)),
        (0, 1),
        "{}",
        gateway.stats()
    );
    assert!(
        gateway
            .envoy
            .wait_for_log(INVALID_ERROR, UPDATE_DEADLINE)
            .is_some(),
        "the log does not say `{INVALID_ERROR}`"
    );
    for model in [common::rollout::ALLOWED, GATED] {
        let response = chat(gateway.port, model);
        assert_eq!(response.status, 500, "{response:?}");
    }
    assert!(
        mock.requests_to("openai").is_empty(),
        "a request was forwarded"
    );
    // Envoy answers for the filter that has no configuration: response flag NFCF
    // (no filter config found) in the JSON access log, with no Posturio decision.
    let line = gateway
        .envoy
        .wait_for_access_log("\"response_flags\":\"NFCF\"", UPDATE_DEADLINE);
    assert!(
        line.as_deref()
            .is_some_and(|line| line.contains("\"status\":500")
                && line.contains("\"posturio_decision\":null")),
        "no request answered 500 NFCF:\n{}",
        gateway.envoy.access_log()
    );

    // A valid file then puts a policy in force, still without a restart.
    gateway.deliver(&common::example_policy());
    gateway.wait_counter_above(APPLIED, 0);
    gateway.wait_until_gated(false);
    let response = chat(gateway.port, common::rollout::ALLOWED);
    assert!(
        forwarded(&response, common::rollout::ALLOWED),
        "{response:?}"
    );
}
