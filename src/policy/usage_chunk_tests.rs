// Test sizes are small; their arithmetic cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

const CHUNK_1: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n";
const CHUNK_2: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
const USAGE: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// Feeds `pieces` in turn and joins what would reach the client.
fn run(pieces: &[&[u8]]) -> Vec<u8> {
    let mut remover = UsageChunkRemover::new();
    let mut out = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        match remover.edit(piece, last) {
            Some(edited) => out.extend_from_slice(&edited),
            None => out.extend_from_slice(piece),
        }
    }
    out
}

#[test]
fn the_usage_chunk_is_removed_at_every_split() {
    let stream = [CHUNK_1, CHUNK_2, USAGE, DONE].concat();
    let expected = [CHUNK_1, CHUNK_2, DONE].concat();
    assert_eq!(
        String::from_utf8(run(&[stream.as_bytes()])).unwrap(),
        expected
    );
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        assert_eq!(
            String::from_utf8(run(&[a, b])).unwrap(),
            expected,
            "split at {split}"
        );
    }
    let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
    assert_eq!(String::from_utf8(run(&bytes)).unwrap(), expected);
}

#[test]
fn crlf_streams_and_spaced_json_are_handled() {
    let crlf = |event: &str| event.replace('\n', "\r\n");
    let usage = crlf(
        &USAGE
            .replace("\"choices\":[]", "\"choices\": []")
            .replace("\"usage\":{", "\"usage\" : {"),
    );
    let stream = [crlf(CHUNK_1), usage, crlf(DONE)].concat();
    let expected = [crlf(CHUNK_1), crlf(DONE)].concat();
    for split in 0..=stream.len() {
        let (a, b) = stream.as_bytes().split_at(split);
        assert_eq!(
            String::from_utf8(run(&[a, b])).unwrap(),
            expected,
            "split at {split}"
        );
    }
}

#[test]
fn whole_events_without_the_usage_chunk_pass_unchanged() {
    let mut remover = UsageChunkRemover::new();
    for event in [CHUNK_1, CHUNK_2, DONE] {
        assert_eq!(remover.edit(event.as_bytes(), false), None, "{event}");
    }
    assert_eq!(remover.edit(b"", true), None);
}

#[test]
fn usage_on_a_chunk_with_choices_is_taken_out_and_the_choice_kept() {
    // Some OpenAI-compatible providers put the usage on the last content chunk.
    let with_choices = CHUNK_2.replace("\"usage\":null", "\"usage\":{\"prompt_tokens\":1}");
    let stream = [CHUNK_1, &with_choices, DONE].concat();
    let without = CHUNK_2.replace(",\"usage\":null", "");
    assert_eq!(
        String::from_utf8(run(&[stream.as_bytes()])).unwrap(),
        [CHUNK_1, &without, DONE].concat()
    );
}

#[test]
fn an_unterminated_last_event_is_still_judged_at_the_end() {
    let stream = [CHUNK_1, USAGE.trim_end()].concat();
    assert_eq!(
        String::from_utf8(run(&[stream.as_bytes()])).unwrap(),
        CHUNK_1
    );
    let partial = [CHUNK_1, "data: {\"choi"].concat();
    assert_eq!(
        String::from_utf8(run(&[partial.as_bytes()])).unwrap(),
        partial
    );
}

#[test]
fn an_oversized_event_stops_the_editing_without_losing_bytes() {
    let huge = format!("data: {{\"x\":\"{}", "a".repeat(MAX_EVENT_BYTES + 10));
    let stream = [CHUNK_1, &huge, "\"}\n\n", USAGE].concat();
    let bytes = stream.as_bytes();
    let (a, rest) = bytes.split_at(CHUNK_1.len() + 100);
    let (b, c) = rest.split_at(huge.len() - 100);
    assert_eq!(run(&[a, b, c]), bytes);
}

/// Which events are taken out, and what is left of the others: a chunk with nothing but
/// usage (and the envelope every chunk repeats) is removed whole; a chunk with anything more
/// loses only its `usage` member; a chunk without a usage object is kept as it is. One case a
/// line: the event's data, and the data that reaches the client (`REMOVED`, `KEPT`, or the
/// edited data).
macro_rules! removal {
    ($($name:ident: $data:expr => $left:expr;)*) => {$(
        #[test]
        fn $name() {
            let event = format!("data: {}\n\n", $data);
            let stream = [CHUNK_1, event.as_str(), DONE].concat();
            let expected = match $left {
                REMOVED => [CHUNK_1, DONE].concat(),
                KEPT => stream.clone(),
                edited => [CHUNK_1, &format!("data: {edited}\n\n"), DONE].concat(),
            };
            for split in 0..=stream.len() {
                let (a, b) = stream.as_bytes().split_at(split);
                assert_eq!(String::from_utf8(run(&[a, b])).unwrap(), expected, "split at {split}");
            }
        }
    )*};
}

const REMOVED: &str = "<removed>";
const KEPT: &str = "<kept>";

removal! {
    removal_openai_usage_chunk: r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","system_fingerprint":"fp","service_tier":"default","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"# => REMOVED;
    removal_obfuscation_padding: r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1},"obfuscation":"aGk"}"# => REMOVED;
    removal_minimal: r#"{"choices":[],"usage":{}}"# => REMOVED;
    removal_null_envelope: r#"{"id":"c1","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":1}}"# => REMOVED;
    removal_strips_usage_beside_azure_filter_results: r#"{"id":"c1","choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],"usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#;
    removal_strips_usage_before_azure_filter_results: r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1}, "prompt_filter_results":[]}"# => r#"{"id":"c1","choices":[], "prompt_filter_results":[]}"#;
    removal_strips_usage_beside_content_filter_results: r#"{"id":"c1","choices":[],"content_filter_results":{},"usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":[],"content_filter_results":{}}"#;
    removal_strips_usage_beside_citations: r#"{"id":"c1","choices":[],"citations":["https://example.com"],"usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":[],"citations":["https://example.com"]}"#;
    removal_strips_usage_beside_unknown_scalar: r#"{"id":"c1","choices":[],"note":"x","usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":[],"note":"x"}"#;
    removal_strips_usage_beside_object_in_envelope_field: r#"{"id":{"a":1},"choices":[],"usage":{"prompt_tokens":1}}"# => r#"{"id":{"a":1},"choices":[]}"#;
    removal_strips_usage_from_a_chunk_with_content: r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"!"}}],"usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"!"}}]}"#;
    removal_strips_usage_written_first: r#"{ "usage" : {"prompt_tokens":1} , "choices":[{"index":0,"delta":{"content":"!"}}]}"# => r#"{ "choices":[{"index":0,"delta":{"content":"!"}}]}"#;
    removal_strips_usage_without_choices: r#"{"id":"c1","usage":{"prompt_tokens":1}}"# => r#"{"id":"c1"}"#;
    removal_strips_usage_beside_choices_not_a_list: r#"{"id":"c1","choices":{},"usage":{"prompt_tokens":1}}"# => r#"{"id":"c1","choices":{}}"#;
    removal_keeps_null_usage: r#"{"id":"c1","choices":[],"usage":null}"# => KEPT;
    removal_keeps_a_usage_word_in_text: r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"\"usage\":{"}}],"usage":null}"# => KEPT;
    removal_strips_usage_beside_error: r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":1},"error":{"message":"x"}}"# => r#"{"id":"c1","choices":[],"error":{"message":"x"}}"#;
}

#[test]
fn taking_out_usage_keeps_every_other_byte_of_the_event() {
    // The event's name, its unterminated end and a stray line stay as the provider sent them;
    // only the `usage` member (with its comma) goes.
    let body: &[u8] = b"event: response.created\ndata: {\"tbject\":\"response\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tometadata\":{}}}\n\x0e";
    let out = run(&[body]);
    assert_eq!(
        out,
        b"event: response.created\ndata: {\"tbject\":\"response\",\"status\":\"completed\",\"output\":[]}\n\x0e".to_vec()
    );
    // JSON over several data lines keeps its usage rather than lose its line structure.
    let multi: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\ndata: \"usage\":{\"prompt_tokens\":1}}\n\n";
    assert_eq!(run(&[multi]), multi.to_vec());
}
