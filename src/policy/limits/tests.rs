//! The request limits through the whole decision: one named case a line, each with the body
//! forwarded (compared as JSON, and checked to be strict JSON) or the refusal.

use super::*;
use crate::pipeline::classification::{classify_request, IdentityInputs};
use crate::pipeline::decision::decide_body;
use crate::pipeline::{Decision, Facts, Forward};
use crate::policy::body::strict_json::validate;
use crate::policy::{ApiFamily, Code, Policy, Reply};
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
    "capped-raw": { "models": ["*"], "rules": [], "max_output_tokens": 100 },
    "strict": { "models": ["*"], "max_output_tokens": 100, "max_output_tokens_action": "refuse" },
    "trial": { "models": ["*"], "max_output_tokens": 100, "mode": "audit" },
    "trial-strict": { "models": ["*"], "max_output_tokens": 100,
                      "max_output_tokens_action": "refuse", "mode": "audit" },
    "budgeted": { "models": ["*"], "budget": { "tokens_per_day": 100000 } },
    "budget-trial": { "models": ["*"], "budget": { "tokens_per_day": 100000 }, "mode": "audit" },
    "budget-capped": { "models": ["*"], "max_output_tokens": 100,
                       "budget": { "tokens_per_day": 100000 } }
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
    let pending = match classify_request(policy, &headers, &IdentityInputs::default()) {
        Ok(pending) => pending,
        Err(reply) => return (Err(reply), Facts::default()),
    };
    let (decision, facts) = decide_body(policy, &pending, body.as_bytes());
    match decision {
        Decision::Forward(forward) => (Ok(forward), facts),
        Decision::Refuse(reply) => (Err(reply), facts),
        Decision::AnswerLocally(_) => panic!("a POST is never answered locally"),
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
    chat_max_tokens_zero: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":0}"# => Body(r#"{"model":"gpt-4o","max_tokens":100}"#);
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
    completions_max_completion_tokens_not_its_field: "capped", COMPLETIONS, r#"{"model":"gpt-4o","max_completion_tokens":500,"max_tokens":1}"# => Refused(400, "invalid_request");
    azure_chat_over: "capped", AZURE_CHAT, r#"{"max_completion_tokens":500}"# => Body(r#"{"max_completion_tokens":100}"#);
    azure_chat_missing: "capped", AZURE_CHAT, r#"{"messages":[]}"# => Body(r#"{"messages":[],"max_completion_tokens":100}"#);
    azure_chat_empty_body_object: "capped", AZURE_CHAT, r#"{}"# => Body(r#"{"max_completion_tokens":100}"#);
    azure_completions_missing: "capped", AZURE_COMPLETIONS, r#"{"prompt":"x"}"# => Body(r#"{"prompt":"x","max_tokens":100}"#);
    azure_embeddings_no_cap: "capped", AZURE_EMBEDDINGS, r#"{"input":"x"}"# => Same;
    responses_over: "capped", RESPONSES, r#"{"model":"gpt-4o","input":"x","max_output_tokens":500}"# => Body(r#"{"model":"gpt-4o","input":"x","max_output_tokens":100}"#);
    responses_missing: "capped", RESPONSES, r#"{"model":"gpt-4o","input":"x"}"# => Body(r#"{"model":"gpt-4o","input":"x","max_output_tokens":100}"#);
    responses_null: "capped", RESPONSES, r#"{"model":"gpt-4o","max_output_tokens":null}"# => Body(r#"{"model":"gpt-4o","max_output_tokens":100}"#);
    responses_max_tokens_not_its_field: "capped", RESPONSES, r#"{"model":"gpt-4o","max_tokens":500,"max_output_tokens":5}"# => Refused(400, "invalid_request");
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
    negative: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":-1}"# => Body(r#"{"model":"gpt-4o","max_completion_tokens":100}"#);
    negative_zero: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":-0}"# => Body(r#"{"model":"gpt-4o","max_tokens":100}"#);
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
    stream_include_usage_string_refused: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":"yes"}}"# => Refused(400, "invalid_request");
    stream_options_string_refused: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":"x"}"# => Refused(400, "invalid_request");
    stream_options_before_stream: "default", CHAT, r#"{"stream_options":{},"model":"gpt-4o","stream":true}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    stream_false: "default", CHAT, r#"{"model":"gpt-4o","stream":false}"# => Same;
    stream_string_refused: "default", CHAT, r#"{"model":"gpt-4o","stream":"true"}"# => Refused(400, "invalid_request");
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

// Choices multiply the output: the cap bounds the request in all, so each choice gets its share
// (clamped or refused as the action says); more choices than the cap allows tokens is refused.
cases! {
    chat_n_splits_the_cap: "capped", CHAT, r#"{"model":"gpt-4o","n":4,"max_tokens":100}"# => Body(r#"{"model":"gpt-4o","n":4,"max_tokens":25}"#);
    chat_n_share_floors: "capped", CHAT, r#"{"model":"gpt-4o","n":3,"max_completion_tokens":90}"# => Body(r#"{"model":"gpt-4o","n":3,"max_completion_tokens":33}"#);
    chat_n_within_share: "capped", CHAT, r#"{"model":"gpt-4o","n":4,"max_tokens":25}"# => Same;
    chat_n_missing_limit_gets_share: "capped", CHAT, r#"{"model":"gpt-4o","n":8}"# => Body(r#"{"model":"gpt-4o","n":8,"max_completion_tokens":12}"#);
    chat_n_one: "capped", CHAT, r#"{"model":"gpt-4o","n":1,"max_tokens":100}"# => Same;
    chat_n_null_is_one: "capped", CHAT, r#"{"model":"gpt-4o","n":null,"max_tokens":100}"# => Same;
    chat_n_zero_is_one: "capped", CHAT, r#"{"model":"gpt-4o","n":0,"max_tokens":100}"# => Same;
    chat_n_over_the_cap: "capped", CHAT, r#"{"model":"gpt-4o","n":101}"# => Refused(403, "max_output_tokens_exceeded");
    chat_n_huge: "capped", CHAT, r#"{"model":"gpt-4o","n":18446744073709551615}"# => Refused(403, "max_output_tokens_exceeded");
    chat_n_float: "capped", CHAT, r#"{"model":"gpt-4o","n":2.0}"# => Refused(400, "invalid_request");
    chat_n_string: "capped", CHAT, r#"{"model":"gpt-4o","n":"8"}"# => Refused(400, "invalid_request");
    chat_n_negative: "capped", CHAT, r#"{"model":"gpt-4o","n":-2}"# => Body(r#"{"model":"gpt-4o","n":-2,"max_completion_tokens":100}"#);
    chat_n_refuse_over_share: "strict", CHAT, r#"{"model":"gpt-4o","n":2,"max_tokens":100}"# => Refused(403, "max_output_tokens_exceeded");
    chat_n_refuse_within_share: "strict", CHAT, r#"{"model":"gpt-4o","n":2,"max_tokens":50}"# => Same;
    chat_n_refuse_adds_share: "strict", CHAT, r#"{"model":"gpt-4o","n":5}"# => Body(r#"{"model":"gpt-4o","n":5,"max_completion_tokens":20}"#);
    chat_n_audit: "trial", CHAT, r#"{"model":"gpt-4o","n":8,"max_tokens":100}"# => Audited("max_output_tokens_exceeded");
    chat_n_uncapped_untouched: "default", CHAT, r#"{"model":"gpt-4o","n":8,"max_tokens":"x"}"# => Same;
    azure_chat_n: "capped", AZURE_CHAT, r#"{"n":2,"max_completion_tokens":100}"# => Body(r#"{"n":2,"max_completion_tokens":50}"#);
    completions_n: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","n":10,"max_tokens":100}"# => Body(r#"{"model":"gpt-4o","prompt":"x","n":10,"max_tokens":10}"#);
    completions_best_of: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","best_of":20,"max_tokens":100}"# => Body(r#"{"model":"gpt-4o","prompt":"x","best_of":20,"max_tokens":5}"#);
    completions_best_of_over_n: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","n":2,"best_of":4}"# => Body(r#"{"model":"gpt-4o","prompt":"x","n":2,"best_of":4,"max_tokens":25}"#);
    completions_best_of_float: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","best_of":4.0}"# => Refused(400, "invalid_request");
    azure_completions_best_of: "capped", AZURE_COMPLETIONS, r#"{"prompt":"x","best_of":4}"# => Body(r#"{"prompt":"x","best_of":4,"max_tokens":25}"#);
    gemini_candidate_count: "capped", GEMINI, r#"{"generationConfig":{"candidateCount":8,"maxOutputTokens":100}}"# => Body(r#"{"generationConfig":{"candidateCount":8,"maxOutputTokens":12}}"#);
    gemini_candidate_count_snake: "capped", GEMINI, r#"{"generation_config":{"candidate_count":4}}"# => Body(r#"{"generation_config":{"candidate_count":4,"max_output_tokens":25}}"#);
    gemini_candidate_count_mixed: "capped", GEMINI, r#"{"generationConfig":{"candidate_count":2,"maxOutputTokens":100}}"# => Body(r#"{"generationConfig":{"candidate_count":2,"maxOutputTokens":50}}"#);
    gemini_candidate_count_both_spellings: "capped", GEMINI, r#"{"generationConfig":{"candidateCount":1,"candidate_count":8}}"# => Refused(400, "invalid_request");
    gemini_candidate_count_over_cap: "strict", GEMINI_STREAM, r#"{"generationConfig":{"candidateCount":200}}"# => Refused(403, "max_output_tokens_exceeded");
    gemini_candidate_count_string: "capped", GEMINI, r#"{"generationConfig":{"candidateCount":"8"}}"# => Refused(400, "invalid_request");
    responses_n_is_not_a_field: "capped", RESPONSES, r#"{"model":"gpt-4o","n":8,"max_output_tokens":100}"# => Refused(400, "invalid_request");
    messages_n_is_not_a_field: "capped", MESSAGES, r#"{"model":"claude","n":8,"max_tokens":100}"# => Same;
}

// Bedrock model fields are read at every depth: limits and choice counts in the model's own
// format bypass inferenceConfig.
cases! {
    converse_nova_nested_limit: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"inferenceConfig":{"max_new_tokens":5000}}}"# => Refused(400, "invalid_request");
    converse_nested_in_array: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"x":[{"y":{"maxTokens":9000}}]}}"# => Refused(400, "invalid_request");
    converse_deep_escaped: "capped", CONVERSE_STREAM, r#"{"additionalModelRequestFields":{"a":{"b":{"c":{"max_\u0074okens_to_sample":9000}}}}}"# => Refused(400, "invalid_request");
    converse_model_field_n: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"n":8}}"# => Refused(400, "invalid_request");
    converse_model_field_num_generations: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"params":{"num_generations":5}}}"# => Refused(400, "invalid_request");
    converse_model_field_candidate_count: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"generationConfig":{"candidateCount":5}}}"# => Refused(400, "invalid_request");
    converse_nested_other_fields: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"inferenceConfig":{"topK":5},"reasoning":[{"effort":"low"}]}}"# => Body(r#"{"additionalModelRequestFields":{"inferenceConfig":{"topK":5},"reasoning":[{"effort":"low"}]},"inferenceConfig":{"maxTokens":100}}"#);
    converse_nested_limit_in_a_value_is_text: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"note":"max_tokens"}}"# => Body(r#"{"additionalModelRequestFields":{"note":"max_tokens"},"inferenceConfig":{"maxTokens":100}}"#);
    converse_nested_uncapped_untouched: "default", CONVERSE, r#"{"additionalModelRequestFields":{"inferenceConfig":{"max_new_tokens":5000}}}"# => Same;
}

// Flags whose type the API defines are refused with another type, for every consumer: the
// filter and the provider must read the same value.
cases! {
    flag_stream_one: "default", CHAT, r#"{"model":"gpt-4o","stream":1}"# => Refused(400, "invalid_request");
    flag_stream_zero: "default", COMPLETIONS, r#"{"model":"gpt-4o","stream":0}"# => Refused(400, "invalid_request");
    flag_stream_object: "default", AZURE_CHAT, r#"{"stream":{}}"# => Refused(400, "invalid_request");
    flag_stream_null: "default", CHAT, r#"{"model":"gpt-4o","stream":null}"# => Same;
    flag_include_usage_string_false: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":"false"}}"# => Refused(400, "invalid_request");
    flag_include_usage_zero: "default", CHAT, r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":0}}"# => Refused(400, "invalid_request");
    flag_include_usage_without_stream: "default", CHAT, r#"{"model":"gpt-4o","stream_options":{"include_usage":0}}"# => Refused(400, "invalid_request");
    flag_responses_stream_string: "default", RESPONSES, r#"{"model":"gpt-4o","stream":"true"}"# => Refused(400, "invalid_request");
    flag_responses_background_string: "default", RESPONSES, r#"{"model":"gpt-4o","background":"true"}"# => Refused(400, "invalid_request");
    flag_responses_background_one: "default", RESPONSES, r#"{"model":"gpt-4o","background":1}"# => Refused(400, "invalid_request");
    flag_responses_background_false: "default", RESPONSES, r#"{"model":"gpt-4o","background":false}"# => Same;
    flag_messages_stream_string: "default", MESSAGES, r#"{"model":"claude","stream":"yes"}"# => Refused(400, "invalid_request");
    flag_messages_stream_true: "default", MESSAGES, r#"{"model":"claude","stream":true}"# => Same;
    flag_in_audit_mode_too: "trial", CHAT, r#"{"model":"gpt-4o","stream":1}"# => Refused(400, "invalid_request");
    flag_embeddings_stream_not_read: "default", EMBEDDINGS, r#"{"model":"gpt-4o","input":"x","stream":1}"# => Same;
    flag_nested_stream_not_read: "default", CHAT, r#"{"model":"gpt-4o","metadata":{"stream":1}}"# => Same;
}

// A consumer with a budget is forwarded only requests whose usage will be read.
cases! {
    budget_plain_chat: "budgeted", CHAT, r#"{"model":"gpt-4o"}"# => Same;
    budget_stream_gets_usage: "budgeted", CHAT, r#"{"model":"gpt-4o","stream":true}"# => Body(r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#);
    budget_responses_background: "budgeted", RESPONSES, r#"{"model":"gpt-4o","input":"x","background":true}"# => Refused(403, "usage_unreadable");
    budget_responses_background_false: "budgeted", RESPONSES, r#"{"model":"gpt-4o","input":"x","background":false}"# => Same;
    budget_responses_stream: "budgeted", RESPONSES, r#"{"model":"gpt-4o","input":"x","stream":true}"# => Same;
    budget_gemini_proto: "budgeted", "/v1beta/models/gemini-flash:generateContent?alt=proto", r#"{"contents":[]}"# => Refused(403, "usage_unreadable");
    budget_gemini_dollar_alt: "budgeted", "/v1beta/models/gemini-flash:generateContent?$alt=proto", r#"{"contents":[]}"# => Refused(403, "usage_unreadable");
    budget_gemini_encoded_alt: "budgeted", "/v1beta/models/gemini-flash:generateContent?%61lt=media", r#"{"contents":[]}"# => Refused(403, "usage_unreadable");
    budget_gemini_alt_twice: "budgeted", "/v1beta/models/gemini-flash:streamGenerateContent?alt=sse&alt=proto", r#"{"contents":[]}"# => Refused(403, "usage_unreadable");
    budget_gemini_alt_bad_escape: "budgeted", "/v1beta/models/gemini-flash:generateContent?alt%zz=sse", r#"{"contents":[]}"# => Refused(403, "usage_unreadable");
    budget_gemini_sse: "budgeted", GEMINI_STREAM, r#"{"contents":[]}"# => Same;
    budget_gemini_json: "budgeted", "/v1beta/models/gemini-flash:generateContent?alt=json&key=k", r#"{"contents":[]}"# => Same;
    budget_gemini_no_alt: "budgeted", "/v1beta/models/gemini-flash:streamGenerateContent", r#"{"contents":[]}"# => Same;
    budget_gemini_count_tokens_proto: "budgeted", "/v1beta/models/gemini-flash:countTokens?alt=proto", r#"{"contents":[]}"# => Same;
    budget_messages_stream: "budgeted", MESSAGES, r#"{"model":"claude","messages":[],"stream":true}"# => Same;
    budget_count_tokens: "budgeted", COUNT_TOKENS, r#"{"model":"claude","messages":[]}"# => Same;
    budget_embeddings: "budgeted", EMBEDDINGS, r#"{"model":"gpt-4o","input":"x"}"# => Same;
    budget_azure_stream_gets_usage: "budgeted", AZURE_CHAT, r#"{"stream":true}"# => Body(r#"{"stream":true,"stream_options":{"include_usage":true}}"#);
    budget_completions_stream_asked: "budgeted", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","stream":true,"stream_options":{"include_usage":true}}"# => Same;
    budget_converse: "budgeted", CONVERSE, r#"{"messages":[]}"# => Same;
    // Bedrock's event streams are read for their usage (`eventstream.rs`).
    budget_converse_stream: "budgeted", CONVERSE_STREAM, r#"{"messages":[]}"# => Same;
    budget_invoke: "budgeted", INVOKE, r#"{"prompt":"x"}"# => Same;
    budget_invoke_stream: "budgeted", INVOKE_STREAM, r#"{"prompt":"x"}"# => Same;
    budget_and_cap_background: "budget-capped", RESPONSES, r#"{"model":"gpt-4o","background":true,"max_output_tokens":5}"# => Refused(403, "usage_unreadable");
    budget_audit_records: "budget-trial", RESPONSES, r#"{"model":"gpt-4o","input":"x","background":true}"# => Audited("usage_unreadable");
    no_budget_background_forwarded: "default", RESPONSES, r#"{"model":"gpt-4o","background":true}"# => Same;
    cap_only_background_bounded: "capped", RESPONSES, r#"{"model":"gpt-4o","background":true,"max_output_tokens":5}"# => Same;
    cap_only_converse_stream_bounded: "capped", CONVERSE_STREAM, r#"{"inferenceConfig":{"maxTokens":5}}"# => Same;
    no_budget_gemini_proto: "capped", "/v1beta/models/gemini-flash:generateContent?alt=proto", r#"{"generationConfig":{"maxOutputTokens":5}}"# => Same;
}

#[test]
fn a_budgeted_stream_without_injection_must_ask_for_usage() {
    let text = POLICY.replacen('{', r#"{ "usage": { "inject_stream_usage": false },"#, 1);
    let policy = Policy::from_json(text.as_bytes()).unwrap();
    let stream = r#"{"model":"gpt-4o","stream":true}"#;
    check(
        &policy,
        "budgeted",
        CHAT,
        stream,
        Refused(403, "usage_unreadable"),
    );
    check(
        &policy,
        "budgeted",
        AZURE_COMPLETIONS,
        r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
        Refused(403, "usage_unreadable"),
    );
    check(
        &policy,
        "budgeted",
        CHAT,
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
        Same,
    );
    check(
        &policy,
        "budgeted",
        CHAT,
        r#"{"model":"gpt-4o","stream":false}"#,
        Same,
    );
    check(&policy, "default", CHAT, stream, Same);
    let (result, _) = run(&policy, "budgeted", CHAT, stream);
    let message = result.unwrap_err().message;
    assert!(
        message.contains("consumer \"budgeted\" has a token budget"),
        "{message}"
    );
    assert!(message.contains("include_usage"), "{message}");
}

#[test]
fn choice_and_nested_refusals_say_why() {
    let policy = policy();
    let message = |consumer, path, body| run(&policy, consumer, path, body).0.unwrap_err().message;
    assert_eq!(
        message(
            "strict",
            CHAT,
            r#"{"model":"gpt-4o","n":4,"max_tokens":30}"#
        ),
        "\"max_tokens\" asks for 30 output tokens for each of 4 choices (\"n\"); consumer \
         \"strict\" may ask for at most 100 in all, 25 per choice"
    );
    assert_eq!(
        message("capped", COMPLETIONS, r#"{"model":"gpt-4o","best_of":500}"#),
        "\"best_of\" asks for 500 choices; consumer \"capped\" may have at most 100 output \
         tokens per request, fewer than one per choice"
    );
    let nova = message(
        "capped",
        CONVERSE,
        r#"{"additionalModelRequestFields":{"inferenceConfig":{"max_new_tokens":5000}}}"#,
    );
    assert!(nova.contains("\"max_new_tokens\""), "{nova}");
    assert!(nova.contains("inferenceConfig.maxTokens"), "{nova}");
    let flag = message("default", CHAT, r#"{"model":"gpt-4o","stream":"true"}"#);
    assert!(
        flag.starts_with("\"stream\" must be true, false or null"),
        "{flag}"
    );
    let proto = message(
        "budgeted",
        "/v1beta/models/gemini-flash:generateContent?alt=proto",
        r#"{"contents":[]}"#,
    );
    assert!(proto.contains("\"alt=proto\""), "{proto}");
}

// Several prompts in one completions request: each is answered with its own choices, so the
// outputs are prompts times choices and they share the cap as choices do.
cases! {
    prompts_strings_share_the_cap: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b","c","d"]}"# => Body(r#"{"model":"gpt-4o","prompt":["a","b","c","d"],"max_tokens":25}"#);
    prompts_times_n: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h"],"n":2}"# => Body(r#"{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h"],"n":2,"max_tokens":6}"#);
    prompts_times_best_of: "capped-raw", COMPLETIONS, r#"{"model":"gpt-4o","prompt":[[1,2],[3,4],[5,6]],"best_of":2,"max_tokens":100}"# => Body(r#"{"model":"gpt-4o","prompt":[[1,2],[3,4],[5,6]],"best_of":2,"max_tokens":16}"#);
    prompts_clamped: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b"],"max_tokens":100}"# => Body(r#"{"model":"gpt-4o","prompt":["a","b"],"max_tokens":50}"#);
    prompts_within_share: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b"],"max_tokens":50}"# => Same;
    prompts_refused_over_share: "strict", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h"],"max_tokens":100}"# => Refused(403, "max_output_tokens_exceeded");
    prompts_azure_refused: "strict", AZURE_COMPLETIONS, r#"{"prompt":["a","b","c","d","e","f","g","h"],"max_tokens":100}"# => Refused(403, "max_output_tokens_exceeded");
    prompts_azure_added: "capped", AZURE_COMPLETIONS, r#"{"prompt":["a","b","c","d"]}"# => Body(r#"{"prompt":["a","b","c","d"],"max_tokens":25}"#);
    prompts_more_than_the_cap: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h","i","j","k"],"n":10}"# => Refused(403, "max_output_tokens_exceeded");
    prompt_token_ids_are_one: "capped-raw", COMPLETIONS, r#"{"model":"gpt-4o","prompt":[1,2,3,4,5],"max_tokens":100}"# => Same;
    prompt_string_is_one: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"a, b, [c]","max_tokens":100}"# => Same;
    prompts_with_commas_and_brackets_inside: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a,b","[c,d]","e\"],["]}"# => Body(r#"{"model":"gpt-4o","prompt":["a,b","[c,d]","e\"],["],"max_tokens":33}"#);
    prompts_mixed_count_every_item: "capped-raw", COMPLETIONS, r#"{"model":"gpt-4o","prompt":[1,"b",[3],4]}"# => Body(r#"{"model":"gpt-4o","prompt":[1,"b",[3],4],"max_tokens":25}"#);
    prompts_escaped_key: "capped", COMPLETIONS, r#"{"model":"gpt-4o","\u0070rompt":["a","b","c","d"]}"# => Body(r#"{"model":"gpt-4o","prompt":["a","b","c","d"],"max_tokens":25}"#);
    prompts_one_item: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a"],"max_tokens":100}"# => Same;
    prompts_empty_list: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":[],"max_tokens":100}"# => Same;
    prompts_uncapped_untouched: "default", COMPLETIONS, r#"{"model":"gpt-4o","prompt":["a","b","c","d"],"max_tokens":100}"# => Same;
    chat_best_of_is_choices: "capped", CHAT, r#"{"model":"gpt-4o","best_of":8,"max_completion_tokens":100}"# => Body(r#"{"model":"gpt-4o","best_of":8,"max_completion_tokens":12}"#);
    azure_chat_best_of_is_choices: "strict", AZURE_CHAT, r#"{"best_of":8,"max_tokens":100}"# => Refused(403, "max_output_tokens_exceeded");
}

// A limit of 0 (or -0, or below) is no limit to some servers (proto3's default, "0 means the
// model's default"): it is treated as absent and the cap takes its place, whatever the action.
cases! {
    zero_chat_max_completion_tokens: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":0}"# => Body(r#"{"model":"gpt-4o","max_completion_tokens":100}"#);
    zero_chat_both: "capped", CHAT, r#"{"model":"gpt-4o","max_completion_tokens":0,"max_tokens":0}"# => Body(r#"{"model":"gpt-4o","max_completion_tokens":100,"max_tokens":100}"#);
    zero_with_refuse_gets_the_cap: "strict", CHAT, r#"{"model":"gpt-4o","max_tokens":0}"# => Body(r#"{"model":"gpt-4o","max_tokens":100}"#);
    zero_shares_with_choices: "capped", CHAT, r#"{"model":"gpt-4o","n":4,"max_tokens":0}"# => Body(r#"{"model":"gpt-4o","n":4,"max_tokens":25}"#);
    negative_completions: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","max_tokens":-7}"# => Body(r#"{"model":"gpt-4o","prompt":"x","max_tokens":100}"#);
    zero_completions: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","max_tokens":0}"# => Body(r#"{"model":"gpt-4o","prompt":"x","max_tokens":100}"#);
    zero_responses: "capped", RESPONSES, r#"{"model":"gpt-4o","max_output_tokens":0}"# => Body(r#"{"model":"gpt-4o","max_output_tokens":100}"#);
    zero_messages: "capped", MESSAGES, r#"{"model":"claude","max_tokens":0,"messages":[]}"# => Body(r#"{"model":"claude","max_tokens":100,"messages":[]}"#);
    zero_gemini: "capped", GEMINI, r#"{"contents":[],"generationConfig":{"maxOutputTokens":0}}"# => Body(r#"{"contents":[],"generationConfig":{"maxOutputTokens":100}}"#);
    negative_zero_gemini: "capped", GEMINI, r#"{"contents":[],"generationConfig":{"maxOutputTokens":-0}}"# => Body(r#"{"contents":[],"generationConfig":{"maxOutputTokens":100}}"#);
    negative_gemini_snake: "capped", GEMINI, r#"{"generation_config":{"max_output_tokens":-5}}"# => Body(r#"{"generation_config":{"max_output_tokens":100}}"#);
    zero_bedrock: "capped", CONVERSE, r#"{"inferenceConfig":{"maxTokens":0}}"# => Body(r#"{"inferenceConfig":{"maxTokens":100}}"#);
    zero_audit_records_nothing_over: "trial", CHAT, r#"{"model":"gpt-4o","max_tokens":0}"# => Same;
    zero_uncapped_untouched: "default", GEMINI, r#"{"generationConfig":{"maxOutputTokens":0}}"# => Same;
    minus_sign_alone_invalid: "capped", CHAT, r#"{"model":"gpt-4o","max_tokens":"-"}"# => Refused(400, "invalid_request");
}

// Bedrock model fields for a capped consumer: only numbers known to leave output alone pass;
// any other number, at any depth, may bound output in the model's own format and is refused.
cases! {
    converse_max_length: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_length":5000}}"# => Refused(400, "invalid_request");
    converse_max_length_camel: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"maxLength":5000}}"# => Refused(400, "invalid_request");
    converse_max_seq_len: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_seq_len":5000}}"# => Refused(400, "invalid_request");
    converse_max_completion_len: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_completion_len":5000}}"# => Refused(400, "invalid_request");
    converse_num_predict: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"options":{"num_predict":5000}}}"# => Refused(400, "invalid_request");
    converse_n_predict: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"n_predict":5000}}"# => Refused(400, "invalid_request");
    converse_length: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":5000}}"# => Refused(400, "invalid_request");
    converse_max_output: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_output":5000}}"# => Refused(400, "invalid_request");
    converse_output_length: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"output_length":5000}}"# => Refused(400, "invalid_request");
    converse_number_as_text: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_length":"5000"}}"# => Refused(400, "invalid_request");
    converse_number_in_list: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":[5000]}}"# => Refused(400, "invalid_request");
    converse_negative_number: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":-1}}"# => Refused(400, "invalid_request");
    converse_sampling_passes: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"temperature":0.2,"top_p":0.9,"top_k":40,"TopK":4,"seed":7,"repetition_penalty":1.1}}"# => Body(r#"{"additionalModelRequestFields":{"temperature":0.2,"top_p":0.9,"top_k":40,"TopK":4,"seed":7,"repetition_penalty":1.1},"inferenceConfig":{"maxTokens":100}}"#);
    converse_thinking_budget_passes: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":50}}}"# => Body(r#"{"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":50}},"inferenceConfig":{"maxTokens":100}}"#);
    converse_text_and_booleans_pass: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"anthropic_beta":["x"],"stream":false,"mode":"fast","stop":["\n"]}}"# => Body(r#"{"additionalModelRequestFields":{"anthropic_beta":["x"],"stream":false,"mode":"fast","stop":["\n"]},"inferenceConfig":{"maxTokens":100}}"#);
    converse_neutral_key_over_a_limit_object: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"temperature":{"length":5000}}}"# => Refused(400, "invalid_request");
    converse_any_number_uncapped_untouched: "default", CONVERSE, r#"{"additionalModelRequestFields":{"max_length":5000}}"# => Same;
}

#[test]
fn outputs_refusals_name_prompts_and_choices() {
    let policy = policy();
    let message = |consumer, path, body| run(&policy, consumer, path, body).0.unwrap_err().message;
    assert_eq!(
        message(
            "strict",
            COMPLETIONS,
            r#"{"model":"gpt-4o","prompt":["a","b","c","d"],"n":2,"max_tokens":30}"#
        ),
        "\"max_tokens\" asks for 30 output tokens for each of 8 outputs (4 prompts, 2 choices \
         each from \"n\"); consumer \"strict\" may ask for at most 100 in all, 12 per output"
    );
    assert_eq!(
        message(
            "capped",
            COMPLETIONS,
            r#"{"model":"gpt-4o","prompt":["a","b","c","d","e","f","g","h","i","j","k"],"n":10}"#
        ),
        "\"prompt\" with \"n\" asks for 110 outputs (11 prompts, 10 choices each from \"n\"); \
         consumer \"capped\" may have at most 100 output tokens per request, fewer than one per \
         output"
    );
    let length = message(
        "capped",
        CONVERSE,
        r#"{"additionalModelRequestFields":{"options":{"num_predict":5000}}}"#,
    );
    assert!(length.contains("\"num_predict\""), "{length}");
    assert!(!length.contains("5000"), "{length}");
}

fn run_with_header(consumer: &str, path: &str, header: (&str, &str)) -> Decision {
    let policy = policy();
    let headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("x-team".into(), consumer.as_bytes().to_vec()),
        (header.0.into(), header.1.as_bytes().to_vec()),
    ];
    let pending = classify_request(&policy, &headers, &IdentityInputs::default()).unwrap();
    decide_body(&policy, &pending, br#"{"contents":[]}"#).0
}

#[test]
fn gemini_headers_that_hide_usage_are_refused_for_a_budget() {
    let mask = ("X-Goog-FieldMask", "candidates");
    match run_with_header("budgeted", GEMINI, mask) {
        Decision::Refuse(reply) => {
            assert_eq!(reply.code.as_str(), "usage_unreadable");
            assert!(
                reply.message.contains("x-goog-fieldmask"),
                "{}",
                reply.message
            );
        }
        other => panic!("{other:?}"),
    }
    match run_with_header("budget-trial", GEMINI, mask) {
        Decision::Forward(forward) => {
            assert_eq!(
                forward.audited.map(|a| a.code.as_str()),
                Some("usage_unreadable")
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run_with_header("default", GEMINI, mask),
        Decision::Forward(Forward { audited: None, .. })
    ));
    assert!(matches!(
        run_with_header("budgeted", GEMINI, ("x-goog-api-key", "k")),
        Decision::Forward(Forward { audited: None, .. })
    ));
    match run_with_header(
        "budgeted",
        "/v1beta/models/gemini-flash:generateContent?fields=candidates",
        ("x-goog-api-key", "k"),
    ) {
        Decision::Refuse(reply) => assert_eq!(reply.code.as_str(), "usage_unreadable"),
        other => panic!("{other:?}"),
    }
}

// OpenAI-family bodies for a capped consumer: a top-level number (or text that reads as one)
// under a key the API does not define is refused unless it is a known sampling setting; keys
// that name a limit are refused with any value but null or false. Every documented parameter
// passes.
cases! {
    openai_n_predict: "capped", CHAT, r#"{"model":"gpt-4o","messages":[],"n_predict":100000}"# => Refused(400, "invalid_request");
    openai_n_predict_minus_one: "capped", AZURE_CHAT, r#"{"messages":[],"n_predict":-1}"# => Refused(400, "invalid_request");
    openai_n_predict_completions: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","n_predict":100000,"max_tokens":100}"# => Refused(400, "invalid_request");
    openai_max_new_tokens: "capped", CHAT, r#"{"model":"gpt-4o","max_new_tokens":5000}"# => Refused(400, "invalid_request");
    openai_max_output_tokens_on_chat: "capped", CHAT, r#"{"model":"gpt-4o","max_output_tokens":5000}"# => Refused(400, "invalid_request");
    openai_max_length: "capped", CHAT, r#"{"model":"gpt-4o","max_length":5000}"# => Refused(400, "invalid_request");
    openai_max_gen_len: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"x","max_gen_len":5000}"# => Refused(400, "invalid_request");
    openai_num_predict: "capped", CHAT, r#"{"model":"gpt-4o","num_predict":5000}"# => Refused(400, "invalid_request");
    openai_max_tokens_to_sample: "capped", RESPONSES, r#"{"model":"gpt-4o","max_tokens_to_sample":5000}"# => Refused(400, "invalid_request");
    openai_min_tokens: "capped", CHAT, r#"{"model":"gpt-4o","min_tokens":5000}"# => Refused(400, "invalid_request");
    openai_ignore_eos: "capped", CHAT, r#"{"model":"gpt-4o","ignore_eos":true}"# => Refused(400, "invalid_request");
    openai_ignore_eos_false_passes: "capped", CHAT, r#"{"model":"gpt-4o","ignore_eos":false,"max_tokens":5}"# => Same;
    openai_unknown_number: "capped", CHAT, r#"{"model":"gpt-4o","length":5000}"# => Refused(400, "invalid_request");
    openai_unknown_number_as_text: "capped", CHAT, r#"{"model":"gpt-4o","length":"5_000"}"# => Refused(400, "invalid_request");
    openai_limit_name_as_text: "capped", CHAT, r#"{"model":"gpt-4o","max_new_tokens":"-1"}"# => Refused(400, "invalid_request");
    openai_escaped_key: "capped", CHAT, r#"{"model":"gpt-4o","n_pr\u0065dict":5000}"# => Refused(400, "invalid_request");
    openai_sampling_passes: "capped", CHAT, r#"{"model":"gpt-4o","top_k":40,"min_p":0.05,"repetition_penalty":1.1,"typical_p":0.9,"max_tokens":5}"# => Same;
    openai_unknown_text_passes: "capped", CHAT, r#"{"model":"gpt-4o","grammar":"root ::= x","chat_template_kwargs":{"n":5},"max_tokens":5}"# => Same;
    openai_documented_chat_passes: "capped", CHAT, r#"{"model":"gpt-4o","messages":[],"temperature":1,"top_p":1,"n":1,"seed":3,"presence_penalty":0,"frequency_penalty":0,"logprobs":true,"top_logprobs":2,"user":"12345","prompt_cache_key":"42","safety_identifier":"7","stop":"9","max_completion_tokens":5}"# => Same;
    openai_documented_completions_passes: "capped", COMPLETIONS, r#"{"model":"gpt-4o","prompt":"5","best_of":1,"echo":false,"logprobs":3,"suffix":"1","max_tokens":5}"# => Same;
    openai_documented_responses_passes: "capped", RESPONSES, r#"{"model":"gpt-4o","input":"2","instructions":"3","max_tool_calls":4,"top_logprobs":1,"previous_response_id":"1","max_output_tokens":5}"# => Same;
    openai_uncapped_untouched: "default", CHAT, r#"{"model":"gpt-4o","n_predict":100000}"# => Same;
    openai_embeddings_not_checked: "capped", EMBEDDINGS, r#"{"model":"gpt-4o","input":"x","dimensions":256}"# => Same;
}

// Bedrock model-field text that a lenient parser reads as a number is a number; text that
// merely contains digits is not.
cases! {
    converse_number_underscores: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"max_len":"5_000"}}"# => Refused(400, "invalid_request");
    converse_number_arabic_indic: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":"\u0665\u0660\u0660\u0660"}}"# => Refused(400, "invalid_request");
    converse_number_full_width: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":"\uff15\uff10\uff10\uff10"}}"# => Refused(400, "invalid_request");
    converse_number_hex: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":"0x1388"}}"# => Refused(400, "invalid_request");
    converse_number_spaces: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":" 5000 "}}"# => Refused(400, "invalid_request");
    converse_number_plus: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"length":"+5000"}}"# => Refused(400, "invalid_request");
    converse_beta_date_is_text: "capped", CONVERSE, r#"{"additionalModelRequestFields":{"anthropic_beta":["interleaved-thinking-2025-05-14"],"version":"v2"}}"# => Body(r#"{"additionalModelRequestFields":{"anthropic_beta":["interleaved-thinking-2025-05-14"],"version":"v2"},"inferenceConfig":{"maxTokens":100}}"#);
}
