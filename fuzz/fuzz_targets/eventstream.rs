//! An AWS event stream body through `EventStream` and the Bedrock usage reader, fed in chunks
//! cut where the input says: what is handed on, whether the reading failed, and the usage read
//! must not depend on the cuts, and nothing may panic.
//!
//! Input: byte 0 picks the mode (even: the rest after the cuts is the raw body; odd: it is a
//! script of messages, so that bodies with valid checksums are reached); byte 1 the number of
//! cuts (modulo 8), each then given by two bytes (little-endian, modulo the body's length + 1).
//! A script is a list of messages, each: a byte whose low two bits pick the event type
//! (`metadata`, `chunk`, `contentBlockDelta`, an exception), whose bit 2 says "wrap the payload
//! in base64 as a chunk's `bytes`" and whose bit 3 says "flip a bit of this message"; a length
//! byte; then that many payload bytes. For a script, the oracle knows what must be handed on:
//! every wanted event of the messages before the first flipped one, in order, and the reading
//! fails exactly when a message was flipped.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use posturio::policy::eventstream::{encode, Event, EventStream};
use posturio::policy::usage::{Framing, Usage, UsageFormat, UsageReader};

const WANTED: &[&[u8]] = &[b"metadata", b"chunk"];

/// What the reader hands on and whether it failed and ended between messages.
type Reading = (Vec<(Vec<u8>, Vec<u8>)>, bool, bool);

fn frames<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Reading {
    let mut stream = EventStream::new(WANTED);
    let mut events = Vec::new();
    for chunk in chunks {
        stream.feed(chunk, &mut |event: Event<'_>| {
            events.push((event.event_type.to_vec(), event.payload.to_vec()));
        });
    }
    (events, stream.failed(), stream.between_messages())
}

fn usage<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Option<Usage>, Option<u64>) {
    let mut reader = UsageReader::new(UsageFormat::BedrockConverse, Framing::EventStream);
    for chunk in chunks {
        reader.feed(chunk);
    }
    (reader.usage(), reader.partial_input())
}

/// A scripted body, and the events the reader must hand on and whether it must fail.
fn script(mut rest: &[u8]) -> (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, bool) {
    let mut body = Vec::new();
    let mut expected = Vec::new();
    let mut broken = false;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let (event_type, message_type) = match control & 3 {
            0 => ("metadata", "event"),
            1 => ("chunk", "event"),
            2 => ("contentBlockDelta", "event"),
            _ => ("metadata", "exception"),
        };
        let payload = if control & 4 != 0 {
            let bytes = base64::engine::general_purpose::STANDARD.encode(payload);
            format!(r#"{{"bytes":"{bytes}"}}"#).into_bytes()
        } else {
            payload.to_vec()
        };
        let mut message = encode(
            &[
                (":event-type", event_type),
                (":content-type", "application/json"),
                (":message-type", message_type),
            ],
            &payload,
        )
        .unwrap();
        if control & 8 != 0 {
            let at = usize::from(control >> 4) * 7 % message.len();
            message[at] ^= 0x40;
            broken = true;
        }
        if !broken && message_type == "event" && event_type != "contentBlockDelta" {
            expected.push((event_type.as_bytes().to_vec(), payload));
        }
        body.extend_from_slice(&message);
    }
    (body, expected, broken)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 8);
    if rest.len() < 2 * count {
        return;
    }
    let (offsets, rest) = rest.split_at(2 * count);
    let (body, oracle) = if mode % 2 == 0 {
        (rest.to_vec(), None)
    } else {
        let (body, expected, broken) = script(rest);
        (body, Some((expected, broken)))
    };
    let mut cuts: Vec<usize> = offsets
        .chunks(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &cut in &cuts {
        chunks.push(&body[at..cut]);
        at = cut;
    }
    chunks.push(&body[at..]);

    let whole = frames([body.as_slice()]);
    assert_eq!(frames(chunks.iter().copied()), whole, "cut at {cuts:?}");
    assert_eq!(frames(body.chunks(1)), whole, "byte by byte");
    let read = usage([body.as_slice()]);
    assert_eq!(usage(chunks.iter().copied()), read, "usage, cut at {cuts:?}");
    assert_eq!(usage(body.chunks(1)), read, "usage, byte by byte");

    let (events, failed, between) = whole;
    if failed || !between {
        assert_eq!(read.0, None, "usage read from a stream that failed or was cut");
    }
    if let Some(usage) = read.0 {
        assert!(usage.cached <= usage.input && usage.reasoning <= usage.output);
        assert!(usage.cache_write <= usage.input - usage.cached);
    }
    if let Some((expected, broken)) = oracle {
        if !broken {
            assert!(!failed && between, "a well-formed body failed");
            assert_eq!(events, expected);
        } else {
            // CRC-32 catches every single-bit error, in the prelude or after it.
            assert!(failed, "a flipped bit went unnoticed");
            assert_eq!(events, expected);
        }
    }
});
