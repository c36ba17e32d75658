//! The event stream reader: messages as AWS encodes them, every split of a body, every header
//! type, and the bodies it must refuse to read on (bad checksums, impossible lengths, cut
//! messages, oversized payloads, doubled headers).
// Lengths and offsets are computed from small test values.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

const WANTED: &[&[u8]] = &[b"metadata", b"chunk"];

fn event(event_type: &str, payload: &str) -> Vec<u8> {
    encode(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
    .unwrap()
}

/// What reading `body` in the given pieces hands on, and whether the reader failed and ended
/// between messages.
fn read(pieces: &[&[u8]]) -> (Vec<(String, String)>, bool, bool) {
    let mut stream = EventStream::new(WANTED);
    let mut events = Vec::new();
    for piece in pieces {
        stream.feed(piece, &mut |event: Event<'_>| {
            events.push((
                String::from_utf8_lossy(event.event_type).into_owned(),
                String::from_utf8_lossy(event.payload).into_owned(),
            ));
        });
    }
    (events, stream.failed(), stream.between_messages())
}

/// The result of reading `body` whole, checked to be the same under every two-way split and
/// byte by byte.
fn read_every_split(body: &[u8]) -> (Vec<(String, String)>, bool, bool) {
    let whole = read(&[body]);
    for at in 0..=body.len() {
        let (head, tail) = body.split_at(at);
        assert_eq!(read(&[head, tail]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(read(&bytes), whole, "byte by byte");
    whole
}

fn converse_stream() -> Vec<u8> {
    [
        event("messageStart", r#"{"role":"assistant","p":"abcd"}"#),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"ab"}"#,
        ),
        event("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        event("messageStop", r#"{"stopReason":"end_turn"}"#),
        event(
            "metadata",
            r#"{"usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19},"metrics":{"latencyMs":5}}"#,
        ),
    ]
    .concat()
}

#[test]
fn wanted_events_are_handed_on_under_every_split() {
    let (events, failed, between) = read_every_split(&converse_stream());
    assert!(!failed);
    assert!(between);
    assert_eq!(
        events,
        vec![(
            "metadata".to_owned(),
            r#"{"usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19},"metrics":{"latencyMs":5}}"#
                .to_owned()
        )]
    );
}

#[test]
fn an_empty_body_is_between_messages() {
    assert_eq!(read(&[]), (vec![], false, true));
}

#[test]
fn a_message_with_no_headers_and_no_payload_is_read() {
    let body = [encode(&[], b"").unwrap(), event("chunk", "{}")].concat();
    let (events, failed, between) = read_every_split(&body);
    assert_eq!(events, vec![("chunk".to_owned(), "{}".to_owned())]);
    assert!(!failed && between);
}

/// A header block with one value of every type, in AWS's encoding, before the event's own.
fn every_header_type() -> Vec<u8> {
    let mut block = Vec::new();
    let mut header = |name: &str, kind: u8, value: &[u8]| {
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(kind);
        block.extend_from_slice(value);
    };
    header("t", 0, b"");
    header("f", 1, b"");
    header("b", 2, &[0xff]);
    header("s", 3, &[0, 1]);
    header("i", 4, &[0, 0, 0, 1]);
    header("l", 5, &[0; 8]);
    header("bytes", 6, &[0, 3, 1, 2, 3]);
    header("str", 7, &[0, 2, b'h', b'i']);
    header("ts", 8, &[0; 8]);
    header("uuid", 9, &[7; 16]);
    header(":event-type", 7, &[0, 5, b'c', b'h', b'u', b'n', b'k']);
    header(":message-type", 7, &[0, 5, b'e', b'v', b'e', b'n', b't']);
    block
}

/// A message built from a raw header block, with correct checksums.
fn raw_message(block: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = (16 + block.len() + payload.len()) as u32;
    let mut message = Vec::new();
    message.extend_from_slice(&total.to_be_bytes());
    message.extend_from_slice(&(block.len() as u32).to_be_bytes());
    let crc = crc32fast::hash(&message);
    message.extend_from_slice(&crc.to_be_bytes());
    message.extend_from_slice(block);
    message.extend_from_slice(payload);
    let crc = crc32fast::hash(&message);
    message.extend_from_slice(&crc.to_be_bytes());
    message
}

#[test]
fn every_header_type_is_read_at_its_size() {
    let body = raw_message(&every_header_type(), b"{\"bytes\":\"\"}");
    let (events, failed, _) = read_every_split(&body);
    assert!(!failed);
    assert_eq!(
        events,
        vec![("chunk".to_owned(), "{\"bytes\":\"\"}".to_owned())]
    );
}

#[test]
fn an_unknown_header_type_fails_the_stream() {
    let mut block = every_header_type();
    block.extend_from_slice(&[1, b'x', 10]);
    let (events, failed, _) = read(&[&raw_message(&block, b"{}")]);
    assert!(events.is_empty());
    assert!(failed);
}

#[test]
fn a_header_that_runs_past_its_block_fails_the_stream() {
    for block in [
        &[5, b'a'][..],
        &[1, b'a'],
        &[1, b'a', 7, 0],
        &[1, b'a', 7, 0, 9, b'x'],
        &[1, b'a', 4, 0, 0],
        &[1, b'a', 9, 0],
    ] {
        let (_, failed, _) = read(&[&raw_message(block, b"{}")]);
        assert!(failed, "{block:?}");
    }
}

#[test]
fn an_event_type_given_twice_fails_the_stream() {
    let message = encode(
        &[
            (":event-type", "contentBlockDelta"),
            (":event-type", "metadata"),
            (":message-type", "event"),
        ],
        b"{}",
    )
    .unwrap();
    let (events, failed, _) = read(&[&message]);
    assert!(events.is_empty());
    assert!(failed);
}

#[test]
fn an_event_type_that_is_not_a_string_fails_the_stream() {
    let block = [&[11][..], b":event-type", &[6, 0, 5], b"chunk"].concat();
    let (_, failed, _) = read(&[&raw_message(&block, b"{}")]);
    assert!(failed);
}

#[test]
fn exceptions_and_other_events_are_not_handed_on() {
    let body = [
        encode(
            &[
                (":exception-type", "throttlingException"),
                (":event-type", "metadata"),
                (":message-type", "exception"),
            ],
            br#"{"message":"slow down"}"#,
        )
        .unwrap(),
        encode(&[(":event-type", "metadata")], b"{}").unwrap(),
        event("contentBlockDelta", "{}"),
    ]
    .concat();
    let (events, failed, between) = read_every_split(&body);
    assert!(events.is_empty());
    assert!(!failed && between);
}

#[test]
fn a_bad_checksum_anywhere_fails_the_stream_and_hides_what_follows() {
    let good = converse_stream();
    for at in 0..good.len() {
        let mut body = good.clone();
        body[at] ^= 0x01;
        let (events, failed, _) = read(&[&body]);
        // Every byte is covered by one of the two checksums (or is one).
        assert!(failed, "flipped byte {at} went unnoticed");
        assert!(
            events.is_empty(),
            "flipped byte {at}: the metadata event is last and must not be read"
        );
    }
}

#[test]
fn a_cut_message_is_not_between_messages() {
    let body = converse_stream();
    let boundaries: Vec<usize> = {
        let mut at = 0;
        let mut ends = vec![0];
        while at < body.len() {
            let total = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
            at += total;
            ends.push(at);
        }
        ends
    };
    for cut in 0..body.len() {
        let (_, failed, between) = read(&[&body[..cut]]);
        assert!(!failed);
        assert_eq!(between, boundaries.contains(&cut), "cut at {cut}");
    }
}

fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&total.to_be_bytes());
    prelude.extend_from_slice(&headers.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    prelude
}

#[test]
fn impossible_lengths_fail_at_the_prelude() {
    for (name, total, headers) in [
        ("shorter than the overhead", 15, 0),
        ("zero", 0, 0),
        ("headers past the end", 20, 5),
        ("over the message limit", MESSAGE_LIMIT + 1, 0),
        ("the largest u32", u32::MAX, 0),
        (
            "headers over the limit",
            16 + HEADERS_LIMIT + 1,
            HEADERS_LIMIT + 1,
        ),
        ("the largest headers", u32::MAX, u32::MAX),
    ] {
        let (_, failed, _) = read(&[&prelude(total, headers)]);
        assert!(failed, "{name}");
    }
}

#[test]
fn a_wanted_payload_over_the_limit_fails_but_another_passes_through() {
    let large = "x".repeat(PAYLOAD_LIMIT as usize + 1);
    let (events, failed, between) = read(&[&event("contentBlockDelta", &large)]);
    assert!(events.is_empty());
    assert!(!failed && between);
    let (events, failed, _) = read(&[&event("chunk", &large)]);
    assert!(events.is_empty());
    assert!(failed);
    let fits = "x".repeat(PAYLOAD_LIMIT as usize);
    let (events, failed, _) = read(&[&event("chunk", &fits)]);
    assert_eq!(events.len(), 1);
    assert!(!failed);
}

#[test]
fn nothing_is_read_after_a_failure() {
    let mut bad = event("metadata", "{}");
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let body = [bad, event("metadata", "{}")].concat();
    let (events, failed, _) = read_every_split(&body);
    assert!(events.is_empty());
    assert!(failed);
}

#[test]
fn encode_matches_a_known_aws_message() {
    // The example of AWS's event stream encoding as SDKs test it: no headers, payload
    // `{'foo':'bar'}` (aws-c-event-stream's `test_outgoing_no_op_valid` vector).
    let message = encode(&[], b"{'foo':'bar'}").unwrap();
    assert_eq!(
        message,
        [
            0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, 0x7b, 0x27,
            0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0xc3, 0x65, 0x39,
            0x36
        ]
    );
}
