//! Which API a request speaks, from its method and path alone.
//!
//! Only the canonical spelling of each endpoint is recognised. A variant (trailing slash,
//! `//`, dot segments, percent-encoding, other case) is not a known endpoint and is refused, so
//! a path the provider might normalise differently is never forwarded unread.

use serde::Deserialize;

/// The request and reply format a provider endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFamily {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

impl ApiFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::OpenAi => "openai",
            ApiFamily::Anthropic => "anthropic",
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
        }
    }

    pub fn path(self) -> &'static str {
        ENDPOINTS
            .iter()
            .find(|(_, endpoint)| *endpoint == self)
            .map_or(API_ROOT, |(path, _)| path)
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
pub fn classify(method: &str, target: &str) -> Option<Endpoint> {
    if method != "POST" {
        return None;
    }
    let (path, _) = split_query(target);
    ENDPOINTS
        .iter()
        .find(|(canonical, _)| *canonical == path)
        .map(|(_, endpoint)| *endpoint)
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
                assert_eq!(classify($method, $path), $expected, "{} {}", $method, $path);
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
