//! OpenAI chat completions and completions streams: `chat.completion.chunk` events whose
//! `choices[].delta` carries content, refusal, reasoning (`reasoning_content`, or `reasoning`
//! as some compatible servers name it), audio transcript and tool-call
//! argument deltas (completions: `choices[].text`); a choice's `finish_reason` ends its
//! channels, `[DONE]` ends every channel.

use serde_json::{json, Map, Value};

use super::super::json_strings::{index_at, path_is, JsonString, Seg};
use super::super::AnswerText;
use super::{index_of, place_hash, ChannelKey, Plan, BY_PLACE};

const CONTENT: u8 = 0;
const REFUSAL: u8 = 1;
const REASONING: u8 = 2;
const TRANSCRIPT: u8 = 3;
const TOOL_CALL: u8 = 4;
const FUNCTION_CALL: u8 = 5;
/// `reasoning`: what some OpenAI-compatible servers call `reasoning_content`.
const REASONING_OTHER_NAME: u8 = 6;

/// The choice's own `index`, else its place in `choices`.
fn choice_index(value: &Value, at: usize) -> u64 {
    value
        .get("choices")
        .and_then(|choices| choices.get(at))
        .and_then(|choice| index_of(choice, "index"))
        .unwrap_or(at as u64)
}

/// The choices whose `finish_reason` is set end their channels.
fn finished_choices(value: &Value, plan: &mut Plan) {
    let choices = value.get("choices").and_then(Value::as_array);
    for (at, choice) in choices.into_iter().flatten().enumerate() {
        if choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null())
        {
            plan.end_groups.push(choice_index(value, at));
        }
    }
}

pub(super) fn chat(value: &Value, strings: &[JsonString], plan: &mut Plan) {
    for (index, string) in strings.iter().enumerate() {
        if string.is_key {
            continue;
        }
        let path = &string.path;
        let Some(at) = index_at(path, 1).filter(|_| path_is(path, &["choices", "#", "**"])) else {
            continue;
        };
        let choice = choice_index(value, at);
        let field = |name: &[&str]| {
            let mut pattern = vec!["choices", "#", "delta"];
            pattern.extend_from_slice(name);
            path_is(path, &pattern)
        };
        let key = if field(&["content"]) {
            Some(((choice, CONTENT, 0), AnswerText::Output))
        } else if field(&["refusal"]) {
            Some(((choice, REFUSAL, 0), AnswerText::Output))
        } else if field(&["reasoning_content"]) {
            Some(((choice, REASONING, 0), AnswerText::Output))
        } else if field(&["reasoning"]) {
            Some(((choice, REASONING_OTHER_NAME, 0), AnswerText::Output))
        } else if field(&["audio", "transcript"]) {
            Some(((choice, TRANSCRIPT, 0), AnswerText::Output))
        } else if field(&["tool_calls", "#", "function", "arguments"]) {
            let call = index_at(path, 4).unwrap_or(0);
            let call_index = value
                .pointer(&format!("/choices/{at}/delta/tool_calls/{call}"))
                .and_then(|call_value| index_of(call_value, "index"))
                .unwrap_or(call as u64);
            Some(((choice, TOOL_CALL, call_index), AnswerText::ToolArguments))
        } else if field(&["function_call", "arguments"]) {
            Some(((choice, FUNCTION_CALL, 0), AnswerText::ToolArguments))
        } else {
            by_place(value, at, path)
                .map(|place| ((choice, BY_PLACE, place_hash(&place)), AnswerText::Other))
        };
        if let Some((key, kind)) = key {
            plan.deltas.push((index, key, kind));
        }
    }
    finished_choices(value, plan);
}

/// The place of any other string of a choice's delta, as the openai SDK's accumulator joins
/// it across chunks: every string member but `index` and `type`, inside objects and lists of
/// objects matched by their `index`. `None` for strings it does not join (those, items of a
/// list of strings, which it appends).
fn by_place(value: &Value, choice_at: usize, path: &[Seg]) -> Option<Vec<String>> {
    let rest = path.get(3..)?;
    if !matches!(path.get(2), Some(Seg::Key(name)) if name == "delta") {
        return None;
    }
    if matches!(rest.last(), Some(Seg::Key(name)) if name == "index" || name == "type") {
        return None;
    }
    let mut node = value.get("choices")?.get(choice_at)?.get("delta")?;
    let mut place = Vec::with_capacity(rest.len());
    for seg in rest {
        match seg {
            Seg::Key(name) => {
                node = node.get(name)?;
                place.push(format!(".{name}"));
            }
            Seg::Index(at) => {
                node = node.get(*at)?;
                let index = index_of(node.is_object().then_some(node)?, "index");
                place.push(format!("#{}", index.unwrap_or(*at as u64)));
            }
        }
    }
    Some(place)
}

pub(super) fn completions(value: &Value, strings: &[JsonString], plan: &mut Plan) {
    for (index, string) in strings.iter().enumerate() {
        if !string.is_key && path_is(&string.path, &["choices", "#", "text"]) {
            let choice = choice_index(value, index_at(&string.path, 1).unwrap_or(0));
            plan.deltas
                .push((index, (choice, CONTENT, 0), AnswerText::Output));
        }
    }
    finished_choices(value, plan);
}

/// The envelope every chunk repeats.
fn envelope(template: &Value) -> Map<String, Value> {
    let mut chunk = Map::new();
    for name in ["id", "object", "created", "model", "system_fingerprint"] {
        if let Some(member) = template.get(name).filter(|member| !member.is_object()) {
            chunk.insert(name.to_owned(), member.clone());
        }
    }
    chunk
}

pub(super) fn chat_copy(template: &Value, key: ChannelKey, text: &str) -> String {
    let (choice, what, which) = key;
    let delta = match what {
        REFUSAL => json!({ "refusal": text }),
        REASONING => json!({ "reasoning_content": text }),
        REASONING_OTHER_NAME => json!({ "reasoning": text }),
        TRANSCRIPT => json!({ "audio": { "transcript": text } }),
        TOOL_CALL => {
            json!({ "tool_calls": [{ "index": which, "function": { "arguments": text } }] })
        }
        FUNCTION_CALL => json!({ "function_call": { "arguments": text } }),
        _ => json!({ "content": text }),
    };
    let mut chunk = envelope(template);
    chunk.insert(
        "choices".to_owned(),
        json!([{ "index": choice, "delta": delta, "finish_reason": null }]),
    );
    Value::Object(chunk).to_string()
}

pub(super) fn completions_copy(template: &Value, key: ChannelKey, text: &str) -> String {
    let mut chunk = envelope(template);
    chunk.insert(
        "choices".to_owned(),
        json!([{ "index": key.0, "text": text, "logprobs": null, "finish_reason": null }]),
    );
    Value::Object(chunk).to_string()
}
