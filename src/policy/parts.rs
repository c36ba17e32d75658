//! Which content parts the filter reads, per API family. A part is what a provider reads as
//! one piece of a turn: an element of a message's `content` (OpenAI, Anthropic, Bedrock), of a
//! Gemini `parts` list, or a Responses API input item. The parts whose text the filter reads
//! are listed here per family; every other part, whatever its type or key, is opaque. A list
//! of opaque kinds would miss the next one a provider adds; a list of readable ones fails
//! closed.
//!
//! A part is readable when every key it has is one the family's readable parts use, and, in the
//! families that tag parts with `type`, that type is a readable one. A key outside the list (an
//! image beside a `text`, a spelling the list does not know) makes the part opaque, since a
//! provider may read it.

use super::classify::Endpoint;

/// How a family's parts say what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// OpenAI chat, completions, embeddings and Azure: `{"type": "text", "text": ...}`.
    OpenAi,
    /// OpenAI Responses: input items and their content parts, both tagged by `type`.
    Responses,
    /// Anthropic messages: blocks tagged by `type`.
    Anthropic,
    /// Gemini: a part is one of several keys (`text`, `inlineData`, ...), in either spelling
    /// (`inline_data`): Google's JSON mapping accepts both.
    Gemini,
    /// Bedrock Converse: a block is one key (`text`, `image`, `toolResult`, ...).
    Converse,
    /// Bedrock InvokeModel: the model's own body, Anthropic's or OpenAI's blocks when tagged
    /// with `type`, else Converse-shaped blocks (Amazon Nova).
    Invoke,
}

impl Family {
    pub(crate) fn of(endpoint: Endpoint) -> Family {
        use Endpoint::*;
        match endpoint {
            ChatCompletions | Completions | Embeddings | AzureChatCompletions
            | AzureCompletions | AzureEmbeddings => Family::OpenAi,
            Responses => Family::Responses,
            Messages | CountTokens => Family::Anthropic,
            GeminiGenerate => Family::Gemini,
            BedrockConverse => Family::Converse,
            BedrockInvoke => Family::Invoke,
        }
    }
}

const OPENAI_TYPES: &[&str] = &["text", "refusal"];
const OPENAI_KEYS: &[&str] = &["type", "text", "refusal"];

const RESPONSES_TYPES: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "input_text",
    "output_text",
    "refusal",
    "summary_text",
    "reasoning_text",
];
const RESPONSES_KEYS: &[&str] = &[
    "type",
    "role",
    "content",
    "id",
    "status",
    "call_id",
    "name",
    "arguments",
    "output",
    "input",
    "summary",
    "encrypted_content",
    "text",
    "annotations",
    "logprobs",
    "refusal",
];

const ANTHROPIC_TYPES: &[&str] = &[
    "text",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
];
const ANTHROPIC_KEYS: &[&str] = &[
    "type",
    "text",
    "cache_control",
    "citations",
    "thinking",
    "signature",
    "data",
    "id",
    "name",
    "input",
    "tool_use_id",
    "content",
    "is_error",
];

const GEMINI_KEYS: &[&str] = &[
    "text",
    "thought",
    "thoughtSignature",
    "thought_signature",
    "functionCall",
    "function_call",
    "functionResponse",
    "function_response",
    "executableCode",
    "executable_code",
    "codeExecutionResult",
    "code_execution_result",
    "partMetadata",
    "part_metadata",
    // A `Content` where a part list is expected (`systemInstruction`).
    "role",
    "parts",
    // Inside `functionResponse`: its `parts` are parts in their own right.
    "name",
    "response",
    "id",
    "willContinue",
    "will_continue",
    "scheduling",
];

const CONVERSE_KEYS: &[&str] = &[
    "text",
    "toolUse",
    "toolResult",
    "reasoningContent",
    "cachePoint",
    "guardContent",
    // Inside `toolResult`, `guardContent.text` and `reasoningContent`.
    "toolUseId",
    "content",
    "status",
    "json",
    "qualifiers",
    "reasoningText",
    "signature",
    "redactedContent",
];

/// Every family's list of the keys its readable parts use.
#[cfg(test)]
pub(crate) const READ_PART_KEYS: [&[&str]; 5] = [
    OPENAI_KEYS,
    RESPONSES_KEYS,
    ANTHROPIC_KEYS,
    GEMINI_KEYS,
    CONVERSE_KEYS,
];

/// Whether a part with these keys (`bad_key`: the first one its family does not read, if any)
/// and this `type` is read. `item`: a Responses API input item, which may leave out `type`
/// (a message). Returns what to call the part when it is not read.
pub(crate) fn opaque_part(
    family: Family,
    item: bool,
    part_type: Option<&str>,
    bad_key: Option<&'static str>,
) -> Option<&'static str> {
    let types: &[&str] = match (family, part_type) {
        (Family::Gemini | Family::Converse, _) | (Family::Invoke, None) => return bad_key,
        (Family::Responses, None) if item => return bad_key,
        (Family::OpenAi, _) => OPENAI_TYPES,
        (Family::Responses, _) => RESPONSES_TYPES,
        (Family::Anthropic, _) => ANTHROPIC_TYPES,
        (Family::Invoke, Some(kind)) => {
            if !ANTHROPIC_TYPES.contains(&kind) && !OPENAI_TYPES.contains(&kind) {
                return Some(kind_label(kind));
            }
            return bad_key;
        }
    };
    match part_type {
        Some(kind) if types.contains(&kind) => bad_key,
        Some(kind) => Some(kind_label(kind)),
        None => Some("untyped"),
    }
}

/// The first key of a part its family does not read, named for a reply.
pub(crate) fn unread_key(family: Family, key: &str) -> Option<&'static str> {
    let read = match family {
        Family::OpenAi => OPENAI_KEYS.contains(&key),
        Family::Responses => RESPONSES_KEYS.contains(&key),
        Family::Anthropic => ANTHROPIC_KEYS.contains(&key),
        Family::Gemini => GEMINI_KEYS.contains(&key),
        Family::Converse => CONVERSE_KEYS.contains(&key),
        Family::Invoke => {
            ANTHROPIC_KEYS.contains(&key)
                || OPENAI_KEYS.contains(&key)
                || CONVERSE_KEYS.contains(&key)
        }
    };
    (!read).then(|| kind_label(key))
}

/// What a reply calls an opaque part: a fixed word, never the client's own text, which could
/// carry anything.
pub(crate) fn kind_label(kind: &str) -> &'static str {
    let kind = kind.to_ascii_lowercase();
    if kind.contains("image") {
        "image"
    } else if kind.contains("audio") {
        "audio"
    } else if kind.contains("video") {
        "video"
    } else if kind.contains("inline") {
        "inline data"
    } else if kind.contains("file") || kind.contains("document") || kind.contains("upload") {
        "file"
    } else {
        "unrecognised"
    }
}
