//! Which build of Posturio the tests run: the Wasm module (the default) or the native Envoy
//! dynamic module, chosen by `POSTURIO_BUILD=wasm|native`.
//!
//! The shipped configurations load the Wasm filter. Under the native build every Envoy the
//! harness starts from one of them gets each Posturio Wasm filter (the request filter and a
//! pool cluster's upstream filter) replaced by the dynamic-module filter with the same policy
//! (`to_native`), so one suite tests both builds. The same translation, applied to
//! `envoy/envoy.yaml`, is the shipped `envoy/envoy-native.yaml` (tests/envoy_native.rs keeps
//! the two equal).
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::path::PathBuf;

use super::repo_path;

/// The environment variable that picks the build.
pub const BUILD_VAR: &str = "POSTURIO_BUILD";
/// The environment variable that overrides where the native module is.
pub const NATIVE_MODULE_VAR: &str = "POSTURIO_NATIVE_MODULE";
/// Where `make native` leaves the native module, relative to the repository.
pub const NATIVE_MODULE: &str = "target/native/libposturio.so";

/// The Wasm filter's type URL, as the shipped configurations name it.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The dynamic-module filter's type URL.
pub const NATIVE_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const WASM_FILTER_NAME: &str = "envoy.filters.http.wasm";
const NATIVE_FILTER_NAME: &str = "envoy.filters.http.dynamic_modules";
/// The stats prefix of the Wasm build's custom metrics. The native filter is given the same
/// one (`metrics_namespace`), so the shipped `stats_tags`, dashboards and tests serve both.
const METRICS_NAMESPACE: &str = "wasmcustom";
/// The runtime flag under which Envoy 1.40 lists a dynamic module's metrics in
/// `/stats/prometheus` by their own names (`posturio_requests_total{...}`, as the Wasm build's
/// `wasmcustom` ones are), not as `envoy_wasmcustom_posturio_...`.
pub const STRIP_PREFIX_FLAG: &str =
    "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix";
/// The bootstrap's runtime layer that turns `STRIP_PREFIX_FLAG` on, appended to a bootstrap
/// that has none.
const RUNTIME_LAYER: &str = "
# Envoy lists the native module's metrics in /stats/prometheus under their own names
# (posturio_requests_total{...}), as it does the Wasm build's, only with this runtime flag;
# without it they are envoy_wasmcustom_posturio_...
layered_runtime:
  layers:
  - name: static
    static_layer:
      envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true
";

/// What the Wasm build's log lines from the module start with (Envoy's `wasm log <root_id>
/// <vm_id>: ` and the module's own `posturio: `).
pub const WASM_LOG_PREFIX: &str = "wasm log posturio posturio: ";
/// What the native build's log lines from the module start with, after Envoy's own
/// `[time][thread][level][dynamic_modules] [source location] ` part.
pub const NATIVE_LOG_PREFIX: &str = "] posturio: ";

/// The build under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `target/wasm32-wasip1/release/posturio.wasm` in Envoy's V8.
    Wasm,
    /// `target/native/libposturio.so`, an Envoy dynamic module.
    Native,
}

impl Build {
    /// `POSTURIO_BUILD` (default `wasm`). Panics on any other value, so a typo never runs the
    /// suite against the build nobody asked for.
    pub fn current() -> Build {
        let value = std::env::var(BUILD_VAR).unwrap_or_default();
        Build::from_name(&value).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The build a value of `POSTURIO_BUILD` names (empty: the default, `wasm`).
    pub fn from_name(value: &str) -> Result<Build, String> {
        match value {
            "" | "wasm" => Ok(Build::Wasm),
            "native" => Ok(Build::Native),
            other => Err(format!(
                "{BUILD_VAR}={other:?} is not a build: set it to `wasm` (the default) or \
                 `native`"
            )),
        }
    }

    /// `wasm` or `native`, as `POSTURIO_BUILD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Build::Wasm => "wasm",
            Build::Native => "native",
        }
    }

    /// Envoy's log component of the module's own lines, for `--component-log-level`.
    pub fn log_component(self) -> &'static str {
        match self {
            Build::Wasm => "wasm",
            Build::Native => "dynamic_modules",
        }
    }
}

/// Panics unless the build under test is Wasm: for tests of what only the Wasm build has
/// (its OCI image, Istio, the module's size, the V8 VM), which must not pass under native
/// without having tested anything.
pub fn assert_wasm_build(what: &str) {
    let build = Build::current();
    assert!(
        build == Build::Wasm,
        "{what} exists for the Wasm build only, and {BUILD_VAR}={}: run this test with \
         {BUILD_VAR}=wasm (or unset)",
        build.name()
    );
}

/// The native module: `$POSTURIO_NATIVE_MODULE`, else `<repo>/target/native/libposturio.so`.
/// Panics if it is missing: a native run never falls back to the Wasm build or skips.
pub fn native_module_path() -> PathBuf {
    let path = match std::env::var_os(NATIVE_MODULE_VAR).filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => repo_path(NATIVE_MODULE),
    };
    let meta = std::fs::metadata(&path).unwrap_or_else(|_| {
        panic!(
            "the native module {} is missing: run `make native` (or `make test`, which builds \
             it), or set {NATIVE_MODULE_VAR} to a built libposturio.so",
            path.display()
        )
    });
    assert!(
        meta.is_file() && meta.len() > 0,
        "the native module {} is empty or not a file: run `make native`",
        path.display()
    );
    path
}

/// The message of a log line the module wrote, under either build: the text after
/// `WASM_LOG_PREFIX` or `NATIVE_LOG_PREFIX`.
pub fn module_message(line: &str) -> Option<&str> {
    line.split_once(WASM_LOG_PREFIX)
        .or_else(|| line.split_once(NATIVE_LOG_PREFIX))
        .map(|(_, message)| message)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// `yaml` with each Posturio Wasm filter replaced by the native dynamic-module filter loading
/// `module` (written into the YAML as given: a plain or a quoted path). The Wasm filter's
/// `configuration` (the policy, with its comments and `posturio render` marker) becomes the
/// native filter's `filter_config`, unchanged; everything else in the file stays as it is.
/// An ECDS filter file (a `TypedExtensionConfig`) and a bootstrap's `type_urls` are translated
/// the same way, and a bootstrap (a file with `static_resources:`) gets the runtime layer that
/// `STRIP_PREFIX_FLAG` needs. A configuration already translated is left as it is. Panics if the
/// result still has a Wasm filter, or has no native one, or `yaml` has a Wasm filter that is not
/// Posturio's (so a template change cannot silently leave the Wasm filter in a native run).
pub fn to_native(yaml: &str, module: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut translated = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() != format!("\"@type\": {WASM_TYPE_URL}") {
            out.push(line.to_string());
            i += 1;
            continue;
        }
        let indent = indent_of(line);
        let end = block_end(&lines, i + 1, indent);
        out.extend(native_typed_config(&lines[i + 1..end], indent, module));
        translated += 1;
        i = end;
    }
    let renamed: Vec<String> = out.iter().map(|line| rename_filter(line)).collect();
    translated += renamed.iter().zip(&out).filter(|(a, b)| a != b).count();
    let mut text = renamed.join("\n");
    if yaml.ends_with('\n') {
        text.push('\n');
    }
    if translated > 0 && text.contains("\nstatic_resources:") {
        text = with_runtime_flag(text);
    }
    assert!(
        !text.contains(WASM_TYPE_URL) && !text.contains(WASM_FILTER_NAME),
        "a Wasm filter is left after the translation to the native build; update \
         tests/common/build.rs:\n{text}"
    );
    assert!(
        text.contains(NATIVE_TYPE_URL),
        "no Posturio filter (`\"@type\": {WASM_TYPE_URL}`) to translate to the native build; \
         update tests/common/build.rs"
    );
    text
}

/// `bootstrap` with `STRIP_PREFIX_FLAG` on: the runtime layer appended, or checked where the
/// bootstrap has a runtime of its own.
fn with_runtime_flag(mut bootstrap: String) -> String {
    if bootstrap.contains("\nlayered_runtime:") {
        assert!(
            bootstrap.contains(&format!("{STRIP_PREFIX_FLAG}: true")),
            "this bootstrap has a layered_runtime without `{STRIP_PREFIX_FLAG}: true`, which the \
             native build's metric names need; add it there"
        );
        return bootstrap;
    }
    bootstrap.push_str(RUNTIME_LAYER);
    bootstrap
}

/// The filter's list-item name and a bootstrap's ECDS `type_urls` entry.
fn rename_filter(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    if trimmed == format!("- name: {WASM_FILTER_NAME}") {
        format!("{indent}- name: {NATIVE_FILTER_NAME}")
    } else if trimmed == format!("- {WASM_TYPE_URL}") {
        format!("{indent}- {NATIVE_TYPE_URL}")
    } else {
        line.to_string()
    }
}

/// The index of the first line from `start` on that is neither blank nor indented at least
/// `indent` (the end of the mapping whose keys sit at `indent`). Trailing blank lines are
/// left outside.
fn block_end(lines: &[&str], start: usize, indent: usize) -> usize {
    let mut end = start;
    let mut last_content = start;
    while end < lines.len() {
        let line = lines[end];
        if line.trim().is_empty() {
            end += 1;
            continue;
        }
        if indent_of(line) < indent {
            break;
        }
        end += 1;
        last_content = end;
    }
    last_content
}

/// The native `typed_config` mapping at `indent`, from the rest of the Wasm one (`wasm`: the
/// lines after its `"@type"`, the `config:` key and its subtree).
fn native_typed_config(wasm: &[&str], indent: usize, module: &str) -> Vec<String> {
    let field = |name: &str| {
        wasm.iter().position(|l| {
            l.trim() == format!("{name}:") || l.trim().starts_with(&format!("{name}: "))
        })
    };
    let vm_name = field("name").map(|i| wasm[i].trim());
    assert_eq!(
        vm_name,
        Some("name: posturio"),
        "a Wasm filter that is not Posturio's (its config name is {vm_name:?}); the native build \
         replaces Posturio's only: update tests/common/build.rs"
    );
    let head = field("configuration").unwrap_or_else(|| {
        panic!("Posturio's Wasm filter has no `configuration`; update tests/common/build.rs")
    });
    let head_indent = indent_of(wasm[head]);
    let body_end = block_end(wasm, head + 1, head_indent + 1);
    let pad = " ".repeat(indent);
    let mut out = vec![
        format!("{pad}\"@type\": {NATIVE_TYPE_URL}"),
        format!("{pad}dynamic_module_config:"),
        format!("{pad}  name: posturio"),
        format!("{pad}  module: {{ local: {{ filename: {module} }} }}"),
        format!("{pad}  metrics_namespace: {METRICS_NAMESPACE}"),
        format!("{pad}filter_name: posturio"),
        format!("{pad}filter_config:"),
    ];
    // The configuration's own lines (type, comments, value), moved under `filter_config`.
    let child_pad = " ".repeat(indent + 2);
    for line in &wasm[head + 1..body_end] {
        if line.trim().is_empty() {
            out.push(String::new());
        } else {
            let relative = indent_of(line).saturating_sub(head_indent + 2);
            out.push(format!(
                "{child_pad}{}{}",
                " ".repeat(relative),
                line.trim_start()
            ));
        }
    }
    out
}

/// `yaml` for the build under test: unchanged under Wasm, `to_native` under native.
pub fn for_build(yaml: &str, build: Build, native_module: &str) -> String {
    match build {
        Build::Wasm => yaml.to_string(),
        Build::Native => to_native(yaml, native_module),
    }
}
