//! Runs a real Envoy with the Posturio module, configured from the shipped example
//! `envoy/envoy.yaml` with its ports, module path and policy replaced.
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::build::{assert_wasm_build, for_build, native_module_path, Build};
use super::mock::MockProvider;
use super::{http, repo_path, tail};

/// The example configuration that the tests run.
pub const TEMPLATE: &str = "envoy/envoy.yaml";
/// Where `make build` puts the module, relative to the repository.
pub const MODULE: &str = "target/wasm32-wasip1/release/posturio.wasm";

const TEMPLATE_LISTENER_PORT: u16 = 10000;
const TEMPLATE_ADMIN_PORT: u16 = 9901;
/// The template's provider ports, in the order openai, anthropic, gemini. A port may appear
/// more than once (the openai listener is also the first endpoint of a pool cluster).
const TEMPLATE_PROVIDER_PORTS: [u16; 3] = [18081, 18082, 18083];
/// The template's port of the azure listener (the pool cluster's second endpoint); only
/// some templates have it.
const TEMPLATE_AZURE_PORT: u16 = 18084;
/// The port of the rate limit service's cluster in `envoy/envoy-ratelimit.yaml`.
const TEMPLATE_RATELIMIT_PORT: u16 = 8081;
/// A port nothing listens on: the clusters of an Envoy started without providers point
/// here, so a request that reaches a cluster fails to connect (503) instead of reaching
/// whatever else the tests run.
const CLOSED_PORT: u16 = 1;

const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How often Envoy flushes its log and the access log: short, so tests can read them.
const FLUSH_INTERVAL_MS: u64 = 50;
/// Lines of the Envoy log shown when a test fails.
const LOG_TAIL_LINES: usize = 150;

/// Log lines that mean the Wasm VM failed (a trap, a panic, or a module that did not load).
/// Envoy 1.40 has no stat for a VM that failed under FAIL_CLOSED, so the log is the signal.
pub const WASM_FAILURE_MARKERS: &[&str] = &[
    // "Function: proxy_on_request_headers failed: Uncaught RuntimeError: unreachable"
    "Function: proxy_on_",
    "Uncaught RuntimeError",
    // The Rust SDK's panic hook: "wasm log posturio posturio: panicked at src/...".
    "panicked at",
    // "Wasm VM failed Failed to configure base Wasm plugin"
    "Wasm VM failed",
    // "Plugin posturio failed to load", "Plugin configured to fail closed failed to load"
    "failed to load",
    "Unable to create Wasm",
];

/// Log lines that mean the native module failed: it did not load, or one of its hooks caught
/// a panic (which it logs at error level, with Rust's `panicked at` message).
pub const NATIVE_FAILURE_MARKERS: &[&str] = &[
    "Failed to load dynamic module",
    "Unable to load dynamic module",
    "panicked at",
];

/// Ports of the provider clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPorts {
    pub openai: u16,
    pub anthropic: u16,
    pub gemini: u16,
    /// The azure listener, where a template has one (`envoy/envoy.yaml`'s pool cluster).
    pub azure: u16,
}

impl ProviderPorts {
    /// The ports of a running mock provider.
    pub fn of(mock: &MockProvider) -> ProviderPorts {
        ProviderPorts {
            openai: mock.port("openai"),
            anthropic: mock.port("anthropic"),
            gemini: mock.port("gemini"),
            azure: mock.ports().get("azure").copied().unwrap_or(CLOSED_PORT),
        }
    }

    /// Ports that nothing listens on.
    pub fn closed() -> ProviderPorts {
        ProviderPorts {
            openai: CLOSED_PORT,
            anthropic: CLOSED_PORT,
            gemini: CLOSED_PORT,
            azure: CLOSED_PORT,
        }
    }
}

/// How to start Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// The policy JSON placed in the Wasm filter's configuration.
    pub policy: String,
    /// Worker threads (`--concurrency`); each has its own Wasm VM.
    pub concurrency: u32,
    /// Where the provider clusters point.
    pub providers: ProviderPorts,
    /// The module to load, of the build under test (`POSTURIO_BUILD`); default
    /// `<repo>/target/wasm32-wasip1/release/posturio.wasm` or the native module
    /// (`common::build::native_module_path`).
    pub module: Option<PathBuf>,
    /// Envoy's `--log-level` (default "info").
    pub log_level: String,
    /// Further command-line arguments, e.g. `--component-log-level wasm:debug`.
    pub extra_args: Vec<String>,
    /// Applied to the rendered configuration before Envoy reads it, for a test that needs
    /// a change the template does not have.
    pub edit_config: Option<fn(String) -> String>,
    /// The configuration to render, relative to the repository (default `TEMPLATE`). Another
    /// shipped example can be run as long as it has the same ports, one module `filename`
    /// and one inline policy.
    pub template: &'static str,
    /// For a template whose filter comes from ECDS: the filter configuration file (relative
    /// to the repository) that the template's `path_config_source` names. The module path
    /// and the policy are then substituted in that file, not in the template; the file is
    /// written to Envoy's directory and the template pointed at it (`Envoy::ecds_path`).
    pub ecds: Option<&'static str>,
    /// For a template with a rate limit service cluster (`envoy/envoy-ratelimit.yaml`): the
    /// port that cluster points at instead of the template's 8081.
    pub ratelimit: Option<u16>,
}

impl EnvoyOptions {
    /// One worker, clusters pointing at closed ports.
    pub fn new(policy: &str) -> EnvoyOptions {
        EnvoyOptions {
            policy: policy.to_string(),
            concurrency: 1,
            providers: ProviderPorts::closed(),
            module: None,
            log_level: "info".to_string(),
            extra_args: Vec::new(),
            edit_config: None,
            template: TEMPLATE,
            ecds: None,
            ratelimit: None,
        }
    }

    /// Points the clusters at `mock`'s listeners.
    pub fn mock(mut self, mock: &MockProvider) -> EnvoyOptions {
        self.providers = ProviderPorts::of(mock);
        self
    }

    pub fn providers(mut self, providers: ProviderPorts) -> EnvoyOptions {
        self.providers = providers;
        self
    }

    pub fn concurrency(mut self, workers: u32) -> EnvoyOptions {
        self.concurrency = workers;
        self
    }

    pub fn module(mut self, path: impl Into<PathBuf>) -> EnvoyOptions {
        self.module = Some(path.into());
        self
    }

    pub fn log_level(mut self, level: &str) -> EnvoyOptions {
        self.log_level = level.to_string();
        self
    }

    pub fn arg(mut self, arg: &str) -> EnvoyOptions {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn edit_config(mut self, edit: fn(String) -> String) -> EnvoyOptions {
        self.edit_config = Some(edit);
        self
    }

    /// Runs another shipped configuration, such as `envoy/envoy-jwt.yaml`.
    pub fn template(mut self, relative: &'static str) -> EnvoyOptions {
        self.template = relative;
        self
    }

    /// Delivers the filter by ECDS from a copy of `relative`, such as `envoy/ecds/posturio.yaml`
    /// (with `template("envoy/envoy-ecds.yaml")`).
    pub fn ecds(mut self, relative: &'static str) -> EnvoyOptions {
        self.ecds = Some(relative);
        self
    }

    /// Points the rate limit service's cluster (`envoy/envoy-ratelimit.yaml`) at `port`.
    pub fn ratelimit(mut self, port: u16) -> EnvoyOptions {
        self.ratelimit = Some(port);
        self
    }
}

/// Why Envoy did not become ready.
#[derive(Debug)]
pub struct StartError {
    pub reason: String,
    /// Envoy's log (with its stderr appended).
    pub log: String,
    /// The configuration it was given.
    pub config: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Envoy did not start: {}\n---- Envoy log (last {LOG_TAIL_LINES} lines) ----\n{}",
            self.reason,
            log_tail(&self.log)
        )
    }
}

/// Writes a configuration for `Envoy::start_generated`: gets the listener port, the admin port
/// and Envoy's directory; returns the configuration file and further Envoy arguments.
pub type BuildConfig<'a> = &'a dyn Fn(u16, u16, &Path) -> (PathBuf, Vec<String>);

/// What `Envoy::launch` starts Envoy with.
struct Launch {
    config: String,
    config_path: PathBuf,
    listener_port: u16,
    admin_port: u16,
    concurrency: u32,
    log_level: String,
    extra_args: Vec<String>,
    ecds: Option<PathBuf>,
}

/// A running Envoy; killed on drop (and its log printed if the test is failing).
pub struct Envoy {
    child: Child,
    port: u16,
    admin_port: u16,
    config: String,
    /// The filter configuration file Envoy watches, with `EnvoyOptions::ecds`.
    ecds: Option<PathBuf>,
    dir: tempfile::TempDir,
}

/// The Envoy binary: `$POSTURIO_ENVOY`, else `<repo>/.venv/bin/envoy`. Panics if missing.
pub fn envoy_binary() -> PathBuf {
    let path = match std::env::var_os("POSTURIO_ENVOY").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => repo_path(".venv/bin/envoy"),
    };
    assert!(
        path.exists(),
        "Envoy is not installed: {} does not exist. `make test` installs it (into .venv) \
         before running the tests; or set POSTURIO_ENVOY to an Envoy 1.40 binary.",
        path.display()
    );
    path
}

/// The built Wasm module. Panics if it is missing or is not a Wasm module with code in it,
/// or if the build under test is not Wasm (a test that reads the Wasm module tests that build).
pub fn module_path() -> PathBuf {
    assert_wasm_build("the Wasm module (target/wasm32-wasip1/release/posturio.wasm)");
    let path = repo_path(MODULE);
    let meta = std::fs::metadata(&path).unwrap_or_else(|_| {
        panic!(
            "the Wasm module {} is missing: run `make build` (or `make test`, which builds it)",
            path.display()
        )
    });
    assert!(
        meta.len() > 8,
        "the Wasm module {} has no code ({} bytes): run `make build`",
        path.display(),
        meta.len()
    );
    path
}

/// A free port on 127.0.0.1, held open until the listener is dropped. Never hands out the
/// same port twice in one test process, so parallel tests cannot pick the same one.
pub fn reserve_port() -> TcpListener {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        if handed_out.insert(port) {
            return listener;
        }
    }
    panic!("no fresh free port found");
}

/// Replaces the one occurrence of `from` in `text` with `to`; panics if there is not
/// exactly one (so a change to the template cannot silently break the tests).
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let count = text.matches(from).count();
    assert_eq!(
        count, 1,
        "{TEMPLATE}: expected exactly one `{from}`, found {count}; update tests/common/envoy.rs"
    );
    text.replacen(from, to, 1)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line range of the policy block: (index of the `value: |` line, first line after
/// the block excluding trailing blank lines).
fn policy_block(lines: &[&str]) -> (usize, usize) {
    let heads: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with("value: |"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        heads.len(),
        1,
        "{TEMPLATE}: expected exactly one line ending in `value: |` (the inline policy), \
         found {}; update tests/common/envoy.rs",
        heads.len()
    );
    let head = heads[0];
    let head_indent = indent_of(lines[head]);
    let mut end = head + 1;
    let mut last_content = head + 1;
    while end < lines.len() {
        let line = lines[end];
        if line.trim().is_empty() {
            end += 1;
            continue;
        }
        if indent_of(line) <= head_indent {
            break;
        }
        end += 1;
        last_content = end;
    }
    (head, last_content)
}

/// The inline policy of an Envoy configuration: the literal block after the single line
/// ending in `value: |`, without its indentation, ending in one newline (YAML's default).
pub fn embedded_policy(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let (head, end) = policy_block(&lines);
    let block = &lines[head + 1..end];
    let indent = block
        .iter()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| indent_of(l));
    let mut out = String::new();
    for line in block {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            out.push_str(&line[indent.min(indent_of(line))..]);
            out.push('\n');
        }
    }
    out
}

/// `yaml` with the inline policy replaced by `policy`, indented like the block it replaces.
/// Leading blank space of `policy` is dropped: YAML takes the block's indentation from its
/// first line.
pub fn replace_policy(yaml: &str, policy: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let (head, end) = policy_block(&lines);
    let indent = lines[head + 1..end]
        .iter()
        .find(|l| !l.trim().is_empty())
        .map_or(indent_of(lines[head]) + 2, |l| indent_of(l));
    let pad = " ".repeat(indent);
    let mut out: Vec<String> = lines[..=head].iter().map(|l| l.to_string()).collect();
    for line in policy.trim_start().lines() {
        if line.trim().is_empty() {
            out.push(String::new());
        } else {
            out.push(format!("{pad}{line}"));
        }
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if yaml.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Replaces every occurrence of `from` in `text` with `to`; panics if there is none.
pub fn replace_all(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{TEMPLATE}: expected `{from}`, found none; update tests/common/envoy.rs"
    );
    text.replace(from, to)
}

/// `yaml` with every module `filename:` (ending in `posturio.wasm`) set to `module`: the
/// request filter's and, where a pool cluster has one, the upstream filter's (both load the
/// same module, so they share one VM).
pub fn replace_module_path(yaml: &str, module: &Path) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let hits: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            t.starts_with("filename:") && t.trim_end_matches(['"', '\'']).ends_with("posturio.wasm")
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        !hits.is_empty(),
        "expected a `filename: ...posturio.wasm` line, found none; update tests/common/envoy.rs"
    );
    let value = yaml_path(module);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for hit in hits {
        let line = lines[hit];
        let indent = &line[..line.len() - line.trim_start().len()];
        out[hit] = format!("{indent}filename: {value}");
    }
    let mut text = out.join("\n");
    if yaml.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `path` as a YAML scalar: quoted, so any path reads back as itself.
pub fn yaml_path(path: &Path) -> String {
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// Everything `render_config` substitutes into the template.
#[derive(Debug, Clone)]
pub struct ConfigParams {
    pub listener_port: u16,
    pub admin_port: u16,
    pub providers: ProviderPorts,
    pub module: PathBuf,
    pub policy: String,
}

/// The template with ports, module path and policy substituted. Panics if the template
/// lacks any of the expected tokens.
pub fn render_config(template: &str, params: &ConfigParams) -> String {
    let text = render_ports(template, params);
    let text = replace_module_path(&text, &params.module);
    replace_policy(&text, &params.policy)
}

/// The template with its listener, admin and provider ports substituted.
pub fn render_ports(template: &str, params: &ConfigParams) -> String {
    let port = |p: u16| format!("port_value: {p}");
    let mut text = template.to_string();
    text = replace_once(
        &text,
        &port(TEMPLATE_LISTENER_PORT),
        &port(params.listener_port),
    );
    text = replace_once(&text, &port(TEMPLATE_ADMIN_PORT), &port(params.admin_port));
    let providers = [
        params.providers.openai,
        params.providers.anthropic,
        params.providers.gemini,
    ];
    for (from, to) in TEMPLATE_PROVIDER_PORTS.iter().zip(providers) {
        text = replace_all(&text, &port(*from), &port(to));
    }
    text.replace(&port(TEMPLATE_AZURE_PORT), &port(params.providers.azure))
}

impl Envoy {
    /// Envoy with `policy`, one worker, and clusters that point at closed ports.
    pub fn start(policy_json: &str) -> Envoy {
        Envoy::start_with(EnvoyOptions::new(policy_json))
    }

    /// Envoy with `policy`, one worker, and clusters that point at `mock`.
    pub fn with_mock(policy_json: &str, mock: &MockProvider) -> Envoy {
        Envoy::start_with(EnvoyOptions::new(policy_json).mock(mock))
    }

    /// Starts Envoy and waits until its admin `/ready` says LIVE; panics with its log if it
    /// exits or is not ready within 60 s.
    pub fn start_with(options: EnvoyOptions) -> Envoy {
        Envoy::try_start_with(options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start_with`, but returns why Envoy did not start (e.g. a policy it rejected).
    /// Panics only if Envoy or the module is not installed.
    pub fn try_start_with(options: EnvoyOptions) -> Result<Envoy, StartError> {
        // A port reserved here can still be taken by another process before Envoy binds
        // it; then Envoy exits at once, and a start with other ports is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Envoy::start_once(&options) {
                Err(e) if attempt < 3 && is_bind_failure(&e.log) => continue,
                result => return result,
            }
        }
    }

    fn start_once(options: &EnvoyOptions) -> Result<Envoy, StartError> {
        // Fails early, before any port is reserved, when Envoy is not installed.
        envoy_binary();
        let build = Build::current();
        let module = match (&options.module, build) {
            (Some(path), _) => path.clone(),
            (None, Build::Wasm) => module_path(),
            (None, Build::Native) => native_module_path(),
        };
        let mut template = super::read_repo_file(options.template);
        if let Some(port) = options.ratelimit {
            let port_value = |p: u16| format!("port_value: {p} ");
            template = replace_once(
                &template,
                &port_value(TEMPLATE_RATELIMIT_PORT),
                &port_value(port),
            );
        }
        let listener = reserve_port();
        let admin = reserve_port();
        let params = ConfigParams {
            listener_port: listener.local_addr().unwrap().port(),
            admin_port: admin.local_addr().unwrap().port(),
            providers: options.providers,
            module,
            policy: options.policy.clone(),
        };
        let dir = tempfile::Builder::new()
            .prefix("posturio-envoy-")
            .tempdir()
            .unwrap();
        let (mut config, ecds) = match options.ecds {
            None => (render_config(&template, &params), None),
            Some(relative) => {
                let (config, path) =
                    super::rollout::render_ecds(&template, relative, &params, dir.path());
                (config, Some(path))
            }
        };
        if let Some(edit) = options.edit_config {
            config = edit(config);
        }
        // After the test's own edit, which was written against the shipped (Wasm) template.
        let config = for_build(&config, build, &yaml_path(&params.module));

        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, &config).unwrap();
        drop(listener);
        drop(admin);
        let launch = Launch {
            config,
            config_path,
            listener_port: params.listener_port,
            admin_port: params.admin_port,
            concurrency: options.concurrency,
            log_level: options.log_level.clone(),
            extra_args: options.extra_args.clone(),
            ecds,
        };
        Envoy::launch(launch, dir)
    }

    /// Starts Envoy (one worker) with a configuration that `build` writes: it gets the
    /// listener port, the admin port and Envoy's directory, and returns the configuration
    /// file it wrote and further Envoy arguments. For configurations that do not come from a
    /// shipped template, such as the ones tests/platforms/generate.py builds.
    pub fn start_generated(build: BuildConfig) -> Envoy {
        assert_wasm_build("a configuration generated from deploy/ for Istio or Envoy Gateway");
        let listener = reserve_port();
        let admin = reserve_port();
        let dir = tempfile::Builder::new()
            .prefix("posturio-envoy-")
            .tempdir()
            .unwrap();
        let listener_port = listener.local_addr().unwrap().port();
        let admin_port = admin.local_addr().unwrap().port();
        let (config_path, extra_args) = build(listener_port, admin_port, dir.path());
        let config = std::fs::read_to_string(&config_path).unwrap();
        drop(listener);
        drop(admin);
        let launch = Launch {
            config,
            config_path,
            listener_port,
            admin_port,
            concurrency: 1,
            log_level: "info".to_string(),
            extra_args,
            ecds: None,
        };
        Envoy::launch(launch, dir).unwrap_or_else(|e| panic!("{e}"))
    }

    fn launch(launch: Launch, dir: tempfile::TempDir) -> Result<Envoy, StartError> {
        let binary = envoy_binary();
        let mut command = Command::new(&binary);
        command
            .arg("-c")
            .arg(&launch.config_path)
            .arg("--concurrency")
            .arg(launch.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg(&launch.log_level)
            .arg("--file-flush-interval-msec")
            .arg(FLUSH_INTERVAL_MS.to_string())
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .args(&launch.extra_args)
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(File::create(dir.path().join("stderr.log")).unwrap());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Envoy {}: {e}", binary.display()));
        let mut envoy = Envoy {
            child,
            port: launch.listener_port,
            admin_port: launch.admin_port,
            config: launch.config,
            ecds: launch.ecds,
            dir,
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(reason) => {
                let _ = envoy.child.kill();
                let _ = envoy.child.wait();
                let log = envoy.full_log();
                let config = std::mem::take(&mut envoy.config);
                Err(StartError {
                    reason,
                    log,
                    config,
                })
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("Envoy exited during startup ({status})"));
            }
            let last = match http::try_send_raw(self.admin_port, &ready_request(self.admin_port)) {
                Ok(r) if r.status == 200 && r.text().trim() == "LIVE" => {
                    // The listener accepts once the workers are running.
                    if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                        return Ok(());
                    }
                    "admin LIVE, but the listener does not accept yet".to_string()
                }
                Ok(r) => format!("/ready answered {} {:?}", r.status, r.text().trim()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("not ready within {READY_DEADLINE:?}; last: {last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the `llm` listener (where clients send requests).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of Envoy's admin interface.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The configuration Envoy was started with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The filter configuration file Envoy watches, when started with `EnvoyOptions::ecds`.
    pub fn ecds_path(&self) -> Option<&Path> {
        self.ecds.as_deref()
    }

    /// The process id of the Envoy this handle started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether that process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Envoy's log so far (`--log-path`; it is flushed every 50 ms, critical lines at once).
    pub fn log(&self) -> String {
        self.read_file("envoy.log")
    }

    /// The access log so far (the example config logs to Envoy's stdout).
    pub fn access_log(&self) -> String {
        self.read_file("stdout.log")
    }

    /// Envoy's stderr (normally empty: the log goes to `--log-path`).
    pub fn stderr(&self) -> String {
        self.read_file("stderr.log")
    }

    fn read_file(&self, name: &str) -> String {
        match std::fs::read(self.dir.path().join(name)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        }
    }

    fn full_log(&self) -> String {
        let stderr = self.stderr();
        if stderr.trim().is_empty() {
            self.log()
        } else {
            format!("{}\n---- Envoy stderr ----\n{stderr}", self.log())
        }
    }

    /// Waits up to `timeout` for a line of the Envoy log that contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        wait_for_line(|| self.log(), needle, timeout)
    }

    /// Waits up to `timeout` for a line of the access log that contains `needle`.
    pub fn wait_for_access_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        wait_for_line(|| self.access_log(), needle, timeout)
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> http::Response {
        http::get(self.admin_port, path, &[])
    }

    /// Admin `/stats?filter=<regex>`: lines `name: value`.
    pub fn stats(&self, filter: &str) -> String {
        let response = self.admin_get(&format!("/stats?filter={}", http::percent_encode(filter)));
        assert_eq!(response.status, 200, "admin /stats: {response:?}");
        response.text()
    }

    /// The value of the counter (or gauge) `name`, if Envoy has it. A Posturio metric is named
    /// as the Wasm build names it (`wasmcustom.posturio_requests_total.consumer=a;.model=b;`);
    /// under the native build, whose flat names differ, it is read from `/stats/prometheus` by
    /// its name and labels, which the two builds share.
    pub fn counter(&self, name: &str) -> Option<u64> {
        if Build::current() == Build::Native {
            if let Some((metric, labels)) = posturio_metric(name) {
                let samples = self.posturio_samples();
                return samples.get(&(metric, labels)).map(|value| *value as u64);
            }
        }
        let stats = self.stats(&format!("^{}$", regex_escape(name)));
        stats.lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// Every `posturio_*` sample of `/stats/prometheus`, by name and labels.
    pub fn posturio_samples(&self) -> Samples {
        let response = self.admin_get("/stats/prometheus");
        assert_eq!(
            response.status, 200,
            "admin /stats/prometheus: {response:?}"
        );
        parse_prometheus(&response.text())
            .into_iter()
            .filter(|((name, _), _)| name.starts_with("posturio_"))
            .collect()
    }

    /// All numeric stats whose names match the regex `filter`, by name.
    pub fn stat_values(&self, filter: &str) -> Vec<(String, u64)> {
        self.stats(filter)
            .lines()
            .filter_map(|line| {
                let (n, v) = line.split_once(": ")?;
                Some((n.to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// Lines of the Envoy log (and its stderr, where Rust's panic hook writes) that show a
    /// failed module (see `WASM_FAILURE_MARKERS` and `NATIVE_FAILURE_MARKERS`), each with
    /// the line that follows it (a panic message spans two lines).
    pub fn module_failures(&self) -> Vec<String> {
        let log = self.full_log();
        let lines: Vec<&str> = log.lines().collect();
        let markers = match Build::current() {
            Build::Wasm => WASM_FAILURE_MARKERS,
            Build::Native => NATIVE_FAILURE_MARKERS,
        };
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if markers.iter().any(|m| line.contains(m)) {
                let next = lines.get(i + 1).copied().unwrap_or("");
                found.push(format!("{line}\n{next}"));
            }
        }
        for (name, value) in self.stat_values("^wasm") {
            let failure_stat = name.contains("fail") || name.ends_with(".vm_reload");
            if failure_stat && value != 0 {
                found.push(format!("stat {name}: {value}"));
            }
        }
        found
    }

    /// Panics if the module failed at any point: the Wasm VM trapped, panicked or did not
    /// load, or the native module did not load or caught a panic. The module must never
    /// crash, whatever the request. Waits for the log to be flushed.
    pub fn assert_no_module_failure(&self) {
        std::thread::sleep(Duration::from_millis(4 * FLUSH_INTERVAL_MS));
        let failures = self.module_failures();
        assert!(
            failures.is_empty(),
            "the {} module failed:\n{}",
            Build::current().name(),
            failures.join("\n")
        );
    }

    /// `assert_no_module_failure`, by the name the suites written before the native build
    /// use; it checks whichever build is under test.
    pub fn assert_no_wasm_failure(&self) {
        self.assert_no_module_failure();
    }

    /// The messages the module logged so far (its decision records among them), under
    /// either build: each line's text after the module's prefix.
    pub fn module_messages(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(super::build::module_message)
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            // Let Envoy flush its last log lines before it is killed.
            std::thread::sleep(Duration::from_millis(3 * FLUSH_INTERVAL_MS));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if panicking {
            eprintln!(
                "---- Envoy log (last {LOG_TAIL_LINES} lines), listener port {} ----\n{}",
                self.port,
                log_tail(&self.full_log())
            );
            let access = self.access_log();
            if !access.trim().is_empty() {
                eprintln!(
                    "---- Envoy access log (last 30 lines) ----\n{}",
                    tail(&access, 30)
                );
            }
        }
    }
}

/// The last lines of an Envoy log, without the startup banner (the lists of extensions and
/// header maps, which are long and never the reason a test failed).
pub fn log_tail(log: &str) -> String {
    let is_banner = |line: &str| {
        line.split_once("[source/server/server.cc:")
            .and_then(|(_, rest)| rest.split_once("] "))
            .is_some_and(|(_, message)| message.starts_with("  "))
    };
    let kept: Vec<&str> = log.lines().filter(|l| !is_banner(l)).collect();
    tail(&kept.join("\n"), LOG_TAIL_LINES)
}

fn ready_request(admin_port: u16) -> Vec<u8> {
    http::build_request(admin_port, "GET", "/ready", &[], b"")
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("cannot bind")
}

/// A Posturio metric's name and labels from its Wasm-build stat name
/// (`wasmcustom.<metric>.<label>=<value>;...`), or `None` for any other stat.
fn posturio_metric(name: &str) -> Option<(String, BTreeMap<String, String>)> {
    let rest = name.strip_prefix("wasmcustom.posturio_")?;
    let (metric, mut segments) = match rest.split_once('.') {
        Some((metric, segments)) => (metric, segments),
        None => (rest, ""),
    };
    let mut labels = BTreeMap::new();
    while !segments.is_empty() {
        let (pair, after) = segments.split_once(';')?;
        let (key, value) = pair.split_once('=')?;
        labels.insert(key.to_string(), value.to_string());
        segments = after.strip_prefix('.').unwrap_or(after);
    }
    Some((format!("posturio_{metric}"), labels))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn wait_for_line(read: impl Fn() -> String, needle: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = read().lines().find(|l| l.contains(needle)) {
            return Some(line.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(FLUSH_INTERVAL_MS));
    }
}

/// Prometheus samples by metric name and label set.
pub type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// `name{a="b",c="d"} value` lines into a map; comments skipped. Enough for Envoy's output
/// (label values without `",` in them).
pub fn parse_prometheus(text: &str) -> Samples {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap();
                (key.to_string(), value.trim_end_matches('"').to_string())
            })
            .collect();
        samples.insert((name.to_string(), labels), value.parse().unwrap());
    }
    samples
}
