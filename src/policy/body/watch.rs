//! The watch table: which values the walk locates for the request limits (the output-token
//! fields, `stream` and `stream_options`, and where the objects holding them close), so the
//! limits edit the body in place without reading it again. `limits` reads what is located.

use super::span::Span;
use crate::policy::classify::Endpoint;

/// Declares `Watched`, the list of all its values, and the table with one slot for each, from
/// one list: a value added to the enum has its slot, and `Located::set` cannot drop it.
macro_rules! watched_values {
    ($($(#[$doc:meta])* $kind:ident,)*) => {
        /// A value the walk can locate for the limits.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Watched {
            $($(#[$doc])* $kind,)*
        }

        impl Watched {
            /// Every watched value, in declaration order.
            pub const ALL: &'static [Watched] = &[$(Watched::$kind,)*];
        }

        /// One slot per `Watched` value, each a field of its own.
        #[allow(non_snake_case)]
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        struct Slots {
            $($kind: Option<LocatedValue>,)*
        }

        impl Slots {
            fn slot(&self, what: Watched) -> &Option<LocatedValue> {
                match what {
                    $(Watched::$kind => &self.$kind,)*
                }
            }

            fn slot_mut(&mut self, what: Watched) -> &mut Option<LocatedValue> {
                match what {
                    $(Watched::$kind => &mut self.$kind,)*
                }
            }
        }
    };
}

watched_values! {
    /// Top-level `stream`.
    Stream,
    /// Top-level `stream_options`.
    StreamOptions,
    /// `stream_options.include_usage`.
    IncludeUsage,
    /// Top-level `max_tokens` (chat completions, completions, Anthropic Messages).
    MaxTokens,
    /// Top-level `max_completion_tokens` (chat completions).
    MaxCompletionTokens,
    /// Top-level `max_output_tokens` (Responses).
    MaxOutputTokens,
    /// Gemini `generationConfig`.
    GenerationConfig,
    /// Gemini `generation_config`, the same field as Google's parser reads it.
    GenerationConfigSnake,
    /// `maxOutputTokens` in either spelling of Gemini's generation config.
    GeminiMaxOutputTokens,
    /// `max_output_tokens` in either spelling of Gemini's generation config.
    GeminiMaxOutputTokensSnake,
    /// Bedrock Converse `inferenceConfig`.
    InferenceConfig,
    /// `inferenceConfig.maxTokens`.
    InferenceMaxTokens,
    /// Bedrock Converse `additionalModelRequestFields`, passed to the model as they are; read
    /// at every depth (see `additional_limit`).
    AdditionalModelRequestFields,
    /// Top-level `n` (chat completions, completions): how many choices are generated.
    Choices,
    /// Top-level `best_of` (completions): how many completions are generated to pick from.
    BestOf,
    /// `candidateCount` in either spelling of Gemini's generation config.
    GeminiCandidateCount,
    /// `candidate_count` in either spelling of Gemini's generation config.
    GeminiCandidateCountSnake,
    /// Top-level `background` (Responses): the answer is queued, its usage reported elsewhere.
    Background,
    /// Top-level `prompt` (completions): one prompt, or a list of prompts each answered apart.
    Prompt,
}

/// Which values the walk locates for the request limits, besides its usual work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// `stream`, `stream_options` and `stream_options.include_usage`.
    pub stream: bool,
    /// The endpoint's output-token fields and the objects that hold them.
    pub output_tokens: bool,
}

impl Watch {
    pub fn any(self) -> bool {
        self.stream || self.output_tokens
    }
}

/// Where an object closes: the offset of its `}`, and whether it has no members (so a key
/// inserted before the brace needs no comma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEnd {
    pub close: usize,
    pub empty: bool,
}

/// A located value: the span of its raw JSON text in the body, and where it closes if it is an
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocatedValue {
    pub span: Span,
    pub object: Option<ObjectEnd>,
}

/// The values located for a `Watch`: one slot per `Watched` value, declared with it, so a
/// located value always has its slot. A fixed table: locating allocates nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Located {
    /// The top-level object; set whenever something was watched.
    pub top: Option<ObjectEnd>,
    found: Slots,
}

impl Located {
    pub fn get(&self, what: Watched) -> Option<LocatedValue> {
        *self.found.slot(what)
    }

    pub(super) fn set(&mut self, what: Watched, found: LocatedValue) {
        *self.found.slot_mut(what) = Some(found);
    }
}

/// Whether a key is watched: at the top level (`parent` `None`) or inside a watched object.
pub fn watched(
    endpoint: Endpoint,
    watch: Watch,
    parent: Option<Watched>,
    key: &str,
) -> Option<Watched> {
    use Endpoint::*;
    match parent {
        None => {
            if watch.stream {
                match key {
                    "stream" if has_stream_flag(endpoint) => return Some(Watched::Stream),
                    "stream_options" if reports_stream_usage(endpoint) => {
                        return Some(Watched::StreamOptions)
                    }
                    "background" if endpoint == Responses => return Some(Watched::Background),
                    _ => {}
                }
            }
            if !watch.output_tokens {
                return None;
            }
            Some(match (endpoint, key) {
                (ChatCompletions | AzureChatCompletions, "max_completion_tokens") => {
                    Watched::MaxCompletionTokens
                }
                (
                    ChatCompletions | AzureChatCompletions | Completions | AzureCompletions
                    | Messages,
                    "max_tokens",
                ) => Watched::MaxTokens,
                (ChatCompletions | AzureChatCompletions | Completions | AzureCompletions, "n") => {
                    Watched::Choices
                }
                // Chat completions do not define `best_of`, but OpenAI-compatible servers that
                // honour it generate that many choices, as completions do.
                (
                    ChatCompletions | AzureChatCompletions | Completions | AzureCompletions,
                    "best_of",
                ) => Watched::BestOf,
                (Completions | AzureCompletions, "prompt") => Watched::Prompt,
                (Responses, "max_output_tokens") => Watched::MaxOutputTokens,
                (GeminiGenerate, "generationConfig") => Watched::GenerationConfig,
                (GeminiGenerate, "generation_config") => Watched::GenerationConfigSnake,
                (BedrockConverse, "inferenceConfig") => Watched::InferenceConfig,
                (BedrockConverse, "additionalModelRequestFields") => {
                    Watched::AdditionalModelRequestFields
                }
                _ => return None,
            })
        }
        Some(Watched::StreamOptions) => (key == "include_usage").then_some(Watched::IncludeUsage),
        Some(Watched::GenerationConfig | Watched::GenerationConfigSnake) => match key {
            "maxOutputTokens" => Some(Watched::GeminiMaxOutputTokens),
            "max_output_tokens" => Some(Watched::GeminiMaxOutputTokensSnake),
            "candidateCount" => Some(Watched::GeminiCandidateCount),
            "candidate_count" => Some(Watched::GeminiCandidateCountSnake),
            _ => None,
        },
        Some(Watched::InferenceConfig) => {
            (key == "maxTokens").then_some(Watched::InferenceMaxTokens)
        }
        Some(_) => None,
    }
}

/// The endpoints whose requests say whether to stream with a boolean `stream`.
pub fn has_stream_flag(endpoint: Endpoint) -> bool {
    reports_stream_usage(endpoint) || matches!(endpoint, Endpoint::Responses | Endpoint::Messages)
}

/// The endpoints whose streams report usage only when asked (`stream_options.include_usage`).
pub fn reports_stream_usage(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::AzureChatCompletions
            | Endpoint::AzureCompletions
    )
}

/// Where the top-level object of a walked body closes: its last byte but white space.
pub(super) fn top_object_end(body: &[u8]) -> Option<ObjectEnd> {
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let inside = body.get(open.checked_add(1)?..close)?;
    Some(ObjectEnd {
        close,
        empty: inside.iter().all(u8::is_ascii_whitespace),
    })
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
