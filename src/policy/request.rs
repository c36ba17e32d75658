//! The request headers as the policy sees them: plain name/value pairs, read without trust.

use std::fmt;

/// Request headers in arrival order, duplicates kept, as Envoy hands them over
/// (pseudo-headers `:method`, `:path` included).
pub type Headers = [(String, Vec<u8>)];

/// Every value of one header, in order. Names compare without case.
pub fn values<'h>(headers: &'h Headers, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// Why a header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Missing,
    Repeated,
    NotText,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            HeaderError::Missing => "is missing",
            HeaderError::Repeated => "is given more than once",
            HeaderError::NotText => "is not printable ASCII",
        })
    }
}

/// The single value of a header whose value may be a comma-separated list (identity,
/// content-type, content-encoding): none is `Ok(None)`; several, or one holding a
/// comma-joined list, is an error, so a repeated header is never resolved in the caller's favour.
pub fn single<'h>(headers: &'h Headers, name: &'h str) -> Result<Option<&'h str>, HeaderError> {
    let value = only(headers, name)?;
    if value.is_some_and(|value| value.contains(',')) {
        return Err(HeaderError::Repeated);
    }
    Ok(value)
}

/// The value of a header that must appear at most once, commas allowed (`:path` may carry them
/// in its query).
pub fn only<'h>(headers: &'h Headers, name: &'h str) -> Result<Option<&'h str>, HeaderError> {
    let mut found = values(headers, name);
    let Some(value) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(HeaderError::Repeated);
    }
    let text = std::str::from_utf8(value).map_err(|_| HeaderError::NotText)?;
    if !text
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(HeaderError::NotText);
    }
    Ok(Some(text.trim()))
}

/// Why a body's declared type or encoding is not one the filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    MissingType,
    WrongType(String),
    WrongCharset(String),
    Encoded(String),
    Unreadable(&'static str),
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            MediaError::MissingType => {
                f.write_str("the request has no content-type; send application/json")
            }
            MediaError::WrongType(found) => write!(
                f,
                "content-type \"{found}\" is not inspected; send application/json"
            ),
            MediaError::WrongCharset(found) => {
                write!(f, "charset \"{found}\" is not inspected; send UTF-8 JSON")
            }
            MediaError::Encoded(found) => write!(
                f,
                "content-encoding \"{found}\" is not decoded by the gateway; send the body \
                 uncompressed"
            ),
            MediaError::Unreadable(header) => write!(
                f,
                "the {header} header is repeated or unreadable; send it once"
            ),
        }
    }
}

/// Checks that the body is declared as uncompressed UTF-8 JSON.
pub fn check_json_body(headers: &Headers) -> Result<(), MediaError> {
    let content_type = single(headers, "content-type")
        .map_err(|_| MediaError::Unreadable("content-type"))?
        .ok_or(MediaError::MissingType)?;
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(MediaError::WrongType(shorten_header(essence)));
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(MediaError::WrongCharset(shorten_header(charset)));
            }
        }
    }
    let encoding = single(headers, "content-encoding")
        .map_err(|_| MediaError::Unreadable("content-encoding"))?;
    match encoding {
        None => Ok(()),
        Some(value) if value.eq_ignore_ascii_case("identity") => Ok(()),
        Some(value) => Err(MediaError::Encoded(shorten_header(value))),
    }
}

/// The declared content-length, if there is exactly one readable value.
pub fn content_length(headers: &Headers) -> Option<u64> {
    single(headers, "content-length")
        .ok()
        .flatten()?
        .parse()
        .ok()
}

fn shorten_header(value: &str) -> String {
    super::shorten::shorten(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn single_values() {
        let h = headers(&[("x-a", "one"), ("x-b", "1"), ("x-b", "2"), ("x-c", "a,b")]);
        assert_eq!(single(&h, "x-a"), Ok(Some("one")));
        assert_eq!(single(&h, "X-A"), Ok(Some("one")));
        assert_eq!(single(&h, "x-b"), Err(HeaderError::Repeated));
        assert_eq!(single(&h, "x-c"), Err(HeaderError::Repeated));
        assert_eq!(single(&h, "x-d"), Ok(None));
        let binary = vec![("x-a".to_string(), vec![0xff, 0x41])];
        assert_eq!(single(&binary, "x-a"), Err(HeaderError::NotText));
    }

    macro_rules! media {
        ($($name:ident: [$($header:expr),*] => $ok:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(check_json_body(&headers(&[$($header),*])).is_ok(), $ok);
            }
        )*};
    }

    media! {
        json: [("content-type", "application/json")] => true;
        json_upper: [("content-type", "Application/JSON")] => true;
        json_charset: [("content-type", "application/json; charset=utf-8")] => true;
        json_quoted_charset: [("content-type", "application/json;charset=\"UTF-8\"")] => true;
        json_identity: [("content-type", "application/json"), ("content-encoding", "identity")] => true;
        missing: [] => false;
        text: [("content-type", "text/plain")] => false;
        json_suffix: [("content-type", "application/json-seq")] => false;
        vendor_json: [("content-type", "application/vnd.api+json")] => false;
        latin1: [("content-type", "application/json; charset=latin1")] => false;
        utf16: [("content-type", "application/json; charset=utf-16")] => false;
        two_types: [("content-type", "application/json"), ("content-type", "text/plain")] => false;
        gzip: [("content-type", "application/json"), ("content-encoding", "gzip")] => false;
        gzip_upper: [("content-type", "application/json"), ("content-encoding", "GZIP")] => false;
        two_encodings: [("content-type", "application/json"), ("content-encoding", "identity"), ("content-encoding", "gzip")] => false;
        encoding_list: [("content-type", "application/json"), ("content-encoding", "identity, gzip")] => false;
        empty_encoding: [("content-type", "application/json"), ("content-encoding", "")] => false;
    }
}
