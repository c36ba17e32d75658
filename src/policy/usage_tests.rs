//! The usage reader on bodies modelled on each provider's wire format, at every split, and on
//! the edge cases: nested and look-alike keys, escapes, SSE framing, limits, malformed input.
// Split points and expected sums are computed from small test values.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

const OPENAI_CHAT: &str = r#"{
  "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
  "object": "chat.completion",
  "created": 1741569952,
  "model": "gpt-4.1-2025-04-14",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Sure: {\"usage\": {\"prompt_tokens\": 999, \"completion_tokens\": 999}} \\ caf\u00e9 \ud83d\ude00 ✓",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1219,
    "completion_tokens": 10,
    "total_tokens": 1229,
    "prompt_tokens_details": {
      "cached_tokens": 1024,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_4b9ba5c1a2"
}
"#;

const OPENAI_CHAT_STREAM: &str = concat!(
    r#"data: {"id":"chatcmpl-AyPRgcS2GbcdDLAG4UYqLBlT8TRSn","object":"chat.completion.chunk","created":1738960440,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-AyPRgcS2GbcdDLAG4UYqLBlT8TRSn","object":"chat.completion.chunk","created":1738960440,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"content":"Hello \"usage\":{\"prompt_tokens\":1}"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-AyPRgcS2GbcdDLAG4UYqLBlT8TRSn","object":"chat.completion.chunk","created":1738960440,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-AyPRgcS2GbcdDLAG4UYqLBlT8TRSn","object":"chat.completion.chunk","created":1738960440,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_EMBEDDINGS: &str = r#"{
  "object": "list",
  "data": [
    {
      "object": "embedding",
      "index": 0,
      "embedding": [-0.006929283495992422, -0.005336422007530928, 0.00047350498, -2.4e-05]
    }
  ],
  "model": "text-embedding-3-small",
  "usage": {
    "prompt_tokens": 5,
    "total_tokens": 5
  }
}"#;

const OPENAI_RESPONSES: &str = r#"{
  "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  "object": "response",
  "created_at": 1741476777,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "instructions": null,
  "max_output_tokens": null,
  "model": "gpt-4o-2024-08-06",
  "output": [
    {
      "type": "message",
      "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
      "status": "completed",
      "role": "assistant",
      "content": [
        {
          "type": "output_text",
          "text": "The image depicts a scenic landscape with a wooden boardwalk.",
          "annotations": []
        }
      ]
    }
  ],
  "parallel_tool_calls": true,
  "previous_response_id": null,
  "reasoning": {"effort": null, "summary": null},
  "store": true,
  "temperature": 1.0,
  "text": {"format": {"type": "text"}},
  "tool_choice": "auto",
  "tools": [],
  "top_p": 1.0,
  "truncation": "disabled",
  "usage": {
    "input_tokens": 328,
    "input_tokens_details": {"cached_tokens": 128},
    "output_tokens": 52,
    "output_tokens_details": {"reasoning_tokens": 16},
    "total_tokens": 380
  },
  "user": null,
  "metadata": {"usage": {"input_tokens": 1, "output_tokens": 1}}
}"#;

const OPENAI_RESPONSES_STREAM: &str = concat!(
    "event: response.created\n",
    r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}"#,
    "\n\n",
    "event: response.in_progress\n",
    r#"data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","status":"in_progress","output":[],"usage":null,"metadata":{}}}"#,
    "\n\n",
    "event: response.output_item.added\n",
    r#"data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"delta":"Hi \"usage\":{\"input_tokens\":7,\"output_tokens\":7}","logprobs":[]}"#,
    "\n\n",
    "event: response.output_text.done\n",
    r#"data: {"type":"response.output_text.done","sequence_number":5,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"text":"Hi there!","logprobs":[]}"#,
    "\n\n",
    "event: response.completed\n",
    r#"data: {"type":"response.completed","sequence_number":8,"response":{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"status":"completed","error":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there!","annotations":[]}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":32},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48},"user":null,"metadata":{"usage":{"input_tokens":5,"output_tokens":5}}}}"#,
    "\n\n",
);

const ANTHROPIC: &str = r#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-20250514",
  "content": [
    {"type": "text", "text": "Hello! {\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}"}
  ],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 12,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 2048,
    "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 6,
    "service_tier": "standard"
  }
}"#;

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":1500,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello \"usage\": {\"output_tokens\": 99}"}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

const GEMINI: &str = r#"{
  "candidates": [
    {
      "content": {
        "parts": [{"text": "Hi there, \"usageMetadata\": {\"promptTokenCount\": 1}"}],
        "role": "model"
      },
      "finishReason": "STOP",
      "avgLogprobs": -0.0537
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 2051,
    "candidatesTokenCount": 9,
    "totalTokenCount": 2110,
    "cachedContentTokenCount": 2048,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2051}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 2048}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
    "thoughtsTokenCount": 50
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "yVzqaLOcGvD0xN8Po5WkqQ8"
}"#;

/// `streamGenerateContent` without `alt=sse`: one JSON array, element by element.
const GEMINI_ARRAY: &str = "[{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"parts\": [\n          {\n            \"text\": \"The\"\n          }\n        ],\n        \"role\": \"model\"\n      }\n    }\n  ],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 8,\n    \"totalTokenCount\": 8,\n    \"promptTokensDetails\": [\n      {\n        \"modality\": \"TEXT\",\n        \"tokenCount\": 8\n      }\n    ]\n  },\n  \"modelVersion\": \"gemini-2.0-flash\"\n}\n,\r\n{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"parts\": [\n          {\n            \"text\": \" sky is blue.\"\n          }\n        ],\n        \"role\": \"model\"\n      },\n      \"finishReason\": \"STOP\"\n    }\n  ],\n  \"usageMetadata\": {\n    \"promptTokenCount\": 8,\n    \"candidatesTokenCount\": 24,\n    \"totalTokenCount\": 32,\n    \"promptTokensDetails\": [\n      {\n        \"modality\": \"TEXT\",\n        \"tokenCount\": 8\n      }\n    ],\n    \"candidatesTokensDetails\": [\n      {\n        \"modality\": \"TEXT\",\n        \"tokenCount\": 24\n      }\n    ]\n  },\n  \"modelVersion\": \"gemini-2.0-flash\"\n}\n]";

/// `streamGenerateContent?alt=sse`: events end with CRLF CRLF.
const GEMINI_SSE: &str = concat!(
    r#"data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"}}],"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}]},"modelVersion": "gemini-2.5-flash","responseId": "cA7qaMf7EYqZ1dkPw9S0gAI"}"#,
    "\r\n\r\n",
    r#"data: {"candidates": [{"content": {"parts": [{"text": " sky is blue."}],"role": "model"}}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 5,"totalTokenCount": 40,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}],"thoughtsTokenCount": 27},"modelVersion": "gemini-2.5-flash","responseId": "cA7qaMf7EYqZ1dkPw9S0gAI"}"#,
    "\r\n\r\n",
    r#"data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP"}],"usageMetadata": {"promptTokenCount": 8,"candidatesTokenCount": 6,"totalTokenCount": 41,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 8}],"thoughtsTokenCount": 27},"modelVersion": "gemini-2.5-flash","responseId": "cA7qaMf7EYqZ1dkPw9S0gAI"}"#,
    "\r\n\r\n",
);

const BEDROCK_CONVERSE: &str = r#"{"metrics":{"latencyMs":1175},"output":{"message":{"content":[{"text":"Hello! \"usage\":{\"inputTokens\":1,\"outputTokens\":1}"}],"role":"assistant"}},"stopReason":"end_turn","usage":{"cacheReadInputTokens":512,"cacheWriteInputTokens":64,"inputTokens":20,"outputTokens":7,"totalTokens":603}}"#;

fn read(format: UsageFormat, framing: Framing, chunks: &[&[u8]]) -> Option<Usage> {
    let mut reader = UsageReader::new(format, framing);
    for chunk in chunks {
        reader.feed(chunk);
    }
    reader.usage()
}

fn usage(input: u64, output: u64, cached: u64) -> Option<Usage> {
    reasoned(input, output, cached, 0)
}

/// An OpenAI stream's event that ends the answer: usage after it is final.
const FINISHED: &str = "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n";

/// A usage whose input holds `cache_write` tokens written to the prompt cache.
fn written(input: u64, output: u64, cached: u64, cache_write: u64) -> Option<Usage> {
    Some(Usage {
        cache_write,
        ..reasoned(input, output, cached, 0)?
    })
}

/// A usage whose output holds `reasoning` reasoning tokens.
fn reasoned(input: u64, output: u64, cached: u64, reasoning: u64) -> Option<Usage> {
    Some(Usage {
        input,
        output,
        cached,
        reasoning,
        cache_write: 0,
    })
}

/// The same result whole, at every two-way split, at a spread of three-way splits, and one
/// byte at a time.
fn check(format: UsageFormat, framing: Framing, body: &str, expected: Option<Usage>) {
    let body = body.as_bytes();
    assert_eq!(read(format, framing, &[body]), expected, "whole");
    for at in 0..=body.len() {
        let (a, b) = body.split_at(at);
        assert_eq!(read(format, framing, &[a, b]), expected, "split at {at}");
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = (seed >> 33) as usize % (body.len() + 1);
        let y = (seed >> 11) as usize % (body.len() + 1);
        let (i, j) = (x.min(y), x.max(y));
        let chunks = [&body[..i], &body[i..j], &body[j..]];
        assert_eq!(
            read(format, framing, &chunks),
            expected,
            "split at {i}, {j}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(read(format, framing, &bytes), expected, "byte by byte");
}

#[test]
fn openai_chat() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        OPENAI_CHAT,
        usage(1219, 10, 1024),
    );
}

#[test]
fn openai_chat_stream_with_include_usage() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        OPENAI_CHAT_STREAM,
        reasoned(9, 12, 0, 4),
    );
}

#[test]
fn openai_chat_stream_without_include_usage() {
    let body = OPENAI_CHAT_STREAM.replace(r#""usage":{"prompt_tokens""#, r#""other":{"p""#);
    check(UsageFormat::OpenAiChat, Framing::Sse, &body, None);
}

#[test]
fn openai_embeddings() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        OPENAI_EMBEDDINGS,
        usage(5, 0, 0),
    );
}

#[test]
fn openai_responses() {
    check(
        UsageFormat::OpenAiResponses,
        Framing::Json,
        OPENAI_RESPONSES,
        reasoned(328, 52, 128, 16),
    );
}

#[test]
fn openai_responses_stream() {
    check(
        UsageFormat::OpenAiResponses,
        Framing::Sse,
        OPENAI_RESPONSES_STREAM,
        usage(37, 11, 32),
    );
}

#[test]
fn openai_responses_incomplete_and_failed_events() {
    for kind in ["response.incomplete", "response.failed"] {
        let body = OPENAI_RESPONSES_STREAM.replace("response.completed", kind);
        check(
            UsageFormat::OpenAiResponses,
            Framing::Sse,
            &body,
            usage(37, 11, 32),
        );
    }
}

#[test]
fn a_failed_response_without_usage_stays_unknown() {
    let body = concat!(
        "event: response.created\n",
        r#"data: {"type":"response.created","response":{"id":"r","status":"in_progress","usage":null}}"#,
        "\n\n",
        "event: response.failed\n",
        r#"data: {"type":"response.failed","response":{"id":"r","status":"failed","error":{"code":"server_error","message":"x"},"usage":null}}"#,
        "\n\n",
    );
    check(UsageFormat::OpenAiResponses, Framing::Sse, body, None);
}

/// Reasoning counts, one case a line: the format, the body and the usage expected.
macro_rules! reasoning {
    ($($name:ident: $format:ident, $body:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check(UsageFormat::$format, Framing::Json, $body, $expected);
        }
    )*};
}

reasoning! {
    reasoning_openai_chat: OpenAiChat, r#"{"usage":{"prompt_tokens":5,"completion_tokens":30,"completion_tokens_details":{"reasoning_tokens":20}}}"# => reasoned(5, 30, 0, 20);
    reasoning_openai_responses: OpenAiResponses, r#"{"usage":{"input_tokens":5,"output_tokens":30,"output_tokens_details":{"reasoning_tokens":20}}}"# => reasoned(5, 30, 0, 20);
    reasoning_gemini_thoughts: Gemini, r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":10,"thoughtsTokenCount":20}}"# => reasoned(5, 30, 0, 20);
    reasoning_never_above_output: OpenAiChat, r#"{"usage":{"prompt_tokens":5,"completion_tokens":3,"completion_tokens_details":{"reasoning_tokens":20}}}"# => reasoned(5, 3, 0, 3);
    reasoning_null_is_none: OpenAiChat, r#"{"usage":{"prompt_tokens":5,"completion_tokens":3,"completion_tokens_details":{"reasoning_tokens":null}}}"# => reasoned(5, 3, 0, 0);
    reasoning_unreadable_leaves_the_rest: OpenAiChat, r#"{"usage":{"prompt_tokens":5,"completion_tokens":3,"completion_tokens_details":{"reasoning_tokens":-1}}}"# => reasoned(5, 3, 0, 0);
    reasoning_details_not_an_object: OpenAiResponses, r#"{"usage":{"input_tokens":5,"output_tokens":3,"output_tokens_details":"x"}}"# => reasoned(5, 3, 0, 0);
    reasoning_of_anthropic_is_not_read: Anthropic, r#"{"usage":{"input_tokens":5,"output_tokens":3,"reasoning_tokens":2}}"# => reasoned(5, 3, 0, 0);
    reasoning_of_bedrock_is_not_read: BedrockConverse, r#"{"usage":{"inputTokens":5,"outputTokens":3,"completion_tokens_details":{"reasoning_tokens":2}}}"# => reasoned(5, 3, 0, 0);
}

#[test]
fn anthropic() {
    check(
        UsageFormat::Anthropic,
        Framing::Json,
        ANTHROPIC,
        written(2160, 6, 2048, 100),
    );
}

#[test]
fn anthropic_stream_combines_start_and_delta() {
    check(
        UsageFormat::Anthropic,
        Framing::Sse,
        ANTHROPIC_STREAM,
        written(1525, 15, 1500, 0),
    );
}

#[test]
fn anthropic_stream_delta_restating_input_overrides() {
    let body = ANTHROPIC_STREAM.replace(
        r#""usage":{"output_tokens":15}"#,
        r#""usage":{"input_tokens":30,"cache_creation_input_tokens":7,"cache_read_input_tokens":null,"output_tokens":15,"server_tool_use":{"web_search_requests":0}}"#,
    );
    // cache_read stays 1500 (null is absent); input and cache_creation are the larger.
    check(
        UsageFormat::Anthropic,
        Framing::Sse,
        &body,
        written(30 + 7 + 1500, 15, 1500, 7),
    );
}

#[test]
fn gemini() {
    check(
        UsageFormat::Gemini,
        Framing::Json,
        GEMINI,
        reasoned(2051, 59, 2048, 50),
    );
}

#[test]
fn gemini_json_array_stream() {
    check(
        UsageFormat::Gemini,
        Framing::Json,
        GEMINI_ARRAY,
        usage(8, 24, 0),
    );
}

#[test]
fn gemini_sse() {
    check(
        UsageFormat::Gemini,
        Framing::Sse,
        GEMINI_SSE,
        reasoned(8, 33, 0, 27),
    );
}

#[test]
fn bedrock_converse() {
    check(
        UsageFormat::BedrockConverse,
        Framing::Json,
        BEDROCK_CONVERSE,
        written(596, 7, 512, 64),
    );
}

#[test]
fn no_usage() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"id":"x","choices":[]}"#,
        None,
    );
    check(UsageFormat::OpenAiChat, Framing::Json, "", None);
    check(UsageFormat::Anthropic, Framing::Sse, "", None);
    check(
        UsageFormat::Gemini,
        Framing::Sse,
        "data: {\"candidates\":[]}\n\n",
        None,
    );
}

#[test]
fn null_usage_only() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"usage":null}"#,
        None,
    );
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        "data: {\"usage\":null}\n\ndata: {\"usage\": null }\n\n",
        None,
    );
}

#[test]
fn later_null_or_unreadable_usage_keeps_earlier() {
    let body = concat!(
        "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        "data: {\"usage\":null}\n\n",
        "data: {\"usage\":{\"completion_tokens\":4}}\n\n",
        "data: {\"usage\":\"many\"}\n\n",
        "data: {\"usage\":[1,2]}\n\n",
    );
    check(UsageFormat::OpenAiChat, Framing::Sse, body, usage(3, 4, 0));
    // A usage object with a count that cannot be read makes the usage unknown, whatever
    // came before: the provider said something the gateway cannot charge.
    let unreadable = format!("{body}data: {{\"usage\":{{\"prompt_tokens\":-1}}}}\n\n");
    check(UsageFormat::OpenAiChat, Framing::Sse, &unreadable, None);
}

#[test]
fn unreadable_counts_are_ignored() {
    for usage_object in [
        r#"{"prompt_tokens":-1,"completion_tokens":1}"#,
        r#"{"prompt_tokens":1.5,"completion_tokens":1}"#,
        r#"{"prompt_tokens":"1","completion_tokens":1}"#,
        r#"{"prompt_tokens":18446744073709551616,"completion_tokens":1}"#,
        r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#,
        r#"{"prompt_tokens":1000000000001,"completion_tokens":1}"#,
        r#"{"prompt_tokens":1,"completion_tokens":true}"#,
        r#"{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":-3}}"#,
        r#"{"prompt_tokens":1,"prompt_tokens_details":7}"#,
        r#"{"completion_tokens":1}"#,
        r#"{}"#,
    ] {
        let body = format!(r#"{{"usage":{usage_object}}}"#);
        check(UsageFormat::OpenAiChat, Framing::Json, &body, None);
    }
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"usage":{"prompt_tokens":1000000000000,"completion_tokens":0,"prompt_tokens_details":null}}"#,
        usage(MAX_COUNT, 0, 0),
    );
    for usage_object in [
        r#"{"input_tokens":1}"#,
        r#"{"output_tokens":1}"#,
        r#"{"input_tokens":1,"output_tokens":1.5}"#,
    ] {
        let body = format!(r#"{{"usage":{usage_object}}}"#);
        check(UsageFormat::OpenAiResponses, Framing::Json, &body, None);
    }
    check(
        UsageFormat::Anthropic,
        Framing::Json,
        r#"{"usage":{"input_tokens":1}}"#,
        None,
    );
    check(
        UsageFormat::BedrockConverse,
        Framing::Json,
        r#"{"usage":{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":-1}}"#,
        None,
    );
    check(
        UsageFormat::Gemini,
        Framing::Json,
        r#"{"usageMetadata":{"candidatesTokenCount":1}}"#,
        None,
    );
}

#[test]
fn sums_saturate_and_cached_stays_within_input() {
    check(
        UsageFormat::BedrockConverse,
        Framing::Json,
        r#"{"usage":{"inputTokens":1000000000000,"outputTokens":1,"cacheReadInputTokens":1000000000000,"cacheWriteInputTokens":5}}"#,
        written(2_000_000_000_005, 1, 1_000_000_000_000, 5),
    );
    check(
        UsageFormat::Gemini,
        Framing::Json,
        r#"{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1000000000000,"thoughtsTokenCount":9,"cachedContentTokenCount":10}}"#,
        reasoned(3, 1_000_000_000_009, 3, 9),
    );
}

#[test]
fn usage_in_a_nested_place_is_not_taken() {
    let bodies = [
        r#"{"metadata":{"usage":{"prompt_tokens":1,"completion_tokens":1}}}"#,
        r#"{"choices":[{"message":{"content":"x","usage":{"prompt_tokens":1,"completion_tokens":1}}}]}"#,
        r#"{"choices":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#,
        r#"{"a":[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]}"#,
        r#"{"a":{"b":{"c":{"d":{"usage":{"prompt_tokens":1,"completion_tokens":1}}}}}}"#,
        r#"{"response":{"usage":{"prompt_tokens":1,"completion_tokens":1}}}"#,
        r#"[[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]]"#,
    ];
    for body in bodies {
        check(UsageFormat::OpenAiChat, Framing::Json, body, None);
    }
    // `response.usage` belongs to the Responses API, `message.usage` to Anthropic only.
    check(
        UsageFormat::Anthropic,
        Framing::Json,
        r#"{"response":{"usage":{"input_tokens":1,"output_tokens":1}}}"#,
        None,
    );
    check(
        UsageFormat::OpenAiResponses,
        Framing::Json,
        r#"{"message":{"usage":{"input_tokens":1,"output_tokens":1}}}"#,
        None,
    );
    check(
        UsageFormat::OpenAiResponses,
        Framing::Json,
        r#"{"response":{"meta":{"usage":{"input_tokens":1,"output_tokens":1}}}}"#,
        None,
    );
    // A document-level key that only looks like a target.
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"usage ":{"prompt_tokens":1},"Usage":{"prompt_tokens":2},"usag":{"prompt_tokens":3}}"#,
        None,
    );
}

/// A usage object whose first key is serde_json's private RawValue token is read as written:
/// with serde_json's `raw_value` feature it would be replaced by the JSON inside that string.
#[test]
fn serde_json_private_token_in_usage_is_an_ordinary_key() {
    let body = r#"{"choices":[],"usage":{"$serde_json::private::RawValue":"{\"prompt_tokens\":1,\"completion_tokens\":1}","prompt_tokens":900,"completion_tokens":100}}"#;
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        body,
        usage(900, 100, 0),
    );
}

#[test]
fn usage_text_inside_strings_is_not_taken() {
    let bodies = [
        r#"{"content":"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5}"}"#,
        r#"{"content":"\\\"usage\":{\"prompt_tokens\":5}"}"#,
        r#"{"a":"usage","b":{"prompt_tokens":5}}"#,
        r#"{"a":["usage",{"prompt_tokens":5}]}"#,
        r#"["usage",{"prompt_tokens":5}]"#,
    ];
    for body in bodies {
        check(UsageFormat::OpenAiChat, Framing::Json, body, None);
    }
    // A value string named like a key, followed by a real usage key.
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"x":"usage","usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
        usage(5, 1, 0),
    );
}

#[test]
fn escaped_keys() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"us\u0061ge":{"prompt_tokens":5,"completion_tokens":1}}"#,
        usage(5, 1, 0),
    );
    // Every character escaped: the longest spelling of the longest target key.
    check(
        UsageFormat::Gemini,
        Framing::Json,
        r#"{"\u0075\u0073\u0061\u0067\u0065\u004d\u0065\u0074\u0061\u0064\u0061\u0074\u0061":{"promptTokenCount":5}}"#,
        usage(5, 0, 0),
    );
    check(
        UsageFormat::Anthropic,
        Framing::Sse,
        "data: {\"mess\\u0061ge\":{\"\\u0075sage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
         data: {\"\\u0075sage\":{\"output_tokens\":3}}\n\n",
        usage(5, 3, 0),
    );
    // Escapes that decode to something else, or do not decode.
    for body in [
        r#"{"usage\u0000":{"prompt_tokens":5}}"#,
        r#"{"usage\n":{"prompt_tokens":5}}"#,
        r#"{"us\age":{"prompt_tokens":5}}"#,
        r#"{"\ud800usage":{"prompt_tokens":5}}"#,
    ] {
        check(UsageFormat::OpenAiChat, Framing::Json, body, None);
    }
    // An escaped quote inside a key does not end it.
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"a\"usage":{"prompt_tokens":5},"usage":{"prompt_tokens":6}}"#,
        usage(6, 0, 0),
    );
    // A long key neither matches nor disturbs the next one.
    let long = "k".repeat(500);
    let body = format!(r#"{{"{long}":{{"prompt_tokens":5}},"usage":{{"prompt_tokens":6}}}}"#);
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        &body,
        usage(6, 0, 0),
    );
}

#[test]
fn last_usage_wins() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2,"completion_tokens":3}}"#,
        usage(2, 3, 0),
    );
    // Gemini counts are cumulative: a later chunk replaces what it restates, it does not add,
    // and a count it leaves out keeps its earlier value.
    check(
        UsageFormat::Gemini,
        Framing::Json,
        r#"[{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":3}}]"#,
        usage(4, 3, 0),
    );
    check(
        UsageFormat::Gemini,
        Framing::Json,
        r#"[{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":4}}]"#,
        usage(4, 1, 0),
    );
}

#[test]
fn sse_line_endings() {
    let event = "data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}";
    for end in ["\n", "\r\n", "\r"] {
        let body = format!("{FINISHED}event: x{end}{event}{end}{end}data: [DONE]{end}{end}");
        check(UsageFormat::OpenAiChat, Framing::Sse, &body, usage(2, 3, 0));
    }
    // CR CR is a blank line: the event ends before its usage.
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        "data: {\"usage\":\r\rdata: {\"prompt_tokens\":2}}\r\n\r\n",
        None,
    );
}

#[test]
fn sse_multi_line_data() {
    let body = concat!(
        "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n",
        ": keep-alive comment\n",
        "id: 7\n",
        "retry: 1000\n",
        "data: {\"usage\":\n",
        "event: ignored-in-between\n",
        "data:{\"prompt_tokens\":2,\n",
        "data\n",
        "data:  \"completion_tokens\":3}}\n",
        "\n",
    );
    check(UsageFormat::OpenAiChat, Framing::Sse, body, usage(2, 3, 0));
    // The line feed that joins data lines lands inside a string: not valid JSON, but only
    // the usage object has to be.
    let body =
        format!("{FINISHED}data: {{\"a\":\"x\ndata: y\",\"usage\":{{\"prompt_tokens\":2}}}}\n\n");
    check(UsageFormat::OpenAiChat, Framing::Sse, &body, usage(2, 0, 0));
}

#[test]
fn sse_field_names_are_exact() {
    for line in [
        "Data: {\"usage\":{\"prompt_tokens\":2}}",
        "dat: {\"usage\":{\"prompt_tokens\":2}}",
        "datas: {\"usage\":{\"prompt_tokens\":2}}",
        " data: {\"usage\":{\"prompt_tokens\":2}}",
        ":data: {\"usage\":{\"prompt_tokens\":2}}",
        "event: {\"usage\":{\"prompt_tokens\":2}}",
    ] {
        let body = format!("{line}\n\n");
        check(UsageFormat::OpenAiChat, Framing::Sse, &body, None);
    }
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        "\u{feff}data:{\"choices\":[{\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":2}}\n\n",
        usage(2, 0, 0),
    );
}

#[test]
fn sse_truncated_event_is_forgotten_at_its_end() {
    // An event cut mid-document must not leave the scanner inside it for the next one.
    let body = concat!(
        "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[{\"text\":\"unterminated\n\n",
        "data: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\n",
        "data: {\"usage\":{\"prompt_tokens\":9,\n\n",
        "data: {\"id\":1}\n\n",
    );
    check(UsageFormat::OpenAiChat, Framing::Sse, body, usage(2, 1, 0));
}

#[test]
fn done_is_ignored() {
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        "data: [DONE]\n\n",
        None,
    );
    check(
        UsageFormat::OpenAiChat,
        Framing::Sse,
        &format!("{FINISHED}data: {{\"usage\":{{\"prompt_tokens\":2}}}}\n\ndata: [DONE]\n\n"),
        usage(2, 0, 0),
    );
}

#[test]
fn over_long_capture_is_dropped() {
    let padding = "x".repeat(CAPTURE_LIMIT);
    let body =
        format!(r#"{{"usage":{{"prompt_tokens":2,"completion_tokens":1,"note":"{padding}"}}}}"#);
    check(UsageFormat::OpenAiChat, Framing::Json, &body, None);
    // An earlier good one does not stand: what the long one said is unknown.
    let body = format!(
        "{FINISHED}data: {{\"usage\":{{\"prompt_tokens\":2}}}}\n\ndata: {{\"usage\":{{\"prompt_tokens\":3,\"n\":\"{padding}\"}}}}\n\n"
    );
    check(UsageFormat::OpenAiChat, Framing::Sse, &body, None);
    // Exactly at the limit is read.
    let note = "y".repeat(CAPTURE_LIMIT - r#"{"prompt_tokens":2,"n":""}"#.len());
    let body = format!(r#"{{"usage":{{"prompt_tokens":2,"n":"{note}"}}}}"#);
    check(
        UsageFormat::OpenAiChat,
        Framing::Json,
        &body,
        usage(2, 0, 0),
    );
}

#[test]
fn memory_stays_bounded() {
    let mut reader = UsageReader::new(UsageFormat::OpenAiChat, Framing::Json);
    reader.feed(br#"{"choices":[{"message":{"content":""#);
    let text = vec![b'a'; 1 << 20];
    for _ in 0..10 {
        reader.feed(&text);
    }
    reader.feed(br#""}}],"usage":{"prompt_tokens":2,"n":""#);
    for _ in 0..10 {
        reader.feed(&text);
    }
    reader.feed(br#""}}"#);
    assert_eq!(reader.usage(), None);
    assert!(reader.scanner.capture.capacity() <= CAPTURE_LIMIT);
    assert!(std::mem::size_of::<UsageReader>() < 320);

    // Deep nesting, and an SSE line that never ends.
    let mut reader = UsageReader::new(UsageFormat::OpenAiChat, Framing::Sse);
    reader.feed(b"data: {\"usage\":");
    reader.feed(&vec![b'['; 10 << 20]);
    reader.feed(&vec![b']'; 10 << 20]);
    assert_eq!(reader.usage(), None);
    assert!(reader.scanner.capture.capacity() <= CAPTURE_LIMIT);
}

#[test]
fn malformed_json_does_not_panic() {
    let inputs: [&[u8]; 14] = [
        b"}}}]]]",
        b"{{{{",
        b"{\"usage\":{\"prompt_tokens\":1,}}",
        b"{\"usage\" {\"prompt_tokens\":1}}",
        b"{\"usage\":{\"prompt_tokens\":1]]",
        b"\"\\",
        b"{\"usage\\",
        b"{\"usage\":{\"prompt_tokens\":1}\xff\xfe",
        b"\xef\xbb\xbf{\"usage\":{\"prompt_tokens\":1}}",
        b"data: data: data:\r\r\r\n\n:",
        b"data: {\"usage\":{\"prompt_tokens\":1}\n\ndata: }}}}\n\n",
        b"[[[[[[[[{\"usage\":{\"prompt_tokens\":1}}]]]]]]]]",
        b"{\"usage\":{\"prompt_tokens\":1,\"x\":[{\"y\":\"\\ud800\"}]}}",
        b"\x00\x01\x02{\"\x00\":1}",
    ];
    let formats = [
        UsageFormat::OpenAiChat,
        UsageFormat::OpenAiResponses,
        UsageFormat::Anthropic,
        UsageFormat::Gemini,
        UsageFormat::BedrockConverse,
    ];
    for input in inputs {
        for format in formats {
            for framing in [Framing::Json, Framing::Sse] {
                let whole = read(format, framing, &[input]);
                let bytes: Vec<&[u8]> = input.chunks(1).collect();
                assert_eq!(read(format, framing, &bytes), whole);
            }
        }
    }
    // Lenient where it cannot matter: stray bytes before a document are skipped.
    assert_eq!(
        read(UsageFormat::OpenAiChat, Framing::Json, &[inputs[8]]),
        usage(1, 0, 0)
    );
}

macro_rules! bedrock_headers {
    ($($name:ident: $input:expr, $output:expr, $read:expr, $write:expr => $usage:expr;)*) => {$(
        #[test]
        fn $name() {
            let headers = BedrockHeaders {
                input: $input.map(str::as_bytes),
                output: $output.map(str::as_bytes),
                cache_read: $read.map(str::as_bytes),
                cache_write: $write.map(str::as_bytes),
            };
            assert_eq!(usage_from_bedrock_headers(headers), $usage);
        }
    )*};
}

bedrock_headers! {
    bedrock_headers_counts: Some("120"), Some("45"), None, None => usage(120, 45, 0);
    bedrock_headers_spaces_and_max: Some(" 0 "), Some("1000000000000"), None, None => usage(0, MAX_COUNT, 0);
    bedrock_headers_above_max_are_unreadable: Some("1"), Some("1000000000001"), None, None => None;
    bedrock_headers_cache_read_is_input: Some("3"), Some("5"), Some("90000"), None => usage(90003, 5, 90000);
    bedrock_headers_cache_write_is_input: Some("3"), Some("5"), None, Some("700") => written(703, 5, 0, 700);
    bedrock_headers_both_caches: Some("3"), Some("5"), Some("10"), Some("20") => written(33, 5, 10, 20);
    bedrock_headers_cache_absurd: Some("1"), Some("5"), Some("18446744073709551615"), Some("1") => None;
    bedrock_headers_no_input: None, Some("1"), None, None => None;
    bedrock_headers_no_output: Some("1"), None, None, None => None;
    bedrock_headers_none: None, None, None, None => None;
    bedrock_headers_empty: Some(""), Some("1"), None, None => None;
    bedrock_headers_negative: Some("-1"), Some("1"), None, None => None;
    bedrock_headers_plus: Some("+1"), Some("1"), None, None => None;
    bedrock_headers_float: Some("1.0"), Some("1"), None, None => None;
    bedrock_headers_hex: Some("0x10"), Some("1"), None, None => None;
    bedrock_headers_overflow: Some("1"), Some("18446744073709551616"), None, None => None;
    bedrock_headers_two_numbers: Some("1 2"), Some("1"), None, None => None;
    bedrock_headers_unreadable_cache_read: Some("3"), Some("5"), Some("9e4"), None => None;
    bedrock_headers_unreadable_cache_write: Some("3"), Some("5"), None, Some("") => None;
}

#[test]
fn bedrock_headers_not_utf8() {
    let headers = BedrockHeaders {
        input: Some(b"\xff"),
        output: Some(b"1"),
        ..BedrockHeaders::default()
    };
    assert_eq!(usage_from_bedrock_headers(headers), None);
}

macro_rules! larger {
    ($($name:ident: $a:expr, $b:expr => $usage:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(Some($a.larger($b)), $usage);
            assert_eq!(Some($b.larger($a)), $usage, "either order");
        }
    )*};
}

larger! {
    larger_body_cache_above_headers: usage(8, 5, 0).unwrap(), usage(90008, 5, 90000).unwrap() => usage(90008, 5, 90000);
    larger_per_field: usage(100, 5, 0).unwrap(), usage(20, 50, 10).unwrap() => usage(100, 50, 10);
    larger_same: usage(3, 5, 1).unwrap(), usage(3, 5, 1).unwrap() => usage(3, 5, 1);
}

#[test]
fn framing_from_content_type() {
    for (value, framing) in [
        (&b"text/event-stream"[..], Some(Framing::Sse)),
        (b"text/event-stream; charset=utf-8", Some(Framing::Sse)),
        (b"Text/Event-Stream", Some(Framing::Sse)),
        (b"application/json", Some(Framing::Json)),
        (b"application/json; charset=UTF-8", Some(Framing::Json)),
        (b"  APPLICATION/JSON ;charset=utf-8", Some(Framing::Json)),
        (b"application/problem+json", Some(Framing::Json)),
        (b"application/vnd.api+JSON; q=1", Some(Framing::Json)),
        (b"application/x-ndjson", None),
        (b"application/jsonl", None),
        (b"application/+json", None),
        (b"/json", None),
        (b"+json", None),
        (b"json", None),
        (b"text/plain", None),
        (b"text/event-streams", None),
        (
            b"application/vnd.amazon.eventstream",
            Some(Framing::EventStream),
        ),
        (
            b"Application/VND.Amazon.EventStream ; x=1",
            Some(Framing::EventStream),
        ),
        (b"application/vnd.amazon.eventstreams", None),
        (b"application/vnd.amazon.event-stream", None),
        (b"", None),
        (b"\xff\xfe", None),
    ] {
        assert_eq!(Framing::from_content_type(value), framing, "{value:?}");
    }
}

/// Usage spread over several objects, each giving some of the counts: one case a line, the
/// stream's usage objects in order and the usage expected in all.
macro_rules! merged {
    ($($name:ident: $format:ident, [$($object:expr),*] => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let (key, framing) = match UsageFormat::$format {
                UsageFormat::Gemini => ("usageMetadata", Framing::Sse),
                _ => ("usage", Framing::Sse),
            };
            // The answer's end, marked first, so that every object after it counts.
            let end = match UsageFormat::$format {
                UsageFormat::Gemini => r#"data: {"candidates":[{"finishReason":"STOP"}]}"#,
                UsageFormat::OpenAiChat => r#"data: {"choices":[{"finish_reason":"stop"}]}"#,
                UsageFormat::OpenAiResponses => r#"data: {"response":{"status":"completed"}}"#,
                _ => "",
            };
            let body: String = std::iter::once(format!("{end}\n\n"))
                .chain(
                    [$($object),*]
                        .iter()
                        .map(|object: &&str| format!("data: {{\"{key}\":{object}}}\n\n")),
                )
                .collect();
            check(UsageFormat::$format, framing, &body, $expected);
        }
    )*};
}

merged! {
    merged_openai_input_then_output: OpenAiChat, [r#"{"prompt_tokens":11}"#, r#"{"completion_tokens":7}"#] => usage(11, 7, 0);
    merged_openai_output_then_input: OpenAiChat, [r#"{"completion_tokens":7}"#, r#"{"prompt_tokens":11}"#] => usage(11, 7, 0);
    merged_openai_cached_later: OpenAiChat, [r#"{"prompt_tokens":11,"completion_tokens":7}"#, r#"{"prompt_tokens_details":{"cached_tokens":4}}"#] => usage(11, 7, 4);
    merged_openai_running_totals: OpenAiChat, [r#"{"prompt_tokens":11,"completion_tokens":1}"#, r#"{"prompt_tokens":11,"completion_tokens":2}"#, r#"{"prompt_tokens":11,"completion_tokens":9}"#] => usage(11, 9, 0);
    merged_openai_output_only: OpenAiChat, [r#"{"completion_tokens":7}"#] => None;
    merged_openai_null_between: OpenAiChat, [r#"{"prompt_tokens":11}"#, "null", r#"{"completion_tokens":7,"prompt_tokens":null}"#] => usage(11, 7, 0);
    // An object with a count that cannot be read leaves the usage unknown, never lower.
    merged_openai_unreadable_object_makes_usage_unknown: OpenAiChat, [r#"{"prompt_tokens":11}"#, r#"{"completion_tokens":-7}"#, r#"{"completion_tokens":5}"#] => None;
    merged_responses_split: OpenAiResponses, [r#"{"input_tokens":3}"#, r#"{"output_tokens":4}"#] => usage(3, 4, 0);
    merged_responses_output_missing: OpenAiResponses, [r#"{"input_tokens":3}"#] => None;
    merged_anthropic_start_and_delta: Anthropic, [r#"{"input_tokens":20,"output_tokens":1,"cache_read_input_tokens":5}"#, r#"{"output_tokens":30}"#] => usage(25, 30, 5);
    merged_anthropic_input_only: Anthropic, [r#"{"input_tokens":20}"#] => None;
    merged_gemini_prompt_then_candidates: Gemini, [r#"{"promptTokenCount":8}"#, r#"{"candidatesTokenCount":5,"thoughtsTokenCount":2}"#] => reasoned(8, 7, 0, 2);
    merged_gemini_candidates_only: Gemini, [r#"{"candidatesTokenCount":5}"#] => None;
    merged_bedrock_split: BedrockConverse, [r#"{"inputTokens":9}"#, r#"{"outputTokens":2}"#] => usage(9, 2, 0);
    merged_bedrock_output_missing: BedrockConverse, [r#"{"inputTokens":9}"#] => None;
}

/// Integral counts written as floats are counts; fractions, negatives and counts past u64 are
/// not.
macro_rules! counts {
    ($($name:ident: $value:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let body = format!(r#"{{"usage":{{"prompt_tokens":{},"completion_tokens":2}}}}"#, $value);
            let expected: Option<u64> = $expected;
            check(
                UsageFormat::OpenAiChat,
                Framing::Json,
                &body,
                expected.and_then(|input| usage(input, 2, 0)),
            );
        }
    )*};
}

counts! {
    count_integer: "11" => Some(11);
    count_float_integral: "11.0" => Some(11);
    count_float_trailing_zeros: "11.000" => Some(11);
    count_exponent: "1e3" => Some(1000);
    count_exponent_upper_signed: "1.1E+1" => Some(11);
    count_zero_float: "0.0" => Some(0);
    count_negative_zero_float: "-0.0" => Some(0);
    count_largest_float: "1000000000000.0" => Some(MAX_COUNT);
    count_large_float_is_absurd: "9007199254740992.0" => None;
    count_fraction: "11.5" => None;
    count_tiny_fraction: "0.1" => None;
    count_negative_float: "-1.0" => None;
    count_negative: "-1" => None;
    count_past_u64_float: "1.8446744073709552e19" => None;
    count_huge_exponent: "1e300" => None;
    count_string: "\"11\"" => None;
}

// Billed counts reported apart from input and output are charged: Gemini's tool-use prompt as
// input, and any total above the counts read (a count under a name the gateway does not know)
// as input too.
merged! {
    billed_gemini_tool_use: Gemini, [r#"{"promptTokenCount":12,"candidatesTokenCount":50,"toolUsePromptTokenCount":90000,"totalTokenCount":90062}"#] => usage(90012, 50, 0);
    billed_gemini_tool_use_without_total: Gemini, [r#"{"promptTokenCount":12,"candidatesTokenCount":50,"toolUsePromptTokenCount":90000}"#] => usage(90012, 50, 0);
    billed_gemini_tool_use_and_thoughts: Gemini, [r#"{"promptTokenCount":12,"candidatesTokenCount":50,"thoughtsTokenCount":8,"toolUsePromptTokenCount":30,"totalTokenCount":100}"#] => reasoned(42, 58, 0, 8);
    billed_gemini_total_above_counts: Gemini, [r#"{"promptTokenCount":12,"candidatesTokenCount":50,"totalTokenCount":500}"#] => usage(450, 50, 0);
    billed_gemini_total_below_counts_ignored: Gemini, [r#"{"promptTokenCount":12,"candidatesTokenCount":50,"totalTokenCount":3}"#] => usage(12, 50, 0);
    billed_gemini_stream_tool_use_in_last_chunk: Gemini, [r#"{"promptTokenCount":12}"#, r#"{"promptTokenCount":12,"candidatesTokenCount":5,"toolUsePromptTokenCount":40,"totalTokenCount":57}"#] => usage(52, 5, 0);
    billed_gemini_total_alone_is_not_usage: Gemini, [r#"{"totalTokenCount":57}"#] => None;
    billed_openai_total_above_counts: OpenAiChat, [r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":40}"#] => usage(35, 5, 0);
    billed_openai_total_equal: OpenAiChat, [r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}"#] => usage(10, 5, 0);
    billed_openai_embeddings_total: OpenAiChat, [r#"{"prompt_tokens":10,"total_tokens":10}"#] => usage(10, 0, 0);
    billed_responses_total_above_counts: OpenAiResponses, [r#"{"input_tokens":3,"output_tokens":4,"total_tokens":20}"#] => usage(16, 4, 0);
    billed_bedrock_total_with_cache: BedrockConverse, [r#"{"inputTokens":9,"outputTokens":2,"cacheReadInputTokens":4,"cacheWriteInputTokens":6,"totalTokens":21}"#] => written(19, 2, 4, 6);
    billed_bedrock_total_above_counts: BedrockConverse, [r#"{"inputTokens":9,"outputTokens":2,"totalTokens":30}"#] => usage(28, 2, 0);
    billed_bedrock_invoke_anthropic_names: BedrockConverse, [r#"{"input_tokens":3,"output_tokens":5,"cache_read_input_tokens":90000,"cache_creation_input_tokens":10}"#] => written(90013, 5, 90000, 10);
    billed_bedrock_both_names_larger: BedrockConverse, [r#"{"inputTokens":3,"input_tokens":30,"outputTokens":50,"output_tokens":5}"#] => usage(30, 50, 0);
    billed_anthropic_cache_creation: Anthropic, [r#"{"input_tokens":20,"output_tokens":1,"cache_creation_input_tokens":700}"#, r#"{"output_tokens":30}"#] => written(720, 30, 0, 700);
}

/// Anthropic's `message_start` output count is a placeholder: a stream that ends before its
/// `message_delta` has no output count, so its usage is incomplete (the input is still known).
#[test]
fn anthropic_stream_cut_after_message_start() {
    let body = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
                event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n";
    let mut reader = UsageReader::new(UsageFormat::Anthropic, Framing::Sse);
    reader.feed(body.as_bytes());
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.partial_input(), Some(25));
    let whole = format!(
        "{body}data: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":30}}}}\n\n"
    );
    let mut reader = UsageReader::new(UsageFormat::Anthropic, Framing::Sse);
    reader.feed(whole.as_bytes());
    assert_eq!(reader.usage(), usage(25, 30, 5));
    // A whole message (not streamed) gives its usage at the top level: complete.
    let mut reader = UsageReader::new(UsageFormat::Anthropic, Framing::Json);
    reader.feed(br#"{"type":"message","usage":{"input_tokens":20,"output_tokens":1}}"#);
    assert_eq!(reader.usage(), usage(20, 1, 0));
}

/// A stream whose usage repeats or grows chunk by chunk counts only once the chunk that ends
/// the answer (or a later one) gave it: a stream cut before its end has unknown usage, not the
/// prompt alone.
macro_rules! cut {
    ($($name:ident: $format:ident, $framing:ident, $body:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check(UsageFormat::$format, Framing::$framing, $body, $expected);
        }
    )*};
}

cut! {
    cut_gemini_sse_before_its_last_chunk: Gemini, Sse, concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}],\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n",
    ) => None;
    cut_gemini_sse_whole: Gemini, Sse, concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":8000,\"totalTokenCount\":8007}}\n\n",
    ) => usage(7, 8000, 0);
    cut_gemini_sse_reason_after_usage_in_its_chunk: Gemini, Sse,
        "data: {\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":3},\"candidates\":[{\"finishReason\":\"MAX_TOKENS\",\"index\":0}]}\n\n"
        => usage(7, 3, 0);
    cut_gemini_sse_reason_in_a_later_chunk_without_usage: Gemini, Sse, concat!(
        "data: {\"usageMetadata\":{\"promptTokenCount\":7}}\n\n",
        "data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n",
    ) => None;
    cut_gemini_blocked_prompt: Gemini, Sse,
        "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":7,\"totalTokenCount\":7}}\n\n"
        => usage(7, 0, 0);
    cut_gemini_null_reason_is_no_end: Gemini, Sse,
        "data: {\"candidates\":[{\"finishReason\":null}],\"usageMetadata\":{\"promptTokenCount\":7}}\n\n"
        => None;
    // A model's own function arguments cannot end the answer: they sit deeper.
    cut_gemini_reason_inside_content_is_no_end: Gemini, Sse,
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":{\"finishReason\":\"STOP\"}}}]}}],\"usageMetadata\":{\"promptTokenCount\":7}}\n\n"
        => None;
    cut_gemini_reason_in_text_is_no_end: Gemini, Sse,
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\\"finishReason\\\":\\\"STOP\\\"\"}]}}],\"usageMetadata\":{\"promptTokenCount\":7}}\n\n"
        => None;
    cut_gemini_array_before_its_last_element: Gemini, Json,
        "[{\"usageMetadata\":{\"promptTokenCount\":50000}}\n,{\"candidates\":[{\"content\":{}}],\"usageMetadata\":{\"promptTokenCount\":50000}}"
        => None;
    cut_gemini_array_closed_without_a_reason: Gemini, Json,
        "[{\"usageMetadata\":{\"promptTokenCount\":50}}]"
        => usage(50, 0, 0);
    cut_gemini_document_not_closed: Gemini, Json,
        "{\"usageMetadata\":{\"promptTokenCount\":50,\"candidatesTokenCount\":2}, \"modelVersion\":"
        => None;
    cut_openai_per_chunk_usage_before_the_finish: OpenAiChat, Sse, concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
    ) => None;
    cut_openai_per_chunk_usage_whole: OpenAiChat, Sse, concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
    ) => usage(9, 2, 0);
    cut_responses_usage_in_progress: OpenAiResponses, Sse,
        "data: {\"type\":\"response.in_progress\",\"response\":{\"status\":\"in_progress\",\"usage\":{\"input_tokens\":9,\"output_tokens\":0}}}\n\n"
        => None;
    cut_responses_usage_completed: OpenAiResponses, Sse, concat!(
        "data: {\"type\":\"response.in_progress\",\"response\":{\"status\":\"in_progress\",\"usage\":{\"input_tokens\":9,\"output_tokens\":0}}}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":4},\"status\":\"completed\"}}\n\n",
    ) => usage(9, 4, 0);
    // An item's status inside the response is not the response's.
    cut_responses_item_status_is_no_end: OpenAiResponses, Sse,
        "data: {\"type\":\"response.output_item.done\",\"response\":{\"output\":[{\"status\":\"completed\"}],\"usage\":{\"input_tokens\":9,\"output_tokens\":0}}}\n\n"
        => None;
}

/// Usage given more than once: each count is the largest any reading gave, never the last.
macro_rules! repeated {
    ($($name:ident: $format:ident, $framing:ident, $body:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check(UsageFormat::$format, Framing::$framing, $body, $expected);
        }
    )*};
}

repeated! {
    repeated_duplicate_key: OpenAiChat, Json,
        r#"{"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100},"usage":{"prompt_tokens":1,"completion_tokens":1}}"#
        => usage(1000, 100, 0);
    repeated_count_in_one_object_is_unreadable: OpenAiChat, Json,
        r#"{"usage":{"prompt_tokens":1000,"completion_tokens":100,"completion_tokens":1}}"#
        => None;
    repeated_second_document: OpenAiChat, Json,
        r#"{"usage":{"prompt_tokens":1000,"completion_tokens":100}}{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#
        => usage(1000, 100, 0);
    repeated_stream_usage_chunks: OpenAiChat, Sse, concat!(
        "data: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":100}}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":1}}\n\n",
    ) => usage(1000, 100, 0);
    repeated_responses_top_level_after_completed: OpenAiResponses, Sse, concat!(
        "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":1000,\"output_tokens\":500}}}\n\n",
        "data: {\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}\n\n",
    ) => usage(1000, 500, 0);
    // message_start's output is a placeholder; the delta's input restates, never lowers.
    repeated_anthropic_delta_restating_zero_input: Anthropic, Sse, concat!(
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":0,\"output_tokens\":100}}\n\n",
    ) => usage(5000, 100, 0);
}

/// Anthropic's usage needs its input count: one missing or unreadable leaves it unknown, never
/// charged as 0 input.
macro_rules! anthropic_input {
    ($($name:ident: $framing:ident, $body:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check(UsageFormat::Anthropic, Framing::$framing, $body, $expected);
        }
    )*};
}

anthropic_input! {
    anthropic_input_missing_in_a_json_answer: Json, r#"{"usage":{"output_tokens":100}}"# => None;
    anthropic_input_missing_from_message_start: Sse, concat!(
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":100}}\n\n",
    ) => None;
    anthropic_no_message_start: Sse,
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":100}}\n\n" => None;
    anthropic_input_unreadable: Sse, concat!(
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":\"5000\",\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":100}}\n\n",
    ) => None;
}

/// Cache writes by time to live: the breakdown counts where it is larger than the total.
#[test]
fn anthropic_cache_writes_by_time_to_live() {
    check(
        UsageFormat::Anthropic,
        Framing::Json,
        r#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":100000,"cache_creation":{"ephemeral_1h_input_tokens":100000},"output_tokens":100}}"#,
        written(100_010, 100, 0, 100_000),
    );
    check(
        UsageFormat::Anthropic,
        Framing::Json,
        r#"{"usage":{"input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":30,"ephemeral_1h_input_tokens":40},"output_tokens":1}}"#,
        written(80, 1, 0, 70),
    );
}

/// A Gemini total alone is not usage, but it is the input the answer had at least.
#[test]
fn gemini_total_alone_is_known_input() {
    let mut reader = UsageReader::new(UsageFormat::Gemini, Framing::Json);
    reader.feed(br#"{"usageMetadata":{"totalTokenCount":100000}}"#);
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.partial_input(), Some(100_000));
}

/// A stream cut before its end still shows the input it reported.
#[test]
fn cut_gemini_stream_keeps_its_input() {
    let mut reader = UsageReader::new(UsageFormat::Gemini, Framing::Sse);
    reader.feed(b"data: {\"usageMetadata\":{\"promptTokenCount\":7}}\n\n");
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.partial_input(), Some(7));
}
