//! The shipped native configurations (`envoy/envoy-native.yaml`, and for `make run BUILD=native`
//! `envoy/envoy-ecds-native.yaml` with `envoy/ecds/posturio-native.yaml`) are their Wasm
//! counterparts with the Posturio filters translated by the harness's `to_native`
//! (tests/common/build.rs), so they never drift; the translation keeps the policy unchanged.
// Integration test: failing loudly (unwrap/panic) is how it reports a broken setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::build::{to_native, Build, NATIVE_MODULE, NATIVE_TYPE_URL, WASM_TYPE_URL};
use common::embedded_policy;

const WASM_CONFIG: &str = "envoy/envoy.yaml";
const NATIVE_CONFIG: &str = "envoy/envoy-native.yaml";

/// The lines that carry configuration: without comment-only lines and blank lines, which the
/// two files word differently (how to start each, what each build needs).
fn without_comments(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter(|line| {
            let trimmed = line.trim();
            !trimmed.is_empty() && !trimmed.starts_with('#')
        })
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// A text replaced by another: (from, to).
type Replacement = (&'static str, &'static str);

/// Each shipped native configuration, the Wasm one it translates, and the one change beyond the
/// translation (the native ECDS bootstrap watches the native filter file).
const PAIRS: &[(&str, &str, Option<Replacement>)] = &[
    (NATIVE_CONFIG, WASM_CONFIG, None),
    (
        "envoy/ecds/posturio-native.yaml",
        "envoy/ecds/posturio.yaml",
        None,
    ),
    (
        "envoy/envoy-ecds-native.yaml",
        "envoy/envoy-ecds.yaml",
        Some((
            "path: envoy/ecds/posturio.yaml\n",
            "path: envoy/ecds/posturio-native.yaml\n",
        )),
    ),
];

#[test]
fn each_native_configuration_is_the_translation_of_its_wasm_one() {
    for (native, wasm, change) in PAIRS {
        let mut expected = to_native(&common::read_repo_file(wasm), NATIVE_MODULE);
        if let Some((from, to)) = change {
            assert_eq!(expected.matches(from).count(), 1, "{wasm}: {from:?}");
            expected = expected.replace(from, to);
        }
        let shipped = common::read_repo_file(native);
        let (expected, shipped) = (without_comments(&expected), without_comments(&shipped));
        if expected != shipped {
            let first = expected
                .iter()
                .zip(&shipped)
                .position(|(a, b)| a != b)
                .unwrap_or(expected.len().min(shipped.len()));
            panic!(
                "{native} differs from the native translation of {wasm} at its {}th line of \
                 configuration:\n  expected: {:?}\n  shipped:  {:?}\nChange both files \
                 together; the translation of {wasm} (comments aside) is:\n{}",
                first + 1,
                expected.get(first),
                shipped.get(first),
                expected.join("\n")
            );
        }
    }
}

#[test]
fn the_native_configuration_serves_the_same_policy_with_its_render_marker() {
    let native = common::read_repo_file(NATIVE_CONFIG);
    assert_eq!(
        embedded_policy(&native),
        embedded_policy(&common::read_repo_file(WASM_CONFIG))
    );
    assert!(
        native.contains("# posturio render: policy.json\n"),
        "{NATIVE_CONFIG} lost its `posturio render` marker"
    );
}

#[test]
fn both_posturio_filters_are_translated_with_their_own_configuration() {
    let wasm = common::read_repo_file(WASM_CONFIG);
    let native = to_native(&wasm, "/m/libposturio.so");
    assert!(!native.contains(WASM_TYPE_URL), "{native}");
    // The request filter and the pool cluster's upstream filter.
    assert_eq!(native.matches(NATIVE_TYPE_URL).count(), 2, "{native}");
    assert_eq!(
        native
            .matches("module: { local: { filename: /m/libposturio.so } }")
            .count(),
        2
    );
    assert_eq!(native.matches("filter_name: posturio").count(), 2);
    assert!(
        native.contains("value: '{\"role\": \"upstream\"}'"),
        "{native}"
    );
}

#[test]
fn an_ecds_filter_file_and_its_bootstrap_translate_too() {
    let filter = to_native(
        &common::read_repo_file("envoy/ecds/posturio.yaml"),
        NATIVE_MODULE,
    );
    assert!(
        filter.contains(&format!("    \"@type\": {NATIVE_TYPE_URL}\n")),
        "{filter}"
    );
    assert!(filter.contains("  typed_config:\n"), "{filter}");
    let bootstrap = to_native(
        &common::read_repo_file("envoy/envoy-ecds.yaml"),
        NATIVE_MODULE,
    );
    assert!(
        bootstrap.contains(&format!("- {NATIVE_TYPE_URL}\n")),
        "the ECDS type_urls still name the Wasm filter"
    );
}

#[test]
fn a_template_without_posturio_is_refused() {
    let result = std::panic::catch_unwind(|| to_native("admin: {}\n", NATIVE_MODULE));
    assert!(result.is_err());
}

#[test]
fn the_build_switch_takes_wasm_or_native_only() {
    assert_eq!(Build::from_name(""), Ok(Build::Wasm));
    assert_eq!(Build::from_name("wasm"), Ok(Build::Wasm));
    assert_eq!(Build::from_name("native"), Ok(Build::Native));
    let error = Build::from_name("Native").unwrap_err();
    assert!(error.contains("POSTURIO_BUILD=\"Native\""), "{error}");
}
