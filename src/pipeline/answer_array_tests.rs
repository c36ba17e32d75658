//! Gemini's JSON-array streams read as the stream they are: text split across elements is
//! seen whole, edits keep the array valid, and a block or a malformed array is never sent.

use super::inspect_gemini_array;
use crate::policy::answer::{AnswerMatch, AnswerScan, AnswerText, Effect, Findings, WholeAnswer};

/// One literal needle as rule 0.
struct Needle(&'static str, Effect);

impl AnswerScan for Needle {
    fn scan(&self, text: &str, _: AnswerText, out: &mut Vec<AnswerMatch>) {
        for (at, _) in text.match_indices(self.0) {
            out.push(AnswerMatch {
                rule: 0,
                range: at..at.saturating_add(self.0.len()),
                effect: self.1,
            });
        }
    }

    fn marker(&self, rule: usize) -> String {
        format!("[REDACTED:r{rule}]")
    }

    fn window(&self) -> usize {
        64
    }
}

/// A Gemini array stream whose elements carry these texts, pretty-printed across lines as
/// Gemini writes it.
fn array(pieces: &[&str]) -> Vec<u8> {
    let elements: Vec<String> = pieces
        .iter()
        .map(|piece| {
            let text = serde_json::to_string(piece).unwrap();
            format!(
                "{{\r\n  \"candidates\": [{{\"content\": {{\"role\": \"model\", \"parts\": \
                 [{{\"text\": {text}}}]}}, \"index\": 0}}],\r\n  \"modelVersion\": \"g\"\r\n}}"
            )
        })
        .collect();
    format!("[{}]", elements.join(",\r\n")).into_bytes()
}

fn texts(body: &[u8]) -> String {
    let elements: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
    elements
        .iter()
        .filter_map(|element| {
            element
                .pointer("/candidates/0/content/parts/0/text")?
                .as_str()
        })
        .collect()
}

#[test]
fn a_secret_split_across_elements_is_redacted_at_every_split() {
    let secret = "SECRET-123456";
    for at in 0..=secret.len() {
        let (head, tail) = secret.split_at(at);
        let first = format!("pre {head}");
        let second = format!("{tail} post");
        let body = array(&[&first, &second]);
        let mut findings = Findings::default();
        let answer =
            inspect_gemini_array(&body, &Needle(secret, Effect::Redact), &mut findings).unwrap();
        let WholeAnswer::Edited(edited) = answer else {
            panic!("split at {at}: {answer:?}");
        };
        assert_eq!(texts(&edited), "pre [REDACTED:r0] post", "split at {at}");
        assert!(
            !String::from_utf8_lossy(&edited).contains("SECRET"),
            "split at {at}"
        );
        assert_eq!(findings.redactions, 1, "split at {at}");
    }
}

#[test]
fn a_block_rule_split_across_elements_blocks() {
    let body = array(&["the word is forb", "idden here"]);
    let mut findings = Findings::default();
    let answer = inspect_gemini_array(&body, &Needle("forbidden", Effect::Block), &mut findings);
    assert_eq!(answer, Some(WholeAnswer::Blocked { rule: 0 }));
    assert_eq!(findings.blocked_by, Some(0));
}

#[test]
fn an_array_without_a_match_is_sent_as_the_provider_wrote_it() {
    let body = array(&["nothing ", "to see"]);
    let mut findings = Findings::default();
    let answer = inspect_gemini_array(&body, &Needle("forbidden", Effect::Block), &mut findings);
    assert_eq!(answer, Some(WholeAnswer::Unchanged));
}

#[test]
fn an_object_is_left_to_the_whole_answer_reader() {
    let mut findings = Findings::default();
    let needle = Needle("x", Effect::Block);
    assert_eq!(
        inspect_gemini_array(b" {\"candidates\":[]}", &needle, &mut findings),
        None
    );
}

#[test]
fn a_malformed_array_is_unreadable() {
    let needle = Needle("x", Effect::Block);
    for body in [
        &b"[{\"candidates\":[]}"[..],
        b"[1,]",
        b"[{}] trailing",
        b"[\xff]",
    ] {
        let mut findings = Findings::default();
        let answer = inspect_gemini_array(body, &needle, &mut findings);
        assert_eq!(answer, Some(WholeAnswer::Unreadable), "{body:?}");
        assert!(findings.unreadable);
    }
}
