//! Takes back the usage chunk the filter asked for on the client's behalf.
//!
//! To count the tokens of an OpenAI chat or completions stream, the filter adds
//! `stream_options.include_usage: true` to requests that did not ask for it. The provider then
//! ends the stream with one more event, whose `choices` list is empty and which carries the
//! usage. A client that did not ask for it may not expect it (`chunk.choices[0]` fails on it),
//! so that event is removed from what the client receives, after the filter has read it.
//!
//! Events pass on as soon as they are complete; only an event still arriving is held back,
//! up to `MAX_EVENT_BYTES`, beyond which the stream passes through unedited.

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
        let (complete, removed) = scan(data, end_of_stream);
        if data.len() == chunk.len() && complete == chunk.len() && removed.is_empty() {
            return None;
        }
        let mut kept = keep(data.get(..complete).unwrap_or_default(), &removed);
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

/// The complete events of `data`: the length they span, and the ranges of the events to
/// remove. At the end of the stream everything counts as complete.
fn scan(data: &[u8], end_of_stream: bool) -> (usize, Vec<std::ops::Range<usize>>) {
    let mut removed = Vec::new();
    let complete = whole_events(data, end_of_stream, |event| {
        if data.get(event.clone()).is_some_and(is_usage_only) {
            removed.push(event);
        }
    });
    (complete, removed)
}

/// `data` without the removed ranges.
fn keep(data: &[u8], removed: &[std::ops::Range<usize>]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(data.len());
    let mut from = 0;
    for range in removed {
        kept.extend_from_slice(data.get(from..range.start).unwrap_or_default());
        from = range.end;
    }
    kept.extend_from_slice(data.get(from..).unwrap_or_default());
    kept
}

/// An event whose data is a chunk that carries nothing but usage: the one the provider adds
/// for `include_usage`. Its `choices` is empty, its `usage` an object, and every other member
/// is one of the envelope fields every chunk repeats, holding a plain value. A chunk with
/// anything more (Azure's `prompt_filter_results`, a provider's own additions) is the
/// provider speaking to the client, and is kept whole.
fn is_usage_only(event: &[u8]) -> bool {
    // Cheap test first: every chunk of such a stream has `"usage":null`; only this one has an
    // object there.
    if !contains_usage_object(event) {
        return false;
    }
    let mut payload = Vec::new();
    for piece in Lines::default().pieces(event) {
        let Piece::Text(line) = piece else {
            continue;
        };
        if let Some(data) = event.get(line).and_then(|line| line.strip_prefix(b"data:")) {
            if !payload.is_empty() {
                payload.push(b'\n');
            }
            payload.extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
        }
    }
    let Ok(serde_json::Value::Object(chunk)) = serde_json::from_slice(&payload) else {
        return false;
    };
    chunk.iter().all(|(key, value)| match key.as_str() {
        "choices" => value.as_array().is_some_and(Vec::is_empty),
        "usage" => value.is_object(),
        _ => ENVELOPE.contains(&key.as_str()) && !(value.is_object() || value.is_array()),
    }) && chunk.get("usage").is_some_and(serde_json::Value::is_object)
        && chunk.contains_key("choices")
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
