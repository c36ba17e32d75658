//! Usage from Bedrock's event streams, modelled on what `converse-stream` and
//! `invoke-with-response-stream` send: every split of the body gives the same usage, and a
//! stream that fails a check or is cut has none.
// Offsets are computed from small test values.
#![allow(clippy::arithmetic_side_effects)]

use base64::Engine as _;

use crate::policy::eventstream::encode;
use crate::policy::usage::{Framing, Usage, UsageFormat, UsageReader};

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

/// A `chunk` event wrapping one of the model's events, with Bedrock's padding field.
fn chunk(model_event: &str) -> Vec<u8> {
    let bytes = base64::engine::general_purpose::STANDARD.encode(model_event);
    event(
        "chunk",
        &format!(r#"{{"bytes":"{bytes}","p":"abcdefghij"}}"#),
    )
}

fn converse_stream(usage: &str) -> Vec<u8> {
    [
        event("messageStart", r#"{"p":"abcd","role":"assistant"}"#),
        event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"abcdefgh"}"#,
        ),
        event("contentBlockStop", r#"{"contentBlockIndex":0,"p":"ab"}"#),
        event("messageStop", r#"{"p":"abc","stopReason":"end_turn"}"#),
        event(
            "metadata",
            &format!(r#"{{"metrics":{{"latencyMs":412}},"p":"abcdef","usage":{usage}}}"#),
        ),
    ]
    .concat()
}

const MESSAGE_START: &str = r#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-5-sonnet-20240620","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":1}}}"#;
const MESSAGE_DELTA: &str = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#;

fn invoke_stream(message_stop: &str) -> Vec<u8> {
    [
        chunk(MESSAGE_START),
        chunk(r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
        chunk(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"{\"usage\":{\"output_tokens\":1}}"}}"#,
        ),
        chunk(r#"{"type":"content_block_stop","index":0}"#),
        chunk(MESSAGE_DELTA),
        chunk(message_stop),
    ]
    .concat()
}

const METRICS_STOP: &str = r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":7,"invocationLatency":640,"firstByteLatency":210,"cacheReadInputTokenCount":3,"cacheWriteInputTokenCount":2}}"#;

fn read(chunks: &[&[u8]]) -> Option<Usage> {
    let mut reader = UsageReader::new(UsageFormat::BedrockConverse, Framing::EventStream);
    for chunk in chunks {
        reader.feed(chunk);
    }
    reader.usage()
}

/// The same usage whole, at every two-way split and one byte at a time.
fn check(body: &[u8], expected: Option<Usage>) {
    assert_eq!(read(&[body]), expected, "whole");
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(read(&[a, b]), expected, "split at {at}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(read(&bytes), expected, "byte by byte");
}

fn usage(input: u64, output: u64, cached: u64) -> Option<Usage> {
    Some(Usage {
        input,
        output,
        cached,
        reasoning: 0,
        cache_write: 0,
    })
}

#[test]
fn converse_stream_usage_is_in_its_metadata_event() {
    check(
        &converse_stream(r#"{"inputTokens":12,"outputTokens":7,"totalTokens":19}"#),
        usage(12, 7, 0),
    );
    // Cache reads and writes are input, billed apart from `inputTokens`.
    check(
        &converse_stream(
            r#"{"inputTokens":12,"outputTokens":7,"totalTokens":29,"cacheReadInputTokens":8,"cacheWriteInputTokens":2}"#,
        ),
        Some(Usage {
            cache_write: 2,
            ..usage(22, 7, 8).unwrap()
        }),
    );
}

#[test]
fn invoke_stream_usage_comes_from_the_invocation_metrics() {
    // The metrics count 2 cache writes the model's events leave out: the larger counts win.
    let expected = Some(Usage {
        cache_write: 2,
        ..usage(17, 7, 3).unwrap()
    });
    check(&invoke_stream(METRICS_STOP), expected);
}

#[test]
fn invoke_stream_without_metrics_reads_the_models_own_usage() {
    check(
        &invoke_stream(r#"{"type":"message_stop"}"#),
        usage(15, 7, 3),
    );
}

#[test]
fn invoke_stream_with_no_output_count_has_no_usage() {
    let body = [chunk(MESSAGE_START), chunk(r#"{"type":"message_stop"}"#)].concat();
    check(&body, None);
}

#[test]
fn a_stream_cut_before_its_usage_has_none() {
    let body = converse_stream(r#"{"inputTokens":12,"outputTokens":7}"#);
    let last = body.len() - event("metadata", "").len();
    for cut in [0, 1, 12, last - 1, last] {
        assert_eq!(read(&[&body[..cut]]), None, "cut at {cut}");
    }
}

#[test]
fn a_stream_cut_inside_a_message_after_its_usage_has_none() {
    let mut body = converse_stream(r#"{"inputTokens":12,"outputTokens":7}"#);
    body.extend_from_slice(&event("messageStop", "{}")[..20]);
    check(&body, None);
}

#[test]
fn a_bad_checksum_anywhere_leaves_the_usage_unknown() {
    for good in [
        converse_stream(r#"{"inputTokens":12,"outputTokens":7}"#),
        invoke_stream(METRICS_STOP),
    ] {
        assert!(read(&[&good]).is_some());
        for at in (0..good.len()).step_by(7) {
            let mut body = good.clone();
            body[at] ^= 0x20;
            assert_eq!(read(&[&body]), None, "flipped byte {at}");
        }
    }
    // A bad message after the usage still leaves it unknown.
    let mut bad = event("messageStop", "{}");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let body = [
        converse_stream(r#"{"inputTokens":12,"outputTokens":7}"#),
        bad,
    ]
    .concat();
    check(&body, None);
}

#[test]
fn exceptions_and_other_events_carry_no_usage() {
    let exception = encode(
        &[
            (":exception-type", "modelStreamErrorException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"x","usage":{"inputTokens":1,"outputTokens":1}}"#,
    )
    .unwrap();
    let body = [
        event(
            "contentBlockDelta",
            r#"{"usage":{"inputTokens":1,"outputTokens":1}}"#,
        ),
        exception,
    ]
    .concat();
    check(&body, None);
}

#[test]
fn a_chunk_that_is_not_base64_json_gives_nothing() {
    for payload in [
        r#"{"bytes":"not base64!"}"#,
        r#"{"bytes":12}"#,
        r#"{"other":"eyJ9"}"#,
        r#"["bytes"]"#,
        "not json",
        // Base64 with bits set past its last byte: not a canonical encoding.
        r#"{"bytes":"eyJ9Zh=="}"#,
    ] {
        let body = [
            chunk(MESSAGE_START),
            event("chunk", payload),
            chunk(r#"{"type":"message_stop"}"#),
        ]
        .concat();
        check(&body, None);
    }
}

#[test]
fn unreadable_metrics_make_the_usage_unknown() {
    check(
        &invoke_stream(
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":"12","outputTokenCount":7}}"#,
        ),
        None,
    );
}

#[test]
fn lower_metrics_cannot_lower_the_models_usage() {
    // The model's events say 15 in (3 cached) and 7 out; metrics of 10 and 5 change nothing.
    check(
        &invoke_stream(
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":5}}"#,
        ),
        usage(15, 7, 3),
    );
}

#[test]
fn a_later_lower_metadata_event_cannot_lower_the_usage() {
    let body = [
        converse_stream(r#"{"inputTokens":5000,"outputTokens":2000}"#),
        event(
            "metadata",
            r#"{"usage":{"inputTokens":1,"outputTokens":1}}"#,
        ),
    ]
    .concat();
    check(&body, usage(5000, 2000, 0));
}

#[test]
fn the_input_is_known_before_the_stream_ends() {
    let mut reader = UsageReader::new(UsageFormat::BedrockConverse, Framing::EventStream);
    reader.feed(&chunk(MESSAGE_START));
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.partial_input(), Some(15));
    // A message that fails its checks does not undo what the provider said before it.
    reader.feed(&[0xff; 12]);
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.partial_input(), Some(15));
}

#[test]
fn memory_stays_bounded_on_a_long_stream() {
    let delta = event(
        "contentBlockDelta",
        &format!(r#"{{"delta":{{"text":"{}"}}}}"#, "a".repeat(60_000)),
    );
    let mut reader = UsageReader::new(UsageFormat::BedrockConverse, Framing::EventStream);
    for _ in 0..200 {
        reader.feed(&delta);
    }
    reader.feed(&event(
        "metadata",
        r#"{"usage":{"inputTokens":12,"outputTokens":7}}"#,
    ));
    assert_eq!(reader.usage(), usage(12, 7, 0));
}
