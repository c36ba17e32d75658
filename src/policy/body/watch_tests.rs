//! Which keys the watch table locates, per endpoint and enclosing watched object.

use super::*;

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
        (
            Endpoint::Responses,
            all,
            None,
            "stream",
            Some(Watched::Stream),
        ),
        (
            Endpoint::Responses,
            stream_only,
            None,
            "background",
            Some(Watched::Background),
        ),
        (Endpoint::ChatCompletions, all, None, "background", None),
        (Endpoint::Responses, all, None, "stream_options", None),
        (Endpoint::Embeddings, all, None, "stream", None),
        (
            Endpoint::ChatCompletions,
            all,
            None,
            "n",
            Some(Watched::Choices),
        ),
        (Endpoint::ChatCompletions, stream_only, None, "n", None),
        (
            Endpoint::ChatCompletions,
            all,
            None,
            "best_of",
            Some(Watched::BestOf),
        ),
        (
            Endpoint::Completions,
            all,
            None,
            "best_of",
            Some(Watched::BestOf),
        ),
        (Endpoint::Responses, all, None, "n", None),
        (
            Endpoint::GeminiGenerate,
            all,
            Some(Watched::GenerationConfig),
            "candidate_count",
            Some(Watched::GeminiCandidateCountSnake),
        ),
        (
            Endpoint::BedrockConverse,
            all,
            Some(Watched::AdditionalModelRequestFields),
            "max_tokens",
            None,
        ),
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
fn every_watched_value_has_its_own_slot() {
    let mut located = Located::default();
    for (at, what) in Watched::ALL.iter().enumerate() {
        located.set(
            *what,
            LocatedValue {
                span: Span::new(at, at + 1),
                object: None,
            },
        );
    }
    for (at, what) in Watched::ALL.iter().enumerate() {
        assert_eq!(
            located.get(*what).map(|found| found.span.start),
            Some(at),
            "{what:?}"
        );
    }
}
