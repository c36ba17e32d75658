//! Runs a client script of `tests/sdk/` and matches the mock's records to its scenarios; and
//! runs any other Python client of the tests that prints JSON lines.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{mock, repo_path, Envoy, Recorded};

/// The header every request of a scenario carries, with the scenario's name.
pub const SCENARIO_HEADER: &str = "x-sdk-scenario";

/// A script gets this long for all its scenarios (each SDK call has a 30 s timeout).
const DEADLINE: Duration = Duration::from_secs(120);

/// Each scenario's outcome, the JSON line the script printed for it.
pub struct Outcomes(BTreeMap<String, Value>);

impl Outcomes {
    /// The outcome of `scenario`.
    pub fn get(&self, scenario: &str) -> &Value {
        self.0
            .get(scenario)
            .unwrap_or_else(|| panic!("no outcome for {scenario:?}"))
    }

    /// The outcome of a scenario whose SDK call succeeded.
    pub fn ok(&self, scenario: &str) -> &Value {
        let outcome = self.get(scenario);
        assert_eq!(outcome["ok"], true, "{scenario} failed: {outcome:#}");
        outcome
    }

    /// The outcome of a scenario whose SDK call raised `error_class` for `status`, after
    /// exactly one request.
    pub fn refused(&self, scenario: &str, error_class: &str, status: u16) -> &Value {
        let outcome = self.get(scenario);
        assert_eq!(outcome["ok"], false, "{scenario} succeeded: {outcome:#}");
        assert_eq!(outcome["error_class"], error_class, "{outcome:#}");
        assert_eq!(outcome["status"], status, "{outcome:#}");
        assert_eq!(self.sent(scenario).len(), 1, "{outcome:#}");
        outcome
    }

    /// The requests the SDK sent in `scenario`: `{"method", "path", "body"}`.
    pub fn sent(&self, scenario: &str) -> &Vec<Value> {
        let outcome = self.get(scenario);
        outcome["sent"]
            .as_array()
            .unwrap_or_else(|| panic!("no \"sent\" in {outcome:#}"))
    }

    /// The one request the SDK sent in `scenario`.
    pub fn sent_request(&self, scenario: &str) -> &Value {
        match self.sent(scenario).as_slice() {
            [request] => request,
            other => panic!("{scenario}: expected one request from the SDK: {other:#?}"),
        }
    }

    /// The body of the one request the SDK sent in `scenario`.
    pub fn sent_body(&self, scenario: &str) -> String {
        self.sent_request(scenario)["body"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every header the SDK sent in `scenario` reached the provider in `record` with
    /// the same value, except those the gateway may change: `content-length` (a model
    /// rewrite changes it), the hop-by-hop `connection`, the gateway's own
    /// `x-posturio-*` headers (the route header, the identity header), and
    /// `accept-encoding`, which the gateway drops from the calls whose response it reads
    /// for token usage (checked: the provider never gets it on a POST).
    pub fn assert_headers_reached(&self, scenario: &str, record: &Recorded) {
        if record.method == "POST" {
            assert_eq!(
                record.header("accept-encoding"),
                None,
                "{scenario}: the provider was allowed to compress the response"
            );
        }
        let sent = &self.sent_request(scenario)["headers"];
        let sent = sent
            .as_array()
            .unwrap_or_else(|| panic!("{scenario}: no headers in {sent}"));
        for pair in sent {
            let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if ["content-length", "connection", "accept-encoding"].contains(&name)
                || name.starts_with("x-posturio-")
            {
                continue;
            }
            assert!(
                record.header_values(name).contains(&value),
                "{scenario}: the SDK sent `{name}: {value}`, the provider got {:?}\n\
                 {record:#?}",
                record.header_values(name)
            );
        }
    }
}

/// Runs `tests/sdk/<script>.py <Envoy's URL> <scenario>...` with the harness's Python,
/// and returns the outcome of every scenario. Panics, with the script's output, if it
/// fails, hangs, or leaves out a scenario.
pub fn run(script: &str, envoy: &Envoy, scenarios: &[&str]) -> Outcomes {
    let path = repo_path(&format!("tests/sdk/{script}.py"));
    let mut args = vec![
        path.into_os_string(),
        format!("http://127.0.0.1:{}", envoy.port()).into(),
    ];
    args.extend(scenarios.iter().map(OsString::from));
    let (lines, report) = python_json_lines(script, &args);
    let mut outcomes = BTreeMap::new();
    for outcome in lines {
        let name = outcome["scenario"].as_str().unwrap_or_default().to_string();
        outcomes.insert(name, outcome);
    }
    for scenario in scenarios {
        assert!(
            outcomes.contains_key(*scenario),
            "{script} printed no outcome for {scenario}\n{report}"
        );
    }
    Outcomes(outcomes)
}

/// Runs the harness's Python with `args` and returns the JSON lines it printed, with its
/// whole output for messages. Panics, with that output, if it fails, prints a line that is
/// not JSON, or does not finish within `DEADLINE`.
pub fn python_json_lines(what: &str, args: &[OsString]) -> (Vec<Value>, String) {
    let python = mock::python();
    let mut child = Command::new(&python)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} with {}: {e}", python.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let report = format!("---- stdout ----\n{stdout}\n---- stderr ----\n{stderr}");
    match status {
        None => panic!("{what} did not finish within {DEADLINE:?}\n{report}"),
        Some(status) if !status.success() => panic!("{what} failed ({status})\n{report}"),
        Some(_) => {}
    }
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{what} printed a line that is not JSON ({e})\n{report}")
            })
        })
        .collect();
    (lines, report)
}

/// The requests the provider received from `scenario`.
pub fn upstream<'a>(records: &'a [Recorded], scenario: &str) -> Vec<&'a Recorded> {
    records
        .iter()
        .filter(|r| r.header(SCENARIO_HEADER) == Some(scenario))
        .collect()
}

/// The one request the provider received from `scenario`.
pub fn single_upstream<'a>(records: &'a [Recorded], scenario: &str) -> &'a Recorded {
    match upstream(records, scenario).as_slice() {
        [record] => record,
        other => panic!("expected one request from {scenario} at the provider: {other:#?}"),
    }
}

/// The provider received exactly one request from each of `scenarios`, and nothing else.
pub fn assert_only(records: &[Recorded], scenarios: &[&str]) {
    let mut seen: Vec<&str> = records
        .iter()
        .map(|r| r.header(SCENARIO_HEADER).unwrap_or("(no scenario header)"))
        .collect();
    seen.sort_unstable();
    let mut expected = scenarios.to_vec();
    expected.sort_unstable();
    assert_eq!(seen, expected, "requests at the provider: {records:#?}");
}
