//! Bytes through Posturio's JSON reader and `strict_json::validate`, compared with serde_json.
//! The reader must accept exactly what serde_json accepts and hand over the same strings and
//! structure. `validate` must agree with serde_json on every document that has no duplicate key
//! (letter case folded, as Go and .NET decoders compare keys) and is nested at most `MAX_DEPTH`
//! deep, and refuse every other one. `read_body` must agree with `validate` too (but may also
//! refuse a case variant of a key it reads), and find the top-level model where serde_json
//! finds it.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use posturio::policy::body::json_reader::Reader;
use posturio::policy::body::strict_json::{fold_eq, validate, JsonError, Violation, MAX_DEPTH};
use posturio::policy::body::BodyError;
use posturio::policy::extract::read_body;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON document as serde_json reads it, keys kept in order and duplicates kept. Numbers
/// are not compared: no visitor of the reader reads their value.
#[derive(Debug, PartialEq)]
enum Json {
    Scalar,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn depth(&self) -> usize {
        match self {
            Json::Scalar | Json::Str(_) => 0,
            Json::Array(items) => 1 + items.iter().map(Json::depth).max().unwrap_or(0),
            Json::Object(pairs) => 1 + pairs.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
        }
    }

    /// Whether `key` is a key of some object, anywhere.
    fn has_key(&self, key: &str) -> bool {
        match self {
            Json::Scalar | Json::Str(_) => false,
            Json::Array(items) => items.iter().any(|item| item.has_key(key)),
            Json::Object(pairs) => pairs.iter().any(|(k, v)| k == key || v.has_key(key)),
        }
    }

    /// Every key that appears twice in one object, anywhere, letter case folded.
    fn duplicates(&self, out: &mut Vec<String>) {
        match self {
            Json::Scalar | Json::Str(_) => {}
            Json::Array(items) => items.iter().for_each(|item| item.duplicates(out)),
            Json::Object(pairs) => {
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if pairs[..i].iter().any(|(k, _)| fold_eq(k, key)) {
                        out.push(key.clone());
                    }
                    value.duplicates(out);
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Scalar)
    }
    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            pairs.push((key, value));
        }
        Ok(Json::Object(pairs))
    }
}

fn read(data: &[u8]) -> Option<Json> {
    let mut reader = Reader::new(data).ok()?;
    let doc = Json::deserialize(&mut reader).ok()?;
    reader.end().ok()?;
    Some(doc)
}

fuzz_target!(|data: &[u8]| {
    let strict = validate(data);
    let body = read_body(data);
    // serde_json's own reading (its recursion limit, 128, is above ours).
    let theirs = serde_json::from_slice::<Json>(data);
    let ours = read(data);
    match (&theirs, &ours) {
        (Ok(theirs), Some(ours)) => assert_eq!(theirs, ours, "the reader read it differently"),
        (Ok(_), None) => panic!("the reader refused what serde_json accepts"),
        (Err(error), Some(_)) => panic!("the reader accepted what serde_json refuses: {error}"),
        (Err(_), None) => {}
    }
    let Ok(doc) = theirs else {
        assert!(
            strict.is_err(),
            "strict_json accepted what serde_json refuses"
        );
        assert!(body.is_err(), "read_body accepted what serde_json refuses");
        return;
    };
    let mut duplicates = Vec::new();
    doc.duplicates(&mut duplicates);
    let depth = doc.depth();
    match (&strict, duplicates.is_empty(), depth <= MAX_DEPTH) {
        (Ok(()), true, true) => {}
        (Err(error), true, true) => panic!("strict_json refused a plain document: {error}"),
        (Ok(()), false, _) => panic!("strict_json accepted duplicate keys {duplicates:?}"),
        (Ok(()), _, false) => panic!("strict_json accepted depth {depth}"),
        (Err(JsonError::Violation(Violation::DuplicateKey(key))), false, _) => {
            assert!(
                duplicates.contains(key),
                "named {key:?}, duplicates {duplicates:?}"
            );
        }
        (Err(JsonError::Violation(Violation::CaseVariant { key, of })), false, _) => {
            assert!(
                duplicates.contains(key) && fold_eq(key, of) && key != of,
                "named {key:?} as a variant of {of:?}, duplicates {duplicates:?}"
            );
        }
        (Err(JsonError::Violation(Violation::TooDeep)), _, false) => {}
        (Err(error), _, _) => {
            panic!("strict_json refused with {error} (duplicates {duplicates:?}, depth {depth})")
        }
    }

    // read_body: the same strictness, plus a top-level object with a string model.
    match (&strict, &body) {
        (Err(_), Ok(_)) => panic!("read_body accepted what validate refuses"),
        // Where the walk reads keys, it also refuses a case variant of one it reads (`mOdel`),
        // which `validate`, reading no key, has no reason to refuse.
        (
            Ok(()),
            Err(BodyError::Json(JsonError::Violation(Violation::CaseVariant { key, of }))),
        ) => {
            assert!(
                doc.has_key(key) && fold_eq(key, of) && key != of,
                "read_body named {key:?} as a variant of {of:?}"
            );
        }
        (Ok(()), Err(BodyError::Json(error))) => {
            panic!("read_body refused as JSON ({error}) what validate accepts")
        }
        _ => {}
    }
    if let Ok(parsed) = &body {
        let Json::Object(pairs) = &doc else {
            panic!("read_body accepted a document that is not an object");
        };
        let model = pairs.iter().find(|(k, _)| k == "model").map(|(_, v)| v);
        match model {
            Some(Json::Str(name)) => assert_eq!(&parsed.model.name, name),
            _ => panic!("read_body found a model serde_json does not"),
        }
        let raw = &data[parsed.model.span.clone()];
        let from_span: String = serde_json::from_slice(raw).unwrap();
        assert_eq!(
            from_span, parsed.model.name,
            "the model's span is not its value"
        );
    }
});
