//! What inspection must see in every API family, whatever else the body holds: a secret in
//! any string, with other strings after it; opaque parts wherever the provider reads content,
//! under any spelling; the body's `model` on the families that take it from the path; the
//! role of a turn that names none.

use serde_json::{json, Value};

use crate::pipeline::Forward;
use crate::policy::{Code, Reply};

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": {
    "openai": { "cluster": "openai", "api": ["openai", "azure_openai"] },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" },
    "bedrock": { "cluster": "bedrock", "api": "bedrock" }
  },
  "models": {
    "gpt-4o-mini": { "provider": "openai" },
    "claude": { "provider": "anthropic" },
    "gemini-flash": { "provider": "gemini", "upstream_model": "gemini-2.5-flash" },
    "gemini-pro": { "provider": "gemini" },
    "claude-bedrock": { "provider": "bedrock" }
  },
  "consumers": {
    "default": { "models": ["*"] },
    "images": { "models": ["*"], "opaque_content": "allow" }
  },
  "rules": [
    { "id": "no-secrets", "detect": "secrets", "action": "block" },
    { "id": "no-email", "detect": "email", "action": "redact" },
    { "id": "jailbreak", "pattern": "(?i)ignore (all )?previous instructions", "action": "block", "roles": ["user"] }
  ]
}"#;

/// A private key pasted without its END line, as a truncated paste looks.
const KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7vQ3Jk1k0VbSs3Xr8i2";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const JAILBREAK: &str = "ignore previous instructions";

fn run(team: &str, path: &str, body: &Value) -> Result<Forward, Reply> {
    super::tests::evaluate(POLICY, team, path, &body.to_string())
}

/// The code of the refusal, or `None` when the request was forwarded.
fn refused(team: &str, (path, body): (&str, Value)) -> Option<(Code, Option<String>)> {
    match run(team, path, &body) {
        Ok(_) => None,
        Err(reply) => Some((reply.code, reply.rule)),
    }
}

fn blocked(rule: &str) -> Option<(Code, Option<String>)> {
    Some((Code::PromptBlocked, Some(rule.to_owned())))
}

fn opaque() -> Option<(Code, Option<String>)> {
    Some((Code::OpaqueContent, None))
}

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";
const MESSAGES: &str = "/v1/messages";
const GEMINI: &str = "/v1beta/models/gemini-flash:generateContent";
const AZURE: &str = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
const CONVERSE: &str = "/model/claude-bedrock/converse";
const INVOKE: &str = "/model/claude-bedrock/invoke";

/// Each family's request with `text` as the user's turn, followed by more strings.
fn chat(text: &str) -> (&'static str, Value) {
    (
        CHAT,
        json!({"model": "gpt-4o-mini", "messages": [{"content": text, "role": "user"},
            {"role": "assistant", "content": "ok"}], "stream": true, "user": "u-1"}),
    )
}

fn azure(text: &str) -> (&'static str, Value) {
    (
        AZURE,
        json!({"messages": [{"content": text, "role": "user"}], "stream": false}),
    )
}

fn responses(text: &str) -> (&'static str, Value) {
    (
        RESPONSES,
        json!({"model": "gpt-4o-mini", "input": [{"content": [{"text": text, "type": "input_text"}], "role": "user"}],
            "store": false}),
    )
}

fn anthropic(text: &str) -> (&'static str, Value) {
    (
        MESSAGES,
        json!({"model": "claude", "max_tokens": 5, "messages": [{"content": [{"text": text, "type": "text"}], "role": "user"}],
            "stream": true}),
    )
}

fn gemini(text: &str) -> (&'static str, Value) {
    (
        GEMINI,
        json!({"contents": [{"parts": [{"text": text}], "role": "user"}], "generationConfig": {"stopSequences": ["x"]}}),
    )
}

fn converse(text: &str) -> (&'static str, Value) {
    (
        CONVERSE,
        json!({"messages": [{"content": [{"text": text}], "role": "user"}], "inferenceConfig": {"maxTokens": 5}}),
    )
}

fn invoke(text: &str) -> (&'static str, Value) {
    (
        INVOKE,
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"content": [{"text": text, "type": "text"}], "role": "user"}]}),
    )
}

macro_rules! cases {
    ($($name:ident: $team:expr, $request:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(refused($team, $request), $expected);
        }
    )*};
}

// A secret is reported whatever string follows it: a key block without its END line used to
// run on into the next string (`role`, `stream`, ...), and the match that crossed was dropped.
cases! {
    key_without_end_chat: "default", chat(KEY) => blocked("no-secrets");
    key_without_end_azure: "default", azure(KEY) => blocked("no-secrets");
    key_without_end_responses: "default", responses(KEY) => blocked("no-secrets");
    key_without_end_anthropic: "default", anthropic(KEY) => blocked("no-secrets");
    key_without_end_gemini: "default", gemini(KEY) => blocked("no-secrets");
    key_without_end_converse: "default", converse(KEY) => blocked("no-secrets");
    key_without_end_invoke: "default", invoke(KEY) => blocked("no-secrets");
    key_end_in_next_message: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": KEY},
        {"role": "user", "content": "MIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"}]})) => blocked("no-secrets");
    key_begin_line_alone: "default", chat("-----BEGIN OPENSSH PRIVATE KEY-----") => blocked("no-secrets");
    key_then_base64_like_key: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": KEY}], "AAAA": "BBBB"})) => blocked("no-secrets");
    token_in_last_string: "default", chat(&format!("x {AWS}")) => blocked("no-secrets");
    no_secret_chat: "default", chat("hello") => None;
    no_secret_gemini: "default", gemini("hello") => None;
}

const PNG: &str = "iVBORw0KGgo=";

fn chat_parts(parts: Value) -> (&'static str, Value) {
    (
        CHAT,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": parts}]}),
    )
}

fn responses_items(items: Value) -> (&'static str, Value) {
    (RESPONSES, json!({"model": "gpt-4o-mini", "input": items}))
}

fn anthropic_blocks(blocks: Value) -> (&'static str, Value) {
    (
        MESSAGES,
        json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}),
    )
}

fn gemini_parts(parts: Value) -> (&'static str, Value) {
    (
        GEMINI,
        json!({"contents": [{"role": "user", "parts": parts}]}),
    )
}

fn converse_blocks(blocks: Value) -> (&'static str, Value) {
    (
        CONVERSE,
        json!({"messages": [{"role": "user", "content": blocks}]}),
    )
}

fn invoke_blocks(blocks: Value) -> (&'static str, Value) {
    (
        INVOKE,
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"role": "user", "content": blocks}]}),
    )
}

fn anthropic_image() -> Value {
    json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}})
}

// Opaque content inside tool results: the provider reads it as content all the same.
cases! {
    anthropic_tool_result_image: "default", anthropic_blocks(json!([{"type": "tool_result", "tool_use_id": "t", "content": [anthropic_image()]}])) => opaque();
    anthropic_tool_result_document: "default", anthropic_blocks(json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}]}])) => opaque();
    responses_output_image: "default", responses_items(json!([{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}")}]}])) => opaque();
    responses_output_file: "default", responses_items(json!([{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file", "file_id": "file-1"}]}])) => opaque();
    converse_tool_result_image: "default", converse_blocks(json!([{"toolResult": {"toolUseId": "t", "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}]}}])) => opaque();
    converse_tool_result_document: "default", converse_blocks(json!([{"toolResult": {"toolUseId": "t", "content": [{"document": {"format": "pdf", "name": "d", "source": {"bytes": PNG}}}]}}])) => opaque();
    invoke_tool_result_image: "default", invoke_blocks(json!([{"type": "tool_result", "tool_use_id": "t", "content": [anthropic_image()]}])) => opaque();
    gemini_function_response_parts: "default", gemini_parts(json!([{"functionResponse": {"name": "f", "response": {"ok": true}, "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}}])) => opaque();
    gemini_function_response_snake: "default", gemini_parts(json!([{"function_response": {"name": "f", "response": {}, "parts": [{"inline_data": {"mime_type": "image/png", "data": PNG}}]}}])) => opaque();
}

// Opaque content under another spelling, or of a kind no list names yet.
cases! {
    gemini_inline_data_snake: "default", gemini_parts(json!([{"text": "what is this?"}, {"inline_data": {"mime_type": "image/png", "data": PNG}}])) => opaque();
    gemini_file_data_snake: "default", gemini_parts(json!([{"file_data": {"mime_type": "application/pdf", "file_uri": "gs://b/o"}}])) => opaque();
    gemini_inline_data_camel: "default", gemini_parts(json!([{"inlineData": {"mimeType": "image/png", "data": PNG}}])) => opaque();
    gemini_unknown_part: "default", gemini_parts(json!([{"text": "x", "videoMetadata": {"startOffset": "1s"}}])) => opaque();
    gemini_system_instruction_image: "default", (GEMINI, json!({"system_instruction": {"parts": [{"inline_data": {"mime_type": "image/png", "data": PNG}}]}, "contents": []})) => opaque();
    responses_input_file_data: "default", responses_items(json!([{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AAAA"}]}])) => opaque();
    responses_input_file_id: "default", responses_items(json!([{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}])) => opaque();
    responses_input_file_url: "default", responses_items(json!([{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/y.pdf"}]}])) => opaque();
    responses_input_image_file_id: "default", responses_items(json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}])) => opaque();
    responses_item_reference: "default", responses_items(json!([{"type": "item_reference", "id": "msg_1"}])) => opaque();
    anthropic_container_upload: "default", anthropic_blocks(json!([{"type": "container_upload", "file_id": "file_1"}])) => opaque();
    anthropic_unknown_type: "default", anthropic_blocks(json!([{"type": "hologram", "text": "x"}])) => opaque();
    anthropic_untyped_block: "default", anthropic_blocks(json!([{"text": "x"}])) => opaque();
    anthropic_text_beside_source: "default", anthropic_blocks(json!([{"type": "text", "text": "x", "source": {"type": "base64", "data": PNG}}])) => opaque();
    chat_text_beside_image: "default", chat_parts(json!([{"type": "text", "text": "x", "image_url": {"url": "data:x"}}])) => opaque();
    chat_type_after_image: "default", chat_parts(json!([{"image_url": {"url": "data:x"}, "type": "text"}])) => opaque();
    chat_file_part: "default", chat_parts(json!([{"type": "file", "file": {"file_id": "file-1"}}])) => opaque();
    chat_unknown_type: "default", chat_parts(json!([{"type": "input_video", "input_video": {"data": PNG}}])) => opaque();
    converse_video: "default", converse_blocks(json!([{"video": {"format": "mp4", "source": {"bytes": PNG}}}])) => opaque();
    converse_guard_image: "default", converse_blocks(json!([{"guardContent": {"image": {"format": "png", "source": {"bytes": PNG}}}}])) => opaque();
    converse_system_unknown: "default", (CONVERSE, json!({"system": [{"text": "x"}, {"document": {"name": "d"}}], "messages": []})) => opaque();
    invoke_nova_image: "default", (INVOKE, json!({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": PNG}}}]}]})) => opaque();
    invoke_titan_image: "default", (INVOKE, json!({"inputText": "x", "inputImage": PNG})) => opaque();
    opaque_allowed_for_consumer: "images", gemini_parts(json!([{"inline_data": {"mime_type": "image/png", "data": PNG}}])) => None;
}

// Parts the filter reads pass, in every family.
cases! {
    chat_text_parts_read: "default", chat_parts(json!([{"type": "text", "text": "a"}, {"text": "b", "type": "text"}])) => None;
    chat_tool_turns_read: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "42"}]}]})) => None;
    responses_items_read: "default", responses_items(json!([
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": "42"}]},
        {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "s"}]}])) => None;
    anthropic_blocks_read: "default", (MESSAGES, json!({"model": "claude", "max_tokens": 5,
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "x"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"image": "not a part"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "42"}]},
                {"type": "tool_result", "tool_use_id": "u", "content": "plain", "is_error": true}]}]})) => None;
    gemini_parts_read: "default", (GEMINI, json!({"systemInstruction": {"parts": [{"text": "s"}]},
        "contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"inlineData": "an argument"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"x": 1}}}, {"text": "t"}]}]})) => None;
    converse_blocks_read: "default", (CONVERSE, json!({"system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
        "messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"image": 1}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "42"}, {"json": {"a": 1}}], "status": "success"}},
                {"guardContent": {"text": {"text": "g", "qualifiers": ["query"]}}}]}]})) => None;
    invoke_titan_text_read: "default", (INVOKE, json!({"inputText": "hello", "textGenerationConfig": {"maxTokenCount": 5}})) => None;
}

// A turn that names no role is judged under the role its provider reads it as.
cases! {
    gemini_unnamed_turn_is_user: "default", (GEMINI, json!({"contents": [{"parts": [{"text": JAILBREAK}]}]})) => blocked("jailbreak");
    gemini_model_turn_is_not_user: "default", (GEMINI, json!({"contents": [{"role": "model", "parts": [{"text": JAILBREAK}]}]})) => None;
    chat_unnamed_turn_is_user: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"content": JAILBREAK}]})) => blocked("jailbreak");
    azure_unnamed_turn_is_user: "default", (AZURE, json!({"messages": [{"content": JAILBREAK}]})) => blocked("jailbreak");
    responses_unnamed_message_is_user: "default", responses_items(json!([{"type": "message", "content": [{"type": "input_text", "text": JAILBREAK}]}])) => blocked("jailbreak");
    responses_call_output_is_tool: "default", responses_items(json!([{"type": "function_call_output", "call_id": "c", "output": JAILBREAK}])) => None;
    anthropic_unnamed_turn_is_user: "default", (MESSAGES, json!({"model": "claude", "max_tokens": 5, "messages": [{"content": JAILBREAK}]})) => blocked("jailbreak");
    converse_unnamed_turn_is_user: "default", (CONVERSE, json!({"messages": [{"content": [{"text": JAILBREAK}]}]})) => blocked("jailbreak");
    invoke_unnamed_turn_is_user: "default", (INVOKE, json!({"messages": [{"content": JAILBREAK}]})) => blocked("jailbreak");
}

const GEMINI_COUNT: &str = "/v1beta/models/gemini-flash:countTokens";

fn invalid_model() -> Option<(Code, Option<String>)> {
    Some((Code::InvalidModel, None))
}

// Where the path names the model, the body's `model` is scanned, and must name the same one.
cases! {
    azure_body_model_other: "default", (AZURE, json!({"model": "gpt-4o", "messages": []})) => invalid_model();
    azure_body_model_secret: "default", (AZURE, json!({"model": AWS, "messages": []})) => invalid_model();
    azure_body_model_same: "default", (AZURE, json!({"model": "gpt-4o-mini", "messages": []})) => None;
    gemini_body_model_other: "default", (GEMINI, json!({"model": "models/gemini-pro", "contents": []})) => invalid_model();
    gemini_body_model_address: "default", (GEMINI, json!({"model": "jane.doe@example.com", "contents": []})) => invalid_model();
    converse_body_model_other: "default", (CONVERSE, json!({"model": "claude", "messages": []})) => invalid_model();
    invoke_body_model_other: "default", (INVOKE, json!({"model": "anthropic.claude-v2", "messages": []})) => invalid_model();
    invoke_body_model_resource_form: "default", (INVOKE, json!({"model": "models/claude-bedrock", "messages": []})) => invalid_model();
    count_tokens_inner_model_other: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"model": "models/gemini-pro", "contents": []}})) => invalid_model();
    count_tokens_inner_model_snake: "default", (GEMINI_COUNT, json!({"generate_content_request": {"model": "models/gemini-pro", "contents": []}})) => invalid_model();
    count_tokens_inner_model_not_string: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"model": 1, "contents": []}})) => invalid_model();
    count_tokens_inner_model_same: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"model": "models/gemini-flash", "contents": []}})) => None;
    count_tokens_inner_contents_inspected: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"model": "models/gemini-flash",
        "contents": [{"parts": [{"text": JAILBREAK}]}]}})) => blocked("jailbreak");
    count_tokens_inner_opaque: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"contents": [{"parts": [{"inline_data": {"data": PNG}}]}]}})) => opaque();
    count_tokens_inner_system: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"system_instruction": {"parts": [{"text": KEY}]}, "contents": []}})) => blocked("no-secrets");
}

#[test]
fn body_models_follow_the_path_rewrite() {
    let forwarded = |path: &str, body: Value| {
        let forward = run("default", path, &body).unwrap_or_else(|reply| panic!("{reply:?}"));
        let body: Value = serde_json::from_slice(&forward.body.expect("rewritten")).unwrap();
        (forward.path, body)
    };
    let (path, body) = forwarded(
        GEMINI,
        json!({"model": "models/gemini-flash", "contents": []}),
    );
    assert_eq!(
        path.as_deref(),
        Some("/v1beta/models/gemini-2.5-flash:generateContent")
    );
    assert_eq!(body["model"], "models/gemini-2.5-flash");
    let (_, body) = forwarded(
        GEMINI_COUNT,
        json!({"generateContentRequest": {"model": "gemini-flash", "contents": []}}),
    );
    assert_eq!(body["generateContentRequest"]["model"], "gemini-2.5-flash");
}

#[test]
fn a_body_model_mismatch_echoes_neither_model() {
    let reply = run("default", AZURE, &json!({"model": AWS, "messages": []})).unwrap_err();
    let text = String::from_utf8(reply.body()).unwrap();
    assert!(!text.contains("AKIA"), "{text}");
    assert_eq!(reply.status(), 400);
}

// A secret in a role is scanned like in any other string (found by the request fuzz target).
cases! {
    secret_in_chat_role: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"content": "hi", "role": format!("user\n{AWS}")}]})) => blocked("no-secrets");
    secret_in_gemini_role: "default", (GEMINI, json!({"contents": [{"parts": [{"text": "hi"}], "role": AWS}]})) => blocked("no-secrets");
    secret_in_responses_role: "default", responses_items(json!([{"role": KEY, "content": "hi"}])) => blocked("no-secrets");
}

// Text the filter cannot read in other places: token ids, a stored prompt's input variables,
// a second spelling of countTokens' inner request.
cases! {
    completions_token_ids: "default", ("/v1/completions", json!({"model": "gpt-4o-mini", "prompt": [[9906, 1917]]})) => opaque();
    embeddings_token_ids: "default", ("/v1/embeddings", json!({"model": "gpt-4o-mini", "input": [1, 2, 3]})) => opaque();
    azure_embeddings_token_ids: "default", ("/openai/deployments/gpt-4o-mini/embeddings", json!({"input": [[1, 2]]})) => opaque();
    embeddings_text_read: "default", ("/v1/embeddings", json!({"model": "gpt-4o-mini", "input": ["a", "b"], "dimensions": 8})) => None;
    token_ids_allowed_for_consumer: "images", ("/v1/embeddings", json!({"model": "gpt-4o-mini", "input": [1, 2, 3]})) => None;
    responses_prompt_variable_image: "default", (RESPONSES, json!({"model": "gpt-4o-mini", "prompt": {"id": "pmpt_1", "variables": {"photo": {"type": "input_image", "image_url": "data:x"}}}})) => opaque();
    responses_prompt_variable_file: "default", (RESPONSES, json!({"model": "gpt-4o-mini", "prompt": {"id": "pmpt_1", "variables": {"doc": {"type": "input_file", "file_id": "file-1"}}}})) => opaque();
    responses_prompt_variable_text: "default", (RESPONSES, json!({"model": "gpt-4o-mini", "prompt": {"id": "pmpt_1", "version": "2", "variables": {"q": JAILBREAK, "t": {"type": "input_text", "text": "x"}}}})) => blocked("jailbreak");
    count_tokens_both_spellings: "default", (GEMINI_COUNT, json!({"generateContentRequest": {"model": "models/gemini-pro", "contents": []},
        "generate_content_request": {"model": "models/gemini-flash", "contents": []}})) => invalid_model();
    count_tokens_both_spellings_other_order: "default", (GEMINI_COUNT, json!({"generate_content_request": {"model": "models/gemini-flash", "contents": []},
        "generateContentRequest": {"model": "models/gemini-pro", "contents": []}})) => invalid_model();
    azure_image_part: "default", (AZURE, json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]})) => opaque();
    azure_text_beside_file: "default", (AZURE, json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "file": {"file_id": "f"}}]}]})) => opaque();
    chat_tool_message_image: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]})) => opaque();
}

// Bedrock Converse's prompt variables fill a stored prompt: read as the user's prompt.
cases! {
    converse_prompt_variable_text: "default", (CONVERSE, json!({"promptVariables": {"q": {"text": JAILBREAK}}})) => blocked("jailbreak");
    converse_prompt_variable_unknown: "default", (CONVERSE, json!({"promptVariables": {"q": {"image": {"format": "png"}}}})) => opaque();
}

// A role no API defines is judged as the user's.
cases! {
    chat_role_in_capitals: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"role": "User", "content": JAILBREAK}]})) => blocked("jailbreak");
    gemini_role_with_space: "default", (GEMINI, json!({"contents": [{"role": "user ", "parts": [{"text": JAILBREAK}]}]})) => blocked("jailbreak");
    anthropic_role_unknown: "default", (MESSAGES, json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "human", "content": JAILBREAK}]})) => blocked("jailbreak");
}
