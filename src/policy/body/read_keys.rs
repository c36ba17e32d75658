//! The keys the filter reads meaning from, and the case variants of them it refuses: a
//! provider that ignores letter case would read a variant as the key the filter passed over.

use super::strict_json::fold_char;

/// Every key the filter reads meaning from, in any family: the top level's, a message's, a
/// content part's, the limits'. Where the filter reads keys (`Node::reads_keys`), a key equal
/// to one of these once letter case is folded, but not the same, is refused: a provider that
/// ignores case (Go's `encoding/json`, .NET) would read it as the key the filter passed over.
/// Matched at run time by `read_key_folded`; a test holds the two in step.
#[cfg(test)]
pub(super) const READ_KEYS: &[&str] = &[
    // Top level.
    "model",
    "messages",
    "contents",
    "system",
    "prompt",
    "suffix",
    "input",
    "instructions",
    "inputText",
    "message",
    "chat_history",
    "preamble",
    "documents",
    "promptVariables",
    "variables",
    "systemInstruction",
    "system_instruction",
    "generateContentRequest",
    "generate_content_request",
    "additionalModelRequestFields",
    // What the limits read.
    "stream",
    "stream_options",
    "include_usage",
    "background",
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "n",
    "best_of",
    "generationConfig",
    "generation_config",
    "maxOutputTokens",
    "candidateCount",
    "inferenceConfig",
    "maxTokens",
    // Messages.
    "role",
    "content",
    "parts",
    "name",
    "tool_calls",
    "function_call",
    "arguments",
    "output",
    "audio",
    // Content parts.
    "type",
    "text",
    "thinking",
    "refusal",
    "guardContent",
    "reasoningContent",
    "reasoningText",
    "args",
    "functionCall",
    "toolUse",
    "functionResponse",
    "function_response",
    "toolResult",
    "response",
    "json",
];

/// The key the filter reads that `key` is a case variant of, if any.
pub(super) fn read_key_variant(key: &str) -> Option<&'static str> {
    // The longest key the filter reads is shorter than this; a longer key folds to none.
    const LONGEST: usize = 32;
    let mut buffer = [0u8; LONGEST];
    let mut len = 0usize;
    for c in key.chars().map(fold_char) {
        let slot = buffer.get_mut(len)?;
        *slot = u8::try_from(u32::from(c)).ok().filter(u8::is_ascii)?;
        len = len.checked_add(1)?;
    }
    let read = read_key_folded(buffer.get(..len)?)?;
    (read != key).then_some(read)
}

/// The key the filter reads whose folded (lowercase ASCII) form is `folded`: every key in
/// `READ_KEYS` and in `parts::READ_PART_KEYS` (a test holds the two in step).
pub(super) fn read_key_folded(folded: &[u8]) -> Option<&'static str> {
    Some(match folded {
        b"additionalmodelrequestfields" => "additionalModelRequestFields",
        b"annotations" => "annotations",
        b"args" => "args",
        b"arguments" => "arguments",
        b"audio" => "audio",
        b"background" => "background",
        b"best_of" => "best_of",
        b"cache_control" => "cache_control",
        b"cachepoint" => "cachePoint",
        b"call_id" => "call_id",
        b"candidatecount" => "candidateCount",
        b"chat_history" => "chat_history",
        b"citations" => "citations",
        b"code_execution_result" => "code_execution_result",
        b"codeexecutionresult" => "codeExecutionResult",
        b"content" => "content",
        b"contents" => "contents",
        b"data" => "data",
        b"documents" => "documents",
        b"encrypted_content" => "encrypted_content",
        b"executable_code" => "executable_code",
        b"executablecode" => "executableCode",
        b"function_call" => "function_call",
        b"function_response" => "function_response",
        b"functioncall" => "functionCall",
        b"functionresponse" => "functionResponse",
        b"generate_content_request" => "generate_content_request",
        b"generatecontentrequest" => "generateContentRequest",
        b"generation_config" => "generation_config",
        b"generationconfig" => "generationConfig",
        b"guardcontent" => "guardContent",
        b"id" => "id",
        b"include_usage" => "include_usage",
        b"inferenceconfig" => "inferenceConfig",
        b"input" => "input",
        b"inputtext" => "inputText",
        b"instructions" => "instructions",
        b"is_error" => "is_error",
        b"json" => "json",
        b"logprobs" => "logprobs",
        b"max_completion_tokens" => "max_completion_tokens",
        b"max_output_tokens" => "max_output_tokens",
        b"max_tokens" => "max_tokens",
        b"maxoutputtokens" => "maxOutputTokens",
        b"maxtokens" => "maxTokens",
        b"message" => "message",
        b"messages" => "messages",
        b"model" => "model",
        b"n" => "n",
        b"name" => "name",
        b"output" => "output",
        b"part_metadata" => "part_metadata",
        b"partmetadata" => "partMetadata",
        b"parts" => "parts",
        b"preamble" => "preamble",
        b"prompt" => "prompt",
        b"promptvariables" => "promptVariables",
        b"qualifiers" => "qualifiers",
        b"reasoningcontent" => "reasoningContent",
        b"reasoningtext" => "reasoningText",
        b"redactedcontent" => "redactedContent",
        b"refusal" => "refusal",
        b"response" => "response",
        b"role" => "role",
        b"scheduling" => "scheduling",
        b"signature" => "signature",
        b"status" => "status",
        b"stream" => "stream",
        b"stream_options" => "stream_options",
        b"suffix" => "suffix",
        b"summary" => "summary",
        b"system" => "system",
        b"system_instruction" => "system_instruction",
        b"systeminstruction" => "systemInstruction",
        b"text" => "text",
        b"thinking" => "thinking",
        b"thought" => "thought",
        b"thought_signature" => "thought_signature",
        b"thoughtsignature" => "thoughtSignature",
        b"tool_calls" => "tool_calls",
        b"tool_use_id" => "tool_use_id",
        b"toolresult" => "toolResult",
        b"tooluse" => "toolUse",
        b"tooluseid" => "toolUseId",
        b"type" => "type",
        b"variables" => "variables",
        b"will_continue" => "will_continue",
        b"willcontinue" => "willContinue",
        _ => return None,
    })
}
