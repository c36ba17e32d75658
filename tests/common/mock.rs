//! A handle on `tests/mock_provider.py`: one process with an `openai`, an `anthropic`, a
//! `gemini` and an `azure` listener on free ports, which records every request it receives
//! and can play a failing provider (`MockProvider::behave`).
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;

use super::http;

/// The listeners the mock is started with; each is the name of a provider cluster.
pub const LISTENERS: [&str; 4] = ["openai", "anthropic", "gemini", "azure"];

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The plain-HTTP listener of a mock whose provider listeners speak TLS: the tests read the
/// records through it.
pub const CONTROL_LISTENER: &str = "control";

/// A running mock provider; killed on drop.
pub struct MockProvider {
    child: Child,
    ports: BTreeMap<String, u16>,
    dir: tempfile::TempDir,
}

/// How to start a mock whose listeners speak TLS (`MockProvider::start_tls`).
#[derive(Debug, Clone)]
pub struct TlsMock {
    /// The listeners that speak TLS, each on a free port.
    pub listeners: Vec<String>,
    /// The certificate chain (PEM) they present, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `(url path, file)`: `GET url path` on any listener answers the file's bytes.
    pub files: Vec<(String, PathBuf)>,
}

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Which listener got it: "openai", "anthropic" or "gemini".
    pub listener: String,
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Names lowercased, in received order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body (names lowercased).
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in received order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        http::header_values(&self.headers, name)
    }

    /// The body as JSON; panics showing the record if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "recorded body is not JSON ({e}):\n{self:#?}\nbody: {}",
                self.text()
            )
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The Python that runs the mock: `$POSTURIO_PYTHON`, else the repository's `.venv`, else
/// `python3` on the PATH.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("POSTURIO_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = super::repo_path(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Starts a Python test service (`script`, relative to the repository) with `args`, and
/// waits for the JSON object of ports it prints as its first line; panics, with its stderr
/// (kept in `stderr_path`), if it does not start, prints no such line within 30 s, or leaves
/// out one of `ports`. Its later output is drained, so it can never block on a full pipe.
pub fn spawn_service(
    what: &str,
    script: &str,
    args: &[String],
    stderr_path: &std::path::Path,
    ports: &[&str],
) -> (Child, BTreeMap<String, u16>) {
    let script = super::repo_path(script);
    assert!(script.exists(), "{} is missing", script.display());
    let python = python();
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what} with {}: {e}", python.display()));

    // Read the first line on a thread, so that a service that hangs cannot hang the test.
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line);
        let _ = sender.send(result);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = receiver.recv_timeout(STARTUP_DEADLINE);
    let fail = |child: &mut Child, why: String| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
        panic!(
            "{what} did not start: {why}\nits stderr:\n{}",
            super::tail(&stderr, 50)
        )
    };
    let line = match line {
        Ok(Ok(line)) if !line.trim().is_empty() => line,
        Ok(Ok(_)) => fail(&mut child, "it exited without printing its ports".into()),
        Ok(Err(e)) => fail(&mut child, format!("reading its stdout failed: {e}")),
        Err(_) => fail(
            &mut child,
            format!("no ports line within {STARTUP_DEADLINE:?}"),
        ),
    };
    let found: BTreeMap<String, u16> = match serde_json::from_str(line.trim()) {
        Ok(found) => found,
        Err(e) => fail(&mut child, format!("bad ports line {line:?}: {e}")),
    };
    for name in ports {
        if !found.contains_key(*name) {
            fail(&mut child, format!("no port for {name} in {line:?}"));
        }
    }
    (child, found)
}

impl MockProvider {
    /// Starts the mock with one listener per provider on free ports; panics if it does not
    /// report its ports within 30 s.
    pub fn start() -> MockProvider {
        let dir = tempfile::Builder::new()
            .prefix("posturio-mock-")
            .tempdir()
            .unwrap();
        let args: Vec<String> = LISTENERS
            .iter()
            .flat_map(|name| ["--listen".to_string(), format!("{name}=0")])
            .collect();
        let (child, ports) = spawn_service(
            "the mock provider",
            "tests/mock_provider.py",
            &args,
            &dir.path().join("mock.stderr.log"),
            &LISTENERS,
        );
        MockProvider { child, ports, dir }
    }

    /// The port of listener `name` ("openai", "anthropic", "gemini" or "azure").
    pub fn port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("the mock has no listener {name:?}: {:?}", self.ports))
    }

    /// Every listener's port by name.
    pub fn ports(&self) -> &BTreeMap<String, u16> {
        &self.ports
    }

    /// Starts the mock with the listeners of `tls` speaking TLS, plus a plain-HTTP
    /// `control` listener through which the records are read.
    pub fn start_tls(tls: &TlsMock) -> MockProvider {
        let dir = tempfile::Builder::new()
            .prefix("posturio-mock-")
            .tempdir()
            .unwrap();
        let mut args = vec!["--listen".to_string(), format!("{CONTROL_LISTENER}=0")];
        for name in &tls.listeners {
            args.extend(["--listen".to_string(), format!("{name}=0")]);
            args.extend(["--tls-listener".to_string(), name.clone()]);
        }
        args.push("--tls".to_string());
        args.push(tls.cert.display().to_string());
        args.push(tls.key.display().to_string());
        for (url_path, file) in &tls.files {
            args.push("--serve-file".to_string());
            args.push(format!("{url_path}={}", file.display()));
        }
        let mut names: Vec<&str> = tls.listeners.iter().map(String::as_str).collect();
        names.push(CONTROL_LISTENER);
        let (child, ports) = spawn_service(
            "the mock provider (TLS)",
            "tests/mock_provider.py",
            &args,
            &dir.path().join("mock.stderr.log"),
            &names,
        );
        MockProvider { child, ports, dir }
    }

    fn control_port(&self) -> u16 {
        match self.ports.get(CONTROL_LISTENER) {
            Some(port) => *port,
            None => self.port(LISTENERS[0]),
        }
    }

    /// Every request received since start or the last `reset`, in arrival order, across
    /// all listeners. A request is recorded before the mock answers it.
    pub fn requests(&self) -> Vec<Recorded> {
        let response = http::get(self.control_port(), "/__mock/requests", &[]);
        assert_eq!(response.status, 200, "GET /__mock/requests: {response:?}");
        let records = response.json();
        let records = records
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {records}"));
        records.iter().map(parse_record).collect()
    }

    /// The requests that listener `name` received.
    pub fn requests_to(&self, name: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.listener == name)
            .collect()
    }

    /// The only request received; panics if there is not exactly one.
    pub fn single_request(&self) -> Recorded {
        let mut requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one request at the mock: {requests:#?}"
        );
        requests.remove(0)
    }

    /// Gives listener `name` a behaviour (`tests/mock_provider.py` lists them), e.g.
    /// `json!({"status": 429})`, `json!({"reset": "before"})`; `json!({})` clears it.
    pub fn behave(&self, name: &str, behaviour: serde_json::Value) {
        let serde_json::Value::Object(mut order) = behaviour else {
            panic!("a behaviour is a JSON object: {behaviour}");
        };
        order.insert("listener".to_string(), serde_json::Value::from(name));
        let order = serde_json::Value::Object(order);
        let body = order.to_string();
        let response = http::post(
            self.control_port(),
            "/__mock/behave",
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(
            response.status, 200,
            "POST /__mock/behave {body}: {response:?}"
        );
    }

    /// Forgets all recorded requests.
    pub fn reset(&self) {
        let response = http::post(self.control_port(), "/__mock/reset", &[], b"");
        assert_eq!(response.status, 200, "POST /__mock/reset: {response:?}");
    }

    /// The mock's own request log (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mock.stderr.log")).unwrap_or_default()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- mock provider log (last 60 lines) ----\n{}",
                super::tail(&self.log(), 60)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_record(value: &serde_json::Value) -> Recorded {
    let text = |key: &str| -> String {
        value[key]
            .as_str()
            .unwrap_or_else(|| panic!("record without string {key:?}: {value}"))
            .to_string()
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        match &value[key] {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([serde_json::Value::String(n), serde_json::Value::String(v)]) => {
                        (n.clone(), v.clone())
                    }
                    _ => panic!("bad {key} entry {pair} in {value}"),
                })
                .collect(),
            other => panic!("bad {key} {other} in {value}"),
        }
    };
    let body = base64::engine::general_purpose::STANDARD
        .decode(text("body_b64"))
        .unwrap_or_else(|e| panic!("bad body_b64 ({e}) in {value}"));
    if let Some(length) = value["body_length"].as_u64() {
        assert_eq!(
            body.len() as u64,
            length,
            "body_length disagrees with body_b64 in {value}"
        );
    }
    Recorded {
        listener: text("listener"),
        method: text("method"),
        path: text("path"),
        headers: pairs("headers"),
        body,
        trailers: pairs("trailers"),
    }
}
