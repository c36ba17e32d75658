//! Replaying logs: rows by consumer, model and reason; budgets simulated in start-time order
//! across rotated files given newest first; exit status for CI.

use super::*;

const OLD: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" }, "gpt-4o-mini": { "provider": "openai" } },
  "consumers": {
    "team": { "models": ["*"] },
    "metered": { "models": ["*"] }
  }
}"#;

fn line(second: u32, consumer: &str, model: &str, tokens: u64) -> String {
    format!(
        r#"{{"start_time":"2026-12-07T10:{:02}:{:02}Z","posturio_decision":"allow","posturio_consumer":"{consumer}","posturio_model":"{model}","posturio_api":"openai","posturio_tokens":"{tokens}","bytes_received":40}}"#,
        second / 60,
        second % 60
    )
}

fn write(dir: &std::path::Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn a_budget_is_simulated_in_start_time_order_across_files() {
    let dir = tempfile::tempdir().unwrap();
    // Rotated files given newest first, and one line out of order within a file.
    let older = write(
        dir.path(),
        "access.log.1",
        &[
            line(1, "metered", "gpt-4o", 40),
            line(0, "metered", "gpt-4o", 40),
        ],
    );
    let newer = write(
        dir.path(),
        "access.log",
        &[
            line(2, "metered", "gpt-4o", 40),
            line(3, "metered", "gpt-4o", 40),
            line(4, "metered", "gpt-4o-mini", 40),
            // The next minute: a fresh window.
            line(61, "metered", "gpt-4o", 40),
            line(5, "team", "gpt-4o", 40),
        ],
    );
    let old = Policy::from_json(OLD.as_bytes()).unwrap();
    let new = Policy::from_json(
        OLD.replace(
            r#""metered": { "models": ["*"] }"#,
            r#""metered": { "models": ["*"],
                 "budget": { "tokens_per_minute": 100, "default_output_tokens": 10 } }"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let (replay, stats) = replay_logs(&old, &new, &[newer, older]).unwrap();
    assert_eq!(stats.records, 7);
    let row = |consumer: &str, model: &str, change: Change, reason: &str| {
        replay
            .rows
            .get(&(
                consumer.to_owned(),
                model.to_owned(),
                change,
                reason.to_owned(),
            ))
            .copied()
            .unwrap_or(0)
    };
    // Each reserves 10 input (40 bytes) + 10 output tokens and uses 40: 80 + 20 fits in 100,
    // then 120 is over: the fourth and fifth of the minute are refused.
    assert_eq!(row("metered", "gpt-4o", Change::Unchanged, "forwarded"), 4);
    assert_eq!(
        row("metered", "gpt-4o", Change::NowRefused, "budget_exceeded"),
        1
    );
    assert_eq!(
        row(
            "metered",
            "gpt-4o-mini",
            Change::NowRefused,
            "budget_exceeded"
        ),
        1
    );
    assert_eq!(row("team", "gpt-4o", Change::Unchanged, "forwarded"), 1);
    assert_eq!(replay.late, 0);
    assert_eq!(replay.old_mismatch, 0);
}

#[test]
fn fail_on_change_exits_1_and_a_bad_policy_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path(), "access.log", &[line(0, "team", "gpt-4o", 10)]);
    let old = dir.path().join("old.json");
    std::fs::write(&old, OLD).unwrap();
    let new = dir.path().join("new.json");
    std::fs::write(
        &new,
        OLD.replace(
            r#""team": { "models": ["*"] }"#,
            r#""team": { "models": ["gpt-4o-mini"] }"#,
        ),
    )
    .unwrap();
    let args = |flags: &[&str], new: &std::path::Path| -> Vec<String> {
        flags
            .iter()
            .map(|flag| (*flag).to_owned())
            .chain([
                old.to_string_lossy().into_owned(),
                new.to_string_lossy().into_owned(),
                log.clone(),
            ])
            .collect()
    };
    let output = replay(&args(&[], &new)).unwrap();
    assert_eq!(output.code, 0);
    assert!(
        output.stdout.contains("now refused 1,"),
        "{}",
        output.stdout
    );
    assert!(
        output
            .stdout
            .contains("consumer team, model gpt-4o: model_not_approved"),
        "{}",
        output.stdout
    );
    assert_eq!(replay(&args(&["--fail-on-change"], &new)).unwrap().code, 1);
    assert_eq!(replay(&args(&["--fail-on-change"], &old)).unwrap().code, 0);
    let json: Value =
        serde_json::from_str(&replay(&args(&["--json"], &new)).unwrap().stdout).unwrap();
    assert_eq!(json["schema"], "posturio.replay.v1");
    assert_eq!(json["now_refused"][0]["reason"], "model_not_approved");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        OLD.replace(r#""provider": "openai" },"#, r#""provider": "nowhere" },"#),
    )
    .unwrap();
    let output = replay(&args(&[], &bad)).unwrap();
    assert_eq!(output.code, 2);
    assert!(
        output.stderr.contains("models.gpt-4o.provider"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_dollar_budget_is_charged_at_the_new_prices() {
    let dir = tempfile::tempdir().unwrap();
    let usage = |second: u32| {
        format!(
            r#"{{"start_time":"2026-12-07T10:00:{second:02}Z","posturio_decision":"allow","posturio_consumer":"metered","posturio_model":"gpt-4o","posturio_provider":"openai","posturio_api":"openai","posturio_input_tokens":"1000","posturio_output_tokens":"100","posturio_tokens":"1100","bytes_received":40}}"#
        )
    };
    let log = write(
        dir.path(),
        "access.log",
        &(0..6).map(usage).collect::<Vec<_>>(),
    );
    let old = Policy::from_json(OLD.as_bytes()).unwrap();
    // $10 and $30 per million: 1000 input and 100 output tokens cost $0.013; the reservation
    // (10 input, 10 output) $0.0004. Four fit in $0.05 (the fourth: 0.039 + 0.0004).
    let new = Policy::from_json(
        OLD.replace(
            r#""gpt-4o": { "provider": "openai" }"#,
            r#""gpt-4o": { "provider": "openai", "price": { "input": "10.00", "output": "30.00" } }"#,
        )
        .replace(
            r#""metered": { "models": ["*"] }"#,
            r#""metered": { "models": ["gpt-4o"],
                 "budget": { "usd_per_day": "0.05", "default_output_tokens": 10 } }"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let (replay, _) = replay_logs(&old, &new, &[log]).unwrap();
    let row = |change: Change, reason: &str| {
        replay
            .rows
            .get(&(
                "metered".to_owned(),
                "gpt-4o".to_owned(),
                change,
                reason.to_owned(),
            ))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(row(Change::Unchanged, "forwarded"), 4);
    assert_eq!(row(Change::NowRefused, "budget_exceeded"), 2);
}
