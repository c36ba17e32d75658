//! A Gemini stream asked without `alt=sse` is one JSON array of answers, sent element by
//! element as the model writes. Its text is split across the elements exactly as an SSE
//! stream's is split across events, so scanning each string on its own would miss a secret
//! written half in one element and half in the next. The array is therefore held whole (as any
//! JSON answer) and then read as the stream it is: each element becomes one event for the
//! engine's stream editor, which joins a candidate's text across events, and the edited events
//! are put back into an array.

use crate::policy::answer::{
    AnswerScan, AnswerShape, Findings, StreamEditor, StreamStep, WholeAnswer,
};
use crate::policy::body::json_reader::{Reader, Token};
use crate::policy::usage::Framing;

/// Inspects a Gemini answer that is a JSON array of answers; `None` when `body` is not an
/// array (a `generateContent` answer, read by `inspect_whole`).
pub(super) fn inspect_gemini_array(
    body: &[u8],
    scan: &dyn AnswerScan,
    findings: &mut Findings,
) -> Option<WholeAnswer> {
    if body.trim_ascii_start().first() != Some(&b'[') {
        return None;
    }
    let Some(events) = as_events(body) else {
        findings.unreadable = true;
        return Some(WholeAnswer::Unreadable);
    };
    let Some(mut editor) = StreamEditor::new(AnswerShape::Gemini, Framing::Sse) else {
        findings.unreadable = true;
        return Some(WholeAnswer::Unreadable);
    };
    let step = editor.push(&events, true, scan);
    *findings = editor.findings().clone();
    Some(match step {
        StreamStep::Cut(_) => match findings.blocked_by {
            Some(rule) => WholeAnswer::Blocked { rule },
            None => {
                findings.unreadable = true;
                WholeAnswer::Unreadable
            }
        },
        // Nothing redacted: the provider's bytes go out (the editor's copy may have moved held
        // text between elements, which no client needs).
        StreamStep::Send(_) if findings.redactions == 0 => WholeAnswer::Unchanged,
        StreamStep::Send(sent) => match as_array(&sent) {
            Some(array) => WholeAnswer::Edited(array),
            None => {
                findings.unreadable = true;
                WholeAnswer::Unreadable
            }
        },
    })
}

/// The array's elements as server-sent events, one `data:` line each. A line break inside an
/// element can only be white space between tokens (JSON strings escape theirs), so it becomes
/// a space and the element stays one line.
fn as_events(body: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader::new(body).ok()?;
    if !matches!(reader.value().ok()?, Token::Array) {
        return None;
    }
    let mut events = Vec::with_capacity(body.len().saturating_add(64));
    let mut first = true;
    while reader.next_element(&mut first).ok()? {
        let (raw, _) = reader.raw_value().ok()?;
        events.extend_from_slice(b"data: ");
        events.extend(raw.bytes().map(|byte| match byte {
            b'\r' | b'\n' => b' ',
            byte => byte,
        }));
        events.extend_from_slice(b"\n\n");
    }
    reader.end().ok()?;
    Some(events)
}

/// The edited events back as one JSON array: each event's data is one element. Text the
/// editor held back arrives in a copy of its element, so an edited array may have more
/// elements than the provider's, the candidate's text joined across them unchanged but for
/// the markers. The editor
/// writes the events it was given, or copies of them, so each event is `data:` lines ended by
/// an empty line; anything else (a comment) carries no element.
fn as_array(events: &[u8]) -> Option<Vec<u8>> {
    let mut array = Vec::with_capacity(events.len());
    array.push(b'[');
    let mut data: Vec<u8> = Vec::new();
    let mut count = 0usize;
    // A last line break closes the last event as an empty line would.
    for line in events.split(|&byte| byte == b'\n').chain([&b""[..]]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(payload) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(payload.strip_prefix(b" ").unwrap_or(payload));
        } else if line.is_empty() && !data.is_empty() {
            if count > 0 {
                array.push(b',');
            }
            count = count.saturating_add(1);
            array.append(&mut data);
        }
    }
    array.push(b']');
    // What goes out must still be the array of answers the client asked for.
    serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(&array)
        .is_ok()
        .then_some(array)
}

#[cfg(test)]
#[path = "answer_array_tests.rs"]
mod tests;
