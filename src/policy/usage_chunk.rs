//! Takes back the usage chunk the filter asked for on the client's behalf.
//!
//! To count the tokens of an OpenAI chat or completions stream, the filter adds
//! `stream_options.include_usage: true` to requests that did not ask for it. The provider then
//! ends the stream with one more event, whose `choices` list is empty and which carries the
//! usage. A client that did not ask for it may not expect it (`chunk.choices[0]` fails on it),
//! so that event is removed from what the client receives, after the filter has read it. Some
//! providers put the usage on a chunk that carries more (a choice, Azure's
//! `prompt_filter_results`): there only the `usage` member is taken out.
//!
//! Events pass on as soon as they are complete; only an event still arriving is held back,
//! up to `MAX_EVENT_BYTES`, beyond which the stream passes through unedited.

use std::ops::Range;

use super::body::json_reader::{Reader, Token};
use super::body::span::Span;
use super::sse::{whole_events, Lines, Piece};

/// The longest incomplete event held back.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct UsageChunkRemover {
    /// The start of an event whose end has not arrived yet.
    pending: Vec<u8>,
    /// An event outgrew `MAX_EVENT_BYTES`: everything passes through from then on.
    gave_up: bool,
}

impl UsageChunkRemover {
    pub fn new() -> Self {
        UsageChunkRemover::default()
    }

    /// Takes the next chunk of the body; returns what to send on instead of it, or `None` to
    /// send the chunk unchanged.
    pub fn edit(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        if self.gave_up {
            return None;
        }
        let joined;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            joined = pending;
            &joined
        };
        let (complete, changed) = scan(data, end_of_stream);
        if data.len() == chunk.len() && complete == chunk.len() && changed.is_empty() {
            return None;
        }
        let mut kept = keep(data.get(..complete).unwrap_or_default(), changed);
        let rest = data.get(complete..).unwrap_or_default();
        if rest.len() > MAX_EVENT_BYTES {
            // Never hold a stream hostage: send what is held and stop editing.
            self.gave_up = true;
            kept.extend_from_slice(rest);
        } else {
            self.pending = rest.to_vec();
        }
        Some(kept)
    }
}

/// An event to change, by its place, and what replaces it.
type Change = (Range<usize>, Vec<u8>);

/// The complete events of `data`: the length they span, and the events to change, each with
/// what replaces it (nothing, for an event removed whole). At the end of the stream
/// everything counts as complete.
fn scan(data: &[u8], end_of_stream: bool) -> (usize, Vec<Change>) {
    let mut changed = Vec::new();
    let complete = whole_events(data, end_of_stream, |event| {
        if let Some(replacement) = data.get(event.clone()).and_then(without_usage) {
            changed.push((event, replacement));
        }
    });
    (complete, changed)
}

/// `data` with the changed events replaced.
fn keep(data: &[u8], changed: Vec<Change>) -> Vec<u8> {
    let mut kept = Vec::with_capacity(data.len());
    let mut from = 0;
    for (range, replacement) in changed {
        kept.extend_from_slice(data.get(from..range.start).unwrap_or_default());
        kept.extend_from_slice(&replacement);
        from = range.end;
    }
    kept.extend_from_slice(data.get(from..).unwrap_or_default());
    kept
}

/// The event without the usage the provider added for `include_usage`; `None` when it
/// carries none (kept as it is). A chunk that carries nothing but that usage (empty
/// `choices`, the envelope every chunk repeats) is removed whole (an empty replacement); a
/// chunk that carries more — a choice's content or `finish_reason`, Azure's
/// `prompt_filter_results`, a provider's own additions — loses only its `usage` member and
/// keeps the rest as the provider wrote it, so the client gets what it would have without
/// `include_usage`.
fn without_usage(event: &[u8]) -> Option<Vec<u8>> {
    // Cheap test first: every chunk of such a stream has `"usage":null`; only this one has an
    // object there.
    if !contains_usage_object(event) {
        return None;
    }
    let mut payload = Vec::new();
    // Where the payload of each `data:` line starts in the event.
    let mut data_at = Vec::new();
    for piece in Lines::default().pieces(event) {
        let Piece::Text(line) = piece else {
            continue;
        };
        let start = line.start;
        if let Some(data) = event.get(line).and_then(|line| line.strip_prefix(b"data:")) {
            if !payload.is_empty() {
                payload.push(b'\n');
            }
            let spaced = data.first() == Some(&b' ');
            data_at.push(start.saturating_add(if spaced { 6 } else { 5 }));
            payload.extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
        }
    }
    let Ok(serde_json::Value::Object(chunk)) = serde_json::from_slice(&payload) else {
        return None;
    };
    if !chunk.get("usage").is_some_and(serde_json::Value::is_object) {
        return None;
    }
    let usage_only = chunk.iter().all(|(key, value)| match key.as_str() {
        "choices" => value.as_array().is_some_and(Vec::is_empty),
        "usage" => true,
        _ => ENVELOPE.contains(&key.as_str()) && !(value.is_object() || value.is_array()),
    }) && chunk.contains_key("choices");
    if usage_only {
        return Some(Vec::new());
    }
    // Only the member's bytes go; every other byte of the event (its other fields, its line
    // ends, its blank line or the lack of one) stays as the provider wrote it. A payload
    // spread over several `data:` lines keeps its usage: a cut could span their prefixes.
    let [at] = data_at.as_slice() else {
        return None;
    };
    let cut = member_cut(&payload, "usage")?;
    let start = at.checked_add(cut.start)?;
    let end = at.checked_add(cut.end)?;
    let mut edited = Vec::with_capacity(event.len());
    edited.extend_from_slice(event.get(..start)?);
    edited.extend_from_slice(event.get(end..)?);
    Some(edited)
}

/// The bytes of the JSON object `payload` that hold its top-level member `key` (with its
/// comma), so that every other byte stays as written; `None` when it is not an object or has
/// no such member.
fn member_cut(payload: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
    let mut reader = Reader::new(payload).ok()?;
    if !matches!(reader.value().ok()?, Token::Object) {
        return None;
    }
    // Each member's start (its key's opening quote) and end (its value's last byte).
    let mut members: Vec<(Span, bool)> = Vec::new();
    let mut first = true;
    while let Some((name, name_span)) = reader.next_key(&mut first).ok()? {
        let is_key = name.as_str() == key;
        reader.colon().ok()?;
        let (_, value_span) = reader.raw_value().ok()?;
        members.push((Span::new(name_span.start, value_span.end), is_key));
    }
    let at = members.iter().position(|(_, is_key)| *is_key)?;
    let (member, _) = members.get(at)?;
    // Take the comma before it, or, for the first member, the one after it.
    let cut = match (
        at.checked_sub(1).and_then(|before| members.get(before)),
        members.get(at.saturating_add(1)),
    ) {
        (Some((before, _)), _) => before.end..member.end,
        (None, Some((after, _))) => member.start..after.start,
        (None, None) => member.start..member.end,
    };
    Some(cut)
}

/// The members every chunk of an OpenAI-style stream repeats, which say nothing of their own.
const ENVELOPE: [&str; 7] = [
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
    "obfuscation",
];

fn contains_usage_object(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let mut rest = event;
    while let Some(found) = rest.windows(KEY.len()).position(|window| window == KEY) {
        rest = rest
            .get(found.saturating_add(KEY.len())..)
            .unwrap_or_default();
        let mut value = rest.iter().filter(|byte| !byte.is_ascii_whitespace());
        if value.next() == Some(&b':') && value.next() == Some(&b'{') {
            return true;
        }
    }
    false
}

#[cfg(test)]
#[path = "usage_chunk_tests.rs"]
mod tests;
