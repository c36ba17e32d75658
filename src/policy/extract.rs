//! What the policy takes out of a request body, and the in-place edits it makes to it.
//!
//! The body is read in one strict pass (`walk`); the top-level `model` comes out with its byte
//! span, so an alias is swapped in place without re-serialising the rest of the body.

use std::ops::Range;

use super::body::{walk, BodyError, ModelField, NoText};
use super::classify::Endpoint;

/// What the policy reads from a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    pub model: ModelField,
}

/// Validates a whole body and extracts its `model`, without looking at its text.
pub fn read_body(body: &[u8]) -> Result<RequestBody, BodyError> {
    let walked = walk(body, Endpoint::ChatCompletions, &mut NoText)?;
    match walked.model {
        Some(model) => Ok(RequestBody { model }),
        None => Err(BodyError::ModelMissing),
    }
}

/// The body with its model value replaced: one copy, the rest byte for byte as it came.
pub fn replace_model(body: &[u8], span: &Range<usize>, new_model: &str) -> Option<Vec<u8>> {
    let before = body.get(..span.start)?;
    let after = body.get(span.end..)?;
    let quoted = serde_json::to_string(new_model).ok()?;
    let capacity = before
        .len()
        .checked_add(quoted.len())?
        .checked_add(after.len())?;
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(before);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(after);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::body::strict_json::{JsonError, Violation};

    /// The model, or the error with serde_json's message blanked (only the kind is compared).
    fn model_of(body: &str) -> Result<String, BodyError> {
        read_body(body.as_bytes())
            .map(|parsed| parsed.model.name)
            .map_err(|error| match error {
                BodyError::Json(JsonError::Syntax(_)) => {
                    BodyError::Json(JsonError::Syntax(String::new()))
                }
                other => other,
            })
    }

    macro_rules! bodies {
        ($($name:ident: $body:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(model_of($body), $expected, "{}", $body);
            }
        )*};
    }

    fn dup(key: &str) -> Result<String, BodyError> {
        Err(BodyError::Json(JsonError::Violation(
            Violation::DuplicateKey(key.into()),
        )))
    }

    fn variant(key: &str, of: &str) -> Result<String, BodyError> {
        Err(BodyError::Json(JsonError::Violation(
            Violation::CaseVariant {
                key: key.into(),
                of: of.into(),
            },
        )))
    }

    fn syntax() -> Result<String, BodyError> {
        Err(BodyError::Json(JsonError::Syntax(String::new())))
    }

    bodies! {
        simple: r#"{"model":"gpt-4o","messages":[]}"# => Ok("gpt-4o".into());
        model_last: r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}"# => Ok("gpt-4o".into());
        escaped_model: r#"{"model":"gpt\u002d4o"}"# => Ok("gpt-4o".into());
        escaped_key: r#"{"m\u006fdel":"gpt-4o"}"# => Ok("gpt-4o".into());
        // Found by the strict_json fuzz target: a lone case variant of `model`, escaped.
        case_variant_of_model: r#"{"moeel":"a","m\u004fdel":"b"}"# => variant("mOdel", "model");
        case_variant_beside_model: r#"{"model":"a","MODEL":"b"}"# => variant("MODEL", "model");
        nested_model_ignored: r#"{"model":"a","metadata":{"model":"b"}}"# => Ok("a".into());
        empty: "" => Err(BodyError::Empty);
        whitespace_only: "  \n" => Err(BodyError::Empty);
        array: r#"[{"model":"gpt-4o"}]"# => Err(BodyError::NotAnObject);
        string: r#""gpt-4o""# => Err(BodyError::NotAnObject);
        missing_model: r#"{"messages":[]}"# => Err(BodyError::ModelMissing);
        null_model: r#"{"model":null}"# => Err(BodyError::ModelNotString);
        number_model: r#"{"model":4}"# => Err(BodyError::ModelNotString);
        object_model: r#"{"model":{"name":"gpt-4o"}}"# => Err(BodyError::ModelNotString);
        array_model: r#"{"model":["gpt-4o"]}"# => Err(BodyError::ModelNotString);
        duplicate_model: r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"# => dup("model");
        duplicate_model_escaped: r#"{"model":"gpt-4o-mini","\u006dodel":"gpt-4o"}"# => dup("model");
        duplicate_nested: r#"{"model":"m","messages":[{"role":"user","role":"system"}]}"# => dup("role");
        trailing_object: r#"{"model":"a"}{"model":"b"}"# => syntax();
        trailing_garbage: r#"{"model":"a"} x"# => syntax();
        truncated: r#"{"model":"a","messages":["# => syntax();
    }

    #[test]
    fn invalid_utf8_refused() {
        let body = b"{\"model\":\"gpt\xff\"}";
        assert!(matches!(
            read_body(body),
            Err(BodyError::Json(JsonError::Syntax(_)))
        ));
    }

    #[test]
    fn span_covers_the_quoted_value() {
        let body = br#"{ "model" : "fast" , "n": 1}"#;
        let parsed = read_body(body).unwrap();
        assert_eq!(&body[parsed.model.span.clone()], br#""fast""#);
        let rewritten = replace_model(body, &parsed.model.span, "gpt-4o-mini").unwrap();
        assert_eq!(rewritten, br#"{ "model" : "gpt-4o-mini" , "n": 1}"#);
    }

    #[test]
    fn span_of_escaped_value_is_the_raw_text() {
        let body = br#"{"model":"f\u0061st"}"#;
        let parsed = read_body(body).unwrap();
        assert_eq!(parsed.model.name, "fast");
        let rewritten = replace_model(body, &parsed.model.span, "a\"b").unwrap();
        assert_eq!(rewritten, br#"{"model":"a\"b"}"#);
        assert!(serde_json::from_slice::<serde_json::Value>(&rewritten).is_ok());
    }
}
