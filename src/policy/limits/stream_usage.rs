//! Asking a stream for its usage: the change that makes an OpenAI-style stream end with its
//! usage, the request flags that decide whether a response's usage can be read, and the rule
//! that a consumer with a budget is only forwarded requests whose usage will be read.
//!
//! A flag whose type the API defines (`stream`, `stream_options.include_usage`, `background`)
//! must have that type: lenient servers read `"stream": 1` or `"stream": "true"` as true, and a
//! filter that read them as false would neither ask for the stream's usage nor expect it.

use crate::policy::body::watch::reports_stream_usage;
use crate::policy::body::{Located, LocatedValue, Watched};
use crate::policy::classify::{split_query, ApiFamily, Classified, Endpoint};
use crate::policy::reply::{Code, Reply};
use crate::policy::request::Headers;

use super::{raw, Change};

/// The flags a request gives, once each is known to have its type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage`, where given as a boolean.
    pub include_usage: Option<bool>,
    /// `background: true` (Responses).
    pub background: bool,
}

const INCLUDE_USAGE: &str = r#"{"include_usage":true}"#;

/// The change that makes a streamed response end with its usage, if the body needs one:
/// `stream_options.include_usage` set to `true` when `stream` is `true`. A `stream_options`
/// or `include_usage` of a type the provider refuses anyway is left for it to refuse.
pub fn include_usage(body: &[u8], located: &Located) -> Option<Change> {
    let stream = located.get(Watched::Stream)?;
    if raw(body, &stream) != b"true" {
        return None;
    }
    let Some(options) = located.get(Watched::StreamOptions) else {
        return Some(Change::Insert {
            object: located.top?,
            member: format!(r#""stream_options":{INCLUDE_USAGE}"#),
        });
    };
    if raw(body, &options) == b"null" {
        return Some(Change::Replace {
            span: options.span.range(),
            text: INCLUDE_USAGE.to_owned(),
        });
    }
    let object = options.object?;
    match located.get(Watched::IncludeUsage) {
        None => Some(Change::Insert {
            object,
            member: r#""include_usage":true"#.to_owned(),
        }),
        Some(include) if matches!(raw(body, &include), b"false" | b"null") => {
            Some(Change::Replace {
                span: include.span.range(),
                text: "true".to_owned(),
            })
        }
        Some(_) => None,
    }
}

/// A boolean flag: `Ok(None)` when absent or null, `Err` when it has another type.
fn boolean(body: &[u8], found: Option<LocatedValue>) -> Result<Option<bool>, ()> {
    let Some(found) = found else {
        return Ok(None);
    };
    match raw(body, &found) {
        b"true" => Ok(Some(true)),
        b"false" => Ok(Some(false)),
        b"null" => Ok(None),
        _ => Err(()),
    }
}

/// Reads the request's flags; a 400 when one has a type its API does not define.
pub fn flags(body: &[u8], located: &Located, shape: ApiFamily) -> Result<Flags, Reply> {
    let invalid = |name: &str, what: &str| {
        Reply::new(
            Code::InvalidRequest,
            shape,
            format!(
                "\"{name}\" must be {what}: providers differ on how they read other values, so \
                 the gateway does not guess"
            ),
        )
    };
    let stream = boolean(body, located.get(Watched::Stream))
        .map_err(|()| invalid("stream", "true, false or null"))?;
    if let Some(options) = located.get(Watched::StreamOptions) {
        if options.object.is_none() && raw(body, &options) != b"null" {
            return Err(invalid("stream_options", "an object or null"));
        }
    }
    let include_usage = boolean(body, located.get(Watched::IncludeUsage))
        .map_err(|()| invalid("stream_options.include_usage", "true, false or null"))?;
    let background = boolean(body, located.get(Watched::Background))
        .map_err(|()| invalid("background", "true, false or null"))?;
    Ok(Flags {
        stream: stream == Some(true),
        include_usage,
        background: background == Some(true),
    })
}

/// Why the usage of this request's response will not be read, if it will not. `path` is the
/// request target as the client sent it; `stream_usage_asked` says the filter asks a stream for
/// its usage on the client's behalf.
pub fn unread_usage(
    classified: &Classified,
    path: &str,
    flags: Flags,
    stream_usage_asked: bool,
) -> Option<String> {
    let (_, query) = split_query(path);
    match classified.endpoint {
        Endpoint::Responses if flags.background => Some(
            "a background response (\"background\": true) answers before it is generated, and \
             its usage is not reported in that answer"
                .to_owned(),
        ),
        endpoint
            if reports_stream_usage(endpoint)
                && flags.stream
                && flags.include_usage != Some(true)
                && !stream_usage_asked =>
        {
            Some(
                "the stream does not report its usage; ask for it with \
                 \"stream_options\": {\"include_usage\": true}"
                    .to_owned(),
            )
        }
        Endpoint::GeminiGenerate if !classified.counts_tokens => gemini_format(query),
        _ => None,
    }
}

/// The query parameters a Gemini answer is known to keep its usage under: Google's system
/// parameters that authenticate, attribute quota or format errors. Every other parameter is
/// refused for a consumer with a budget: Google's platform reads system parameters on every
/// API (`fields` drops `usageMetadata`, `callback` wraps the answer in JSONP, `$ct` changes how
/// the body is parsed), and a list of the ones that change the answer could never be complete.
const NEUTRAL_PARAMETERS: &[&str] = &[
    "key",
    "$key",
    "quotaUser",
    "$quotaUser",
    "userProject",
    "$userProject",
    "access_token",
    "oauth_token",
    "$.xgafv",
];

/// Gemini's answer format, from the query. Only `alt` (or `$alt`) = `json` (the default) or
/// `sse` is read, given once; `prettyPrint` only changes white space; the parameters in
/// `NEUTRAL_PARAMETERS` pass. Anything else, a `;` (which some servers read as a separator)
/// or a component that does not decode, is a reason the usage will not be read.
fn gemini_format(query: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    if query.contains(';') {
        return Some(
            "the query holds \";\", which may separate parameters the gateway does not read"
                .to_owned(),
        );
    }
    let mut alt = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = percent_decode(name) else {
            return Some("a query parameter's name cannot be read".to_owned());
        };
        match name.as_str() {
            "alt" | "$alt" => {
                if alt.is_some() {
                    return Some("the answer format (\"alt\") is given more than once".to_owned());
                }
                alt = Some(percent_decode(value));
            }
            "prettyPrint" | "$prettyPrint" => {
                if !matches!(percent_decode(value).as_deref(), Some("true" | "false")) {
                    return Some("\"prettyPrint\" must be true or false".to_owned());
                }
            }
            name if NEUTRAL_PARAMETERS.contains(&name) => {}
            name => {
                return Some(format!(
                    "the query parameter \"{}\" may change the answer's shape (Google reads \
                     system parameters such as \"fields\" and \"callback\" on every API); \
                     only alt=json or sse, prettyPrint, key, quotaUser, userProject, \
                     access_token and $.xgafv are forwarded",
                    crate::policy::shorten::shorten(name)
                ))
            }
        }
    }
    match alt.as_ref().map(Option::as_deref) {
        None | Some(Some("json" | "sse")) => None,
        Some(None) => Some("the answer format (\"alt\") cannot be read".to_owned()),
        Some(Some(other)) => Some(format!(
            "the answer format \"alt={}\" is not one whose usage the gateway reads; use json or \
             sse",
            crate::policy::shorten::shorten(other)
        )),
    }
}

/// Google headers known to leave a Gemini answer and its usage as they are: credentials,
/// client and quota attribution, request routing.
const NEUTRAL_GOOGLE_HEADERS: &[&str] = &[
    "x-goog-api-key",
    "x-goog-api-client",
    "x-goog-user-project",
    "x-goog-quota-user",
    "x-goog-request-reason",
    "x-goog-request-params",
];

/// Headers that make a server treat the request as another method.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The answer types a client may accept from Gemini: the JSON and event streams the gateway
/// reads, anything, or plain text, which Google has no form of (so it answers JSON; axios sends
/// `application/json, text/plain, */*` by default).
const READ_TYPES: &[&str] = &[
    "application/json",
    "text/event-stream",
    "text/plain",
    "*/*",
    "application/*",
];

/// Why a Gemini request's headers make its answer's usage unreadable, if they do: a Google
/// header other than those in `NEUTRAL_GOOGLE_HEADERS` (`X-Goog-FieldMask` drops
/// `usageMetadata`; new system headers may do likewise), a method override, a server timeout
/// (the answer is cut off), or an `Accept` naming a type other than JSON or an event stream.
/// Refused rather than removed: the client asked for an answer of another shape, and a gateway
/// that silently answered differently would be read wrongly.
pub fn unread_headers(classified: &Classified, headers: &Headers) -> Option<String> {
    if classified.endpoint != Endpoint::GeminiGenerate || classified.counts_tokens {
        return None;
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let google =
            lower.starts_with("x-goog-") && !NEUTRAL_GOOGLE_HEADERS.contains(&lower.as_str());
        if google || METHOD_OVERRIDES.contains(&lower.as_str()) || lower == "x-server-timeout" {
            return Some(format!(
                "the header \"{}\" may change the answer's shape or cut it short (Google reads \
                 system headers such as \"X-Goog-FieldMask\" on every API)",
                crate::policy::shorten::shorten(&lower)
            ));
        }
        if lower == "accept" {
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            let other = value.split(',').any(|item| {
                let media = item.split(';').next().unwrap_or_default().trim();
                !READ_TYPES.contains(&media)
            });
            if other {
                return Some(
                    "the \"accept\" header asks for an answer type other than JSON or an event \
                     stream"
                        .to_owned(),
                );
            }
        }
    }
    None
}

/// A query component, percent-decoded (`+` is a space); `None` when it does not decode to text.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        match byte {
            b'%' => {
                let hex = after
                    .get(..2)
                    .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
                let hex = std::str::from_utf8(hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = after.get(2..)?;
            }
            b'+' => {
                bytes.push(b' ');
                rest = after;
            }
            _ => {
                bytes.push(byte);
                rest = after;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[path = "stream_usage_tests.rs"]
mod tests;
