//! The report's sums, its dollars and its bound on rows.

use super::*;
use crate::cli::access_log::parse_line;

#[test]
fn dollars_keep_every_micro_dollar_and_at_least_cents() {
    for (micro, shown) in [
        (0, "$0.00"),
        (1, "$0.000001"),
        (10_000, "$0.01"),
        (1_500_000, "$1.50"),
        (12_345_678, "$12.345678"),
        (u64::MAX, "$18446744073709.551615"),
    ] {
        assert_eq!(dollars(micro), shown, "{micro}");
    }
}

fn record(line: &str) -> Record {
    parse_line(line.as_bytes()).unwrap()
}

#[test]
fn a_tally_counts_decisions_codes_rules_tokens_spend_and_providers() {
    let mut tally = Tally::default();
    for line in [
        r#"{"posturio_decision":"allow","posturio_provider":"openai","posturio_input_tokens":"10","posturio_output_tokens":"5","posturio_reasoning_tokens":"2","posturio_cost_microusd":"100","posturio_charged_tokens":"15","posturio_charged_microusd":"100","posturio_response_rules":"no-pii:audit"}"#,
        r#"{"posturio_decision":"audit","posturio_code":"prompt_blocked","posturio_rules":"no-secrets:block","posturio_provider":"openai"}"#,
        r#"{"posturio_decision":"deny","posturio_code":"guard_blocked","posturio_guards":"mod:flagged","posturio_provider":"openai"}"#,
        r#"{"posturio_decision":null}"#,
    ] {
        tally.add(&record(line));
    }
    assert_eq!(
        (
            tally.requests,
            tally.forwarded,
            tally.refused,
            tally.audited,
            tally.undecided
        ),
        (4, 2, 1, 1, 1)
    );
    assert_eq!(tally.refusals.get("guard_blocked"), Some(&1));
    assert_eq!(tally.audits.get("prompt_blocked"), Some(&1));
    assert_eq!(tally.rules.get("no-secrets:block"), Some(&1));
    assert_eq!(tally.response_rules.get("no-pii:audit"), Some(&1));
    assert_eq!(tally.guards.get("mod:flagged"), Some(&1));
    assert_eq!(
        (
            tally.input_tokens,
            tally.output_tokens,
            tally.reasoning_tokens
        ),
        (10, 5, 2)
    );
    assert_eq!(
        (tally.cost_microusd, tally.cost_known, tally.cost_unknown),
        (100, 1, 1)
    );
    assert_eq!((tally.charged_tokens, tally.charged_microusd), (15, 100));
    assert_eq!(tally.providers.get("openai"), Some(&2));
}

#[test]
fn rows_come_most_refused_first_and_totals_sum_them() {
    let mut report = Report::default();
    report.add(&record(r#"{"posturio_decision":"allow","posturio_consumer":"a","posturio_model":"m","posturio_cost_microusd":"900"}"#));
    report.add(&record(r#"{"posturio_decision":"deny","posturio_code":"model_not_approved","posturio_consumer":"b","posturio_model":"m"}"#));
    let rows = report.rows();
    assert_eq!(rows[0].0, &("b".to_owned(), "m".to_owned()));
    let totals = report.totals();
    assert_eq!(
        (totals.requests, totals.refused, totals.cost_microusd),
        (2, 1, 900)
    );
}

#[test]
fn endless_model_names_fold_into_one_row_of_their_own_consumer() {
    let mut report = Report::default();
    for index in 0..MAX_MODELS_PER_CONSUMER + 5 {
        report.add(&record(&format!(
            r#"{{"posturio_decision":"deny","posturio_code":"model_not_found","posturio_consumer":"a","posturio_model":"m{index}"}}"#
        )));
    }
    // Another consumer's real model, first seen after the flood, keeps its name.
    report.add(&record(
        r#"{"posturio_decision":"allow","posturio_consumer":"b","posturio_model":"gpt-4o","posturio_cost_microusd":"7"}"#,
    ));
    assert_eq!(report.groups.len(), MAX_MODELS_PER_CONSUMER + 2);
    let other = &report.groups[&("a".to_owned(), OTHER_MODELS.to_owned())];
    assert_eq!(other.requests, 5);
    assert_eq!(
        report.groups[&("b".to_owned(), "gpt-4o".to_owned())].cost_microusd,
        7
    );
    assert!(render_text(&report, &Stats::default()).contains("are folded into its row"));
}

#[test]
fn an_answer_withheld_after_forwarding_is_refused_and_sums_say_when_they_saturate() {
    let mut report = Report::default();
    for _ in 0..2 {
        report.add(&record(
            r#"{"posturio_decision":"allow","posturio_code":"response_blocked","posturio_consumer":"a","posturio_model":"m","posturio_cost_microusd":"18446744073709551615"}"#,
        ));
    }
    let totals = report.totals();
    assert_eq!(
        (totals.forwarded, totals.refused, totals.replaced),
        (2, 2, 2)
    );
    assert_eq!(totals.refusals["response_blocked"], 2);
    assert!(totals.saturated);
    let text = render_text(&report, &Stats::default());
    assert!(text.contains("warning: a sum reached"), "{text}");
    assert!(text.contains("then the answer replaced"), "{text}");
}

#[test]
fn control_characters_from_the_log_are_shown_escaped() {
    assert_eq!(shown("gpt-4o"), "gpt-4o");
    assert_eq!(shown("x\u{1b}[2Jy\nz"), "x\\u{1b}[2Jy\\nz");
    let mut report = Report::default();
    report.add(&record(r#"{"posturio_decision":"deny","posturio_code":"model_not_found","posturio_consumer":"a","posturio_model":"m\u001b[2J\n[warn] forged"}"#));
    let text = render_text(&report, &Stats::default());
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("m\\u{1b}[2J\\n[warn] forged"), "{text}");
}
