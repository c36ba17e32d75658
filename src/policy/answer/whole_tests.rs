// Test sizes are small; their arithmetic cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use super::super::test_scan::Needles;
use super::super::{inspect_whole, AnswerShape, AnswerText, Effect, Findings, WholeAnswer};

const SECRET: &str = "SECRETKEY123";

fn run(shape: AnswerShape, body: &str, scan: &Needles) -> (WholeAnswer, Findings) {
    let mut findings = Findings::default();
    let answer = inspect_whole(shape, body.as_bytes(), scan, &mut findings);
    (answer, findings)
}

fn edited(answer: WholeAnswer) -> String {
    match answer {
        WholeAnswer::Edited(body) => String::from_utf8(body).unwrap(),
        other => panic!("not edited: {other:?}"),
    }
}

/// Each family's answer, with the secret in its text field and the kind it is read as.
fn answers() -> Vec<(AnswerShape, String, AnswerText)> {
    let s = SECRET;
    vec![
        (
            AnswerShape::OpenAiChat,
            format!(
                r#"{{"id":"c","choices":[{{"index":0,"message":{{"role":"assistant","content":"key {s} here"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1}}}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiChat,
            format!(
                r#"{{"choices":[{{"message":{{"content":[{{"type":"text","text":"a {s}"}}]}}}}]}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiChat,
            format!(r#"{{"choices":[{{"message":{{"content":null,"refusal":"no {s}"}}}}]}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiChat,
            format!(r#"{{"choices":[{{"message":{{"reasoning_content":"{s}"}}}}]}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiChat,
            format!(r#"{{"choices":[{{"message":{{"reasoning":"{s}"}}}}]}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiChat,
            format!(
                r#"{{"choices":[{{"message":{{"tool_calls":[{{"id":"t","type":"function","function":{{"name":"f","arguments":"{{\"k\":\"{s}\"}}"}}}}]}}}}]}}"#
            ),
            AnswerText::ToolArguments,
        ),
        (
            AnswerShape::OpenAiCompletions,
            format!(r#"{{"choices":[{{"text":"x {s} y","index":0}}]}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiResponses,
            format!(
                r#"{{"output":[{{"type":"message","content":[{{"type":"output_text","text":"{s}","annotations":[]}}]}}]}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiResponses,
            format!(
                r#"{{"output":[{{"type":"reasoning","summary":[{{"type":"summary_text","text":"{s}"}}]}}]}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::OpenAiResponses,
            format!(
                r#"{{"output":[{{"type":"function_call","name":"f","arguments":"{{\"a\":\"{s}\"}}"}}]}}"#
            ),
            AnswerText::ToolArguments,
        ),
        (
            AnswerShape::OpenAiResponses,
            format!(r#"{{"output":[],"output_text":"{s}"}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::Anthropic,
            format!(
                r#"{{"type":"message","content":[{{"type":"text","text":"hi {s}"}}],"usage":{{"input_tokens":1}}}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::Anthropic,
            format!(r#"{{"content":[{{"type":"thinking","thinking":"{s}","signature":"x"}}]}}"#),
            AnswerText::Output,
        ),
        (
            AnswerShape::Anthropic,
            format!(
                r#"{{"content":[{{"type":"tool_use","id":"t","name":"f","input":{{"q":{{"deep":["{s}"]}}}}}}]}}"#
            ),
            AnswerText::ToolArguments,
        ),
        (
            AnswerShape::Gemini,
            format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{s}"}}],"role":"model"}}}}]}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::Gemini,
            format!(
                r#"[{{"candidates":[{{"content":{{"parts":[{{"text":"a"}}]}}}}]}},{{"candidates":[{{"content":{{"parts":[{{"text":"{s}"}}]}}}}]}}]"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::Gemini,
            format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"functionCall":{{"name":"f","args":{{"q":"{s}"}}}}}}]}}}}]}}"#
            ),
            AnswerText::ToolArguments,
        ),
        (
            AnswerShape::BedrockConverse,
            format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"{s}"}}]}}}},"stopReason":"end_turn"}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::BedrockConverse,
            format!(
                r#"{{"output":{{"message":{{"content":[{{"reasoningContent":{{"reasoningText":{{"text":"{s}"}}}}}}]}}}}}}"#
            ),
            AnswerText::Output,
        ),
        (
            AnswerShape::BedrockConverse,
            format!(
                r#"{{"output":{{"message":{{"content":[{{"toolUse":{{"toolUseId":"t","name":"f","input":{{"q":"{s}"}}}}}}]}}}}}}"#
            ),
            AnswerText::ToolArguments,
        ),
        (
            AnswerShape::BedrockInvoke,
            format!(r#"{{"generation":"{s}","x":{{"y":"{s}"}}}}"#),
            AnswerText::Output,
        ),
    ]
}

#[test]
fn every_family_redacts_in_place_and_reads_the_right_kind() {
    for (shape, body, kind) in answers() {
        let scan = Needles::one(SECRET, Effect::Redact);
        let (answer, findings) = run(shape, &body, &scan);
        let out = edited(answer);
        assert!(!out.contains(SECRET), "{shape:?}: {out}");
        assert!(out.contains("[REDACTED:r0]"), "{shape:?}: {out}");
        // Every byte but the edited strings is the provider's.
        assert_eq!(out, body.replace(SECRET, "[REDACTED:r0]"), "{shape:?}");
        let _: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(findings.fired, vec![(0, Effect::Redact)]);
        assert!(findings.redactions >= 1);
        assert!(
            scan.seen.borrow().iter().all(|(_, seen)| *seen == kind),
            "{shape:?}: {:?}",
            scan.seen.borrow()
        );
    }
}

#[test]
fn every_family_blocks_and_records() {
    for (shape, body, _) in answers() {
        let (answer, findings) = run(shape, &body, &Needles::one(SECRET, Effect::Block));
        assert_eq!(answer, WholeAnswer::Blocked { rule: 0 }, "{shape:?}");
        assert_eq!(findings.blocked_by, Some(0));
        let (answer, findings) = run(shape, &body, &Needles::one(SECRET, Effect::Record));
        assert_eq!(answer, WholeAnswer::Unchanged, "{shape:?}");
        assert_eq!(findings.fired, vec![(0, Effect::Record)]);
    }
}

#[test]
fn other_strings_are_scanned_as_other() {
    let body = format!(r#"{{"id":"{SECRET}","choices":[]}}"#);
    let scan = Needles::one(SECRET, Effect::Redact);
    let out = edited(run(AnswerShape::OpenAiChat, &body, &scan).0);
    assert_eq!(out, r#"{"id":"[REDACTED:r0]","choices":[]}"#);
    assert_eq!(scan.seen.borrow()[0].1, AnswerText::Other);
}

#[test]
fn a_redaction_in_a_key_blocks() {
    let body = format!(r#"{{"choices":[],"{SECRET}":1}}"#);
    let (answer, findings) = run(
        AnswerShape::OpenAiChat,
        &body,
        &Needles::one(SECRET, Effect::Redact),
    );
    assert_eq!(answer, WholeAnswer::Blocked { rule: 0 });
    assert_eq!(findings.fired, vec![(0, Effect::Block)]);
}

#[test]
fn a_match_only_escapes_show_in_tool_arguments_blocks_a_redaction() {
    // `\\u0053` inside the arguments' JSON text is `S` once decoded.
    let body = r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{\"k\":\"\\u0053ECRETKEY123\"}"}}]}}]}"#;
    let (answer, _) = run(
        AnswerShape::OpenAiChat,
        body,
        &Needles::one(SECRET, Effect::Redact),
    );
    assert_eq!(answer, WholeAnswer::Blocked { rule: 0 });
    let (answer, findings) = run(
        AnswerShape::OpenAiChat,
        body,
        &Needles::one(SECRET, Effect::Record),
    );
    assert_eq!(answer, WholeAnswer::Unchanged);
    assert_eq!(findings.fired, vec![(0, Effect::Record)]);
}

#[test]
fn log_probabilities_turn_a_redaction_into_a_block() {
    let chat = format!(
        r#"{{"choices":[{{"message":{{"content":"{SECRET}"}},"logprobs":{{"content":[{{"token":"SECRET"}}]}}}}]}}"#
    );
    let gemini = format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{SECRET}"}}]}},"logprobsResult":{{"chosenCandidates":[]}}}}]}}"#
    );
    let responses = format!(
        r#"{{"output":[{{"type":"message","content":[{{"type":"output_text","text":"{SECRET}","logprobs":[{{"token":"S"}}]}}]}}]}}"#
    );
    for (shape, body) in [
        (AnswerShape::OpenAiChat, chat),
        (AnswerShape::Gemini, gemini),
        (AnswerShape::OpenAiResponses, responses),
    ] {
        let (answer, _) = run(shape, &body, &Needles::one(SECRET, Effect::Redact));
        assert_eq!(answer, WholeAnswer::Blocked { rule: 0 }, "{shape:?}");
    }
    // Null or empty log probabilities carry no tokens.
    let body = format!(
        r#"{{"choices":[{{"message":{{"content":"{SECRET}"}},"logprobs":null}}],"x":{{"logprobs":[]}}}}"#
    );
    let (answer, _) = run(
        AnswerShape::OpenAiChat,
        &body,
        &Needles::one(SECRET, Effect::Redact),
    );
    assert!(matches!(answer, WholeAnswer::Edited(_)));
}

#[test]
fn unreadable_answers() {
    let scan = Needles::one(SECRET, Effect::Redact);
    for (shape, body) in [
        (AnswerShape::OpenAiChat, "not json"),
        (AnswerShape::OpenAiChat, r#"{"choices":[]"#),
        (AnswerShape::OpenAiChat, r#"[{"choices":[]}]"#),
        (AnswerShape::OpenAiChat, r#""text""#),
        (AnswerShape::OpenAiChat, r#"{"choices":[],"choices":[]}"#),
    ] {
        let (answer, findings) = run(shape, body, &scan);
        assert_eq!(answer, WholeAnswer::Unreadable, "{body}");
        assert!(findings.unreadable);
    }
    let mut findings = Findings::default();
    let answer = inspect_whole(
        AnswerShape::Anthropic,
        b"{\"content\":\"\xff\"}",
        &scan,
        &mut findings,
    );
    assert_eq!(answer, WholeAnswer::Unreadable);
}

#[test]
fn redactions_keep_escapes_valid_and_overlaps_merge() {
    let scan = Needles::new(&[("KEY1", Effect::Redact), ("1234", Effect::Redact)]);
    let body = r#"{"choices":[{"message":{"content":"a \"q\" \u00e9 KEY1234 \n"}}]}"#;
    let out = edited(run(AnswerShape::OpenAiChat, body, &scan).0);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value["choices"][0]["message"]["content"],
        "a \"q\" é [REDACTED:r0][REDACTED:r1] \n"
    );
}

/// Each family's answer with the secret split over two text parts of one message.
fn split_over_parts(a: &str, b: &str) -> Vec<(AnswerShape, String)> {
    vec![
        (
            AnswerShape::OpenAiChat,
            format!(
                r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":[{{"type":"text","text":"key {a}"}},{{"type":"text","text":"{b} end"}}]}}}}]}}"#
            ),
        ),
        (
            AnswerShape::OpenAiResponses,
            format!(
                r#"{{"output":[{{"type":"message","content":[{{"type":"output_text","text":"key {a}","annotations":[]}},{{"type":"output_text","text":"{b} end","annotations":[]}}]}}]}}"#
            ),
        ),
        (
            AnswerShape::Anthropic,
            format!(
                r#"{{"content":[{{"type":"text","text":"key {a}"}},{{"type":"text","text":"{b} end"}}]}}"#
            ),
        ),
        (
            AnswerShape::Gemini,
            format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"key {a}"}},{{"text":"{b} end"}}]}}}}]}}"#
            ),
        ),
        // A Gemini stream read whole: the candidate's text continues across its answers.
        (
            AnswerShape::Gemini,
            format!(
                r#"[{{"candidates":[{{"content":{{"parts":[{{"text":"key {a}"}}]}},"index":0}}]}},
{{"candidates":[{{"content":{{"parts":[{{"text":"{b} end"}}]}},"index":0}}]}}]"#
            ),
        ),
        (
            AnswerShape::BedrockConverse,
            format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"key {a}"}},{{"text":"{b} end"}}]}}}}}}"#
            ),
        ),
    ]
}

#[test]
fn a_match_across_the_text_parts_of_a_message_is_redacted_in_each_part_or_blocks() {
    for split in 1..SECRET.len() {
        let (a, b) = SECRET.split_at(split);
        for (shape, body) in split_over_parts(a, b) {
            let (answer, findings) = run(shape, &body, &Needles::one(SECRET, Effect::Redact));
            let out = edited(answer);
            assert!(!out.contains(a) && !out.contains(b), "{shape:?}: {out}");
            assert_eq!(out.matches("[REDACTED:r0]").count(), 2, "{out}");
            assert!(out.contains("key [REDACTED:r0]") && out.contains("[REDACTED:r0] end"));
            assert_eq!(findings.fired, vec![(0, Effect::Redact)]);
            let (answer, _) = run(shape, &body, &Needles::one(SECRET, Effect::Block));
            assert_eq!(answer, WholeAnswer::Blocked { rule: 0 }, "{shape:?}");
        }
    }
}

#[test]
fn parts_of_different_messages_are_not_joined() {
    let (a, b) = SECRET.split_at(6);
    let body = format!(
        r#"{{"choices":[{{"index":0,"message":{{"content":[{{"type":"text","text":"{a}"}}]}}}},{{"index":1,"message":{{"content":[{{"type":"text","text":"{b}"}}]}}}}]}}"#
    );
    let scan = Needles::one(SECRET, Effect::Block);
    assert_eq!(
        run(AnswerShape::OpenAiChat, &body, &scan).0,
        WholeAnswer::Unchanged
    );
}

#[test]
fn escapes_are_decoded_three_layers_deep_as_in_requests() {
    // The arguments hold JSON text whose string holds JSON text with an escape: the tool
    // reads `SECRETKEY123` once it parses both layers.
    let inner = serde_json::to_string(&serde_json::json!({"b": "\\u0053ECRETKEY123"})).unwrap();
    let arguments = serde_json::to_string(&serde_json::json!({ "a": inner })).unwrap();
    let body = serde_json::json!({"choices":[{"message":{"tool_calls":[
        {"id":"t","type":"function","function":{"name":"f","arguments":arguments}}]}}]})
    .to_string();
    for effect in [Effect::Redact, Effect::Block] {
        let (answer, _) = run(
            AnswerShape::OpenAiChat,
            &body,
            &Needles::one(SECRET, effect),
        );
        assert_eq!(answer, WholeAnswer::Blocked { rule: 0 }, "{effect:?}");
    }
    let responses =
        serde_json::json!({"output":[{"type":"function_call","name":"f","arguments":arguments}]})
            .to_string();
    let (answer, _) = run(
        AnswerShape::OpenAiResponses,
        &responses,
        &Needles::one(SECRET, Effect::Redact),
    );
    assert_eq!(answer, WholeAnswer::Blocked { rule: 0 });
}

#[test]
fn a_redaction_inside_tool_arguments_takes_in_the_escape_it_starts_in() {
    // The arguments are JSON text holding `Hi,\nbob@x.org`: a match that starts on the `n` of
    // the escape `\n` must not leave its backslash to escape the marker.
    let body = r#"{"choices":[{"message":{"tool_calls":[{"id":"t","type":"function","function":{"name":"send","arguments":"{\"body\":\"Hi,\\nbob@x.org\"}"}}]}}]}"#;
    let (answer, _) = run(
        AnswerShape::OpenAiChat,
        body,
        &Needles::one("nbob@x.org", Effect::Redact),
    );
    let edited: serde_json::Value = serde_json::from_str(&edited(answer)).unwrap();
    let arguments = edited["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap()
        .to_owned();
    let inner: serde_json::Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(inner["body"], "Hi,[REDACTED:r0]");
}
