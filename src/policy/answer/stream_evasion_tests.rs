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

/// A message whose text is two text parts: Anthropic blocks 0 and 1, or Responses parts 0
/// and 1 of one item, with every event that repeats a part's text.
fn two_parts(shape: AnswerShape, first: &str, second: &str) -> String {
    if shape == AnswerShape::Anthropic {
        let start = |index: u64| {
            named(
                "content_block_start",
                json!({"type":"content_block_start","index":index,"content_block":{"type":"text","text":""}}),
            )
        };
        let stop = |index: u64| {
            named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":index}),
            )
        };
        return named(
            "message_start",
            json!({"type":"message_start","message":{"id":"m","content":[]}}),
        ) + &start(0)
            + &anthropic_delta(0, first)
            + &stop(0)
            + &start(1)
            + &anthropic_delta(1, second)
            + &stop(1)
            + &named(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}),
            )
            + &named("message_stop", json!({"type":"message_stop"}));
    }
    let event = |name: &str, mut value: Value| {
        value["type"] = json!(name);
        named(name, value)
    };
    let part = |at: u64, text: &str| {
        event(
            "response.output_text.done",
            json!({"item_id":"i","output_index":0,"content_index":at,"text":text}),
        ) + &event(
            "response.content_part.done",
            json!({"item_id":"i","output_index":0,"content_index":at,"part":{"type":"output_text","text":text}}),
        )
    };
    let added = |at: u64| {
        event(
            "response.content_part.added",
            json!({"item_id":"i","output_index":0,"content_index":at,"part":{"type":"output_text","text":""}}),
        )
    };
    let item = json!({"id":"i","type":"message","content":[
        {"type":"output_text","text":first},{"type":"output_text","text":second}]});
    event(
        "response.output_item.added",
        json!({"output_index":0,"item":{"id":"i","type":"message","content":[]}}),
    ) + &added(0)
        + &responses_delta(0, first)
        + &part(0, first)
        + &added(1)
        + &responses_delta(1, second)
        + &part(1, second)
        + &event(
            "response.output_item.done",
            json!({"output_index":0,"item":item}),
        )
        + &event(
            "response.completed",
            json!({"response":{"id":"r","output":[item]}}),
        )
}

/// The text a client joins from the parts' deltas; each event that repeats a part's text
/// must repeat exactly what the deltas sent for it. Whether the stream ended in an error.
fn joined_parts(out: &str) -> (String, bool) {
    let mut parts = [String::new(), String::new()];
    let mut repeated: Vec<(usize, String)> = Vec::new();
    let mut errored = false;
    for (name, data) in super::tests::client_events(out.as_bytes()) {
        let value: Value = serde_json::from_str(&data).expect("each event is JSON");
        errored |= name.as_deref() == Some("error");
        let at = value["index"]
            .as_u64()
            .or(value["content_index"].as_u64())
            .unwrap_or(0) as usize;
        let kind = value["type"].as_str().unwrap_or_default();
        if kind == "content_block_delta" || kind == "response.output_text.delta" {
            let text = value["delta"]["text"]
                .as_str()
                .or(value["delta"].as_str())
                .unwrap_or_default();
            parts[at] += text;
        }
        if kind.ends_with(".added") || kind == "content_block_start" {
            // Announces a part before its text.
            continue;
        }
        for pointer in ["/text", "/part/text"] {
            if let Some(text) = value.pointer(pointer).and_then(Value::as_str) {
                repeated.push((at, text.to_owned()));
            }
        }
        for pointer in ["/item/content", "/response/output/0/content"] {
            for (at, part) in value
                .pointer(pointer)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                repeated.push((at, part["text"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    for (at, text) in repeated {
        assert_eq!(
            text, parts[at],
            "a repeated part differs from its deltas: {out}"
        );
    }
    (parts.concat(), errored)
}

#[test]
fn a_match_across_two_text_parts_of_a_stream_is_redacted_or_blocked_whole() {
    for shape in [AnswerShape::Anthropic, AnswerShape::OpenAiResponses] {
        for split in 0..=SECRET.len() {
            let (a, b) = SECRET.split_at(split);
            let body = two_parts(shape, &format!("key {a}"), &format!("{b} end"));
            for chunk in [body.len(), 7, 1] {
                let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
                let scan = Needles::one(SECRET, Effect::Redact);
                let (out, cut) = edit(shape, &chunks, &scan);
                let out = String::from_utf8(out).unwrap();
                assert!(!cut, "{shape:?} {split}: {out}");
                let (text, _) = joined_parts(&out);
                assert_eq!(text, "key [REDACTED:r0] end", "{shape:?} {split}: {out}");
                let scan = Needles::one(SECRET, Effect::Block);
                let (out, cut) = edit(shape, &chunks, &scan);
                let out = String::from_utf8(out).unwrap();
                assert!(cut, "{shape:?} {split}: {out}");
                let (text, errored) = joined_parts(&out);
                assert!(
                    errored && "key ".starts_with(&text),
                    "{shape:?} {split}: {out}"
                );
            }
        }
    }
}

#[test]
fn a_part_not_followed_by_text_sends_its_held_text_before_the_events_after_it() {
    let scan = Needles::one(SECRET, Effect::Redact);
    for shape in [AnswerShape::Anthropic, AnswerShape::OpenAiResponses] {
        let body = two_parts(shape, "hello there", "");
        let (out, cut) = edit(shape, &[body.as_bytes()], &scan);
        let out = String::from_utf8(out).unwrap();
        assert!(!cut);
        assert_eq!(joined_parts(&out).0, "hello there", "{out}");
    }
}

/// Strings a client joins across events that no family names as text, each with the
/// secret's halves in two events.
fn joined_by_place(a: &str, b: &str) -> Vec<(AnswerShape, String)> {
    let chat = |first: Value, second: Value| {
        data(chat_chunk(first, Value::Null))
            + &data(chat_chunk(second, Value::Null))
            + &data(chat_chunk(json!({}), json!("stop")))
            + "data: [DONE]\n\n"
    };
    let call = |field: &str, text: &str| {
        let mut call = json!({"index":0,"type":"function","function":{"arguments":""}});
        if field == "id" {
            call["id"] = json!(text);
        } else {
            call["function"][field] = json!(text);
        }
        json!({ "tool_calls": [call] })
    };
    let responses = |kind: &str| {
        let event = |text: &str| {
            named(
                kind,
                json!({"type":kind,"item_id":"i","output_index":0,"delta":text,"sequence_number":1}),
            )
        };
        event(a)
            + &event(b)
            + &named(
                "response.completed",
                json!({"type":"response.completed","response":{"id":"r","output":[]}}),
            )
    };
    vec![
        (
            AnswerShape::OpenAiChat,
            chat(call("name", a), call("name", b)),
        ),
        (AnswerShape::OpenAiChat, chat(call("id", a), call("id", b))),
        (
            AnswerShape::OpenAiChat,
            chat(json!({"role": a}), json!({"role": b})),
        ),
        (
            AnswerShape::OpenAiChat,
            chat(json!({"foo": a}), json!({"foo": b})),
        ),
        (
            AnswerShape::OpenAiResponses,
            responses("response.audio.transcript.delta"),
        ),
        (
            AnswerShape::OpenAiResponses,
            responses("response.code_interpreter_call_code.delta"),
        ),
        (
            AnswerShape::OpenAiResponses,
            responses("response.mcp_call_arguments.delta"),
        ),
    ]
}

#[test]
fn strings_a_client_joins_are_channels_by_their_place() {
    let (a, b) = SECRET.split_at(6);
    for (shape, body) in joined_by_place(a, b) {
        for chunk in [body.len(), 3] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
            let (out, cut) = edit(shape, &chunks, &Needles::one(SECRET, Effect::Redact));
            let out = String::from_utf8(out).unwrap();
            assert!(!cut, "{shape:?}: {out}");
            assert!(!out.contains(a) && !out.contains(b), "{shape:?}: {out}");
            assert!(out.contains("[REDACTED:r0]"), "{shape:?}: {out}");
            for line in out.lines().filter_map(|line| line.strip_prefix("data: ")) {
                if line != "[DONE]" {
                    serde_json::from_str::<Value>(line).expect("each event is JSON");
                }
            }
            let (out, cut) = edit(shape, &chunks, &Needles::one(SECRET, Effect::Block));
            let out = String::from_utf8(out).unwrap();
            assert!(cut, "{shape:?}: {out}");
            assert!(!out.contains(a) && !out.contains(b), "{shape:?}: {out}");
        }
    }
}
