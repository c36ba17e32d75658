//! Server-Sent Events framing: a response body arriving in chunks, cut into lines at CR, LF
//! or CRLF wherever the chunks split it, and lines into events at each empty line.
//!
//! Both readers of event streams use it: `usage` reads the `data:` payloads as they pass,
//! holding nothing back, and `usage_chunk` finds whole events in the bytes it holds.

use std::ops::Range;

/// A piece of the stream, by its place in the chunk it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text of the current line: never empty, never holding CR or LF. A line split across
    /// chunks arrives in several pieces.
    Text(Range<usize>),
    /// The end of a line: its CR, LF or CRLF. `open_cr` is a CR that ends the chunk: the LF
    /// of a CRLF may still come, and is then skipped as part of this line end.
    LineEnd { bytes: Range<usize>, open_cr: bool },
}

/// Where the stream stands between chunks: a line end that was a CR, whose LF may follow.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    after_cr: bool,
}

impl Lines {
    /// The pieces of the next chunk.
    pub(crate) fn pieces<'a>(&'a mut self, chunk: &'a [u8]) -> Pieces<'a> {
        Pieces {
            lines: self,
            chunk,
            at: 0,
        }
    }
}

pub(crate) struct Pieces<'a> {
    lines: &'a mut Lines,
    chunk: &'a [u8],
    at: usize,
}

fn is_line_end(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        let mut byte = *self.chunk.get(self.at)?;
        if std::mem::take(&mut self.lines.after_cr) && byte == b'\n' {
            // The second half of a CRLF whose CR ended the last chunk.
            self.at = self.at.saturating_add(1);
            byte = *self.chunk.get(self.at)?;
        }
        let start = self.at;
        if !is_line_end(byte) {
            let rest = self.chunk.get(start..).unwrap_or_default();
            let length = rest
                .iter()
                .position(|&b| is_line_end(b))
                .unwrap_or(rest.len());
            self.at = start.saturating_add(length);
            return Some(Piece::Text(start..self.at));
        }
        let next = self.chunk.get(start.saturating_add(1)).copied();
        let length = if byte == b'\r' && next == Some(b'\n') {
            2
        } else {
            1
        };
        self.at = start.saturating_add(length);
        let open_cr = byte == b'\r' && next.is_none();
        self.lines.after_cr = open_cr;
        Some(Piece::LineEnd {
            bytes: start..self.at,
            open_cr,
        })
    }
}

/// The whole events at the start of `data`, which starts at an event's start: calls `event`
/// with each one's range (its closing empty line included) and returns the length they span.
/// A CR that ends `data` may be half a CRLF, so the line it ends is not known to be whole.
/// At the end of the stream everything is whole, a last event without its empty line too.
pub(crate) fn whole_events(
    data: &[u8],
    end_of_stream: bool,
    mut event: impl FnMut(Range<usize>),
) -> usize {
    let mut lines = Lines::default();
    let mut event_start = 0;
    let mut line_is_empty = true;
    for piece in lines.pieces(data) {
        match piece {
            Piece::Text(_) => line_is_empty = false,
            Piece::LineEnd { open_cr: true, .. } if !end_of_stream => break,
            Piece::LineEnd { bytes, .. } => {
                if line_is_empty {
                    event(event_start..bytes.end);
                    event_start = bytes.end;
                }
                line_is_empty = true;
            }
        }
    }
    if !end_of_stream {
        return event_start;
    }
    if event_start < data.len() {
        event(event_start..data.len());
    }
    data.len()
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
