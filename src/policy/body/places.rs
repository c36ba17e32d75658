//! Where a value sits, judged from the keys above it (`Place`), and what that makes of its
//! text: which field a string fills, which keys carry prompts in each API family, which roles
//! a family defines, and which keys name content the filter cannot read.

use std::borrow::Cow;

use super::text::TextField;
use crate::policy::classify::Endpoint;
use crate::policy::parts::{self, Family};

/// What the value being read is, judged from the keys above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// The top-level object.
    Top,
    /// A list of messages (or of Responses API input items).
    Messages,
    /// One message or input item.
    Message,
    /// A message's `role`.
    Role,
    /// Responses API `input`: a prompt string or a list of items.
    ResponsesInput,
    /// Responses API `instructions`: system text, or a list of items, each with its own role.
    Instructions,
    /// Fields of a model's own request format that the filter does not map: the rest of a
    /// Bedrock InvokeModel body, and Converse `additionalModelRequestFields`, which Bedrock
    /// hands to the model. A string here is judged as the user's prompt, and a key or value
    /// that names an image, a file or other media is opaque.
    ModelFields,
    /// Text, or parts holding text, of the given kind. Objects here are content parts.
    Text(TextField),
    /// Everything beneath is of this kind, keys included (tool arguments are free-form JSON).
    Subtree(TextField),
    /// A content part's `type`: recorded to judge the part (see `parts`), and scanned.
    PartType,
    /// A Gemini `countTokens` body's `generateContentRequest`: read as a request of its own.
    InnerRequest,
    /// An object of settings the filter reads some members of: `stream_options`, Gemini's
    /// `generationConfig`, Converse's `inferenceConfig`.
    Settings,
    /// A Responses API `prompt` (a stored template), and its `variables` (Bedrock Converse's
    /// `promptVariables`), whose values are text or input parts put into the prompt.
    PromptTemplate,
    Variables,
}

impl Place {
    /// What a string here is to the model.
    pub(super) fn field(self) -> TextField {
        match self {
            Place::Text(field) | Place::Subtree(field) => field,
            Place::ResponsesInput | Place::Messages | Place::ModelFields => TextField::Prompt,
            Place::Instructions => TextField::System,
            // A bare string where a message is expected: its message's content.
            Place::Message => TextField::MessageContent,
            _ => TextField::Other,
        }
    }

    /// Whether the filter reads meaning from the keys of an object here: the top level, a
    /// message, a content part, a stored prompt, settings (the walk adds any object whose
    /// members the limits read). A key there that differs from one the filter reads only in
    /// letter case is refused (see `read_key_variant`).
    pub(super) fn reads_keys(self) -> bool {
        matches!(
            self,
            Place::Top
                | Place::InnerRequest
                | Place::Message
                | Place::Text(_)
                | Place::PromptTemplate
                | Place::Settings
        )
    }

    /// Whether an object here is a content part (see `parts`): anything where text or parts
    /// are read, and each Responses API input item.
    pub(super) fn is_part(self, endpoint: Endpoint) -> bool {
        match self {
            Place::Text(_) => true,
            Place::Message => endpoint == Endpoint::Responses,
            _ => false,
        }
    }

    /// Where the value under `key` sits, in an object at this place.
    pub(super) fn of_key(self, endpoint: Endpoint, key: &str) -> Place {
        match self {
            Place::Top | Place::InnerRequest => top_level_place(endpoint, key),
            Place::Message => match key {
                "role" => Place::Role,
                // `message`: a Cohere Command R `chat_history` turn.
                "content" | "parts" | "name" | "message" => Place::Text(TextField::MessageContent),
                "tool_calls" | "function_call" | "arguments" | "input" => {
                    Place::Subtree(TextField::ToolArguments)
                }
                "output" => Place::Text(TextField::ToolResults),
                _ => Place::Subtree(TextField::Other),
            },
            // Keys of a content part. Where a tool's result may itself hold parts (Anthropic
            // `tool_result.content`, Converse `toolResult`, Gemini `functionResponse.parts`,
            // Responses `output`), those are parts too, and judged as such.
            Place::Text(field) => {
                match key {
                    "text" | "thinking" | "refusal" | "parts" | "guardContent"
                    | "reasoningContent" | "reasoningText" => Place::Text(field),
                    "input" | "args" | "arguments" | "functionCall" | "function_call"
                    | "toolUse" => Place::Subtree(TextField::ToolArguments),
                    "content" | "output" | "functionResponse" | "function_response"
                    | "toolResult" => Place::Text(TextField::ToolResults),
                    "response" | "json" => Place::Subtree(TextField::ToolResults),
                    _ => Place::Subtree(TextField::Other),
                }
            }
            Place::PromptTemplate if key == "variables" => Place::Variables,
            Place::Variables => Place::Text(TextField::Prompt),
            Place::Subtree(field) => Place::Subtree(field),
            Place::ModelFields => Place::ModelFields,
            Place::Messages
            | Place::Role
            | Place::ResponsesInput
            | Place::Instructions
            | Place::Settings
            | Place::PartType
            | Place::PromptTemplate => Place::Subtree(TextField::Other),
        }
    }
}

fn top_level_place(endpoint: Endpoint, key: &str) -> Place {
    use Endpoint::*;
    match (endpoint, key) {
        // `suffix`: the text after the insertion point, read as prompt text.
        (Completions | AzureCompletions, "prompt" | "suffix")
        | (Embeddings | AzureEmbeddings, "input")
        // Cohere Command R's `message` (its `chat_history` is its messages).
        | (BedrockInvoke, "prompt" | "inputText" | "input" | "message") => {
            Place::Text(TextField::Prompt)
        }
        // Cohere Command R's grounding documents: objects of text fields.
        (BedrockInvoke, "documents") => Place::Subtree(TextField::Prompt),
        (BedrockInvoke, "chat_history") => Place::Messages,
        (BedrockInvoke, "preamble") => Place::Text(TextField::System),
        (Responses, "input") => Place::ResponsesInput,
        (Responses, "instructions") => Place::Instructions,
        (Responses, "prompt") => Place::PromptTemplate,
        (BedrockConverse, "promptVariables") => Place::Variables,
        (GeminiGenerate, "contents") => Place::Messages,
        (GeminiGenerate, "systemInstruction" | "system_instruction") => Place::Text(TextField::System),
        (GeminiGenerate, "generateContentRequest" | "generate_content_request") => {
            Place::InnerRequest
        }
        (_, "messages") => Place::Messages,
        (_, "system") => Place::Text(TextField::System),
        (GeminiGenerate, "generationConfig" | "generation_config")
        | (BedrockConverse, "inferenceConfig")
        | (_, "stream_options") => Place::Settings,
        // Tool definitions are read as in every family (their property names are not media).
        (BedrockInvoke, "tools" | "tool_choice" | "toolConfig") => Place::Subtree(TextField::Other),
        (BedrockConverse, "additionalModelRequestFields") | (BedrockInvoke, _) => {
            Place::ModelFields
        }
        _ => Place::Subtree(TextField::Other),
    }
}

/// A message's role, without a copy when it is one its family defines. Any other role, one
/// another family defines included (`model` in an OpenAI chat, `system` in an Anthropic or
/// Converse turn, `assistant` in a Gemini one), is copied, and judged as the user's: a
/// provider lenient about roles reads it so.
pub(super) fn role_name(family: Family, text: &str) -> Cow<'static, str> {
    const OPENAI: &[&str] = &[
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "function",
    ];
    const RESPONSES: &[&str] = &["user", "assistant", "system", "developer"];
    const USER_ASSISTANT: &[&str] = &["user", "assistant"];
    const GEMINI: &[&str] = &["user", "model"];
    // An InvokeModel body is in the model's own format, which may be any of the others.
    const ANY: &[&str] = &[
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "function",
        "model",
    ];
    let known = match family {
        Family::OpenAi => OPENAI,
        Family::Responses => RESPONSES,
        Family::Anthropic | Family::Converse => USER_ASSISTANT,
        Family::Gemini => GEMINI,
        Family::Invoke => ANY,
    };
    match known.iter().find(|known| **known == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

/// Keys outside content parts that carry what the filter cannot read: a chat message's `audio`
/// (an earlier answer's audio, by id), a file by id anywhere (a code interpreter's container,
/// a tool's resources: the same file an `input_file` part would send), and in a model's own
/// fields (`ModelFields`) any key that names an image, a file or other media.
/// `place` is the object's, `value` the place of the value under `key`.
pub(super) fn opaque_key(
    endpoint: Endpoint,
    place: Place,
    value: Place,
    key: &str,
) -> Option<&'static str> {
    if is_file_reference(key) {
        return Some("file");
    }
    match (place, value) {
        (Place::Message, _) if endpoint != Endpoint::Responses && key == "audio" => Some("audio"),
        (_, Place::ModelFields) => media_key(key),
        _ => None,
    }
}

/// `file_id`, `file_ids`, `fileId`, ...: a file the provider fetches from its own store.
fn is_file_reference(key: &str) -> bool {
    if key.len() > 9 {
        return false;
    }
    let letters = || {
        key.bytes()
            .filter(|b| *b != b'_' && *b != b'-')
            .map(|b| b.to_ascii_lowercase())
    };
    letters().eq(b"fileid".iter().copied()) || letters().eq(b"fileids".iter().copied())
}

/// What a key in a model's own fields names, if it is media the filter cannot read: an image
/// (`images`, `init_image`, `inputImage`), audio, video, a file or document, raw bytes or
/// base64 text, a media source or a location in storage.
fn media_key(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let label = parts::kind_label(&lower);
    if label != "unrecognised" {
        return Some(label);
    }
    const MEDIA: [&str; 7] = ["media", "base64", "bytes", "s3", "uri", "url", "video"];
    MEDIA
        .iter()
        .any(|word| lower.contains(word))
        .then_some("media")
}

/// A `data:` URL, leading white space aside: a scheme is matched without regard to case
/// (RFC 3986, section 3.1), so `DATA:` and `Data:` are one too.
pub(super) fn is_data_url(text: &str) -> bool {
    text.trim_start()
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
}
