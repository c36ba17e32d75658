//! Token usage read from provider responses, chunk by chunk, without holding the response.
//!
//! (Skeleton: the reader is being written.)

/// How a response reports its usage: decided by the endpoint the request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    /// OpenAI (and Azure OpenAI) chat completions, completions and embeddings: `usage`
    /// with `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`.
    OpenAiChat,
    /// OpenAI Responses API: `usage` (or `response.usage` in stream events) with
    /// `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`.
    OpenAiResponses,
    /// Anthropic Messages: `usage` / `message.usage` with `input_tokens`, `output_tokens`,
    /// `cache_read_input_tokens`, `cache_creation_input_tokens`.
    Anthropic,
    /// Gemini: `usageMetadata` with `promptTokenCount`, `candidatesTokenCount`,
    /// `thoughtsTokenCount`, `cachedContentTokenCount`.
    Gemini,
    /// Bedrock Converse: `usage` with `inputTokens`, `outputTokens`, `cacheReadInputTokens`,
    /// `cacheWriteInputTokens`.
    BedrockConverse,
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document (or a JSON array of documents, as Gemini streams without `alt=sse`).
    Json,
    /// Server-sent events whose `data:` payloads are JSON documents.
    Sse,
}

/// Token counts, normalised across providers: `input` counts every prompt token, cached ones
/// included; `cached` is the part of `input` read from a prompt cache; `output` counts every
/// generated token, reasoning included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}
