//! The strings of one JSON document (a whole answer, or one event of a stream), each with its
//! path and its span, read in one pass so that an edit replaces exactly one string's bytes and
//! leaves every other byte as the provider wrote it.

use std::collections::HashSet;
use std::ops::Range;

use crate::policy::body::json_reader::{Reader, Token};

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A string of the document: a value, or an object's key.
#[derive(Debug, Clone)]
pub(super) struct JsonString {
    /// Where it sits: for a key, the path of the object that holds it.
    pub path: Vec<Seg>,
    /// Its bytes in the document, quotes included.
    pub span: Range<usize>,
    /// Its decoded text.
    pub text: String,
    pub is_key: bool,
}

/// What reading found.
#[derive(Debug, Default)]
pub(super) struct Strings {
    pub strings: Vec<JsonString>,
    /// A `logprobs` or `logprobsResult` member holds something (not null, not empty): the
    /// answer carries its tokens a second time.
    pub logprobs: bool,
    /// The document is an object (not an array or a scalar).
    pub is_object: bool,
}

/// The strings of `bytes`, or `None` when it is not one JSON document, or an object in it
/// repeats a key (readers disagree on which copy wins, so the client could be shown a value
/// other than the one read here).
pub(super) fn read(bytes: &[u8]) -> Option<Strings> {
    let mut reader = Reader::new(bytes).ok()?;
    let mut strings = Strings::default();
    let mut path = Vec::new();
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    strings.is_object = first == Some(&b'{');
    read_value(&mut reader, &mut path, &mut strings)?;
    reader.end().ok()?;
    Some(strings)
}

/// Reads one value; whether it holds something (not null, not an empty array or object).
fn read_value(reader: &mut Reader<'_>, path: &mut Vec<Seg>, out: &mut Strings) -> Option<bool> {
    match reader.value().ok()? {
        Token::Null => Some(false),
        Token::Bool(_) | Token::Number(_) => Some(true),
        Token::String(text, span) => {
            out.strings.push(JsonString {
                path: path.clone(),
                span: span.range(),
                text: text.as_str().to_owned(),
                is_key: false,
            });
            Some(true)
        }
        Token::Array => {
            let mut first = true;
            let mut index = 0usize;
            while reader.next_element(&mut first).ok()? {
                path.push(Seg::Index(index));
                read_value(reader, path, out)?;
                path.pop();
                index = index.saturating_add(1);
            }
            Some(index > 0)
        }
        Token::Object => {
            let mut first = true;
            let mut keys = HashSet::new();
            while let Some((key, span)) = reader.next_key(&mut first).ok()? {
                let key = key.as_str().to_owned();
                if !keys.insert(key.clone()) {
                    return None;
                }
                out.strings.push(JsonString {
                    path: path.clone(),
                    span: span.range(),
                    text: key.clone(),
                    is_key: true,
                });
                reader.colon().ok()?;
                let carries_tokens = key == "logprobs" || key == "logprobsResult";
                path.push(Seg::Key(key));
                let holds = read_value(reader, path, out)?;
                path.pop();
                out.logprobs |= carries_tokens && holds;
            }
            Some(!keys.is_empty())
        }
    }
}

/// Whether `path` fits `pattern`: `#` stands for any index, `**` (last) for any rest, other
/// steps are keys.
pub(super) fn path_is(path: &[Seg], pattern: &[&str]) -> bool {
    let mut steps = path.iter();
    for (at, want) in pattern.iter().enumerate() {
        if *want == "**" && at.saturating_add(1) == pattern.len() {
            return true;
        }
        match (steps.next(), *want) {
            (Some(Seg::Index(_)), "#") => {}
            (Some(Seg::Key(key)), want) if key == want => {}
            _ => return false,
        }
    }
    steps.next().is_none()
}

/// The index at step `at` of `path`, if it is one.
pub(super) fn index_at(path: &[Seg], at: usize) -> Option<usize> {
    match path.get(at) {
        Some(Seg::Index(index)) => Some(*index),
        _ => None,
    }
}
