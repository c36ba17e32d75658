//! One policy file per deployment: every copy of a policy embedded in `envoy/` and `deploy/`
//! (Envoy configurations, the ECDS file, Kubernetes manifests) is marked with the file it is
//! rendered from and is byte for byte what `posturio render` writes from it.
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn posturio(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_posturio"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run posturio")
}

/// Every YAML file under `envoy/` and `deploy/`, relative to the repository.
fn shipped_yamls() -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("envoy"), repo().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let relative = path.strip_prefix(repo()).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// A line that starts a policy's own key, once per policy: `"providers"` in a JSON policy, or
/// `route_header` in one written as YAML.
fn is_policy_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.starts_with("\"providers\":") || trimmed.starts_with("route_header:")
}

#[test]
fn every_embedded_policy_is_in_step_with_its_source() {
    let files = shipped_yamls();
    for expected in [
        "envoy/envoy.yaml",
        "envoy/ecds/posturio.yaml",
        "deploy/istio/envoyfilter.yaml",
        "deploy/envoy-gateway/extension.yaml",
    ] {
        assert!(files.iter().any(|f| f == expected), "{expected} not found");
    }
    let mut args = vec!["render", "--check"];
    args.extend(files.iter().map(String::as_str));
    let output = posturio(&repo(), &args);
    assert!(
        output.status.success(),
        "a policy copy drifted from its source:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every copy is marked: as many markers in a file as policies embedded in it.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for file in &files {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let markers = text
            .lines()
            .filter(|l| l.trim_start().starts_with("# posturio render:"))
            .count();
        let policies = text.lines().filter(|l| is_policy_line(l)).count();
        assert_eq!(
            markers, policies,
            "{file}: {policies} embedded policies but {markers} `# posturio render:` markers"
        );
        if markers > 0 {
            assert!(
                stdout.contains(&format!("{file}: in step with ")),
                "{file} not reported: {stdout}"
            );
        }
    }
}

#[test]
fn the_make_run_policy_reaches_every_example_envoy_config() {
    for file in [
        "envoy/envoy.yaml",
        "envoy/envoy-native.yaml",
        "envoy/envoy-providers.yaml",
        "envoy/envoy-ratelimit.yaml",
        "envoy/ecds/posturio.yaml",
        "envoy/ecds/posturio-native.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let source = if file.starts_with("envoy/ecds/") {
            "../policy.json"
        } else {
            "policy.json"
        };
        assert!(
            text.contains(&format!("# posturio render: {source}\n")),
            "{file} is not rendered from envoy/policy.json"
        );
    }
}

/// A scratch copy of envoy/envoy.yaml and envoy/policy.json.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["envoy.yaml", "policy.json"] {
        std::fs::copy(repo().join("envoy").join(file), dir.path().join(file)).unwrap();
    }
    dir
}

#[test]
fn an_edited_policy_is_reported_then_rendered() {
    let dir = scratch();
    let policy = dir.path().join("policy.json");
    let edited = std::fs::read_to_string(&policy).unwrap().replace(
        r#""default": { "models": ["gpt-4o-mini","#,
        r#""default": { "models": ["gpt-4o", "gpt-4o-mini","#,
    );
    std::fs::write(&policy, &edited).unwrap();

    let check = posturio(dir.path(), &["render", "--check", "envoy.yaml"]);
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("envoy.yaml: differs from policy.json; run `posturio render envoy.yaml`"),
        "{stderr}"
    );

    let render = posturio(dir.path(), &["render", "envoy.yaml"]);
    assert!(render.status.success(), "{render:?}");
    assert_eq!(
        String::from_utf8_lossy(&render.stdout).trim(),
        "envoy.yaml: rendered from policy.json"
    );
    let yaml = std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap();
    assert!(
        yaml.contains(r#"  "default": { "models": ["gpt-4o", "gpt-4o-mini","#),
        "{yaml}"
    );
    let again = posturio(dir.path(), &["render", "--check", "envoy.yaml"]);
    assert!(again.status.success(), "{again:?}");
}

#[test]
fn an_invalid_policy_is_named_by_its_path_and_nothing_is_written() {
    let dir = scratch();
    let before = std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap();
    let policy = dir.path().join("policy.json");
    let typo = std::fs::read_to_string(&policy)
        .unwrap()
        .replace(r#""gpt-4o*", "claude-*""#, r#""gtp-4o*", "claude-*""#);
    std::fs::write(&policy, typo).unwrap();
    for out in [None, Some("live.yaml")] {
        let mut args = vec!["render", "envoy.yaml"];
        if let Some(out) = out {
            args.extend(["--out", out]);
        }
        let output = posturio(dir.path(), &args);
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).trim(),
            "policy.json: consumers.search-team.models[0]: \"gtp-4o*\" matches no model in the \
             catalogue (\"models\"); consumers can only narrow the catalogue"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap(),
        before
    );
    assert!(!dir.path().join("live.yaml").exists());
}

#[test]
fn out_writes_a_rendered_copy_elsewhere() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let output = posturio(
        dir.path(),
        &["render", "envoy.yaml", "--out", "run/live.yaml"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("run/live.yaml")).unwrap(),
        std::fs::read_to_string(dir.path().join("envoy.yaml")).unwrap()
    );
    // Nothing but the rendered file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["live.yaml"]);
}

#[test]
fn render_usage_errors() {
    let dir = scratch();
    for args in [
        &["render"][..],
        &["render", "--check", "envoy.yaml", "--out", "x.yaml"],
        &["render", "--bogus", "envoy.yaml"],
    ] {
        let output = posturio(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
