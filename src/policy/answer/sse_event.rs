//! One whole server-sent event read as a client reads it (field names, one optional space
//! after the colon, `data:` lines joined by LF, comments), and written back in one canonical
//! form, so that what the client parses is exactly what was inspected.

use crate::policy::sse::{Lines, Piece};

#[derive(Debug, Default)]
pub(super) struct SseEvent {
    pub name: Option<Vec<u8>>,
    /// The `data:` lines joined by LF; `None` when the event has none (clients dispatch
    /// nothing for it).
    pub data: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub retry: Option<Vec<u8>>,
    /// It had any line at all (a comment-only event is a keep-alive).
    pub any_line: bool,
}

/// Reads one whole event (its closing empty line included, or not at the end of a stream).
pub(super) fn parse(raw: &[u8]) -> SseEvent {
    let mut event = SseEvent::default();
    let mut line: Vec<u8> = Vec::new();
    let mut lines = Lines::default();
    for piece in lines.pieces(raw) {
        match piece {
            Piece::Text(range) => line.extend_from_slice(raw.get(range).unwrap_or_default()),
            Piece::LineEnd { .. } => {
                field(&mut event, &line);
                line.clear();
            }
        }
    }
    field(&mut event, &line);
    event
}

fn field(event: &mut SseEvent, line: &[u8]) {
    if line.is_empty() {
        return;
    }
    event.any_line = true;
    if line.first() == Some(&b':') {
        return;
    }
    let (name, value) = match line.iter().position(|&byte| byte == b':') {
        Some(at) => {
            let value = line.get(at.saturating_add(1)..).unwrap_or_default();
            (
                line.get(..at).unwrap_or_default(),
                value.strip_prefix(b" ").unwrap_or(value),
            )
        }
        None => (line, &b""[..]),
    };
    match name {
        b"data" => match &mut event.data {
            Some(data) => {
                data.push(b'\n');
                data.extend_from_slice(value);
            }
            None => event.data = Some(value.to_vec()),
        },
        b"event" => event.name = Some(value.to_vec()),
        // An id with a NUL is ignored by clients.
        b"id" if !value.contains(&0) => event.id = Some(value.to_vec()),
        b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
            event.retry = Some(value.to_vec())
        }
        _ => {}
    }
}

/// Writes an event: its name, id and retry as read, then `data` one line per LF in it.
pub(super) fn write(out: &mut Vec<u8>, name: Option<&[u8]>, event: &SseEvent, data: &[u8]) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name);
        out.push(b'\n');
    }
    if let Some(id) = &event.id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }
    if let Some(retry) = &event.retry {
        out.extend_from_slice(b"retry: ");
        out.extend_from_slice(retry);
        out.push(b'\n');
    }
    for line in data.split(|&byte| byte == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Writes a new event of the editor's own: a name (if any) and one JSON payload.
pub(super) fn write_new(out: &mut Vec<u8>, name: Option<&str>, data: &str) {
    write(
        out,
        name.map(str::as_bytes),
        &SseEvent::default(),
        data.as_bytes(),
    );
}
