//! Streams shaped by a hostile provider: text after a channel's end, a match across the text
//! parts of one message, strings a client joins that are no known channel, matches longer
//! than the window.

// Test sizes are small; their arithmetic cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use serde_json::{json, Value};

use super::super::test_scan::Needles;
use super::super::{AnswerShape, Effect};
use super::tests::{edit, SECRET};

fn data(value: Value) -> String {
    format!("data: {value}\n\n")
}

fn named(name: &str, value: Value) -> String {
    format!("event: {name}\ndata: {value}\n\n")
}

fn chat_chunk(delta: Value, finish: Value) -> Value {
    json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
}

fn anthropic_delta(index: u64, text: &str) -> String {
    named(
        "content_block_delta",
        json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":text}}),
    )
}

fn responses_delta(content_index: u64, text: &str) -> String {
    named(
        "response.output_text.delta",
        json!({"type":"response.output_text.delta","item_id":"i","output_index":0,
            "content_index":content_index,"delta":text,"sequence_number":1}),
    )
}

fn gemini_event(text: &str, finish: bool) -> String {
    let mut candidate = json!({"content":{"parts":[{"text":text}],"role":"model"},"index":0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    data(json!({ "candidates": [candidate] }))
}

/// Every family's way to send text for a channel after the event that ended it: the secret's
/// first half before the end, its second half after.
fn text_after_the_end() -> Vec<(AnswerShape, String)> {
    let (a, b) = SECRET.split_at(6);
    let first = format!("key: {a}");
    let second = format!("{b} end");
    let stop = json!("stop");
    let anthropic_stop = named(
        "content_block_stop",
        json!({"type":"content_block_stop","index":0}),
    );
    let message_stop = named("message_stop", json!({"type":"message_stop"}));
    let text_done = named(
        "response.output_text.done",
        json!({"type":"response.output_text.done","item_id":"i","output_index":0,
            "content_index":0,"text":first,"sequence_number":2}),
    );
    let item_done = named(
        "response.output_item.done",
        json!({"type":"response.output_item.done","output_index":0,"sequence_number":2,
            "item":{"id":"i","type":"message","content":[{"type":"output_text","text":first}]}}),
    );
    vec![
        (
            AnswerShape::OpenAiChat,
            data(chat_chunk(json!({"content": first}), Value::Null))
                + &data(chat_chunk(json!({}), stop.clone()))
                + &data(chat_chunk(json!({"content": second}), Value::Null))
                + "data: [DONE]\n\n",
        ),
        (
            AnswerShape::OpenAiCompletions,
            data(json!({"choices":[{"index":0,"text":first,"finish_reason":null}]}))
                + &data(json!({"choices":[{"index":0,"text":"","finish_reason":"stop"}]}))
                + &data(json!({"choices":[{"index":0,"text":second,"finish_reason":null}]})),
        ),
        (
            AnswerShape::Anthropic,
            anthropic_delta(0, &first) + &anthropic_stop + &anthropic_delta(0, &second),
        ),
        (
            AnswerShape::Anthropic,
            anthropic_delta(0, &first) + &message_stop + &anthropic_delta(0, &second),
        ),
        (
            AnswerShape::OpenAiResponses,
            responses_delta(0, &first) + &text_done + &responses_delta(0, &second),
        ),
        (
            AnswerShape::OpenAiResponses,
            responses_delta(0, &first) + &item_done + &responses_delta(0, &second),
        ),
        (
            AnswerShape::Gemini,
            gemini_event(&first, true) + &gemini_event(&second, false),
        ),
    ]
}

#[test]
fn text_after_a_channels_end_cuts_the_stream_for_redact_and_block() {
    let (_, b) = SECRET.split_at(6);
    for effect in [Effect::Redact, Effect::Block] {
        let scan = Needles::one(SECRET, effect);
        for (shape, body) in text_after_the_end() {
            for chunk in [body.len(), 5, 1] {
                let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
                let (out, cut) = edit(shape, &chunks, &scan);
                let out = String::from_utf8_lossy(&out);
                assert!(cut, "{shape:?} {effect:?}: {out}");
                let unreadable = out.contains("response_unreadable") || out.contains("UNAVAILABLE");
                assert!(unreadable, "{shape:?}: {out}");
                assert!(!out.contains(b), "{shape:?} {effect:?}: {out}");
            }
        }
    }
}

#[test]
fn an_empty_delta_after_a_channels_end_is_harmless() {
    let scan = Needles::one(SECRET, Effect::Redact);
    let body = data(chat_chunk(json!({"content": "hello"}), Value::Null))
        + &data(chat_chunk(json!({}), json!("stop")))
        + &data(chat_chunk(json!({"content": ""}), Value::Null))
        + "data: [DONE]\n\n";
    let (out, cut) = edit(AnswerShape::OpenAiChat, &[body.as_bytes()], &scan);
    assert!(!cut, "{}", String::from_utf8_lossy(&out));
}
