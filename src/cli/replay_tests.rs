//! Replaying logs: rows by consumer, model and reason; budgets simulated in start-time order
//! across rotated files given newest first; exit status for CI.

use super::*;
use serde_json::Value;

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

/// A metered line at `minute:second` past 10:00 with these extra fields.
fn metered(minute: u32, second: u32, fields: &str) -> String {
    format!(
        r#"{{"start_time":"2026-12-07T10:{minute:02}:{second:02}Z","posturio_consumer":"metered","posturio_model":"gpt-4o","posturio_provider":"openai","posturio_api":"openai","bytes_received":40,{fields}}}"#
    )
}

const USED_40: &str = r#""posturio_decision":"allow","posturio_input_tokens":"30","posturio_output_tokens":"10","posturio_charged_tokens":"40""#;

fn with_budget(budget: &str) -> Policy {
    Policy::from_json(
        OLD.replace(
            r#""metered": { "models": ["*"] }"#,
            &format!(r#""metered": {{ "models": ["*"], "budget": {budget} }}"#),
        )
        .as_bytes(),
    )
    .unwrap()
}

fn count(replay: &Replay, change: Change, reason: &str) -> u64 {
    replay
        .rows
        .iter()
        .filter(|((_, _, row_change, row_reason), _)| *row_change == change && row_reason == reason)
        .map(|(_, requests)| *requests)
        .sum()
}

#[test]
fn what_owed_nothing_is_charged_nothing_and_a_cut_stream_its_logged_charge() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        "access.log",
        &[
            // Provider errors and a provider never reached: the filter charged nothing.
            metered(0, 0, r#""posturio_decision":"allow","status":500"#),
            metered(0, 1, r#""posturio_decision":"allow","status":500"#),
            metered(0, 2, r#""posturio_decision":"allow","status":503"#),
            metered(
                0,
                3,
                r#""posturio_decision":"deny","posturio_code":"upstream_unavailable""#,
            ),
            metered(
                0,
                4,
                r#""posturio_decision":"allow","status":404,"path":"/v1/files""#,
            ),
            // A stream cut before its usage: charged 60, more than a reservation (20).
            metered(
                0,
                5,
                r#""posturio_decision":"allow","posturio_charged_tokens":"60","posturio_charged_microusd":"9""#,
            ),
            metered(0, 6, USED_40),
            metered(0, 7, USED_40),
        ],
    );
    let old = Policy::from_json(OLD.as_bytes()).unwrap();
    let new = with_budget(r#"{ "tokens_per_minute": 100, "default_output_tokens": 10 }"#);
    let (replay, _) = replay_logs(&old, &new, &[log]).unwrap();
    // 0 + 60, then 60 + 20 fits (used 100), then 100 + 20 does not.
    assert_eq!(count(&replay, Change::NowRefused, "budget_exceeded"), 1);
    // The provider never reached counts as forwarded, as far as the policy goes.
    assert_eq!(count(&replay, Change::Unchanged, "forwarded"), 7);
    assert_eq!(replay.usage_unknown, 0, "nothing here was refused before");
    let text = render_text(&replay, &Stats::default(), "old", "new");
    assert!(text.contains("0 refused before and now allowed"), "{text}");
}

const ANSWER_RULE: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" }, "gpt-4o-mini": { "provider": "openai" } },
  "rules": [ { "id": "ans-email", "detect": "email", "action": "ACTION", "direction": "response" } ],
  "consumers": { "metered": { "models": ["*"], BUDGET } }
}"#;

#[test]
fn an_answer_withheld_after_forwarding_is_charged_and_a_self_replay_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let budget = r#""budget": { "tokens_per_minute": 100, "default_output_tokens": 10 }"#;
    let policy = |action: &str, budget: &str| {
        Policy::from_json(
            ANSWER_RULE
                .replace("ACTION", action)
                .replace(", BUDGET", budget)
                .as_bytes(),
        )
        .unwrap()
    };
    let blocked = r#""posturio_decision":"allow","posturio_code":"response_blocked","posturio_response_rules":"ans-email:block","posturio_input_tokens":"30","posturio_output_tokens":"10","posturio_charged_tokens":"40","status":403"#;
    // Written under NEW: three answers withheld (each charged 40), then a 429.
    let log = write(
        dir.path(),
        "access.log",
        &[
            metered(0, 0, blocked),
            metered(0, 1, blocked),
            metered(0, 2, blocked),
            metered(
                0,
                3,
                r#""posturio_decision":"deny","posturio_code":"budget_exceeded","status":429"#,
            ),
        ],
    );
    let new = policy("block", &format!(", {budget}"));
    let (replay, _) = replay_logs(&new, &new, std::slice::from_ref(&log)).unwrap();
    assert_eq!(replay.total(Change::NowRefused), 0, "{:?}", replay.rows);
    assert_eq!(replay.total(Change::NowAllowed), 0, "{:?}", replay.rows);
    assert_eq!(replay.total(Change::Unchanged), 4);
    assert_eq!(replay.old_mismatch, 0);
    // Under a policy that only audits the answer rule and has no budget, all four pass.
    let old = policy("audit", "");
    let (replay, _) = replay_logs(&old, &old, &[log]).unwrap();
    assert_eq!(count(&replay, Change::NowAllowed, "response_blocked"), 3);
    assert_eq!(count(&replay, Change::NowAllowed, "budget_exceeded"), 1);
}

#[test]
fn a_request_logged_late_does_not_reset_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let used = |tokens: u32| {
        format!(
            r#""posturio_decision":"allow","posturio_input_tokens":"{tokens}","posturio_output_tokens":"0","posturio_charged_tokens":"{tokens}""#
        )
    };
    let mut lines = vec![
        metered(0, 0, &used(5000)),
        metered(20, 0, &used(5000)),
        metered(40, 0, &used(5000)),
        // Started 09:55, logged when it ended: after the 10:40 line.
        metered(0, 0, &used(100)).replace("T10:00:00Z", "T09:55:00Z"),
        metered(45, 0, &used(5000)),
        metered(50, 0, &used(5000)),
    ];
    let old = Policy::from_json(OLD.as_bytes()).unwrap();
    let new = with_budget(r#"{ "tokens_per_hour": 20000, "default_output_tokens": 10 }"#);
    let (replay, _) = replay_logs(&old, &new, &[write(dir.path(), "access.log", &lines)]).unwrap();
    assert_eq!(count(&replay, Change::NowRefused, "budget_exceeded"), 1);
    assert_eq!(replay.late, 1);
    // The same lines in start order: the same verdict.
    lines.sort_by_key(|line| line.get(14..33).map(str::to_owned));
    let (sorted, _) = replay_logs(&old, &new, &[write(dir.path(), "sorted.log", &lines)]).unwrap();
    assert_eq!(count(&sorted, Change::NowRefused, "budget_exceeded"), 1);
}

#[test]
fn records_held_for_ordering_are_bounded() {
    let new = with_budget(r#"{ "tokens_per_day": 100000000, "default_output_tokens": 10 }"#);
    let mut budgets = Budgets::new(&new);
    let mut replay = Replay::default();
    for _ in 0..MAX_PENDING + 100 {
        // No start time: every record at the same second, none ever old enough to release.
        budgets.push(
            Pending {
                start: 0,
                seq: 0,
                consumer: "metered".to_owned(),
                evaluated: "metered".to_owned(),
                model: "gpt-4o".to_owned(),
                recorded: Fate::Forwarded,
                replaced: None,
                logged: Logged::default(),
                provider: None,
                body_bytes: 40,
            },
            &mut replay,
        );
        assert!(budgets.queue.len() <= MAX_PENDING);
    }
    budgets.finish(&mut replay);
    assert_eq!(replay.budgeted, u64::try_from(MAX_PENDING + 100).unwrap());
    assert!(budgets.windows.len() <= 1);
}

#[test]
fn a_request_refused_at_approval_is_not_said_to_pass_checks_that_never_ran() {
    let dir = tempfile::tempdir().unwrap();
    let refused = r#""posturio_decision":"deny","posturio_code":"model_not_approved","status":403"#;
    let log = write(dir.path(), "access.log", &[metered(0, 0, refused)]);
    let narrow = |rules: &str| {
        Policy::from_json(
            ANSWER_RULE
                .replace("ACTION", "block")
                .replace("\"direction\": \"response\"", "\"direction\": \"request\"")
                .replace(
                    r#""models": ["*"], BUDGET"#,
                    &format!(r#""models": ["MODELS"]{rules}"#),
                )
                .replace("MODELS", "gpt-4o-mini")
                .as_bytes(),
        )
        .unwrap()
    };
    let old = narrow("");
    let approve = |rules: &str| {
        Policy::from_json(
            ANSWER_RULE
                .replace("ACTION", "block")
                .replace("\"direction\": \"response\"", "\"direction\": \"request\"")
                .replace(", BUDGET", rules)
                .as_bytes(),
        )
        .unwrap()
    };
    // NEW approves the model and has a request rule for the consumer: cannot be replayed.
    let (replay, _) = replay_logs(&old, &approve(""), std::slice::from_ref(&log)).unwrap();
    assert_eq!(replay.later_checks_total(), 1);
    assert_eq!(replay.total(Change::NowAllowed), 0);
    // Without rules for it, the request is now allowed.
    let (replay, _) = replay_logs(&old, &approve(r#", "rules": []"#), &[log]).unwrap();
    assert_eq!(replay.later_checks_total(), 0);
    assert_eq!(replay.total(Change::NowAllowed), 1);
}

#[test]
fn a_cut_stream_is_charged_the_dollars_the_filter_logged() {
    let dir = tempfile::tempdir().unwrap();
    let cost_030 = r#""posturio_decision":"allow","posturio_input_tokens":"1000","posturio_output_tokens":"0","posturio_charged_tokens":"1000""#;
    let log = write(
        dir.path(),
        "access.log",
        &[
            metered(
                0,
                0,
                r#""posturio_decision":"allow","posturio_charged_tokens":"50000","posturio_charged_microusd":"500000""#,
            ),
            metered(0, 1, cost_030),
            metered(0, 2, cost_030),
            metered(0, 3, cost_030),
        ],
    );
    let old = Policy::from_json(OLD.as_bytes()).unwrap();
    // $300 per million tokens: 1000 tokens cost $0.30, a reservation (20 tokens) $0.006.
    let new = Policy::from_json(
        OLD.replace(
            r#""gpt-4o": { "provider": "openai" }"#,
            r#""gpt-4o": { "provider": "openai", "price": { "input": "300", "output": "300" } }"#,
        )
        .replace(
            r#""metered": { "models": ["*"] }"#,
            r#""metered": { "models": ["gpt-4o"],
                 "budget": { "usd_per_day": "1.00", "default_output_tokens": 10 } }"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let (replay, _) = replay_logs(&old, &new, &[log]).unwrap();
    // $0.50 logged for the cut stream, then $0.30 twice: $1.10 before the fourth.
    assert_eq!(count(&replay, Change::NowRefused, "budget_exceeded"), 1);
    assert_eq!(count(&replay, Change::Unchanged, "forwarded"), 3);
}
