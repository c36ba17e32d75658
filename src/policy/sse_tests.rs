//! The line reader on streams cut at every awkward place (inside a CRLF, after a CR, inside a
//! line), and whole events found in held bytes, with and without the end of the stream.

use super::*;

/// The pieces of a stream cut into `chunks`, as text: each line end shown as `|`, an open CR
/// as `|cr`.
fn pieces(chunks: &[&[u8]]) -> Vec<String> {
    let mut lines = Lines::default();
    let mut seen = Vec::new();
    for chunk in chunks {
        for piece in lines.pieces(chunk) {
            seen.push(match piece {
                Piece::Text(range) => String::from_utf8_lossy(&chunk[range]).into_owned(),
                Piece::LineEnd { open_cr: true, .. } => "|cr".to_owned(),
                Piece::LineEnd { .. } => "|".to_owned(),
            });
        }
    }
    seen
}

macro_rules! pieces {
    ($($name:ident: [$($chunk:expr),*] => [$($piece:expr),*];)*) => {$(
        #[test]
        fn $name() {
            let expected: Vec<&str> = vec![$($piece),*];
            assert_eq!(pieces(&[$($chunk.as_slice()),*]), expected);
        }
    )*};
}

pieces! {
    lf: [b"a\nb\n"] => ["a", "|", "b", "|"];
    cr: [b"a\rb\r\r"] => ["a", "|", "b", "|", "|cr"];
    crlf_is_one_end: [b"a\r\n\r\nb"] => ["a", "|", "|", "b"];
    crlf_split_across_chunks: [b"a\r", b"\nb"] => ["a", "|cr", "b"];
    cr_then_cr_across_chunks: [b"a\r", b"\rb"] => ["a", "|cr", "|", "b"];
    lf_alone_after_chunk: [b"a\r", b"\n", b"\n"] => ["a", "|cr", "|"];
    text_split_across_chunks: [b"da", b"ta: x\n"] => ["da", "ta: x", "|"];
    empty_chunk_keeps_open_cr: [b"a\r", b"", b"\nb"] => ["a", "|cr", "b"];
}

/// The whole events of `data` and the length they span.
fn events(data: &[u8], end_of_stream: bool) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let complete = whole_events(data, end_of_stream, |event| {
        found.push(String::from_utf8_lossy(&data[event]).into_owned());
    });
    (found, complete)
}

#[test]
fn events_end_at_an_empty_line_their_terminators_included() {
    let (found, complete) = events(b"data: 1\n\ndata: 2\r\n\r\ndata: 3\n", false);
    assert_eq!(found, ["data: 1\n\n", "data: 2\r\n\r\n"]);
    assert_eq!(complete, 20);
}

#[test]
fn a_cr_at_the_end_waits_for_a_possible_lf() {
    let (found, complete) = events(b"data: 1\r\r", false);
    assert!(found.is_empty());
    assert_eq!(complete, 0);
    let (found, complete) = events(b"data: 1\r\r", true);
    assert_eq!(found, ["data: 1\r\r"]);
    assert_eq!(complete, 9);
}

#[test]
fn at_the_end_of_the_stream_a_last_event_needs_no_empty_line() {
    let (found, complete) = events(b"data: 1\n\ndata: 2", true);
    assert_eq!(found, ["data: 1\n\n", "data: 2"]);
    assert_eq!(complete, 16);
    let (found, _) = events(b"data: 1\n\n", true);
    assert_eq!(found, ["data: 1\n\n"]);
}
