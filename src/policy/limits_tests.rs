//! The request limits through the whole decision: one named case a line, each with the body
//! forwarded (compared as JSON, and checked to be strict JSON) or the refusal.

use super::*;
use crate::policy::strict_json::validate;
use crate::policy::{Decision, Facts, Forward, Policy};
use serde_json::Value;

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" },
    "azure": { "cluster": "azure", "api": "azure_openai" },
    "bedrock": { "cluster": "bedrock", "api": "bedrock" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
    "claude": { "provider": "anthropic" },
    "gemini-flash": { "provider": "gemini" },
    "gemini-alias": { "provider": "gemini", "upstream_model": "gemini-2.5-flash" },
    "prod": { "provider": "azure" },
    "m": { "provider": "bedrock" }
  },
  "consumers": {
    "default": { "models": ["*"], "rules": [] },
    "capped": { "models": ["*"], "max_output_tokens": 100 },
    "strict": { "models": ["*"], "max_output_tokens": 100, "max_output_tokens_action": "refuse" },
    "trial": { "models": ["*"], "max_output_tokens": 100, "mode": "audit" },
    "trial-strict": { "models": ["*"], "max_output_tokens": 100,
                      "max_output_tokens_action": "refuse", "mode": "audit" }
  },
  "rules": [ { "id": "no-email", "detect": "email", "action": "redact" } ]
}"#;

fn policy() -> Policy {
    Policy::from_json(POLICY.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn run(policy: &Policy, consumer: &str, path: &str, body: &str) -> (Result<Forward, Reply>, Facts) {
    let headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("x-team".into(), consumer.as_bytes().to_vec()),
    ];
    let pending = match policy.on_headers(&headers, None) {
        Ok(pending) => pending,
        Err(reply) => return (Err(reply), Facts::default()),
    };
    let (decision, facts) = policy.on_body(&pending, body.as_bytes());
    match decision {
        Decision::Forward(forward) => (Ok(forward), facts),
        Decision::Refuse(reply) => (Err(reply), facts),
    }
}

/// What a case expects.
enum Expect {
    /// Forwarded with this body (as JSON), not audited.
    Body(&'static str),
    /// Forwarded as the client sent it, not audited.
    Same,
    /// Forwarded as the client sent it, recorded as an audit with this code.
    Audited(&'static str),
    /// Refused with this status and code.
    Refused(u16, &'static str),
}
use Expect::*;

fn check(policy: &Policy, consumer: &str, path: &str, body: &str, expect: Expect) {
    let (result, _) = run(policy, consumer, path, body);
    let case = format!("{consumer} {path} {body}");
    match (expect, result) {
        (Body(expected), Ok(forward)) => {
            assert_eq!(forward.audited, None, "{case}");
            let forwarded = forward
                .body
                .unwrap_or_else(|| panic!("{case}: not rewritten"));
            assert_eq!(validate(&forwarded), Ok(()), "{case}: {forwarded:?}");
            let forwarded: Value = serde_json::from_slice(&forwarded).unwrap();
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_eq!(forwarded, expected, "{case}");
        }
        (Same, Ok(forward)) => {
            assert_eq!(forward.audited, None, "{case}");
            assert_eq!(forward.body, None, "{case}");
        }
        (Audited(code), Ok(forward)) => {
            let audited = forward
                .audited
                .unwrap_or_else(|| panic!("{case}: not audited"));
            assert_eq!(audited.code.as_str(), code, "{case}");
            assert_eq!(forward.body, None, "{case}");
        }
        (Refused(status, code), Err(reply)) => {
            assert_eq!(
                (reply.status(), reply.code.as_str()),
                (status, code),
                "{case}: {}",
                reply.message
            );
        }
        (_, result) => panic!("{case}: unexpected {result:?}"),
    }
}

macro_rules! cases {
    ($($name:ident: $consumer:expr, $path:expr, $body:expr => $expect:expr;)*) => {$(
        #[test]
        fn $name() {
            check(&policy(), $consumer, $path, $body, $expect);
        }
    )*};
}

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";
const RESPONSES: &str = "/v1/responses";
const MESSAGES: &str = "/v1/messages";
const COUNT_TOKENS: &str = "/v1/messages/count_tokens";
const EMBEDDINGS: &str = "/v1/embeddings";
const AZURE_CHAT: &str = "/openai/deployments/prod/chat/completions?api-version=2024-10-21";
const AZURE_COMPLETIONS: &str = "/openai/deployments/prod/completions";
const AZURE_EMBEDDINGS: &str = "/openai/deployments/prod/embeddings";
const GEMINI: &str = "/v1beta/models/gemini-flash:generateContent";
const GEMINI_STREAM: &str = "/v1beta/models/gemini-flash:streamGenerateContent?alt=sse";
const GEMINI_COUNT: &str = "/v1beta/models/gemini-flash:countTokens";
const CONVERSE: &str = "/model/m/converse";
const CONVERSE_STREAM: &str = "/model/m/converse-stream";
const INVOKE: &str = "/model/m/invoke";
const INVOKE_STREAM: &str = "/model/m/invoke-with-response-stream";

// Output-token fields per API: under, at, over the cap (clamped), missing (added), null.
cases! {
    chat_max_tokens_under: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":50}"# => Same;
    chat_max_tokens_at_cap: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":100}"# => Same;
    chat_max_tokens_zero: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":0}"# => Same;
    chat_max_tokens_over: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":500}"# => Body(r#"{"model":"gpt-4o","max_tokens":100}"#);
    chat_max_completion_tokens_over: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":500}"# => Body(r#"{"model":"gpt-4o","max_completion_tokens":100}"#);
    chat_both_over: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":101,"max_completion_tokens":5000}"# => Body(r#"{"model":"gpt-4o","max_tokens":100,"max_completion_tokens":100}"#);
    chat_one_over_one_under: "capped", CHAT, r#"{"max_tokens":7,"model":"gpt-4o","max_completion_tokens":5000}"# => Body(r#"{"model":"gpt-4o","max_tokens":7,"max_completion_tokens":100}"#);
    chat_u64_max: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":18446744073709551615}"# => Body(r#"{"model":"gpt-4o","max_tokens":100}"#);
    chat_missing_adds_max_completion_tokens: "capped", CHAT, r#"{"model":"gpt-4o","messages":[]}"# => Body(r#"{"model":"gpt-4o","messages":[],"max_completion_tokens":100}"#);
    chat_null_max_completion_tokens_replaced: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":null}"# => Body(r#"{"model":"gpt-4o","max_completion_tokens":100}"#);
    chat_null_max_tokens_adds_the_other: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":null}"# => Body(r#"{"model":"gpt-4o","max_tokens":null,"max_completion_tokens":100}"#);
    chat_null_and_value: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":null,"max_completion_tokens":50}"# => Same;
    completions_over: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","max_tokens":500}"# => Body(r#"{"model":"gpt-4o","prompt":"x","max_tokens":100}"#);
    completions_missing_adds_max_tokens: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x"}"# => Body(r#"{"model":"gpt-4o","prompt":"x","max_tokens":100}"#);
    completions_max_completion_tokens_not_its_field: "capped", COMPLETIONS, r#"{"model":"gpt-4o","max_completion_tokens":500,"max_tokens":1}"# => Same;
    azure_chat_over: "capped", AZURE_CHAT, r#"{"max_completion_tokens":500}"# => Body(r#"{"max_completion_tokens":100}"#);
    azure_chat_missing: "capped", AZURE_CHAT, r#"{"messages":[]}"# => Body(r#"{"messages":[],"max_completion_tokens":100}"#);
    azure_chat_empty_body_object: "capped", AZURE_CHAT, r#"{}"# => Body(r#"{"max_completion_tokens":100}"#);
    azure_completions_missing: "capped", AZURE_COMPLETIONS, r#"{"prompt":"x"}"# => Body(r#"{"prompt":"x","max_tokens":100}"#);
    azure_embeddings_no_cap: "capped", AZURE_EMBEDDINGS, r#"{"input":"x"}"# => Same;
    responses_over: "capped", RESPONSES, r#"{"model":"gpt-4o","input":"x","max_output_tokens":500}"# => Body(r#"{"model":"gpt-4o","input":"x","max_output_tokens":100}"#);
    responses_missing: "capped", RESPONSES, r#"{"model":"gpt-4o","input":"x"}"# => Body(r#"{"model":"gpt-4o","input":"x","max_output_tokens":100}"#);
    responses_null: "capped", RESPONSES, r#"{"model":"gpt-4o","max_output_tokens":null}"# => Body(r#"{"model":"gpt-4o","max_output_tokens":100}"#);
    responses_max_tokens_not_its_field: "capped", RESPONSES, r#"{"model":"gpt-4o","max_tokens":500,"max_output_tokens":5}"# => Same;
    messages_over: "capped", MESSAGES, r#"{"model":"claude","max_tokens":4096,"messages":[]}"# => Body(r#"{"model":"claude","max_tokens":100,"messages":[]}"#);
    messages_missing: "capped", MESSAGES, r#"{"model":"claude","messages":[]}"# => Body(r#"{"model":"claude","messages":[],"max_tokens":100}"#);
    count_tokens_no_cap: "capped", COUNT_TOKENS, r#"{"model":"claude","messages":[]}"# => Same;
    embeddings_no_cap: "capped", EMBEDDINGS, r#"{"model":"gpt-4o","input":"x"}"# => Same;
    uncapped_consumer_untouched: "default", CHAT, r#"{"model":"gpt-4o","max_tokens":5000}"# => Same;
}

// Gemini: generationConfig.maxOutputTokens, in either spelling of either key.
cases! {
    gemini_over: "capped", GEMINI, r#"{"contents":[],"generationConfig":{"maxOutputTokens":500}}"# => Body(r#"{"contents":[],"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_snake_over: "capped", GEMINI, r#"{"generation_config":{"max_output_tokens":500}}"# => Body(r#"{"generation_config":{"max_output_tokens":100}}"#);
    gemini_mixed_spellings_over: "capped", GEMINI, r#"{"generationConfig":{"max_output_tokens":500}}"# => Body(r#"{"generationConfig":{"max_output_tokens":100}}"#);
    gemini_under: "capped", GEMINI, r#"{"generationConfig":{"temperature":1,"maxOutputTokens":5}}"# => Same;
    gemini_stream_over: "capped", GEMINI_STREAM, r#"{"generationConfig":{"maxOutputTokens":500}}"# => Body(r#"{"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_config_absent: "capped", GEMINI, r#"{"contents":[]}"# => Body(r#"{"contents":[],"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_config_empty: "capped", GEMINI, r#"{"contents":[],"generationConfig":{ }}"# => Body(r#"{"contents":[],"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_config_other_keys: "capped", GEMINI, r#"{"generationConfig":{"temperature":0.5,"stopSequences":["x"]}}"# => Body(r#"{"generationConfig":{"temperature":0.5,"stopSequences":["x"],"maxOutputTokens":100}}"#);
    gemini_snake_config_gets_snake_field: "capped", GEMINI, r#"{"generation_config":{"temperature":0.5}}"# => Body(r#"{"generation_config":{"temperature":0.5,"max_output_tokens":100}}"#);
    gemini_config_null: "capped", GEMINI, r#"{"generationConfig":null}"# => Body(r#"{"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_snake_config_null: "capped", GEMINI, r#"{"generation_config":null}"# => Body(r#"{"generation_config":{"max_output_tokens":100}}"#);
    gemini_field_null: "capped", GEMINI, r#"{"generationConfig":{"maxOutputTokens":null}}"# => Body(r#"{"generationConfig":{"maxOutputTokens":100}}"#);
    gemini_other_spelling_null_is_replaced: "capped", GEMINI, r#"{"generationConfig":{"max_output_tokens":null}}"# => Body(r#"{"generationConfig":{"max_output_tokens":100}}"#);
    gemini_both_config_spellings: "capped", GEMINI, r#"{"generationConfig":{"maxOutputTokens":5},"generation_config":{"max_output_tokens":500}}"# => Refused(400, "invalid_request");
    gemini_both_config_spellings_one_null: "capped", GEMINI, r#"{"generationConfig":{"maxOutputTokens":5},"generation_config":null}"# => Refused(400, "invalid_request");
    gemini_both_field_spellings: "capped", GEMINI, r#"{"generationConfig":{"maxOutputTokens":5,"max_output_tokens":500}}"# => Refused(400, "invalid_request");
    gemini_both_field_spellings_one_null: "capped", GEMINI, r#"{"generationConfig":{"max_output_tokens":null,"maxOutputTokens":5}}"# => Refused(400, "invalid_request");
    gemini_config_not_an_object: "capped", GEMINI, r#"{"generationConfig":[]}"# => Refused(400, "invalid_request");
    gemini_field_float: "capped", GEMINI, r#"{"generationConfig":{"maxOutputTokens":5.0}}"# => Refused(400, "invalid_request");
    gemini_count_tokens_no_cap: "capped", GEMINI_COUNT, r#"{"contents":[],"generationConfig":{"maxOutputTokens":500}}"# => Same;
    gemini_uncapped_both_spellings_untouched: "default", GEMINI, r#"{"generationConfig":{},"generation_config":{}}"# => Same;
    converse_over: "capped", CONVERSE, r#"{"messages":[],"inferenceConfig":{"maxTokens":500,"temperature":0}}"# => Body(r#"{"messages":[],"inferenceConfig":{"maxTokens":100,"temperature":0}}"#);
    converse_stream_over: "capped", CONVERSE_STREAM, r#"{"inferenceConfig":{"maxTokens":500}}"# => Body(r#"{"inferenceConfig":{"maxTokens":100}}"#);
    converse_config_absent: "capped", CONVERSE, r#"{"messages":[]}"# => Body(r#"{"messages":[],"inferenceConfig":{"maxTokens":100}}"#);
    converse_config_empty: "capped", CONVERSE, r#"{"inferenceConfig":{}}"# => Body(r#"{"inferenceConfig":{"maxTokens":100}}"#);
    converse_config_without_field: "capped", CONVERSE, r#"{"inferenceConfig":{"topP":1}}"# => Body(r#"{"inferenceConfig":{"topP":1,"maxTokens":100}}"#);
    converse_config_null: "capped", CONVERSE, r#"{"inferenceConfig":null}"# => Body(r#"{"inferenceConfig":{"maxTokens":100}}"#);
    converse_field_null: "capped", CONVERSE, r#"{"inferenceConfig":{"maxTokens":null}}"# => Body(r#"{"inferenceConfig":{"maxTokens":100}}"#);
    converse_config_string: "capped", CONVERSE, r#"{"inferenceConfig":"x"}"# => Refused(400, "invalid_request");
    converse_model_field_max_tokens: "capped", CONVERSE, r#"{"inferenceConfig":{"maxTokens":50},"additionalModelRequestFields":{"max_tokens":100000}}"# => Refused(400, "invalid_request");
    converse_model_field_titan: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"textGenerationConfig":{},"maxTokenCount":9000}}"# => Refused(400, "invalid_request");
    converse_model_field_llama: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_gen_len":9000}}"# => Refused(400, "invalid_request");
    converse_model_field_escaped: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_\u0074okens":9000}}"# => Refused(400, "invalid_request");
    converse_model_fields_other: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"top_k":5}}"# => Body(r#"{"additionalModelRequestFields":{"top_k":5},"inferenceConfig":{"maxTokens":100}}"#);
    converse_snake_is_not_read: "capped", CONVERSE, r#"{"inferenceConfig":{"maxTokens":5},"inference_config":{"maxTokens":500}}"# => Same;
    invoke_cannot_be_capped: "capped", INVOKE, r#"{"max_tokens":5}"# => Refused(403, "max_output_tokens_exceeded");
    invoke_stream_cannot_be_capped: "strict", INVOKE_STREAM, r#"{}"# => Refused(403, "max_output_tokens_exceeded");
    invoke_audit_forwards: "trial", INVOKE, r#"{"max_tokens":5000}"# => Audited("max_output_tokens_exceeded");
    invoke_uncapped_forwards: "default", INVOKE, r#"{"max_tokens":5000}"# => Same;
}

// Values that are not a token count.
cases! {
    float: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":1.0}"# => Refused(400, "invalid_request");
    exponent: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":1e3}"# => Refused(400, "invalid_request");
    string: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":"100"}"# => Refused(400, "invalid_request");
    negative: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":-1}"# => Refused(400, "invalid_request");
    negative_zero: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":-0}"# => Refused(400, "invalid_request");
    boolean: "capped", RESPONSES, r#"{"model":"gpt-4o","max_output_tokens":true}"# => Refused(400, "invalid_request");
    object: "capped", MESSAGES, r#"{"model":"claude","max_tokens":{"n":1}}"# => Refused(400, "invalid_request");
    array: "capped", MESSAGES, r#"{"model":"claude","max_tokens":[1]}"# => Refused(400, "invalid_request");
    over_u64: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":18446744073709551616}"# => Refused(400, "invalid_request");
    converse_float: "capped", CONVERSE, r#"{"inferenceConfig":{"maxTokens":1.5}}"# => Refused(400, "invalid_request");
    invalid_even_in_audit_mode: "trial", CHAT, r#"{"model":"gpt-4o","max_tokens":"1"}"# => Refused(400, "invalid_request");
    not_read_without_a_cap: "default", CHAT, r#"{"model":"gpt-4o","max_tokens":"1"}"# => Same;
}

// Refuse, and audit mode.
cases! {
    refuse_over: "strict", CHAT, r#"{"model":"gpt-4o","max_tokens":500}"# => Refused(403, "max_output_tokens_exceeded");
    refuse_second_field_over: "strict", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":5,"max_tokens":500}"# => Refused(403, "max_output_tokens_exceeded");
    refuse_gemini_over: "strict", GEMINI, r#"{"generationConfig":{"maxOutputTokens":500}}"# => Refused(403, "max_output_tokens_exceeded");
    refuse_converse_over: "strict", CONVERSE, r#"{"inferenceConfig":{"maxTokens":500}}"# => Refused(403, "max_output_tokens_exceeded");
    refuse_under: "strict", CHAT, r#"{"model":"gpt-4o","max_tokens":100}"# => Same;
    refuse_still_adds_when_missing: "strict", MESSAGES, r#"{"model":"claude","messages":[]}"# => Body(r#"{"model":"claude","messages":[],"max_tokens":100}"#);
    audit_clamp_is_recorded_not_made: "trial", CHAT, r#"{"model":"gpt-4o","max_tokens":500}"# => Audited("max_output_tokens_exceeded");
    audit_refusal_is_recorded_and_forwarded: "trial-strict", CHAT, r#"{"model":"gpt-4o","max_tokens":500}"# => Audited("max_output_tokens_exceeded");
    audit_adds_nothing: "trial", CHAT, r#"{"model":"gpt-4o"}"# => Same;
    audit_under: "trial-strict", GEMINI, r#"{"generationConfig":{"maxOutputTokens":5}}"# => Same;
}

// Stream usage: asked of OpenAI-style streams, whatever the consumer.
cases! {
    stream_adds_options: "default", CHAT, r#"{"model":"gpt-4o","stream":true}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_options_null: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":null}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_options_empty: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{}}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_options_other_key: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#);
    stream_include_usage_false: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false}}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_include_usage_null: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":null}}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_include_usage_true: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"# => Same;
    stream_include_usage_string_left: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":"yes"}}"# => Same;
    stream_options_string_left: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":"x"}"# => Same;
    stream_options_before_stream: "default", CHAT, r#"{"stream_options":{},"model":"gpt-4o","stream":true}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_false: "default", CHAT, r#"{"model":"gpt-4o","stream":false}"# => Same;
    stream_string: "default", CHAT, r#"{"model":"gpt-4o","stream":"true"}"# => Same;
    no_stream_options_unread: "default", CHAT, r#"{"model":"gpt-4o","stream_options":{"include_usage":false}}"# => Same;
    stream_completions: "default", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","stream":true}"# => Body(r#"{"model":"gpt-4o","prompt":"x","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_azure_chat: "default", AZURE_CHAT, r#"{"stream":true}"# => Body(r#"{"stream":true,"stream_options":{"include_usage":true}}"#);
    stream_azure_completions: "default", AZURE_COMPLETIONS, r#"{"stream":true}"# => Body(r#"{"stream":true,"stream_options":{"include_usage":true}}"#);
    stream_responses_untouched: "default", RESPONSES, r#"{"model":"gpt-4o","stream":true}"# => Same;
    stream_messages_untouched: "default", MESSAGES, r#"{"model":"claude","stream":true}"# => Same;
    stream_embeddings_untouched: "default", EMBEDDINGS, r#"{"model":"gpt-4o","stream":true}"# => Same;
    stream_with_cap_added: "capped", CHAT, r#"{"model":"gpt-4o","stream":true}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":100}"#);
    stream_in_audit_mode_still_reports_usage: "trial", CHAT, r#"{"model":"gpt-4o","stream":true,"max_tokens":5}"# => Body(r#"{"model":"gpt-4o","stream":true,"max_tokens":5,"stream_options":{"include_usage":true}}"#);
}

/// The forwarded bytes, for cases where the exact text matters (commas, white space).
fn forwarded(consumer: &str, path: &str, body: &str) -> String {
    let (result, _) = run(&policy(), consumer, path, body);
    String::from_utf8(result.unwrap().body.unwrap()).unwrap()
}

#[test]
fn insertions_keep_every_other_byte_and_need_no_stray_comma() {
    for (consumer, path, body, expected) in [
        ("capped", GEMINI, "{}", r#"{"generationConfig":{"maxOutputTokens":100}}"#),
        ("capped", GEMINI, " { \n } ", " { \n \"generationConfig\":{\"maxOutputTokens\":100}} "),
        ("capped", GEMINI, r#"{"generationConfig":{}}"#, r#"{"generationConfig":{"maxOutputTokens":100}}"#),
        ("capped", GEMINI, r#"{"generationConfig":{ "topK" : 1 } }"#, r#"{"generationConfig":{ "topK" : 1 ,"maxOutputTokens":100} }"#),
        ("capped", CONVERSE, "{ }", r#"{ "inferenceConfig":{"maxTokens":100}}"#),
        ("default", AZURE_CHAT, r#"{"stream" : true }"#, r#"{"stream" : true ,"stream_options":{"include_usage":true}}"#),
        ("default", AZURE_CHAT, r#"{"stream":true,"stream_options":{ }}"#, r#"{"stream":true,"stream_options":{ "include_usage":true}}"#),
        ("capped", AZURE_CHAT, "{\"stream\":true}\n", "{\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_completion_tokens\":100}\n"),
        ("capped", AZURE_CHAT, r#"{"max_tokens": 5000 }"#, r#"{"max_tokens": 100 }"#),
    ] {
        assert_eq!(forwarded(consumer, path, body), expected, "{path} {body}");
    }
}

#[test]
fn every_edit_is_made_in_one_body() {
    // Alias, redaction, stream usage and a clamp, with the fields on either side of the text.
    let body = r#"{"max_tokens":900,"model":"fast","messages":[{"role":"user","content":"mail a@example.com"}],"stream":true,"max_completion_tokens":null}"#;
    let expected = r#"{"max_tokens":100,"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail [REDACTED:no-email]"}],"stream":true,"max_completion_tokens":null,"stream_options":{"include_usage":true}}"#;
    let (result, facts) = run(&policy(), "capped", CHAT, body);
    let forward = result.unwrap();
    assert_eq!(String::from_utf8(forward.body.unwrap()).unwrap(), expected);
    assert_eq!(facts.redactions, 1);
    assert!(facts.output_cap_clamped);
    assert!(!facts.output_cap_added);
    assert!(facts.stream_usage_added);

    // A model in the path (rewritten there), a redaction and the config added.
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"to b@example.com"}]}]}"#;
    let path = "/v1beta/models/gemini-alias:generateContent";
    let (result, facts) = run(&policy(), "capped", path, body);
    let forward = result.unwrap();
    assert_eq!(
        forward.path.as_deref(),
        Some("/v1beta/models/gemini-2.5-flash:generateContent")
    );
    let forwarded: Value = serde_json::from_slice(&forward.body.unwrap()).unwrap();
    assert_eq!(
        forwarded,
        serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": "to [REDACTED:no-email]"}]}],
            "generationConfig": {"maxOutputTokens": 100}
        })
    );
    assert!(facts.output_cap_added && !facts.output_cap_clamped);
}

#[test]
fn text_in_located_objects_is_still_inspected() {
    // Values the limits locate are walked like any other: a redaction inside one lands in the
    // same copy as the limits' own edits.
    let body = r#"{"generationConfig":{"stopSequences":["c@example.com"],"maxOutputTokens":500},"contents":[]}"#;
    let expected = r#"{"generationConfig":{"stopSequences":["[REDACTED:no-email]"],"maxOutputTokens":100},"contents":[]}"#;
    assert_eq!(forwarded("capped", GEMINI, body), expected);
    let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"note":"d@example.com"},"messages":[{"role":"user","content":"e@example.com"}]}"#;
    let expected = r#"{"model":"gpt-4o","stream":true,"stream_options":{"note":"[REDACTED:no-email]","include_usage":true},"messages":[{"role":"user","content":"[REDACTED:no-email]"}]}"#;
    assert_eq!(
        forwarded("capped", CHAT, body).replace(",\"max_completion_tokens\":100", ""),
        expected
    );
}

#[test]
fn refusals_name_the_field_the_value_and_the_cap() {
    let (result, _) = run(
        &policy(),
        "strict",
        CHAT,
        r#"{"model":"gpt-4o","max_tokens":5000}"#,
    );
    let reply = result.unwrap_err();
    assert!(reply.code.is_policy_denial());
    for part in ["\"max_tokens\"", "5000", "100", "\"strict\""] {
        assert!(reply.message.contains(part), "{part}: {}", reply.message);
    }
    let (result, _) = run(
        &policy(),
        "capped",
        GEMINI,
        r#"{"generationConfig":{"maxOutputTokens":"5"}}"#,
    );
    let reply = result.unwrap_err();
    assert!(
        reply
            .message
            .contains("\"generationConfig.maxOutputTokens\""),
        "{}",
        reply.message
    );
    assert_eq!(reply.shape, ApiFamily::Gemini);
    let (result, _) = run(
        &policy(),
        "capped",
        GEMINI,
        r#"{"generationConfig":{},"generation_config":{}}"#,
    );
    let reply = result.unwrap_err();
    assert!(
        reply
            .message
            .contains("\"generationConfig\" and \"generation_config\""),
        "{}",
        reply.message
    );
    let (result, _) = run(&policy(), "capped", INVOKE, "{}");
    let reply = result.unwrap_err();
    assert!(reply.message.contains("Converse"), "{}", reply.message);
    assert_eq!(reply.shape, ApiFamily::Bedrock);
}

#[test]
fn audit_mode_records_what_the_cap_would_have_done() {
    let (result, facts) = run(
        &policy(),
        "trial",
        CHAT,
        r#"{"model":"gpt-4o","max_tokens":500}"#,
    );
    let forward = result.unwrap();
    let audited = forward.audited.unwrap();
    assert_eq!(audited.code, Code::MaxOutputTokensExceeded);
    assert!(audited.message.contains("500"), "{}", audited.message);
    assert!(!facts.output_cap_clamped && !facts.output_cap_added);
    // A model denial audited first keeps its code.
    let text = POLICY.replace(
        r#""trial": { "models": ["*"]"#,
        r#""trial": { "models": ["claude"]"#,
    );
    let policy = Policy::from_json(text.as_bytes()).unwrap();
    let (result, _) = run(
        &policy,
        "trial",
        CHAT,
        r#"{"model":"gpt-4o","max_tokens":500}"#,
    );
    assert_eq!(
        result.unwrap().audited.unwrap().code,
        Code::ModelNotApproved
    );
}

#[test]
fn stream_usage_can_be_turned_off() {
    let text = POLICY.replacen('{', r#"{ "usage": { "inject_stream_usage": false },"#, 1);
    let policy = Policy::from_json(text.as_bytes()).unwrap();
    assert!(!policy.inject_stream_usage);
    check(
        &policy,
        "default",
        CHAT,
        r#"{"model":"gpt-4o","stream":true}"#,
        Same,
    );
    assert!(self::policy().inject_stream_usage);
}

#[test]
fn usage_format_follows_the_endpoint() {
    use UsageFormat::*;
    for (path, body, format) in [
        (CHAT, r#"{"model":"gpt-4o"}"#, Some(OpenAiChat)),
        (COMPLETIONS, r#"{"model":"gpt-4o"}"#, Some(OpenAiChat)),
        (EMBEDDINGS, r#"{"model":"gpt-4o"}"#, Some(OpenAiChat)),
        (AZURE_CHAT, "{}", Some(OpenAiChat)),
        (AZURE_COMPLETIONS, "{}", Some(OpenAiChat)),
        (AZURE_EMBEDDINGS, "{}", Some(OpenAiChat)),
        (RESPONSES, r#"{"model":"gpt-4o"}"#, Some(OpenAiResponses)),
        (MESSAGES, r#"{"model":"claude"}"#, Some(Anthropic)),
        (COUNT_TOKENS, r#"{"model":"claude"}"#, None),
        (GEMINI, "{}", Some(Gemini)),
        (GEMINI_STREAM, "{}", Some(Gemini)),
        (GEMINI_COUNT, "{}", None),
        (CONVERSE, "{}", Some(BedrockConverse)),
        (CONVERSE_STREAM, "{}", Some(BedrockConverse)),
        (INVOKE, "{}", Some(BedrockConverse)),
        (INVOKE_STREAM, "{}", Some(BedrockConverse)),
    ] {
        let (result, _) = run(&policy(), "default", path, body);
        assert_eq!(result.unwrap().usage, format, "{path}");
    }
}

#[test]
fn watched_keys_per_endpoint() {
    let all = Watch {
        stream: true,
        output_tokens: true,
    };
    let stream_only = Watch {
        stream: true,
        output_tokens: false,
    };
    for (endpoint, watch, parent, key, expected) in [
        (
            Endpoint::ChatCompletions,
            all,
            None,
            "stream",
            Some(Watched::Stream),
        ),
        (
            Endpoint::ChatCompletions,
            all,
            None,
            "max_tokens",
            Some(Watched::MaxTokens),
        ),
        (
            Endpoint::ChatCompletions,
            stream_only,
            None,
            "max_tokens",
            None,
        ),
        (
            Endpoint::ChatCompletions,
            all,
            None,
            "max_output_tokens",
            None,
        ),
        (Endpoint::Responses, all, None, "stream", None),
        (
            Endpoint::Responses,
            all,
            None,
            "max_output_tokens",
            Some(Watched::MaxOutputTokens),
        ),
        (
            Endpoint::Messages,
            all,
            None,
            "max_tokens",
            Some(Watched::MaxTokens),
        ),
        (Endpoint::Embeddings, all, None, "max_tokens", None),
        (
            Endpoint::GeminiGenerate,
            all,
            None,
            "generation_config",
            Some(Watched::GenerationConfigSnake),
        ),
        (Endpoint::GeminiGenerate, all, None, "maxOutputTokens", None),
        (
            Endpoint::GeminiGenerate,
            all,
            Some(Watched::GenerationConfigSnake),
            "maxOutputTokens",
            Some(Watched::GeminiMaxOutputTokens),
        ),
        (
            Endpoint::BedrockConverse,
            all,
            Some(Watched::InferenceConfig),
            "maxTokens",
            Some(Watched::InferenceMaxTokens),
        ),
        (
            Endpoint::BedrockConverse,
            all,
            Some(Watched::InferenceConfig),
            "max_tokens",
            None,
        ),
        (
            Endpoint::ChatCompletions,
            all,
            Some(Watched::StreamOptions),
            "include_usage",
            Some(Watched::IncludeUsage),
        ),
        (
            Endpoint::ChatCompletions,
            all,
            Some(Watched::MaxTokens),
            "include_usage",
            None,
        ),
    ] {
        assert_eq!(
            watched(endpoint, watch, parent, key),
            expected,
            "{endpoint:?} {parent:?} {key}"
        );
    }
}

#[test]
fn inserts_into_one_object_are_merged() {
    let object = ObjectEnd {
        close: 1,
        empty: true,
    };
    let edits = into_edits(vec![
        Change::Insert {
            object,
            member: r#""a":1"#.into(),
        },
        Change::Replace {
            span: 0..0,
            text: String::new(),
        },
        Change::Insert {
            object,
            member: r#""b":2"#.into(),
        },
    ]);
    assert_eq!(
        edits.last(),
        Some(&Edit {
            span: 1..1,
            text: r#""a":1,"b":2"#.into()
        })
    );
}
