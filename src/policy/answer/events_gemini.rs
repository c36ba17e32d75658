//! Gemini streams (`alt=sse`): every event is a partial answer whose
//! `candidates[].content.parts[].text` continue the candidate's text (thought parts apart);
//! the event that gives a candidate its `finishReason` is its last.

use serde_json::{json, Map, Value};

use super::super::json_strings::{index_at, path_is, JsonString};
use super::super::AnswerText;
use super::{index_of, ChannelKey, Plan};

const TEXT: u8 = 0;
const THOUGHT: u8 = 1;

fn candidate_index(value: &Value, at: usize) -> u64 {
    value
        .get("candidates")
        .and_then(|candidates| candidates.get(at))
        .and_then(|candidate| index_of(candidate, "index"))
        .unwrap_or(at as u64)
}

pub(super) fn plan(value: &Value, strings: &[JsonString], plan: &mut Plan) {
    for (index, string) in strings.iter().enumerate() {
        if string.is_key {
            continue;
        }
        let path = &string.path;
        let Some(at) = index_at(path, 1) else {
            continue;
        };
        let candidate = candidate_index(value, at);
        if path_is(path, &["candidates", "#", "content", "parts", "#", "text"]) {
            let part = index_at(path, 4).unwrap_or(0);
            let thought = value
                .pointer(&format!("/candidates/{at}/content/parts/{part}/thought"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let what = if thought { THOUGHT } else { TEXT };
            plan.deltas
                .push((index, (candidate, what, 0), AnswerText::Output));
        } else if path_is(
            path,
            &[
                "candidates",
                "#",
                "content",
                "parts",
                "#",
                "functionCall",
                "args",
                "**",
            ],
        ) {
            plan.kinds.push((index, AnswerText::ToolArguments));
        }
    }
    let candidates = value.get("candidates").and_then(Value::as_array);
    for (at, candidate) in candidates.into_iter().flatten().enumerate() {
        if candidate
            .get("finishReason")
            .is_some_and(|reason| !reason.is_null())
        {
            plan.end_groups.push(candidate_index(value, at));
        }
    }
}

pub(super) fn copy(template: &Value, key: ChannelKey, text: &str) -> String {
    let (candidate, what, _) = key;
    let part = if what == THOUGHT {
        json!({ "text": text, "thought": true })
    } else {
        json!({ "text": text })
    };
    let mut answer = Map::new();
    answer.insert(
        "candidates".to_owned(),
        json!([{ "content": { "parts": [part], "role": "model" }, "index": candidate }]),
    );
    for name in ["modelVersion", "responseId"] {
        if let Some(member) = template.get(name).filter(|member| member.is_string()) {
            answer.insert(name.to_owned(), member.clone());
        }
    }
    Value::Object(answer).to_string()
}
