// Test sizes are small; their arithmetic cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use serde_json::{json, Value};

use super::super::test_scan::Needles;
use super::super::{AnswerShape, Effect, StreamEditor, StreamStep};
use super::held_bound;
use crate::policy::usage::Framing;

pub(super) const SECRET: &str = "SECRETKEY123";
pub(super) const MARKER: &str = "[REDACTED:r0]";

/// A stream of `shape` whose text is `pieces`, one delta each, with the family's envelope
/// events around them.
fn stream(shape: AnswerShape, pieces: &[&str]) -> String {
    let data = |value: Value| format!("data: {value}\n\n");
    let named = |name: &str, value: Value| format!("event: {name}\ndata: {value}\n\n");
    let full: String = pieces.concat();
    let mut out = String::new();
    match shape {
        AnswerShape::OpenAiChat => {
            let chunk = |delta: Value, finish: Value| {
                json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
                    "choices":[{"index":0,"delta":delta,"finish_reason":finish}],"usage":null})
            };
            out += &data(chunk(json!({"role":"assistant","content":""}), Value::Null));
            for piece in pieces {
                out += &data(chunk(json!({"content": piece}), Value::Null));
            }
            out += &data(chunk(json!({}), json!("stop")));
            out += &data(
                json!({"id":"c1","object":"chat.completion.chunk","choices":[],
                "usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}),
            );
            out += "data: [DONE]\n\n";
        }
        AnswerShape::OpenAiCompletions => {
            for piece in pieces {
                out += &data(json!({"id":"x","object":"text_completion","choices":[
                    {"index":0,"text":piece,"logprobs":null,"finish_reason":null}]}));
            }
            out += &data(json!({"id":"x","object":"text_completion","choices":[
                {"index":0,"text":"","logprobs":null,"finish_reason":"stop"}]}));
            out += "data: [DONE]\n\n";
        }
        AnswerShape::Anthropic => {
            out += &named(
                "message_start",
                json!({"type":"message_start","message":{"id":"m","role":"assistant","content":[],"usage":{"input_tokens":3,"output_tokens":1}}}),
            );
            out += &named(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            );
            out += &named("ping", json!({"type":"ping"}));
            for piece in pieces {
                out += &named(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":piece}}),
                );
            }
            out += &named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            );
            out += &named(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}),
            );
            out += &named("message_stop", json!({"type":"message_stop"}));
        }
        AnswerShape::Gemini => {
            let count = pieces.len();
            for (at, piece) in pieces.iter().enumerate() {
                let mut candidate =
                    json!({"content":{"parts":[{"text":piece}],"role":"model"},"index":0});
                let mut answer = json!({"modelVersion":"g"});
                if at + 1 == count {
                    candidate["finishReason"] = json!("STOP");
                    answer["usageMetadata"] =
                        json!({"promptTokenCount":3,"candidatesTokenCount":5});
                }
                answer["candidates"] = json!([candidate]);
                out += &data(answer);
            }
        }
        AnswerShape::OpenAiResponses => {
            let mut seq = 0;
            let mut event = |name: &str, mut value: Value| {
                value["type"] = json!(name);
                value["sequence_number"] = json!(seq);
                seq += 1;
                named(name, value)
            };
            out += &event(
                "response.created",
                json!({"response":{"id":"r","output":[]}}),
            );
            out += &event(
                "response.output_item.added",
                json!({"output_index":0,"item":{"id":"i","type":"message","content":[]}}),
            );
            out += &event(
                "response.content_part.added",
                json!({"item_id":"i","output_index":0,"content_index":0,"part":{"type":"output_text","text":""}}),
            );
            for piece in pieces {
                out += &event(
                    "response.output_text.delta",
                    json!({"item_id":"i","output_index":0,"content_index":0,"delta":piece,"logprobs":[]}),
                );
            }
            out += &event(
                "response.output_text.done",
                json!({"item_id":"i","output_index":0,"content_index":0,"text":full}),
            );
            out += &event(
                "response.content_part.done",
                json!({"item_id":"i","output_index":0,"content_index":0,"part":{"type":"output_text","text":full}}),
            );
            out += &event(
                "response.output_item.done",
                json!({"output_index":0,"item":{"id":"i","type":"message","content":[{"type":"output_text","text":full}]}}),
            );
            out += &event(
                "response.completed",
                json!({"response":{"id":"r","output":[{"id":"i","type":"message","content":[{"type":"output_text","text":full}]}],"usage":{"input_tokens":3}}}),
            );
        }
        AnswerShape::BedrockConverse | AnswerShape::BedrockInvoke => {}
    }
    out
}

/// The events a client reads: (event name, data) of each, as an SSE parser sees them.
pub(super) fn client_events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(bytes).expect("the stream is UTF-8");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut data: Option<String> = None;
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim_start().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                data = Some(match data {
                    Some(before) => format!("{before}\n{value}"),
                    None => value.to_owned(),
                });
            }
        }
        if let Some(data) = data {
            events.push((name, data));
        }
    }
    events
}

/// The model's text as the client assembles it, and whether the stream ended in the
/// family's error event. Every event must be valid JSON (or `[DONE]`).
pub(super) fn client_text(shape: AnswerShape, bytes: &[u8]) -> (String, bool) {
    let mut text = String::new();
    let mut errored = false;
    let mut repeated: Vec<String> = Vec::new();
    for (name, data) in client_events(bytes) {
        assert!(!errored, "an event after the error event");
        if data == "[DONE]" {
            continue;
        }
        let value: Value =
            serde_json::from_str(&data).unwrap_or_else(|_| panic!("not JSON: {data}"));
        let piece = match shape {
            AnswerShape::OpenAiChat => value["choices"][0]["delta"]["content"].as_str(),
            AnswerShape::OpenAiCompletions => value["choices"][0]["text"].as_str(),
            AnswerShape::Anthropic => {
                if value["type"] == "content_block_delta" {
                    assert_eq!(name.as_deref(), Some("content_block_delta"));
                }
                value["delta"]["text"].as_str()
            }
            AnswerShape::Gemini => value["candidates"][0]["content"]["parts"][0]["text"].as_str(),
            AnswerShape::OpenAiResponses => {
                for pointer in [
                    "/text",
                    "/part/text",
                    "/item/content/0/text",
                    "/response/output/0/content/0/text",
                ] {
                    if let Some(whole) = value.pointer(pointer).and_then(Value::as_str) {
                        repeated.push(whole.to_owned());
                    }
                }
                if value["type"] == "response.output_text.delta" {
                    value["delta"].as_str()
                } else {
                    None
                }
            }
            _ => None,
        };
        text += piece.unwrap_or_default();
        let is_error = match shape {
            AnswerShape::OpenAiChat | AnswerShape::OpenAiCompletions => {
                value["error"]["code"] == "response_blocked"
            }
            AnswerShape::Anthropic => {
                name.as_deref() == Some("error") && value["error"]["type"] == "response_blocked"
            }
            AnswerShape::Gemini => value["error"]["status"] == "PERMISSION_DENIED",
            AnswerShape::OpenAiResponses => {
                name.as_deref() == Some("error") && value["code"] == "response_blocked"
            }
            _ => false,
        };
        errored |= is_error;
    }
    // What a done event repeats is what was sent.
    for whole in repeated.iter().filter(|whole| !whole.is_empty()) {
        assert_eq!(whole, &text, "a repeated text differs from the deltas");
    }
    (text, errored)
}

/// Runs `chunks` through an editor; what the client receives, and whether it was cut.
pub(super) fn edit(shape: AnswerShape, chunks: &[&[u8]], scan: &Needles) -> (Vec<u8>, bool) {
    let mut editor = StreamEditor::new(shape, Framing::Sse).unwrap();
    let mut out = Vec::new();
    let mut cut = false;
    for (at, chunk) in chunks.iter().enumerate() {
        let last = at + 1 == chunks.len();
        assert!(editor.held() <= held_bound(scan.window));
        match editor.push(chunk, last, scan) {
            StreamStep::Send(bytes) => {
                assert!(!cut || bytes.is_empty(), "bytes after a cut");
                out.extend_from_slice(&bytes)
            }
            StreamStep::Cut(bytes) => {
                assert!(!cut, "a second cut");
                out.extend_from_slice(&bytes);
                cut = true;
            }
        }
    }
    (out, cut)
}

const SHAPES: [AnswerShape; 5] = [
    AnswerShape::OpenAiChat,
    AnswerShape::OpenAiCompletions,
    AnswerShape::Anthropic,
    AnswerShape::Gemini,
    AnswerShape::OpenAiResponses,
];

const BEFORE: &str = "Here is the key you asked for: ";
const AFTER: &str = " and that is all.";

#[test]
fn a_secret_split_across_two_deltas_at_every_byte_is_redacted() {
    for shape in SHAPES {
        for split in 0..=SECRET.len() {
            let (a, b) = SECRET.split_at(split);
            let first = format!("{BEFORE}{a}");
            let second = format!("{b}{AFTER}");
            let body = stream(shape, &[&first, &second]);
            let scan = Needles::one(SECRET, Effect::Redact);
            let (out, cut) = edit(shape, &[body.as_bytes()], &scan);
            assert!(!cut);
            let (text, errored) = client_text(shape, &out);
            assert!(!errored);
            assert_eq!(
                text,
                format!("{BEFORE}{MARKER}{AFTER}"),
                "{shape:?} split {split}"
            );
            assert!(!String::from_utf8_lossy(&out).contains(SECRET));
        }
    }
}

#[test]
fn a_stream_rechunked_at_every_byte_is_redacted_the_same() {
    for shape in SHAPES {
        let body = stream(shape, &[BEFORE, "SECRET", "KEY123", AFTER]);
        let scan = Needles::one(SECRET, Effect::Redact);
        let (whole, _) = edit(shape, &[body.as_bytes()], &scan);
        let expected = client_text(shape, &whole);
        for split in 0..=body.len() {
            let (a, b) = body.as_bytes().split_at(split);
            let (out, cut) = edit(shape, &[a, b], &scan);
            assert!(!cut);
            assert_eq!(
                client_text(shape, &out),
                expected,
                "{shape:?} split {split}"
            );
            assert!(!String::from_utf8_lossy(&out).contains(SECRET));
        }
        assert_eq!(expected.0, format!("{BEFORE}{MARKER}{AFTER}"));
    }
}

#[test]
fn a_secret_sent_char_by_char_is_redacted_and_byte_by_byte_chunks_too() {
    for shape in SHAPES {
        let text = format!("{BEFORE}{SECRET}{AFTER}");
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let body = stream(shape, &pieces);
        let scan = Needles::one(SECRET, Effect::Redact);
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        let (out, cut) = edit(shape, &chunks, &scan);
        assert!(!cut);
        assert_eq!(
            client_text(shape, &out).0,
            format!("{BEFORE}{MARKER}{AFTER}"),
            "{shape:?}"
        );
    }
}

#[test]
fn a_block_cuts_the_stream_before_any_of_the_match() {
    for shape in SHAPES {
        for split in 0..=SECRET.len() {
            let (a, b) = SECRET.split_at(split);
            let first = format!("{BEFORE}{a}");
            let second = format!("{b}{AFTER}");
            let body = stream(shape, &[&first, &second]);
            let scan = Needles::one(SECRET, Effect::Block);
            for chunk in [body.len(), 7, 1] {
                let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
                let mut editor = StreamEditor::new(shape, Framing::Sse).unwrap();
                let mut out = Vec::new();
                let mut cut = false;
                for (at, piece) in chunks.iter().enumerate() {
                    match editor.push(piece, at + 1 == chunks.len(), &scan) {
                        StreamStep::Send(bytes) => out.extend_from_slice(&bytes),
                        StreamStep::Cut(bytes) => {
                            out.extend_from_slice(&bytes);
                            cut = true;
                            break;
                        }
                    }
                }
                assert!(cut, "{shape:?} split {split}");
                let (text, errored) = client_text(shape, &out);
                assert!(errored, "{shape:?}: {}", String::from_utf8_lossy(&out));
                assert!(
                    BEFORE.starts_with(&text),
                    "{shape:?} split {split}: {text:?}"
                );
                assert_eq!(editor.findings().blocked_by, Some(0));
                let out = String::from_utf8_lossy(&out);
                assert!(out.contains(r#"blocked by rule \"r0\""#), "{out}");
            }
        }
    }
}

#[test]
fn a_record_passes_the_text_unchanged() {
    for shape in SHAPES {
        let body = stream(shape, &[BEFORE, "SECRET", "KEY123", AFTER]);
        let scan = Needles::one(SECRET, Effect::Record);
        let (out, cut) = edit(shape, &[body.as_bytes()], &scan);
        assert!(!cut);
        assert_eq!(
            client_text(shape, &out).0,
            format!("{BEFORE}{SECRET}{AFTER}")
        );
        let mut editor = StreamEditor::new(shape, Framing::Sse).unwrap();
        editor.push(body.as_bytes(), true, &scan);
        assert_eq!(editor.findings().fired, vec![(0, Effect::Record)]);
    }
}

/// A small deterministic generator for chunkings.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

#[test]
fn for_random_chunkings_the_text_is_the_redacted_full_text() {
    let mut random = Lcg(7);
    let words = [
        "alpha ",
        "SECRET",
        "KEY123",
        " é ",
        "SECRETKEY",
        "123",
        "🙂",
        "beta",
        "\n",
        "\"q\"",
    ];
    for round in 0..300 {
        let shape = SHAPES[round % SHAPES.len()];
        let count = 1 + random.below(12);
        let pieces: Vec<String> = (0..count)
            .map(|_| {
                (0..1 + random.below(3))
                    .map(|_| words[random.below(words.len())])
                    .collect()
            })
            .collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let full: String = pieces.concat();
        let body = stream(shape, &pieces);
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let take = 1 + random.below(40);
            let end = (at + take).min(body.len());
            chunks.push(&body.as_bytes()[at..end]);
            at = end;
        }
        let mut scan = Needles::one(SECRET, Effect::Redact);
        scan.window = 12 + random.below(30);
        let (out, cut) = edit(shape, &chunks, &scan);
        assert!(!cut);
        let expected = full.replace(SECRET, MARKER);
        assert_eq!(client_text(shape, &out).0, expected, "{shape:?} {pieces:?}");
    }
}

#[test]
fn sse_edge_cases_are_read_as_clients_read_them() {
    let shape = AnswerShape::OpenAiChat;
    let body = stream(shape, &[BEFORE, "SECRET", "KEY123", AFTER]);
    let scan = Needles::one(SECRET, Effect::Redact);
    let expected = format!("{BEFORE}{MARKER}{AFTER}");
    let variants = [
        body.replace("\n", "\r\n"),
        body.replace("\n", "\r"),
        body.replace("data: ", "data:"),
        format!("\u{feff}: a comment\n\n{body}"),
        body.trim_end().to_owned(),
    ];
    for variant in variants {
        for split in 0..=variant.len() {
            let (a, b) = variant.as_bytes().split_at(split);
            let (out, cut) = edit(shape, &[a, b], &scan);
            assert!(!cut);
            assert_eq!(
                client_text(shape, &out).0,
                expected,
                "{variant:?} at {split}"
            );
        }
    }
    // A payload split over several `data:` lines is one JSON document.
    let multi = "data: {\"choices\":[{\"index\":0,\n\
                 data: \"delta\":{\"content\":\"SECRETKEY123\"},\"finish_reason\":\"stop\"}]}\n\n";
    let (out, _) = edit(shape, &[multi.as_bytes()], &scan);
    assert_eq!(client_text(shape, &out).0, MARKER);
}

#[test]
fn unreadable_streams_are_cut() {
    let scan = Needles::one(SECRET, Effect::Redact);
    let huge = format!("data: {}", "x".repeat(super::MAX_EVENT_BYTES + 10));
    let logprobs = r#"data: {"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a"}]}}]}"#.to_owned() + "\n\n";
    let invalid = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}\n\n".to_vec();
    let duplicate = "data: {\"choices\":[],\"choices\":[]}\n\n".to_owned();
    for body in [
        huge.into_bytes(),
        logprobs.into_bytes(),
        invalid,
        duplicate.into_bytes(),
    ] {
        let mut editor = StreamEditor::new(AnswerShape::OpenAiChat, Framing::Sse).unwrap();
        let step = editor.push(&body, false, &scan);
        let StreamStep::Cut(bytes) = step else {
            panic!(
                "not cut: {step:?} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
        };
        assert!(String::from_utf8_lossy(&bytes).contains("response_unreadable"));
        assert!(editor.findings().unreadable);
        assert_eq!(editor.findings().blocked_by, None);
        assert_eq!(
            editor.push(b"data: [DONE]\n\n", true, &scan),
            StreamStep::Send(Vec::new())
        );
    }
}

#[test]
fn too_many_channels_cut_the_stream() {
    let scan = Needles::one(SECRET, Effect::Redact);
    let mut body = String::new();
    for index in 0..=super::MAX_CHANNELS {
        body += &format!(
            "data: {{\"choices\":[{{\"index\":{index},\"delta\":{{\"content\":\"x\"}}}}]}}\n\n"
        );
    }
    let mut editor = StreamEditor::new(AnswerShape::OpenAiChat, Framing::Sse).unwrap();
    assert!(matches!(
        editor.push(body.as_bytes(), false, &scan),
        StreamStep::Cut(_)
    ));
    assert!(editor.findings().unreadable);
}

#[test]
fn a_match_growing_past_the_cap_cuts_the_stream() {
    struct Run;
    impl super::super::AnswerScan for Run {
        fn scan(
            &self,
            text: &str,
            _: super::super::AnswerText,
            out: &mut Vec<super::super::AnswerMatch>,
        ) {
            if let Some(start) = text.find('Z') {
                let end = start + text.bytes().skip(start).take_while(|b| *b == b'Z').count();
                out.push(super::super::AnswerMatch {
                    rule: 0,
                    range: start..end,
                    effect: Effect::Redact,
                });
            }
        }
        fn marker(&self, _: usize) -> String {
            MARKER.to_owned()
        }
        fn window(&self) -> usize {
            16
        }
    }
    let mut editor = StreamEditor::new(AnswerShape::OpenAiChat, Framing::Sse).unwrap();
    let piece = "Z".repeat(1024);
    let mut cut = false;
    for _ in 0..100 {
        let event = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{piece}\"}}}}]}}\n\n"
        );
        match editor.push(event.as_bytes(), false, &Run) {
            StreamStep::Send(bytes) => assert!(!String::from_utf8_lossy(&bytes).contains("ZZ")),
            StreamStep::Cut(_) => {
                cut = true;
                break;
            }
        }
        assert!(editor.held() <= held_bound(16));
    }
    assert!(cut);
    assert_eq!(editor.findings().blocked_by, Some(0));
}

#[test]
fn tool_call_arguments_and_other_channels_are_redacted() {
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":delta,"finish_reason":null}]})
        )
    };
    let body = [
        chunk(json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]})),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"k\":\"SECRET"}}]})),
        chunk(json!({"reasoning_content":"SECRETKEY"})),
        chunk(json!({"tool_calls":[{"index":0,"function":{"arguments":"KEY123\"}"}}]})),
        chunk(json!({"reasoning_content":"123"})),
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let scan = Needles::one(SECRET, Effect::Redact);
    let (out, _) = edit(AnswerShape::OpenAiChat, &[body.as_bytes()], &scan);
    let mut arguments = String::new();
    let mut reasoning = String::new();
    let mut names = String::new();
    for (_, data) in client_events(&out) {
        if data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(&data).unwrap();
        let delta = &value["choices"][0]["delta"];
        arguments += delta["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap_or_default();
        names += delta["tool_calls"][0]["function"]["name"]
            .as_str()
            .unwrap_or_default();
        reasoning += delta["reasoning_content"].as_str().unwrap_or_default();
    }
    assert_eq!(arguments, format!("{{\"k\":\"{MARKER}\"}}"));
    assert_eq!(reasoning, MARKER);
    assert_eq!(names, "f");
}

#[test]
fn usage_and_other_events_pass_unchanged() {
    let shape = AnswerShape::OpenAiChat;
    let body = stream(shape, &["hello"]);
    let scan = Needles::one(SECRET, Effect::Redact);
    let (out, _) = edit(shape, &[body.as_bytes()], &scan);
    let out = String::from_utf8(out).unwrap();
    // Short text waits behind the window and goes out in a copy of its delta event before
    // the event that ends its choice; every other event is the provider's, in order.
    let events: Vec<&str> = body.split_inclusive("\n\n").collect();
    let mut rest = out.as_str();
    for event in events.iter().filter(|event| !event.contains("hello")) {
        let at = rest
            .find(event)
            .unwrap_or_else(|| panic!("{event} missing in {out}"));
        rest = rest.get(at + event.len()..).unwrap();
    }
    assert_eq!(client_text(shape, out.as_bytes()).0, "hello");
}

#[test]
fn json_framing_and_bedrock_streams_have_no_editor() {
    assert!(StreamEditor::new(AnswerShape::Gemini, Framing::Json).is_none());
    assert!(StreamEditor::new(AnswerShape::BedrockConverse, Framing::Sse).is_none());
}

#[test]
fn anthropic_tool_input_and_thinking_are_channels() {
    let named = |name: &str, value: Value| format!("event: {name}\ndata: {value}\n\n");
    let body = [
        named("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}})),
        named("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I think SECR"}})),
        named("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"ETKEY123"}})),
        named("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}})),
        named("content_block_stop", json!({"type":"content_block_stop","index":0})),
        named("content_block_start", json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}})),
        named("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"k\":\"SECRETK"}})),
        named("content_block_delta", json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"EY123\"}"}})),
        named("content_block_stop", json!({"type":"content_block_stop","index":1})),
        named("message_stop", json!({"type":"message_stop"})),
    ]
    .concat();
    let scan = Needles::one(SECRET, Effect::Redact);
    for chunk in [body.len(), 5, 1] {
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
        let (out, cut) = edit(AnswerShape::Anthropic, &chunks, &scan);
        assert!(!cut);
        let mut thinking = String::new();
        let mut input = String::new();
        let mut order = Vec::new();
        for (name, data) in client_events(&out) {
            let value: Value = serde_json::from_str(&data).unwrap();
            order.push((name.clone().unwrap(), value["index"].as_u64()));
            thinking += value["delta"]["thinking"].as_str().unwrap_or_default();
            input += value["delta"]["partial_json"].as_str().unwrap_or_default();
        }
        assert_eq!(thinking, format!("I think {MARKER}"));
        assert_eq!(input, format!("{{\"k\":\"{MARKER}\"}}"));
        // Each block's text arrives before its stop event.
        let stop = order
            .iter()
            .position(|(name, index)| name == "content_block_stop" && *index == Some(1))
            .unwrap();
        assert!(order[stop - 1].0 == "content_block_delta" && order[stop - 1].1 == Some(1));
    }
}

#[test]
fn responses_function_arguments_are_replaced_in_every_event_that_repeats_them() {
    let named = |name: &str, value: Value| format!("event: {name}\ndata: {value}\n\n");
    let arguments = format!("{{\"k\":\"{SECRET}\"}}");
    let body = [
        named("response.output_item.added", json!({"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","id":"fc","name":"f","arguments":""},"sequence_number":1})),
        named("response.function_call_arguments.delta", json!({"type":"response.function_call_arguments.delta","item_id":"fc","output_index":0,"delta":"{\"k\":\"SECRE","sequence_number":2})),
        named("response.function_call_arguments.delta", json!({"type":"response.function_call_arguments.delta","item_id":"fc","output_index":0,"delta":"TKEY123\"}","sequence_number":3})),
        named("response.function_call_arguments.done", json!({"type":"response.function_call_arguments.done","item_id":"fc","output_index":0,"arguments":arguments,"sequence_number":4})),
        named("response.output_item.done", json!({"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc","name":"f","arguments":arguments},"sequence_number":5})),
        named("response.completed", json!({"type":"response.completed","response":{"output":[{"type":"function_call","name":"f","arguments":arguments}],"output_text":SECRET},"sequence_number":6})),
    ]
    .concat();
    let scan = Needles::one(SECRET, Effect::Redact);
    let (out, cut) = edit(AnswerShape::OpenAiResponses, &[body.as_bytes()], &scan);
    assert!(!cut);
    let expected = format!("{{\"k\":\"{MARKER}\"}}");
    let mut deltas = String::new();
    for (_, data) in client_events(&out) {
        let value: Value = serde_json::from_str(&data).unwrap();
        deltas += value["delta"].as_str().unwrap_or_default();
        for pointer in [
            "/arguments",
            "/item/arguments",
            "/response/output/0/arguments",
        ] {
            if let Some(whole) = value.pointer(pointer).and_then(Value::as_str) {
                if !whole.is_empty() {
                    assert_eq!(whole, expected, "{pointer}");
                }
            }
        }
        if let Some(text) = value.pointer("/response/output_text") {
            assert_eq!(text, MARKER);
        }
    }
    assert_eq!(deltas, expected);
    assert!(!String::from_utf8_lossy(&out).contains(SECRET));
}

#[test]
fn gemini_candidates_and_thoughts_are_channels_of_their_own() {
    let event = |parts: Value, finish: bool| {
        let mut candidate = json!({"content":{"parts":parts,"role":"model"},"index":0});
        if finish {
            candidate["finishReason"] = json!("STOP");
        }
        format!("data: {}\n\n", json!({"candidates":[candidate]}))
    };
    let body = [
        event(
            json!([{"text":"SECRET","thought":true},{"text":"plain SEC"}]),
            false,
        ),
        event(
            json!([{"text":"KEY123","thought":true},{"text":"RETKEY123"}]),
            true,
        ),
    ]
    .concat();
    let scan = Needles::one(SECRET, Effect::Redact);
    let (out, _) = edit(AnswerShape::Gemini, &[body.as_bytes()], &scan);
    let mut thought = String::new();
    let mut text = String::new();
    for (_, data) in client_events(&out) {
        let value: Value = serde_json::from_str(&data).unwrap();
        for part in value["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
        {
            if part["thought"] == true {
                thought += part["text"].as_str().unwrap();
            } else {
                text += part["text"].as_str().unwrap();
            }
        }
    }
    assert_eq!(thought, format!("{MARKER}"));
    assert_eq!(text, format!("plain {MARKER}"));
}

#[test]
fn comments_keep_alive_without_their_words_and_plain_text_is_scanned_whole() {
    let scan = Needles::one(SECRET, Effect::Redact);
    let body =
        format!(": PROCESSING {SECRET}\n\ndata: plain {SECRET} text\n\nid: 7\ndata: [DONE]\n\n");
    let (out, cut) = edit(AnswerShape::OpenAiChat, &[body.as_bytes()], &scan);
    assert!(!cut);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(":\n\ndata: plain {MARKER} text\n\nid: 7\ndata: [DONE]\n\n")
    );
    // A name or id the rules match cannot be edited in place: the stream is cut.
    let named = format!("event: {SECRET}\ndata: {{}}\n\n");
    let mut editor = StreamEditor::new(AnswerShape::Anthropic, Framing::Sse).unwrap();
    assert!(matches!(
        editor.push(named.as_bytes(), true, &scan),
        StreamStep::Cut(_)
    ));
    assert_eq!(editor.findings().blocked_by, Some(0));
}

#[test]
fn a_block_message_names_the_rule_only() {
    let scan = Needles::one(SECRET, Effect::Block);
    let body = stream(AnswerShape::Anthropic, &["x ", SECRET, " y"]);
    let (out, cut) = edit(AnswerShape::Anthropic, &[body.as_bytes()], &scan);
    assert!(cut);
    let events = client_events(&out);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let value: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        value,
        json!({"type":"error","error":{"type":"response_blocked",
            "message":"the answer was blocked by rule \"r0\": its text matched what the rule forbids"}})
    );
}

#[test]
fn a_copy_of_a_delta_event_carries_its_envelope_as_sent() {
    // A match in an envelope field is redacted in the event; the copy that later carries the
    // held text must not bring the provider's field back.
    let body = "data: {\"id\":\"c\",\"object\":\"chat.SECRET\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Here is SEC\"}}]}\r\n\r\n";
    let scan = Needles::one("SECRET", Effect::Redact);
    let (out, cut) = edit(AnswerShape::OpenAiChat, &[body.as_bytes()], &scan);
    assert!(!cut);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("SECRET"), "{out}");
    assert_eq!(
        client_text(AnswerShape::OpenAiChat, out.as_bytes()).0,
        "Here is SEC"
    );
}
