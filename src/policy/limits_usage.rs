//! The request flags that decide whether a response's usage can be read, and the rule that a
//! consumer with a budget is only forwarded requests whose usage will be read.
//!
//! A flag whose type the API defines (`stream`, `stream_options.include_usage`, `background`)
//! must have that type: lenient servers read `"stream": 1` or `"stream": "true"` as true, and a
//! filter that read them as false would neither ask for the stream's usage nor expect it.

use super::classify::{split_query, ApiFamily, Classified, Endpoint};
use super::limits::{reports_stream_usage, Watched};
use super::reply::{Code, Reply};
use super::walk::{Found, Located};

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

fn raw<'b>(body: &'b [u8], found: &Found) -> &'b [u8] {
    body.get(found.span()).unwrap_or_default()
}

/// A boolean flag: `Ok(None)` when absent or null, `Err` when it has another type.
fn boolean(body: &[u8], found: Option<Found>) -> Result<Option<bool>, ()> {
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
    let (path, query) = split_query(path);
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
        Endpoint::BedrockConverse | Endpoint::BedrockInvoke if path.ends_with("-stream") => Some(
            "a Bedrock stream reports its usage inside a binary event stream the gateway does \
             not read; use the endpoint that does not stream"
                .to_owned(),
        ),
        _ => None,
    }
}

/// Gemini's answer format, from the `alt` (or `$alt`) query parameter: only `json` (the
/// default) and `sse` are read. Given twice, which one Google reads is not the filter's guess.
fn gemini_format(query: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut alt = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if !matches!(name.as_deref(), Some("alt" | "$alt")) && name.is_some() {
            continue;
        }
        if alt.is_some() || name.is_none() {
            return Some(
                "the answer format (\"alt\") is given more than once or cannot be read".to_owned(),
            );
        }
        alt = Some(percent_decode(value).unwrap_or_default());
    }
    match alt.as_deref() {
        None | Some("json" | "sse") => None,
        Some(other) => Some(format!(
            "the answer format \"alt={}\" is not one whose usage the gateway reads; use json or \
             sse",
            super::extract::display_model(other)
        )),
    }
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
#[path = "limits_usage_tests.rs"]
mod tests;
