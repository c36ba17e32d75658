//! How `posturio replay` prints what it found: the text for a reader and the JSON
//! (`posturio.replay.v1`) for a script. Every figure comes from `Replay`; text from the log
//! is shown escaped.

use serde_json::{json, Value};

use super::access_log::Stats;
use super::replay::{Change, Replay, REORDER_SECONDS};
use super::report::{input_json, plural, shown};
use crate::policy::rfc3339;

fn time(seconds: Option<i64>) -> Value {
    seconds.map_or(Value::Null, |seconds| json!(rfc3339::format(seconds)))
}

pub fn render_json(replay: &Replay, stats: &Stats) -> Value {
    let rows = |wanted: Change| -> Vec<Value> {
        let mut rows: Vec<_> = replay
            .rows
            .iter()
            .filter(|((_, _, change, _), _)| *change == wanted)
            .collect();
        rows.sort_by(|(a_key, a), (b_key, b)| b.cmp(a).then_with(|| a_key.cmp(b_key)));
        rows.into_iter()
            .map(|((consumer, model, _, reason), requests)| {
                json!({"consumer": consumer, "model": model, "reason": reason, "requests": requests})
            })
            .collect()
    };
    let cannot: Vec<Value> = replay
        .cannot_replay
        .iter()
        .map(|((consumer, what), requests)| {
            json!({"consumer": consumer, "what": what, "requests": requests})
        })
        .collect();
    json!({
        "schema": "posturio.replay.v1",
        "input": input_json(stats),
        "span": {"first": time(replay.first), "last": time(replay.last)},
        "totals": {
            "now_refused": replay.total(Change::NowRefused),
            "now_allowed": replay.total(Change::NowAllowed),
            "unchanged": replay.total(Change::Unchanged),
            "not_replayed": replay.not_replayed_total(),
            "later_checks_not_run": replay.later_checks_total(),
        },
        "now_refused": rows(Change::NowRefused),
        "now_allowed": rows(Change::NowAllowed),
        "unchanged": rows(Change::Unchanged),
        "not_replayed": replay.not_replayed,
        "cannot_replay": cannot,
        "later_checks_not_run": replay
            .later_checks_not_run
            .iter()
            .map(|((consumer, model, code), requests)| {
                json!({"consumer": consumer, "model": model, "reason": code, "requests": requests})
            })
            .collect::<Vec<_>>(),
        "old_mismatch": replay.old_mismatch,
        "budgets": {
            "simulated": replay.budgeted,
            "late_records": replay.late,
            "usage_unknown": replay.usage_unknown,
        },
    })
}

pub fn render_text(replay: &Replay, stats: &Stats, old: &str, new: &str) -> String {
    let mut lines = vec![
        format!(
            "replay of {} ({} in {}, {} skipped) under {new}, against what was decided under \
             {old}",
            plural(stats.records, "record"),
            plural(stats.lines, "line"),
            plural(stats.files, "file"),
            stats.skipped
        ),
        match (replay.first, replay.last) {
            (Some(first), Some(last)) => format!(
                "span: {} to {} (UTC)",
                rfc3339::format(first),
                rfc3339::format(last)
            ),
            _ => "span: no start times".to_owned(),
        },
        format!(
            "now refused {}, now allowed {}, unchanged {}, not replayed {}, cannot replay {}",
            replay.total(Change::NowRefused),
            replay.total(Change::NowAllowed),
            replay.total(Change::Unchanged),
            replay.not_replayed_total(),
            replay.later_checks_total()
        ),
    ];
    for (change, heading) in [
        (
            Change::NowRefused,
            "now refused (forwarded before; reason NEW gives)",
        ),
        (
            Change::NowAllowed,
            "now allowed (refused before; the code it was refused with)",
        ),
    ] {
        let mut rows: Vec<_> = replay
            .rows
            .iter()
            .filter(|((_, _, row_change, _), _)| *row_change == change)
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|(a_key, a), (b_key, b)| b.cmp(a).then_with(|| a_key.cmp(b_key)));
        lines.push(String::new());
        lines.push(heading.to_owned());
        for ((consumer, model, _, reason), requests) in rows {
            lines.push(format!(
                "  {requests:>8}  consumer {}, model {}: {}",
                shown(consumer),
                shown(model),
                shown(reason)
            ));
        }
    }
    if !replay.later_checks_not_run.is_empty() {
        lines.push(String::new());
        lines.push(
            "cannot replay: later checks did not run (refused at approval before; NEW lets them \
             past it into rules, guards or caps the log has no facts for):"
                .to_owned(),
        );
        for ((consumer, model, code), requests) in &replay.later_checks_not_run {
            lines.push(format!(
                "  {requests:>8}  consumer {}, model {}: {}",
                shown(consumer),
                shown(model),
                shown(code)
            ));
        }
    }
    if !replay.not_replayed.is_empty() {
        lines.push(String::new());
        lines.push(
            "not replayed (refused for the request itself or its identity, before its consumer \
             and model were judged; kept as recorded):"
                .to_owned(),
        );
        for (code, requests) in &replay.not_replayed {
            lines.push(format!("  {requests:>8}  {}", shown(code)));
        }
    }
    if !replay.cannot_replay.is_empty() {
        lines.push(String::new());
        lines.push(
            "cannot be replayed from the log (prompts and what clients presented are not \
             logged); the counts are the requests concerned, judged on what the log has:"
                .to_owned(),
        );
        for ((consumer, what), requests) in &replay.cannot_replay {
            lines.push(format!(
                "  {requests:>8}  consumer {}: {what}",
                shown(consumer)
            ));
        }
    }
    if replay.budgeted > 0 {
        lines.push(String::new());
        lines.push(format!(
            "budgets: NEW's windows simulated from empty over this log only for {}, each \
             checked with its reservation and charged what the filter charged (usage at NEW's \
             prices; for unknown usage the logged charge or NEW's reservation, the larger; \
             nothing for provider errors); {} refused before and now allowed past a budget \
             have no usage (charged their reservation)",
            plural(replay.budgeted, "request"),
            replay.usage_unknown,
        ));
    }
    if replay.late > 0 {
        lines.push(format!(
            "budgets: {} started more than {REORDER_SECONDS} s before requests already \
             simulated (a long request, or logs of several instances): judged without their \
             budget",
            plural(replay.late, "request")
        ));
    }
    if replay.old_mismatch > 0 {
        lines.push(format!(
            "warning: {} records are not decided as OLD decides them: was the log written \
             under OLD?",
            replay.old_mismatch
        ));
    }
    lines.join("\n")
}
