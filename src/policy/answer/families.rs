//! What each family's stream events say: which strings are a channel's text deltas, which
//! repeat a channel's whole text, which events end channels; how a copy of a channel's delta
//! event is made to carry held text; and the family's error event.

use serde_json::Value;

use super::json_strings::JsonString;
use super::{AnswerShape, AnswerText};

#[path = "events_anthropic.rs"]
mod anthropic;
#[path = "events_gemini.rs"]
mod gemini;
#[path = "events_openai.rs"]
mod openai;
#[path = "events_responses.rs"]
mod responses;

/// A channel: `(group, what, which)`. The group is what an end event names (a choice, a
/// content block, an output item, a candidate); `what` is the kind of text in it, by family;
/// `which` tells apart several channels of one kind in a group (tool calls, content parts).
pub(super) type ChannelKey = (u64, u8, u64);

/// The `what` of a channel found by its place, not by name: a string a client joins across
/// events that no family names as text (an unknown delta member, a tool call's name, a
/// Responses delta event of a type not listed). Its `which` is a hash of the place.
pub(super) const BY_PLACE: u8 = 200;

/// A stable hash of a channel's place (FNV-1a), for `BY_PLACE` channels.
pub(super) fn place_hash<S: AsRef<str>>(parts: &[S]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.as_ref().bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// What one event holds, by string index into the event's strings.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Text deltas: the string, its channel and kind.
    pub deltas: Vec<(usize, ChannelKey, AnswerText)>,
    /// A channel's whole text again: replaced by what was sent for it.
    pub wholes: Vec<(usize, ChannelKey, AnswerText)>,
    /// Other strings whose kind is not `Other`.
    pub kinds: Vec<(usize, AnswerText)>,
    /// Channels this event ends.
    pub ends: Vec<ChannelKey>,
    /// Groups this event ends, every channel in them.
    pub end_groups: Vec<u64>,
    /// The event ends every channel.
    pub end_all: bool,
}

impl Plan {
    pub(super) fn kind_of(&self, index: usize) -> AnswerText {
        let whole = self.wholes.iter().find(|(at, _, _)| *at == index);
        self.kinds
            .iter()
            .find(|(at, _)| *at == index)
            .map(|(_, kind)| *kind)
            .or(whole.map(|(_, _, kind)| *kind))
            .unwrap_or(AnswerText::Other)
    }

    pub(super) fn ends(&self, key: ChannelKey) -> bool {
        self.end_all
            || self.ends.contains(&key)
            || self.end_groups.contains(&key.0)
            || self.wholes.iter().any(|(_, whole, _)| *whole == key)
    }
}

/// Whether a client joins the text of channel `key` with the text part that may follow it in
/// the same message (Anthropic text blocks, Responses `output_text` parts of one item), so
/// its end is not yet the end of what a match may span.
pub(super) fn may_continue(shape: AnswerShape, key: ChannelKey) -> bool {
    match shape {
        AnswerShape::Anthropic => key.1 == anthropic::TEXT,
        AnswerShape::OpenAiResponses => key.1 == responses::TEXT,
        _ => false,
    }
}

/// Whether channel `next` is the text part that continues `ended` for a client.
pub(super) fn continues(shape: AnswerShape, ended: ChannelKey, next: ChannelKey) -> bool {
    may_continue(shape, ended)
        && match shape {
            AnswerShape::Anthropic => next.1 == anthropic::TEXT && next.0 != ended.0,
            AnswerShape::OpenAiResponses => {
                next.1 == responses::TEXT && next.0 == ended.0 && next.2 != ended.2
            }
            _ => false,
        }
}

/// The plan of one event (its JSON payload parsed as `value`, its strings as read).
pub(super) fn plan(shape: AnswerShape, value: &Value, strings: &[JsonString]) -> Plan {
    let mut plan = Plan::default();
    match shape {
        AnswerShape::OpenAiChat => openai::chat(value, strings, &mut plan),
        AnswerShape::OpenAiCompletions => openai::completions(value, strings, &mut plan),
        AnswerShape::Anthropic => anthropic::plan(value, strings, &mut plan),
        AnswerShape::Gemini => gemini::plan(value, strings, &mut plan),
        AnswerShape::OpenAiResponses => responses::plan(value, strings, &mut plan),
        AnswerShape::BedrockConverse | AnswerShape::BedrockInvoke => {}
    }
    plan
}

/// A delta event of `key` carrying `text`, made from the channel's last delta event:
/// the event name and the JSON payload.
pub(super) fn copy(
    shape: AnswerShape,
    key: ChannelKey,
    template: &str,
    text: &str,
) -> (Option<String>, String) {
    if key.1 == BY_PLACE {
        return by_place_copy(shape, key, template, text);
    }
    let template: Value = serde_json::from_str(template).unwrap_or(Value::Null);
    match shape {
        AnswerShape::OpenAiChat => (None, openai::chat_copy(&template, key, text)),
        AnswerShape::OpenAiCompletions => (None, openai::completions_copy(&template, key, text)),
        AnswerShape::Anthropic => (
            Some("content_block_delta".to_owned()),
            anthropic::copy(key, text),
        ),
        AnswerShape::Gemini => (None, gemini::copy(&template, key, text)),
        AnswerShape::OpenAiResponses => {
            let (name, payload) = responses::copy(&template, key, text);
            (Some(name.to_owned()), payload)
        }
        AnswerShape::BedrockConverse | AnswerShape::BedrockInvoke => (None, String::new()),
    }
}

/// A copy of a `BY_PLACE` channel's last delta event as sent: the channel's string carries
/// `text`, every other text delta in it is emptied (so nothing is sent twice), the rest is as
/// it was sent.
fn by_place_copy(
    shape: AnswerShape,
    key: ChannelKey,
    template: &str,
    text: &str,
) -> (Option<String>, String) {
    let value: Value = serde_json::from_str(template).unwrap_or(Value::Null);
    // Events that name themselves (Anthropic, Responses) are named by their type.
    let name = match shape {
        AnswerShape::Anthropic | AnswerShape::OpenAiResponses => {
            value.get("type").and_then(Value::as_str).map(str::to_owned)
        }
        _ => None,
    };
    let edited = (|| {
        let read = super::json_strings::read(template.as_bytes())?;
        let plan = plan(shape, &value, &read.strings);
        let mut first = true;
        let edits: Vec<crate::policy::redact::Edit> = plan
            .deltas
            .iter()
            .filter_map(|(at, each, _)| {
                let string = read.strings.get(*at)?;
                let carries = *each == key && std::mem::take(&mut first);
                let with = if carries { text } else { "" };
                Some(crate::policy::redact::Edit {
                    span: string.span.clone(),
                    text: serde_json::to_string(with).ok()?,
                })
            })
            .collect();
        let bytes = crate::policy::redact::apply(template.as_bytes(), edits)?;
        String::from_utf8(bytes).ok()
    })();
    (name, edited.unwrap_or_default())
}

/// The family's error event that ends a cut stream.
pub(super) fn error_event(
    shape: AnswerShape,
    code: &str,
    message: &str,
    sequence: u64,
) -> (Option<&'static str>, String) {
    match shape {
        // The openai SDK raises its `APIError` for an event whose data has an `error`
        // member; without it, `responses.stream()` fails on a missing completed event.
        AnswerShape::OpenAiResponses => (
            Some("error"),
            serde_json::json!({
                "type": "error", "code": code, "message": message, "param": null,
                "sequence_number": sequence,
                "error": {"type": code, "code": code, "message": message}
            })
            .to_string(),
        ),
        AnswerShape::Anthropic => (
            Some("error"),
            serde_json::json!({"type": "error", "error": {"type": code, "message": message}})
                .to_string(),
        ),
        AnswerShape::Gemini => (
            None,
            serde_json::json!({"error": {
                "code": if code == "response_blocked" { 403 } else { 502 },
                "message": message,
                "status": if code == "response_blocked" { "PERMISSION_DENIED" } else { "UNAVAILABLE" }
            }})
            .to_string(),
        ),
        _ => (
            None,
            serde_json::json!({"error": {"message": message, "type": code, "code": code}})
                .to_string(),
        ),
    }
}

/// A member of `value` as a small index (a choice, a block, a candidate), if it is one.
pub(super) fn index_of(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}
