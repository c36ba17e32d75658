//! Reading what the policy needs out of a request body, in one strict pass.
//!
//! The body is walked once: the whole document is validated (see `strict_json`) and the
//! top-level `model` is taken out with its byte span, so an alias can be swapped in place
//! without re-serialising the rest of the body.

use std::cell::Cell;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use super::strict_json::{
    classify_error, shorten, JsonError, KeySeed, KeySet, StrictValue, Violation,
};

/// The top-level `model` of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelField {
    pub name: String,
    /// Where the value, quotes included, sits in the body.
    pub span: Range<usize>,
}

/// What the policy reads from a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBody {
    pub model: ModelField,
}

/// Why a body was refused. Each becomes a 400 with its own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Empty,
    Json(JsonError),
    NotAnObject,
    ModelMissing,
    ModelNotString,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BodyError::Empty => f.write_str("the request body is empty; a JSON object is required"),
            BodyError::Json(error) => write!(f, "the request body is not acceptable: {error}"),
            BodyError::NotAnObject => f.write_str("the request body must be a JSON object"),
            BodyError::ModelMissing => f.write_str("the request body has no \"model\""),
            BodyError::ModelNotString => f.write_str("\"model\" must be a string"),
        }
    }
}

/// Validates a whole body and extracts its `model`.
pub fn read_body(body: &[u8]) -> Result<RequestBody, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let violation = Cell::new(None);
    let found = Cell::new(Found::default());
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let top = TopLevel {
        body,
        violation: &violation,
        found: &found,
    };
    top.deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|error| match found.take() {
            Found {
                shape_error: Some(shape),
                ..
            } => shape,
            _ => BodyError::Json(classify_error(error, &violation)),
        })?;
    match found.take() {
        Found {
            model: Some(model), ..
        } => Ok(RequestBody { model }),
        _ => Err(BodyError::ModelMissing),
    }
}

#[derive(Default)]
struct Found {
    model: Option<ModelField>,
    /// A well-formed body of the wrong shape; reported in preference to the abort it caused.
    shape_error: Option<BodyError>,
}

struct TopLevel<'v, 'b> {
    body: &'b [u8],
    violation: &'v Cell<Option<Violation>>,
    found: &'v Cell<Found>,
}

impl TopLevel<'_, '_> {
    fn shape<E: de::Error>(&self, error: BodyError) -> E {
        let message = error.to_string();
        self.found.set(Found {
            model: None,
            shape_error: Some(error),
        });
        E::custom(message)
    }

    /// The span of `raw` inside the body: it borrows from the body, so its address says where.
    fn span_of(&self, raw: &RawValue) -> Option<Range<usize>> {
        let start = (raw.get().as_ptr() as usize).checked_sub(self.body.as_ptr() as usize)?;
        let end = start.checked_add(raw.get().len())?;
        (self.body.get(start..end) == Some(raw.get().as_bytes())).then_some(start..end)
    }
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let nested = StrictValue {
            depth: 1,
            violation: self.violation,
        };
        let mut keys = KeySet::new();
        let mut model = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if !keys.insert(key.clone()) {
                let violation = Violation::DuplicateKey(key.into_owned());
                let message = violation.to_string();
                self.violation.set(Some(violation));
                return Err(de::Error::custom(message));
            }
            if key == "model" {
                let raw: &'de RawValue = map.next_value()?;
                let Ok(name) = serde_json::from_str::<String>(raw.get()) else {
                    return Err(self.shape(BodyError::ModelNotString));
                };
                let Some(span) = self.span_of(raw) else {
                    return Err(de::Error::custom("the model value could not be located"));
                };
                model = Some(ModelField { name, span });
            } else {
                map.next_value_seed(nested)?;
            }
        }
        self.found.set(Found {
            model,
            shape_error: None,
        });
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.shape(BodyError::NotAnObject))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.shape(BodyError::NotAnObject))
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

/// For messages: the model a client asked for, shortened.
pub fn display_model(name: &str) -> String {
    shorten(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn syntax() -> Result<String, BodyError> {
        Err(BodyError::Json(JsonError::Syntax(String::new())))
    }

    bodies! {
        simple: r#"{"model":"gpt-4o","messages":[]}"# => Ok("gpt-4o".into());
        model_last: r#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}"# => Ok("gpt-4o".into());
        escaped_model: r#"{"model":"gpt\u002d4o"}"# => Ok("gpt-4o".into());
        escaped_key: r#"{"m\u006fdel":"gpt-4o"}"# => Ok("gpt-4o".into());
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
