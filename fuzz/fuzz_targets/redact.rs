//! A JSON document through the redaction helpers as the filter uses them. Every span the walk
//! gives a string value must be that string's token, as `value_spans` (a plain scan checked
//! here against serde_json: every string value, never a key, in document order) finds it, with
//! the text serde_json reads there. Redacting some of those strings with `redact_string` and
//! applying the edits with `apply` must give JSON that reads as the same document with exactly
//! those strings replaced, as `redact_string` documents (overlapping ranges included). A
//! document the walk refuses has its strings redacted at the scan's spans instead.
#![no_main]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use posturio::policy::body::{walk, TextAt, TextSink};
use posturio::policy::classify::Endpoint;
use posturio::policy::redact::{apply, escapes_of, redact_string, widen, Edit};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Rule ids as a policy may name them: the marker is re-encoded, whatever they hold.
const RULES: [&str; 4] = ["aws", "e\"mail\\", "caf\u{e9}", "tab\there"];

/// A JSON document as serde_json reads it, keys kept in order and duplicates kept.
#[derive(Debug, PartialEq)]
enum Json {
    Scalar(Value),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// String values (not keys), in document order.
    fn strings(&self, out: &mut Vec<String>) {
        match self {
            Json::Scalar(_) => {}
            Json::Str(text) => out.push(text.clone()),
            Json::Array(items) => items.iter().for_each(|item| item.strings(out)),
            Json::Object(pairs) => pairs.iter().for_each(|(_, value)| value.strings(out)),
        }
    }

    /// Replaces the string values, in document order, by `texts`.
    fn replace_strings(&mut self, texts: &mut impl Iterator<Item = String>) {
        match self {
            Json::Scalar(_) => {}
            Json::Str(text) => *text = texts.next().unwrap(),
            Json::Array(items) => items
                .iter_mut()
                .for_each(|item| item.replace_strings(texts)),
            Json::Object(pairs) => pairs
                .iter_mut()
                .for_each(|(_, value)| value.replace_strings(texts)),
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
    fn visit_bool<E>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(value)))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(value)))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(value)))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Scalar(Value::from(value)))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Scalar(Value::Null))
    }
    fn visit_str<E>(self, text: &str) -> Result<Json, E> {
        Ok(Json::Str(text.to_string()))
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

/// The spans of string values (not keys) in a JSON document, in document order.
fn value_spans(body: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut index = 0usize;
    while let Some(&byte) = body.get(index) {
        if byte != b'"' {
            index += 1;
            continue;
        }
        let start = index;
        let mut end = start + 1;
        while let Some(&inner) = body.get(end) {
            match inner {
                b'\\' => end += 2,
                b'"' => break,
                _ => end += 1,
            }
        }
        let after = end + 1;
        let is_key = body
            .get(after..)
            .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
            == Some(&b':');
        if !is_key {
            spans.push(start..after);
        }
        index = after;
    }
    spans
}

/// The string values the walk hands out with a span, and their text.
#[derive(Default)]
struct Spanned(Vec<(Range<usize>, String)>);

impl TextSink for Spanned {
    fn text(&mut self, text: &str, at: TextAt) {
        if let Some(span) = at.span {
            self.0.push((span.range(), text.to_owned()));
        }
    }
}

/// A pseudo-random stream drawn from the whole input.
struct Draw(u64);

impl Draw {
    fn new(data: &[u8]) -> Self {
        Draw(data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        }))
    }
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize % below
    }
}

/// A non-empty range of `text` on character boundaries (`text` not empty).
fn pick_range(text: &str, draw: &mut Draw) -> Range<usize> {
    let mut bounds: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    bounds.push(text.len());
    let a = draw.next(bounds.len() - 1);
    let b = a + 1 + draw.next(bounds.len() - 1 - a);
    bounds[a]..bounds[b]
}

/// What `redact_string` promises: ranges by start; where one overlaps an earlier one, it
/// covers only what the earlier left.
/// The text with each range replaced by its marker, a range widened first to the whole of any
/// escape (as JSON text reads a backslash) it starts or ends in, as `redact_string` does so
/// that no backslash is left to escape a marker.
fn expected_redaction(text: &str, ranges: &[(Range<usize>, &str)]) -> String {
    let escapes = escapes_of(text);
    let mut sorted: Vec<(Range<usize>, &str)> = ranges
        .iter()
        .map(|(range, rule)| (widen(range, &escapes), *rule))
        .collect();
    sorted.sort_by_key(|(range, _)| range.start);
    let mut out = String::new();
    let mut at = 0;
    for (range, rule) in sorted {
        if range.end <= at {
            continue;
        }
        let start = range.start.max(at);
        out.push_str(&text[at..start]);
        out.push_str(&format!("[REDACTED:{rule}]"));
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    let mut texts = Vec::new();
    document.strings(&mut texts);
    let spans = value_spans(data);
    assert_eq!(
        spans.len(),
        texts.len(),
        "spans {spans:?} for strings {texts:?}"
    );
    for (ordinal, span) in spans.iter().enumerate() {
        let raw: String = serde_json::from_slice(&data[span.clone()])
            .unwrap_or_else(|error| panic!("span {span:?} is not a JSON string: {error}"));
        assert_eq!(raw, texts[ordinal], "span {span:?}");
    }
    let ordinals: BTreeMap<usize, usize> = spans
        .iter()
        .enumerate()
        .map(|(ordinal, span)| (span.start, ordinal))
        .collect();

    // The strings to redact: those the walk gives a span, each checked against the scan.
    let mut walked = Spanned::default();
    let chosen: Vec<usize> = match walk(data, Endpoint::ChatCompletions, &mut walked) {
        Ok(_) => walked
            .0
            .iter()
            .map(|(span, text)| {
                let ordinal = *ordinals
                    .get(&span.start)
                    .unwrap_or_else(|| panic!("the walk's span {span:?} is no string value"));
                assert_eq!(spans[ordinal], *span, "the walk's span of {text:?}");
                assert_eq!(texts[ordinal], *text, "the walk's text at {span:?}");
                ordinal
            })
            .collect(),
        Err(_) => (0..spans.len()).collect(),
    };

    let mut draw = Draw::new(data);
    let mut expected = texts.clone();
    let mut edits = Vec::new();
    for index in chosen {
        let span = &spans[index];
        let text = &texts[index];
        if text.is_empty() || draw.next(2) == 0 {
            continue;
        }
        let mut ranges = vec![(pick_range(text, &mut draw), RULES[draw.next(RULES.len())])];
        if draw.next(3) == 0 {
            ranges.push((pick_range(text, &mut draw), RULES[draw.next(RULES.len())]));
        }
        let redacted = redact_string(&data[span.clone()], &ranges)
            .unwrap_or_else(|| panic!("could not redact {text:?} at {ranges:?}"));
        expected[index] = expected_redaction(text, &ranges);
        edits.push(Edit {
            span: span.clone(),
            text: redacted,
        });
    }
    let out = apply(data, edits).expect("the edits do not fit the body");
    let redone: Json = serde_json::from_slice(&out).unwrap_or_else(|error| {
        panic!(
            "the redacted body is not JSON ({error}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    let mut want = document;
    want.replace_strings(&mut expected.into_iter());
    assert_eq!(redone, want);
});
