//! Which API a request speaks, from its method and path alone.
//!
//! Only the canonical spelling of each endpoint is recognised. A variant (trailing slash,
//! `//`, dot segments, percent-encoding, other case) is not a known endpoint and is refused, so
//! a path the provider might normalise differently is never forwarded unread. The one variable
//! part is the model segment of the Gemini, Azure OpenAI and Bedrock paths, which is
//! percent-decoded and checked before it is looked up.

use std::ops::Range;

use serde::Deserialize;

/// The request and reply format a provider endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFamily {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    Gemini,
    #[serde(rename = "azure_openai")]
    AzureOpenAi,
    Bedrock,
}

impl ApiFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::OpenAi => "openai",
            ApiFamily::Anthropic => "anthropic",
            ApiFamily::Gemini => "gemini",
            ApiFamily::AzureOpenAi => "azure_openai",
            ApiFamily::Bedrock => "bedrock",
        }
    }
}

/// An endpoint whose JSON body Posturio reads and decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Messages,
    CountTokens,
    /// `/v1beta/models/{model}:generateContent` (also `streamGenerateContent`, `countTokens`).
    GeminiGenerate,
    /// `/openai/deployments/{deployment}/chat/completions`.
    AzureChatCompletions,
    AzureCompletions,
    AzureEmbeddings,
    /// `/model/{modelId}/converse` and `converse-stream`.
    BedrockConverse,
    /// `/model/{modelId}/invoke` and `invoke-with-response-stream`: the body is the model's own
    /// format.
    BedrockInvoke,
}

/// A model named in the path, not the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathModel {
    /// Percent-decoded.
    pub name: String,
    /// Where the raw segment sits in the request target, so it can be replaced.
    pub segment: Range<usize>,
}

/// A request the gateway reads: its endpoint, and its model when the path carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub endpoint: Endpoint,
    pub path_model: Option<PathModel>,
    /// A token count (Anthropic `count_tokens`, Gemini `:countTokens`): nothing is generated.
    pub counts_tokens: bool,
}

/// Every endpoint's canonical path. All of them live under `/v1`, which a provider's
/// `base_path` may replace.
const ENDPOINTS: [(&str, Endpoint); 6] = [
    ("/v1/chat/completions", Endpoint::ChatCompletions),
    ("/v1/completions", Endpoint::Completions),
    ("/v1/embeddings", Endpoint::Embeddings),
    ("/v1/responses", Endpoint::Responses),
    ("/v1/messages", Endpoint::Messages),
    ("/v1/messages/count_tokens", Endpoint::CountTokens),
];

/// The path prefix every endpoint shares; `base_path` replaces it.
pub const API_ROOT: &str = "/v1";

impl Endpoint {
    pub fn family(self) -> ApiFamily {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Responses => ApiFamily::OpenAi,
            Endpoint::Messages | Endpoint::CountTokens => ApiFamily::Anthropic,
            Endpoint::GeminiGenerate => ApiFamily::Gemini,
            Endpoint::AzureChatCompletions
            | Endpoint::AzureCompletions
            | Endpoint::AzureEmbeddings => ApiFamily::AzureOpenAi,
            Endpoint::BedrockConverse | Endpoint::BedrockInvoke => ApiFamily::Bedrock,
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::GeminiGenerate => "Gemini generateContent",
            Endpoint::AzureChatCompletions => "Azure OpenAI chat completions",
            Endpoint::AzureCompletions => "Azure OpenAI completions",
            Endpoint::AzureEmbeddings => "Azure OpenAI embeddings",
            Endpoint::BedrockConverse => "Bedrock Converse",
            Endpoint::BedrockInvoke => "Bedrock InvokeModel",
            other => ENDPOINTS
                .iter()
                .find(|(_, endpoint)| *endpoint == other)
                .map_or(API_ROOT, |(path, _)| path),
        }
    }
}

/// Splits a request target into path and query (the query keeps its `?`, or is empty).
pub fn split_query(target: &str) -> (&str, &str) {
    match target.find('?') {
        Some(at) => target.split_at(at),
        None => (target, ""),
    }
}

/// The endpoint a `POST` to this path is, if any. The query string is ignored.
pub fn classify(method: &str, target: &str) -> Option<Classified> {
    if method != "POST" {
        return None;
    }
    let (path, _) = split_query(target);
    if let Some((_, endpoint)) = ENDPOINTS.iter().find(|(canonical, _)| *canonical == path) {
        return Some(Classified {
            endpoint: *endpoint,
            path_model: None,
            counts_tokens: *endpoint == Endpoint::CountTokens,
        });
    }
    classify_path_model(path)
}

/// `(prefix, model segment ends at, suffix, endpoint)` for the families that name the model in
/// the path. The model segment is whatever lies between prefix and suffix.
const PATH_MODEL_ENDPOINTS: [(&str, &str, Endpoint); 12] = [
    (
        "/v1beta/models/",
        ":generateContent",
        Endpoint::GeminiGenerate,
    ),
    (
        "/v1beta/models/",
        ":streamGenerateContent",
        Endpoint::GeminiGenerate,
    ),
    ("/v1beta/models/", ":countTokens", Endpoint::GeminiGenerate),
    ("/v1/models/", ":generateContent", Endpoint::GeminiGenerate),
    (
        "/v1/models/",
        ":streamGenerateContent",
        Endpoint::GeminiGenerate,
    ),
    (
        "/openai/deployments/",
        "/chat/completions",
        Endpoint::AzureChatCompletions,
    ),
    (
        "/openai/deployments/",
        "/completions",
        Endpoint::AzureCompletions,
    ),
    (
        "/openai/deployments/",
        "/embeddings",
        Endpoint::AzureEmbeddings,
    ),
    ("/model/", "/converse", Endpoint::BedrockConverse),
    ("/model/", "/converse-stream", Endpoint::BedrockConverse),
    ("/model/", "/invoke", Endpoint::BedrockInvoke),
    (
        "/model/",
        "/invoke-with-response-stream",
        Endpoint::BedrockInvoke,
    ),
];

fn classify_path_model(path: &str) -> Option<Classified> {
    PATH_MODEL_ENDPOINTS
        .iter()
        .find_map(|(prefix, suffix, endpoint)| {
            let segment = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
            let name = decode_segment(segment)?;
            let start = prefix.len();
            Some(Classified {
                endpoint: *endpoint,
                path_model: Some(PathModel {
                    name,
                    segment: start..start.checked_add(segment.len())?,
                }),
                counts_tokens: *suffix == ":countTokens",
            })
        })
}

/// Percent-decodes one path segment holding a model name. Refuses what a server could read as
/// more than one segment or as a relative path (`/`, `\`, `.`, `..`), control characters and
/// white space, bad escapes and invalid UTF-8.
pub fn decode_segment(segment: &str) -> Option<String> {
    if segment.is_empty() || segment.contains('/') || segment.contains('?') || segment.contains('#')
    {
        return None;
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0usize;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes.get(index.checked_add(1)?..index.checked_add(3)?)?;
            let text = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(text, 16).ok()?);
            index = index.checked_add(3)?;
        } else {
            decoded.push(byte);
            index = index.checked_add(1)?;
        }
    }
    let name = String::from_utf8(decoded).ok()?;
    let unsafe_char = |c: char| c == '/' || c == '\\' || c.is_control() || c.is_whitespace();
    if name == "." || name == ".." || name.chars().any(unsafe_char) {
        return None;
    }
    Some(name)
}

/// Percent-encodes a model name for a path segment: everything but unreserved characters.
pub fn encode_segment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// True when a path is in the one spelling that every server reads the same way: it starts with
/// `/`, and has no empty, `.` or `..` segment, no percent-encoding, backslash, fragment or
/// control character. Used for passthrough prefixes and for requests matched against them.
pub fn is_canonical_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let clean_bytes = path
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b'#' | b'?'));
    clean_bytes
        && rest
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}

/// True when `path` is `prefix` or lies below it (segment-wise: `/v1/models` covers
/// `/v1/models/x` but not `/v1/modelsx`).
pub fn is_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! classifies {
        ($($name:ident: $method:expr, $path:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let endpoint = classify($method, $path).map(|classified| classified.endpoint);
                assert_eq!(endpoint, $expected, "{} {}", $method, $path);
            }
        )*};
    }

    classifies! {
        chat: "POST", "/v1/chat/completions" => Some(Endpoint::ChatCompletions);
        chat_query_ignored: "POST", "/v1/chat/completions?api-version=1" => Some(Endpoint::ChatCompletions);
        completions: "POST", "/v1/completions" => Some(Endpoint::Completions);
        embeddings: "POST", "/v1/embeddings" => Some(Endpoint::Embeddings);
        responses: "POST", "/v1/responses" => Some(Endpoint::Responses);
        messages: "POST", "/v1/messages" => Some(Endpoint::Messages);
        count_tokens: "POST", "/v1/messages/count_tokens" => Some(Endpoint::CountTokens);
        get_is_not_an_endpoint: "GET", "/v1/chat/completions" => None;
        lowercase_method_refused: "post", "/v1/chat/completions" => None;
        trailing_slash_refused: "POST", "/v1/chat/completions/" => None;
        double_slash_refused: "POST", "/v1//chat/completions" => None;
        leading_double_slash_refused: "POST", "//v1/chat/completions" => None;
        dot_segment_refused: "POST", "/v1/./chat/completions" => None;
        dot_dot_segment_refused: "POST", "/v1/x/../chat/completions" => None;
        encoded_slash_refused: "POST", "/v1/chat%2Fcompletions" => None;
        encoded_letter_refused: "POST", "/v1/chat/%63ompletions" => None;
        upper_case_refused: "POST", "/V1/Chat/Completions" => None;
        fragment_refused: "POST", "/v1/chat/completions#x" => None;
        semicolon_refused: "POST", "/v1/chat/completions;x" => None;
        unknown_path: "POST", "/v1/images/generations" => None;
        empty_path: "POST", "" => None;
        gemini: "POST", "/v1beta/models/gemini-2.5-flash:generateContent" => Some(Endpoint::GeminiGenerate);
        gemini_stream: "POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse" => Some(Endpoint::GeminiGenerate);
        gemini_unknown_action: "POST", "/v1beta/models/gemini-2.5-flash:embedContent" => None;
        gemini_empty_model: "POST", "/v1beta/models/:generateContent" => None;
        gemini_model_with_slash: "POST", "/v1beta/models/a/b:generateContent" => None;
        azure_chat: "POST", "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21" => Some(Endpoint::AzureChatCompletions);
        azure_embeddings: "POST", "/openai/deployments/emb/embeddings" => Some(Endpoint::AzureEmbeddings);
        azure_encoded_slash: "POST", "/openai/deployments/a%2Fb/chat/completions" => None;
        azure_dot_dot: "POST", "/openai/deployments/%2e%2e/chat/completions" => None;
        bedrock_converse: "POST", "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse" => Some(Endpoint::BedrockConverse);
        bedrock_converse_stream: "POST", "/model/m/converse-stream" => Some(Endpoint::BedrockConverse);
        bedrock_invoke: "POST", "/model/m/invoke" => Some(Endpoint::BedrockInvoke);
        bedrock_bad_escape: "POST", "/model/m%zz/invoke" => None;
        bedrock_nul: "POST", "/model/m%00/invoke" => None;
    }

    #[test]
    fn token_counts_are_told_apart() {
        for (path, counts) in [
            ("/v1/messages/count_tokens", true),
            ("/v1/messages", false),
            ("/v1beta/models/g:countTokens", true),
            ("/v1beta/models/g:generateContent", false),
            ("/v1beta/models/g:streamGenerateContent?alt=sse", false),
            ("/model/m/converse", false),
        ] {
            assert_eq!(
                classify("POST", path).unwrap().counts_tokens,
                counts,
                "{path}"
            );
        }
    }

    #[test]
    fn path_models_are_decoded_and_located() {
        let target = "/model/anthropic.claude-v1%3A0/converse?x=1";
        let classified = classify("POST", target).unwrap();
        let model = classified.path_model.unwrap();
        assert_eq!(model.name, "anthropic.claude-v1:0");
        assert_eq!(target.get(model.segment), Some("anthropic.claude-v1%3A0"));
        assert_eq!(
            encode_segment("anthropic.claude-v1:0"),
            "anthropic.claude-v1%3A0"
        );
        assert_eq!(encode_segment("gemini-2.5-flash"), "gemini-2.5-flash");
    }

    #[test]
    fn canonical_paths() {
        for good in ["/", "/v1/models", "/v1/models/gpt-4o", "/v1beta/openai"] {
            assert!(is_canonical_path(good), "{good}");
        }
        for bad in [
            "",
            "v1",
            "//",
            "/v1/",
            "/v1//models",
            "/v1/./models",
            "/v1/../x",
            "/v1/%2e",
            "/v1\\models",
            "/v1/models#a",
            "/v1/mo dels",
            "/v1/models?x",
            "/v1/.",
        ] {
            assert!(!is_canonical_path(bad), "{bad}");
        }
    }

    #[test]
    fn under_prefix_is_segment_wise() {
        assert!(is_under("/v1/models", "/v1/models"));
        assert!(is_under("/v1/models/gpt-4o", "/v1/models"));
        assert!(!is_under("/v1/modelsx", "/v1/models"));
        assert!(!is_under("/v1", "/v1/models"));
        assert!(is_under("/v1/anything", "/"));
    }
}
