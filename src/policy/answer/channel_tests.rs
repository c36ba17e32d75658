// Test sizes are small; their arithmetic cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use super::super::test_scan::Needles;
use super::super::{AnswerText, Effect, Findings};
use super::{Channel, Release};

fn sent(release: Release) -> String {
    match release {
        Release::Send(text) => text,
        Release::Block { .. } => panic!("blocked"),
    }
}

#[test]
fn everything_but_the_window_is_sent_at_once() {
    let mut scan = Needles::one("SECRET", Effect::Redact);
    scan.window = 8;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, false);
    channel.push("0123456789abcdef");
    assert_eq!(
        sent(channel.release(&scan, false, &mut findings)),
        "01234567"
    );
    assert_eq!(channel.held(), 8);
    assert_eq!(
        sent(channel.release(&scan, true, &mut findings)),
        "89abcdef"
    );
    assert_eq!(channel.held(), 0);
}

#[test]
fn a_match_reaching_into_the_window_is_held_whole() {
    let mut scan = Needles::one("SECRET", Effect::Redact);
    scan.window = 8;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, false);
    channel.push("01SECRET");
    assert_eq!(sent(channel.release(&scan, false, &mut findings)), "");
    channel.push("abc");
    // `SECRET` starts before the window and reaches into it: held from its start.
    assert_eq!(sent(channel.release(&scan, false, &mut findings)), "01");
    channel.push(" tail and more text");
    let first = sent(channel.release(&scan, false, &mut findings));
    let rest = sent(channel.release(&scan, true, &mut findings));
    assert_eq!(
        format!("{first}{rest}"),
        "[REDACTED:r0]abc tail and more text"
    );
    assert_eq!(findings.fired, vec![(0, Effect::Redact)]);
    assert_eq!(findings.redactions, 1);
}

#[test]
fn multibyte_characters_are_never_split() {
    let mut scan = Needles::one("SECRET", Effect::Redact);
    scan.window = 3;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, false);
    channel.push("éééé🙂🙂");
    let mut out = String::new();
    for _ in 0..3 {
        out += &sent(channel.release(&scan, false, &mut findings));
    }
    out += &sent(channel.release(&scan, true, &mut findings));
    assert_eq!(out, "éééé🙂🙂");
}

#[test]
fn a_block_gives_the_text_before_the_match() {
    let mut scan = Needles::one("SECRET", Effect::Block);
    scan.window = 8;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, false);
    channel.push("hello SEC");
    assert_eq!(sent(channel.release(&scan, false, &mut findings)), "h");
    channel.push("RET world");
    assert_eq!(
        channel.release(&scan, true, &mut findings),
        Release::Block {
            rule: 0,
            before: "ello ".to_owned()
        }
    );
    assert_eq!(findings.blocked_by, Some(0));
}

#[test]
fn tool_arguments_hold_escapes_back_and_block_what_only_they_show() {
    let mut scan = Needles::one("SECRET", Effect::Redact);
    scan.window = 8;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::ToolArguments, false);
    channel.push(r#"{"k":"\u0053ECRET"}"#);
    assert_eq!(sent(channel.release(&scan, false, &mut findings)), "");
    assert!(matches!(
        channel.release(&scan, true, &mut findings),
        Release::Block { rule: 0, .. }
    ));
}

#[test]
fn sent_text_is_kept_where_the_shape_repeats_it() {
    let scan = Needles::one("SECRET", Effect::Redact);
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, true);
    channel.push("a SECRET b");
    sent(channel.release(&scan, true, &mut findings));
    assert_eq!(channel.sent.as_deref(), Some("a [REDACTED:r0] b"));
}

#[test]
fn overlapping_matches_are_held_together() {
    let mut scan = Needles::new(&[("ABCDEF", Effect::Redact), ("EFGHIJ", Effect::Redact)]);
    scan.window = 4;
    let mut findings = Findings::default();
    let mut channel = Channel::new(AnswerText::Output, false);
    channel.push("xxABCDEFGHIJyy");
    let first = sent(channel.release(&scan, false, &mut findings));
    let rest = sent(channel.release(&scan, true, &mut findings));
    assert_eq!(first, "xx");
    assert_eq!(format!("{first}{rest}"), "xx[REDACTED:r0][REDACTED:r1]yy");
}
