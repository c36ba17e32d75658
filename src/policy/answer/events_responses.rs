//! OpenAI Responses streams: typed events (`response.output_text.delta`, `.refusal.delta`,
//! `.reasoning_summary_text.delta`, `.reasoning_text.delta`, `.function_call_arguments.delta`,
//! `.custom_tool_call_input.delta`), each with its `.done` event repeating the whole text; the
//! `content_part.*`, `output_item.*` and final `response.*` events repeat it again inside a
//! part, an item or the whole response.

use serde_json::{json, Value};

use super::super::json_strings::{index_at, path_is, JsonString, Seg};
use super::super::AnswerText;
use super::{index_of, place_hash, ChannelKey, Plan, BY_PLACE};

pub(super) const TEXT: u8 = 0;
const REFUSAL: u8 = 1;
const SUMMARY: u8 = 2;
const REASONING: u8 = 3;
const ARGUMENTS: u8 = 4;
const TOOL_INPUT: u8 = 5;

/// Delta events: the event type, the channel's kind and text kind, and the member that
/// tells channels of the kind apart in an output item.
const DELTAS: [(&str, u8, AnswerText, &str); 6] = [
    (
        "response.output_text.delta",
        TEXT,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.refusal.delta",
        REFUSAL,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.reasoning_summary_text.delta",
        SUMMARY,
        AnswerText::Output,
        "summary_index",
    ),
    (
        "response.reasoning_text.delta",
        REASONING,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.function_call_arguments.delta",
        ARGUMENTS,
        AnswerText::ToolArguments,
        "",
    ),
    (
        "response.custom_tool_call_input.delta",
        TOOL_INPUT,
        AnswerText::ToolArguments,
        "",
    ),
];

/// `.done` events: the type, the member with the whole text, and as for deltas.
const DONES: [(&str, &str, u8, AnswerText, &str); 6] = [
    (
        "response.output_text.done",
        "text",
        TEXT,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.refusal.done",
        "refusal",
        REFUSAL,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.reasoning_summary_text.done",
        "text",
        SUMMARY,
        AnswerText::Output,
        "summary_index",
    ),
    (
        "response.reasoning_text.done",
        "text",
        REASONING,
        AnswerText::Output,
        "content_index",
    ),
    (
        "response.function_call_arguments.done",
        "arguments",
        ARGUMENTS,
        AnswerText::ToolArguments,
        "",
    ),
    (
        "response.custom_tool_call_input.done",
        "input",
        TOOL_INPUT,
        AnswerText::ToolArguments,
        "",
    ),
];

fn which(value: &Value, member: &str) -> u64 {
    if member.is_empty() {
        0
    } else {
        index_of(value, member).unwrap_or(0)
    }
}

/// The channel of a string inside an output item (`item` is the item's value, `rest` the
/// path inside it).
fn in_item(item: &Value, rest: &[Seg]) -> Option<(u8, u64, AnswerText)> {
    let kind_of_part = |at: usize| match item
        .pointer(&format!("/content/{at}/type"))
        .and_then(Value::as_str)
    {
        Some("reasoning_text") => REASONING,
        _ => TEXT,
    };
    if path_is(rest, &["content", "#", "text"]) {
        let at = index_at(rest, 1)?;
        return Some((kind_of_part(at), at as u64, AnswerText::Output));
    }
    if path_is(rest, &["content", "#", "refusal"]) {
        return Some((REFUSAL, index_at(rest, 1)? as u64, AnswerText::Output));
    }
    if path_is(rest, &["summary", "#", "text"]) {
        return Some((SUMMARY, index_at(rest, 1)? as u64, AnswerText::Output));
    }
    if path_is(rest, &["arguments"]) {
        return Some((ARGUMENTS, 0, AnswerText::ToolArguments));
    }
    if path_is(rest, &["input"]) {
        return Some((TOOL_INPUT, 0, AnswerText::ToolArguments));
    }
    None
}

pub(super) fn plan(value: &Value, strings: &[JsonString], plan: &mut Plan) {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let output = index_of(value, "output_index").unwrap_or(0);
    if let Some((_, what, text_kind, member)) = DELTAS.iter().find(|(name, ..)| *name == kind) {
        let key = (output, *what, which(value, member));
        for (index, string) in strings.iter().enumerate() {
            if !string.is_key && path_is(&string.path, &["delta"]) {
                plan.deltas.push((index, key, *text_kind));
            }
        }
        return;
    }
    if kind.ends_with(".delta") {
        // Any other delta event (an audio transcript, code for the code interpreter, an MCP
        // call's arguments): clients join its `delta` strings like the named ones.
        let content = index_of(value, "content_index").unwrap_or(0).to_string();
        let key = (output, BY_PLACE, place_hash(&[kind, content.as_str()]));
        for (index, string) in strings.iter().enumerate() {
            if !string.is_key && path_is(&string.path, &["delta"]) {
                plan.deltas.push((index, key, AnswerText::Output));
            }
        }
        return;
    }
    if let Some((_, field, what, text_kind, member)) = DONES.iter().find(|(name, ..)| *name == kind)
    {
        let key = (output, *what, which(value, member));
        plan.ends.push(key);
        for (index, string) in strings.iter().enumerate() {
            if !string.is_key && path_is(&string.path, &[field]) {
                plan.wholes.push((index, key, *text_kind));
            }
        }
        return;
    }
    let ends = kind.ends_with(".done")
        || matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        );
    for (index, string) in strings.iter().enumerate() {
        if string.is_key {
            continue;
        }
        let path = &string.path;
        let found = match path.first() {
            // `content_part.*` and `reasoning_summary_part.*`: one part of an item.
            Some(Seg::Key(name)) if name == "part" => {
                let rest = path.get(1..).unwrap_or_default();
                let summary = kind.starts_with("response.reasoning_summary_part");
                let part_type = value.pointer("/part/type").and_then(Value::as_str);
                let what = if path_is(rest, &["refusal"]) {
                    Some(REFUSAL)
                } else if !path_is(rest, &["text"]) {
                    None
                } else if summary {
                    Some(SUMMARY)
                } else if part_type == Some("reasoning_text") {
                    Some(REASONING)
                } else {
                    Some(TEXT)
                };
                let at = which(
                    value,
                    if summary {
                        "summary_index"
                    } else {
                        "content_index"
                    },
                );
                what.map(|what| ((output, what, at), AnswerText::Output))
            }
            Some(Seg::Key(name)) if name == "item" => {
                let item = value.get("item").unwrap_or(&Value::Null);
                in_item(item, path.get(1..).unwrap_or_default())
                    .map(|(what, at, text_kind)| ((output, what, at), text_kind))
            }
            Some(Seg::Key(name))
                if name == "response" && path_is(path, &["response", "output", "#", "**"]) =>
            {
                let at = index_at(path, 2).unwrap_or(0);
                let item = value
                    .pointer(&format!("/response/output/{at}"))
                    .unwrap_or(&Value::Null);
                in_item(item, path.get(3..).unwrap_or_default())
                    .map(|(what, which, text_kind)| ((at as u64, what, which), text_kind))
            }
            _ => None,
        };
        match found {
            Some((key, text_kind)) => plan.wholes.push((index, key, text_kind)),
            None if path_is(path, &["response", "output_text"]) => {
                plan.kinds.push((index, AnswerText::Output))
            }
            None => {}
        }
    }
    if ends {
        if matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            plan.end_all = true;
        } else if kind == "response.output_item.done" {
            plan.end_groups.push(output);
        }
    }
}

pub(super) fn copy(template: &Value, key: ChannelKey, text: &str) -> (&'static str, String) {
    let (output, what, which) = key;
    let (name, member) = match what {
        REFUSAL => ("response.refusal.delta", "content_index"),
        SUMMARY => ("response.reasoning_summary_text.delta", "summary_index"),
        REASONING => ("response.reasoning_text.delta", "content_index"),
        ARGUMENTS => ("response.function_call_arguments.delta", ""),
        TOOL_INPUT => ("response.custom_tool_call_input.delta", ""),
        _ => ("response.output_text.delta", "content_index"),
    };
    let mut event = json!({
        "type": name,
        "item_id": template.get("item_id").cloned().unwrap_or(Value::Null),
        "output_index": output,
        "delta": text,
        "sequence_number": template.get("sequence_number").cloned().unwrap_or(Value::Null),
    });
    if !member.is_empty() {
        if let Some(object) = event.as_object_mut() {
            object.insert(member.to_owned(), json!(which));
        }
    }
    if what == TEXT {
        if let Some(object) = event.as_object_mut() {
            object.insert("logprobs".to_owned(), json!([]));
        }
    }
    (name, event.to_string())
}
