//! Anthropic Messages streams: `content_block_start` (a block's first text), then
//! `content_block_delta` events (`text_delta`, `thinking_delta`, `input_json_delta`), ended by
//! `content_block_stop`; `message_stop` ends every block.

use serde_json::{json, Value};

use super::super::json_strings::{path_is, JsonString};
use super::super::AnswerText;
use super::{index_of, ChannelKey, Plan};

pub(super) const TEXT: u8 = 0;
const THINKING: u8 = 1;
const TOOL_INPUT: u8 = 2;

pub(super) fn plan(value: &Value, strings: &[JsonString], plan: &mut Plan) {
    let block = index_of(value, "index").unwrap_or(0);
    match value.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            for (index, string) in strings.iter().enumerate() {
                if string.is_key {
                    continue;
                }
                let path = &string.path;
                let channel = if path_is(path, &["delta", "text"]) {
                    Some((TEXT, AnswerText::Output))
                } else if path_is(path, &["delta", "thinking"]) {
                    Some((THINKING, AnswerText::Output))
                } else if path_is(path, &["delta", "partial_json"]) {
                    Some((TOOL_INPUT, AnswerText::ToolArguments))
                } else {
                    None
                };
                if let Some((what, kind)) = channel {
                    plan.deltas.push((index, (block, what, 0), kind));
                }
            }
        }
        Some("content_block_start") => {
            for (index, string) in strings.iter().enumerate() {
                if string.is_key {
                    continue;
                }
                let path = &string.path;
                if path_is(path, &["content_block", "text"]) {
                    plan.deltas
                        .push((index, (block, TEXT, 0), AnswerText::Output));
                } else if path_is(path, &["content_block", "thinking"]) {
                    plan.deltas
                        .push((index, (block, THINKING, 0), AnswerText::Output));
                } else if path_is(path, &["content_block", "input", "**"]) {
                    plan.kinds.push((index, AnswerText::ToolArguments));
                }
            }
        }
        Some("content_block_stop") => plan.end_groups.push(block),
        Some("message_stop") => plan.end_all = true,
        _ => {}
    }
}

pub(super) fn copy(key: ChannelKey, text: &str) -> String {
    let (block, what, _) = key;
    let delta = match what {
        THINKING => json!({ "type": "thinking_delta", "thinking": text }),
        TOOL_INPUT => json!({ "type": "input_json_delta", "partial_json": text }),
        _ => json!({ "type": "text_delta", "text": text }),
    };
    json!({ "type": "content_block_delta", "index": block, "delta": delta }).to_string()
}
