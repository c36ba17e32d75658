//! The `posturio` command on the repository's own configs and fixtures: what security teams
// Helpers outside #[test] functions may fail loudly: a broken fixture or missing binary is a
// test failure, not something to recover from.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! run in CI before they push a policy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn posturio(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_posturio"))
        .args(args)
        .current_dir(repo())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run posturio");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("posturio output")
}

/// Every policy file shipped in the repository (examples and docs).
fn example_configs() -> Vec<PathBuf> {
    let mut configs = Vec::new();
    for dir in ["envoy", "docs", "docs/examples"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|ext| ext == "json")
                && !path.to_string_lossy().contains("dashboard")
            {
                configs.push(path);
            }
        }
    }
    configs.sort();
    configs
}

#[test]
fn every_example_config_passes_check() {
    let configs = example_configs();
    assert!(
        configs
            .iter()
            .any(|path| path.ends_with("envoy/policy.json")),
        "envoy/policy.json not found among {configs:?}"
    );
    for config in configs {
        let output = posturio(&["check", config.to_str().unwrap()], None);
        assert!(
            output.status.success(),
            "{}: {}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(": valid ("), "{stdout}");
    }
}

/// Each `tests/fixtures/bad_configs/NAME.json` is refused, and the output has the line in
/// `NAME.expect`: the JSON path of the mistake and what is wrong with it.
#[test]
fn every_bad_config_is_refused_with_its_path() {
    let dir = repo().join("tests/fixtures/bad_configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("bad_configs") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        count += 1;
        let expected = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let expected = expected.trim();

        // The library, as the filter runs it.
        let bytes = std::fs::read(&path).unwrap();
        let errors = posturio::policy::Policy::from_json(&bytes)
            .expect_err(&format!("{} was accepted", path.display()));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().any(|line| line.contains(expected)),
            "{}: expected {expected:?} in {shown:?}",
            path.display()
        );

        // The command, with the same messages and exit code 1.
        let output = posturio(&["check", path.to_str().unwrap()], None);
        assert_eq!(output.status.code(), Some(1), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{}: {stderr}", path.display());
    }
    assert!(count >= 30, "only {count} bad configs found");
}

fn eval(path: &str, headers: &[&str], body: &[u8]) -> (i32, serde_json::Value) {
    let mut args = vec!["eval", "envoy/policy.json", "--path", path];
    for header in headers {
        args.push("--header");
        args.push(header);
    }
    args.push("-");
    let output = posturio(&args, Some(body));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), verdict)
}

#[test]
fn eval_shows_an_alias_rewritten() {
    let (code, verdict) = eval(
        "/v1/chat/completions",
        &[],
        br#"{"model":"fast","messages":[]}"#,
    );
    assert_eq!(code, 0);
    assert_eq!(verdict["decision"], "allow");
    assert_eq!(verdict["cluster"], "openai");
    assert_eq!(verdict["consumer"], "default");
    assert_eq!(verdict["model"], "fast");
    assert_eq!(verdict["forwarded_model"], "gpt-4o-mini");
    assert_eq!(verdict["body_rewritten"], true);
}

#[test]
fn eval_shows_a_denial_in_the_callers_shape() {
    let (code, verdict) = eval(
        "/v1/messages",
        &[],
        br#"{"model":"claude-sonnet-4","max_tokens":5}"#,
    );
    assert_eq!(code, 1);
    assert_eq!(verdict["decision"], "deny");
    assert_eq!(verdict["status"], 403);
    assert_eq!(verdict["code"], "model_not_approved");
    assert_eq!(verdict["reply"]["type"], "error");
    assert_eq!(verdict["reply"]["error"]["type"], "permission_error");
}

#[test]
fn eval_uses_the_identity_header_and_base_path() {
    let (code, verdict) = eval(
        "/v1/chat/completions?trace=1",
        &["x-posturio-consumer: search-team"],
        br#"{"model":"gemini-flash"}"#,
    );
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["cluster"], "gemini");
    assert_eq!(verdict["path"], "/v1beta/openai/chat/completions?trace=1");
    assert_eq!(verdict["forwarded_model"], "gemini-2.5-flash");
}

/// `eval` with a policy written for the test.
fn eval_with(policy: &str, path: &str, headers: &[&str], body: &[u8]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.json");
    std::fs::write(&config, policy).unwrap();
    let mut args = vec!["eval", config.to_str().unwrap(), "--path", path];
    for header in headers {
        args.push("--header");
        args.push(header);
    }
    args.push("-");
    let output = posturio(&args, Some(body));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}"));
    (output.status.code().unwrap(), verdict)
}

const CAPPED_POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" }, "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" } },
  "consumers": {
    "default": { "models": ["*"], "max_output_tokens": 256 },
    "strict": { "models": ["*"], "max_output_tokens": 256, "max_output_tokens_action": "refuse" }
  }
}"#;

#[test]
fn eval_shows_the_body_with_the_limits_applied() {
    let body = br#"{"model":"fast","stream":true,"max_tokens":4096,"messages":[]}"#;
    let (code, verdict) = eval_with(CAPPED_POLICY, "/v1/chat/completions", &[], body);
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(
        verdict["forwarded_body"],
        serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "max_tokens": 256,
            "messages": [],
            "stream_options": {"include_usage": true}
        })
    );
    assert_eq!(verdict["output_cap_clamped"], true);
    assert_eq!(verdict["output_cap_added"], false);
    assert_eq!(verdict["stream_usage_added"], true);
    assert_eq!(verdict["usage_format"], "openai_chat");

    let (code, verdict) = eval_with(
        CAPPED_POLICY,
        "/v1/chat/completions",
        &["x-team: strict"],
        body,
    );
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["status"], 403);
    assert_eq!(verdict["code"], "max_output_tokens_exceeded");

    let (code, verdict) = eval_with(
        CAPPED_POLICY,
        "/v1/chat/completions",
        &[],
        br#"{"model":"gpt-4o","max_tokens":1.5}"#,
    );
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["code"], "invalid_request");
}

#[test]
fn check_reports_unreadable_files_and_usage() {
    let output = posturio(&["check", "no/such/file.json"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    let output = posturio(&["frobnicate"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
    assert!(Path::new(env!("CARGO_BIN_EXE_posturio")).exists());
}

#[test]
fn eval_shows_the_rules_that_fired_and_the_redacted_body() {
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane.doe@example.com"}]}"#;
    let (code, verdict) = eval("/v1/chat/completions", &[], body);
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["rules"][0]["id"], "no-email");
    assert_eq!(verdict["rules"][0]["action"], "redact");
    assert_eq!(verdict["redactions"], 1);
    assert_eq!(
        verdict["forwarded_body"]["messages"][0]["content"],
        "mail [REDACTED:no-email]"
    );

    let secret = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"key AKIAIOSFODNN7EXAMPLE"}]}"#;
    let (code, verdict) = eval("/v1/chat/completions", &[], secret);
    assert_eq!(code, 1);
    assert_eq!(verdict["code"], "prompt_blocked");
    assert_eq!(verdict["reply"]["error"]["rule"], "no-secrets");
    assert!(!verdict.to_string().contains("AKIAIOSFODNN7EXAMPLE"));
}

/// Each `tests/fixtures/diffs/NAME/` holds `old.json`, `new.json` and the exact output of
/// `posturio check --diff old.json new.json` in `expected.txt`.
#[test]
fn check_diff_prints_what_each_change_does() {
    let dir = repo().join("tests/fixtures/diffs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("diffs")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "only {names:?}");
    for name in names {
        let old = format!("tests/fixtures/diffs/{name}/old.json");
        let new = format!("tests/fixtures/diffs/{name}/new.json");
        let output = posturio(&["check", "--diff", &old, &new], None);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected =
            std::fs::read_to_string(dir.join(&name).join("expected.txt")).expect("expected.txt");
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{name}");
    }
}

#[test]
fn check_diff_marks_glob_widening_from_catalogue_growth() {
    let output = posturio(
        &[
            "check",
            "--diff",
            "tests/fixtures/diffs/catalogue_growth/old.json",
            "tests/fixtures/diffs/catalogue_growth/new.json",
            "--json",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert!(changes.contains(&serde_json::json!({
        "change": "widen",
        "line": "consumer search-team: model claude-opus-4 approved"
    })));
    assert!(changes.contains(&serde_json::json!({
        "change": "neutral",
        "line": "model gpt-4o: provider openai -> azure"
    })));
}

#[test]
fn check_diff_refuses_an_invalid_side_and_bad_usage() {
    let good = "envoy/policy.json";
    let bad = "tests/fixtures/bad_configs/consumer_glob_matches_nothing.json";
    for args in [[good, bad], [bad, good]] {
        let output = posturio(&["check", "--diff", args[0], args[1]], None);
        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("{bad}: consumers.t.models[0]")),
            "{stderr}"
        );
    }
    let output = posturio(&["check", "--diff", good], None);
    assert_eq!(output.status.code(), Some(2));
    let output = posturio(&["check", "--diff", good, good, "--colour"], None);
    assert_eq!(output.status.code(), Some(2));
    let output = posturio(&["check", "--diff", good, "no/such/file.json"], None);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn eval_refuses_an_identity_the_policy_would_not_read() {
    let body = br#"{"model":"gpt-4o"}"#;
    let args = [
        "eval",
        "envoy/policy.json",
        "--identity",
        "search-team",
        "--path",
        "/v1/chat/completions",
        "-",
    ];
    let output = posturio(&args, Some(body));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "this policy reads the header \"x-posturio-consumer\": use --header \
             'x-posturio-consumer: NAME'"
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    // Under a metadata identity it names the consumer.
    let mut args = args;
    args[1] = "envoy/policy-jwt.json";
    let output = posturio(&args, Some(body));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["consumer"], "search-team");
    assert_eq!(verdict["decision"], "allow");
}

const BUDGET_POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "max_body_bytes": 100,
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" } },
  "consumers": { "default": { "models": ["*"],
                               "budget": { "tokens_per_day": 1000, "default_output_tokens": 100 } } }
}"#;

/// `eval --response`: the answer goes through the same pipeline, which reads its usage and
/// charges the budget.
#[test]
fn eval_reads_the_usage_of_an_answer_and_charges_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.json");
    std::fs::write(&config, BUDGET_POLICY).unwrap();
    let answer = dir.path().join("answer.json");
    std::fs::write(
        &answer,
        r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5}}"#,
    )
    .unwrap();
    let output = posturio(
        &[
            "eval",
            config.to_str().unwrap(),
            "--path",
            "/v1/chat/completions",
            "--response",
            answer.to_str().unwrap(),
            "--response-header",
            "content-type: application/json",
            "-",
        ],
        Some(br#"{"model":"gpt-4o","messages":[]}"#),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{verdict}");
    assert_eq!(verdict["decision"], "allow");
    assert_eq!(
        verdict["usage"],
        serde_json::json!({"input": 7, "output": 5, "cached": 0, "total": 12})
    );
    assert_eq!(verdict["budget_charged"], 12);
}

/// `eval --response` with a rule that reads answers: what the client would receive.
#[test]
fn eval_shows_what_answer_inspection_makes_of_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("policy.json");
    std::fs::write(
        &config,
        r#"{"providers": {"openai": {"cluster": "openai", "api": "openai"}},
            "models": {"gpt-4o": {"provider": "openai"}},
            "consumers": {"default": {"models": ["*"]}},
            "rules": [{"id": "no-keys-out", "pattern": "SECRET-[0-9]{6}", "action": "redact",
                       "direction": "response"}]}"#,
    )
    .unwrap();
    let answer = dir.path().join("answer.json");
    std::fs::write(
        &answer,
        r#"{"choices":[{"message":{"role":"assistant","content":"key SECRET-123456"}}]}"#,
    )
    .unwrap();
    let output = posturio(
        &[
            "eval",
            config.to_str().unwrap(),
            "--path",
            "/v1/chat/completions",
            "--response",
            answer.to_str().unwrap(),
            "--response-header",
            "content-type: application/json",
            "-",
        ],
        Some(br#"{"model":"gpt-4o","messages":[]}"#),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{verdict}");
    assert_eq!(verdict["answer"]["response"], "redacted", "{verdict}");
    assert_eq!(
        verdict["answer"]["rules"],
        serde_json::json!(["no-keys-out:redact"])
    );
    assert_eq!(
        verdict["answer"]["sent"]["choices"][0]["message"]["content"],
        "key [REDACTED:no-keys-out]"
    );
}

/// The filter's body limit, applied by the same code.
#[test]
fn eval_refuses_a_body_over_the_limit() {
    let body = format!(
        r#"{{"model":"gpt-4o","messages":[],"pad":"{}"}}"#,
        "x".repeat(100)
    );
    let (code, verdict) = eval_with(BUDGET_POLICY, "/v1/chat/completions", &[], body.as_bytes());
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["status"], 413);
    assert_eq!(verdict["code"], "body_too_large");
}

#[test]
fn eval_prints_the_model_list_the_gateway_answers() {
    let args = [
        "eval",
        "envoy/policy.json",
        "--method",
        "GET",
        "--path",
        "/v1/models",
        "--header",
        "x-posturio-consumer: search-team",
        "-",
    ];
    let output = posturio(&args, Some(b""));
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{verdict}");
    assert_eq!(verdict["decision"], "allow");
    assert_eq!(verdict["answered_locally"], true);
    assert_eq!(verdict["status"], 200);
    assert_eq!(verdict["consumer"], "search-team");
    let ids: Vec<_> = verdict["answer"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gemini-flash", "gpt-4o", "gpt-4o-mini"]);

    // Another consumer's model: refused as not found.
    let args = [
        "eval",
        "envoy/policy.json",
        "--method",
        "GET",
        "--path",
        "/v1/models/gpt-4o",
        "-",
    ];
    let output = posturio(&args, Some(b""));
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{verdict}");
    assert_eq!(verdict["status"], 404);
    assert_eq!(verdict["code"], "model_not_found");
}

/// `posturio key new`'s key (standard output) and policy line (standard error).
fn new_key(args: &[&str]) -> (String, String) {
    let mut all = vec!["key", "new"];
    all.extend_from_slice(args);
    let output = posturio(&all, None);
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn key_hash(stdin: &[u8]) -> Output {
    posturio(&["key", "hash"], Some(stdin))
}

#[test]
fn key_new_prints_a_random_key_and_its_policy_line() {
    let (stdout, stderr) = new_key(&["--consumer", "search"]);
    // The key alone on the first (only) line of standard output.
    let key = stdout.strip_suffix('\n').unwrap();
    assert!(!key.contains('\n'), "{stdout:?}");
    let random = key.strip_prefix("pst_").unwrap();
    // 43 characters of base64url: 32 random bytes, 256 bits.
    assert_eq!(random.len(), 43, "{key}");
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{key}"
    );
    // The last character carries 4 bits of the 32nd byte and 2 zero bits.
    let last = random.chars().last().unwrap();
    assert!("AEIMQUYcgkosw048".contains(last), "{key}");

    // The line to add names the consumer and holds the hash `key hash` gives for the key.
    let hash = key_hash(stdout.as_bytes());
    assert!(hash.status.success());
    let hash = String::from_utf8(hash.stdout).unwrap();
    assert_eq!(
        stderr,
        format!(
            "add to consumers.search.api_keys: \"{}\"\n",
            hash.trim_end()
        )
    );
    assert!(!stderr.contains(key), "the policy line never holds the key");

    // Two keys differ.
    let (other, _) = new_key(&["--consumer", "search"]);
    assert_ne!(other, stdout);
    let (_, hint) = new_key(&[]);
    assert!(
        hint.starts_with("add to consumers.<name>.api_keys: \"sha256:"),
        "{hint}"
    );
}

#[test]
fn key_hash_is_the_keys_sha256() {
    // The SHA-256 test vector of "abc" (FIPS 180-2).
    let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
    for input in [&b"abc"[..], b"abc\n", b"abc\r\n"] {
        let output = key_hash(input);
        assert_eq!(output.status.code(), Some(0), "{input:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), abc, "{input:?}");
    }
    // Only one line end goes; anything else is part of the key.
    let output = key_hash(b" abc\n");
    assert_ne!(String::from_utf8_lossy(&output.stdout), abc);
}

#[test]
fn key_hash_of_nothing_is_an_error() {
    for input in [&b""[..], b"\n", b"\r\n"] {
        let output = key_hash(input);
        assert_eq!(output.status.code(), Some(2), "{input:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("standard input holds no key"), "{stderr}");
    }
    let output = posturio(&["key", "hash", "pst_x"], None);
    assert_eq!(output.status.code(), Some(2));
    let output = posturio(&["key", "rotate"], None);
    assert_eq!(output.status.code(), Some(2));
}

/// `eval` decides with the real clock: a key that expired is refused as Envoy refuses it, and
/// one that expires in the future is accepted.
#[test]
fn eval_checks_key_expiry_against_the_clock() {
    // SHA-256 of "abc" and of "abd".
    let policy = r#"{
      "identity": { "api_keys": true },
      "providers": { "openai": { "cluster": "openai", "api": "openai" } },
      "models": { "gpt-4o": { "provider": "openai" } },
      "consumers": {
        "old": { "models": ["*"], "api_keys": [{ "hash": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "expires": "2020-01-01T00:00:00Z" }] },
        "new": { "models": ["*"], "api_keys": [{ "hash": "sha256:a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9", "expires": "2999-01-01T00:00:00Z" }] }
      }
    }"#;
    let body = br#"{"model":"gpt-4o","messages":[]}"#;
    let (code, verdict) = eval_with(
        policy,
        "/v1/chat/completions",
        &["authorization: Bearer abc"],
        body,
    );
    assert_eq!(code, 1, "{verdict}");
    assert_eq!(verdict["code"], "invalid_api_key");
    let (code, verdict) = eval_with(
        policy,
        "/v1/chat/completions",
        &["authorization: Bearer abd"],
        body,
    );
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["consumer"], "new");
}
