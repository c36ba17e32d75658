//! JSON read more strictly than serde_json reads it by default.
//!
//! The reader already refuses what RFC 8259 forbids, as serde_json does (bad syntax, invalid
//! UTF-8, lone surrogates, trailing data once `end` is called). On top of that, a key that
//! appears twice in
//! one object is refused, because parsers disagree on which copy wins: a duplicate is a way to
//! show the filter one value and the provider another. Two keys that differ only in letter case
//! are refused the same way: Go's `encoding/json` and .NET match keys without regard to case
//! (Unicode simple folding, so `ſ` is `s` and the Kelvin sign is `k`), and the last copy wins
//! there. Nesting is bounded, so a deeply nested body is a clear error rather than a deep
//! recursion.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use super::json_reader::{self, Reader, Token};
use crate::policy::shorten::shorten;

/// Deeper nesting than this is refused. LLM requests (tool schemas included) stay far below it,
/// and serde_json's own limit (128) is never reached.
pub const MAX_DEPTH: usize = 64;

/// What made a syntactically valid document unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    DuplicateKey(String),
    /// `key` equals `of` once letter case is folded, without being the same key: `of` is an
    /// earlier key of the same object, or a key the filter reads at that place.
    CaseVariant {
        key: String,
        of: String,
    },
    TooDeep,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Violation::DuplicateKey(key) => {
                write!(
                    f,
                    "the key \"{}\" appears twice in one object",
                    shorten(key)
                )
            }
            Violation::CaseVariant { key, of } => write!(
                f,
                "the key \"{}\" differs from the key \"{}\" only in letter case, and some \
                 providers read both as one",
                shorten(key),
                shorten(of)
            ),
            Violation::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// One character as a case-insensitive key match sees it: its simple uppercase, then that
/// one's simple lowercase, where each is a single character. This puts every character of a
/// simple case-folding orbit on one representative (`ſ`, `S` and `s` on `s`; `K`, `k` and the
/// Kelvin sign on `k`), and errs towards joining more characters, never fewer.
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut upper = c.to_uppercase();
    let upper = match (upper.next(), upper.next()) {
        (Some(upper), None) => upper,
        _ => c,
    };
    let mut lower = upper.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(lower), None) => lower,
        _ => upper,
    }
}

/// Whether two keys are one key to a decoder that ignores letter case.
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

fn folded(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

/// A key already in the set, equal to the new one exactly or once case is folded.
pub enum Seen {
    Exact,
    Variant(String),
}

impl Seen {
    pub fn violation(self, key: Cow<'_, str>) -> Violation {
        match self {
            Seen::Exact => Violation::DuplicateKey(key.into_owned()),
            Seen::Variant(of) => Violation::CaseVariant {
                key: key.into_owned(),
                of,
            },
        }
    }
}

/// The keys seen so far in one object, compared with letter case folded. Small objects (most
/// of a request) keep them in place, without allocating; large ones switch to a hash map from
/// the folded key, so a body made of one huge object cannot make the check quadratic.
pub struct KeySet<'de> {
    small: [Option<Cow<'de, str>>; SMALL_OBJECT],
    len: usize,
    large: Option<HashMap<String, Cow<'de, str>>>,
}

const SMALL_OBJECT: usize = 8;

impl<'de> KeySet<'de> {
    pub fn new() -> Self {
        KeySet {
            small: Default::default(),
            len: 0,
            large: None,
        }
    }

    /// Adds a key; the earlier key it repeats, if any.
    pub fn insert(&mut self, key: Cow<'de, str>) -> Result<(), Seen> {
        fn seen(known: &str, key: &str) -> Seen {
            if known == key {
                Seen::Exact
            } else {
                Seen::Variant(known.to_owned())
            }
        }
        if let Some(large) = &mut self.large {
            return match large.entry(folded(&key)) {
                Entry::Occupied(known) => Err(seen(known.get(), &key)),
                Entry::Vacant(slot) => {
                    slot.insert(key);
                    Ok(())
                }
            };
        }
        let known = self.small.get(..self.len).unwrap_or_default();
        if let Some(known) = known.iter().flatten().find(|known| fold_eq(known, &key)) {
            return Err(seen(known, &key));
        }
        match self.small.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(key);
                self.len = self.len.saturating_add(1);
            }
            None => {
                let mut large: HashMap<String, Cow<'de, str>> = self
                    .small
                    .iter_mut()
                    .filter_map(Option::take)
                    .map(|known| (folded(&known), known))
                    .collect();
                large.insert(folded(&key), key);
                self.large = Some(large);
            }
        }
        Ok(())
    }
}

impl Default for KeySet<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// The reason a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON: what is wrong, with line and column.
    Syntax(String),
    Violation(Violation),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            JsonError::Syntax(message) => write!(f, "invalid JSON: {message}"),
            JsonError::Violation(violation) => violation.fmt(f),
        }
    }
}

impl From<json_reader::Error> for JsonError {
    fn from(error: json_reader::Error) -> Self {
        JsonError::Syntax(error.to_string())
    }
}

/// Checks a whole document: valid JSON, no duplicate key anywhere (letter case folded), bounded
/// depth, nothing after it.
pub fn validate(bytes: &[u8]) -> Result<(), JsonError> {
    let mut reader = Reader::new(bytes)?;
    strict_value(&mut reader, 0)?;
    reader.end()?;
    Ok(())
}

/// Reads one value at `depth`, checking every object in it for duplicate keys and the nesting
/// depth, without building it.
fn strict_value(reader: &mut Reader<'_>, depth: usize) -> Result<(), JsonError> {
    let nested = || match depth.checked_add(1) {
        Some(nested) if nested <= MAX_DEPTH => Ok(nested),
        _ => Err(JsonError::Violation(Violation::TooDeep)),
    };
    match reader.value()? {
        Token::Array => {
            let nested = nested()?;
            let mut first = true;
            while reader.next_element(&mut first)? {
                strict_value(reader, nested)?;
            }
        }
        Token::Object => {
            let nested = nested()?;
            let mut keys = KeySet::new();
            let mut first = true;
            while let Some((key, _)) = reader.next_key(&mut first)? {
                let key = key.into_cow();
                if let Err(seen) = keys.insert(key.clone()) {
                    return Err(JsonError::Violation(seen.violation(key)));
                }
                reader.colon()?;
                strict_value(reader, nested)?;
            }
        }
        Token::Null | Token::Bool(_) | Token::Number(_) | Token::String(..) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_valid_documents() {
        for good in [
            r#"{}"#,
            r#"{"a":1,"b":[1,2,{"a":2}],"c":{"a":{"a":null}}}"#,
            r#"[true,false,null,-1.5e3,"x"]"#,
            " {\"a\" : \"\\u00e9\\n\"} \n",
        ] {
            assert_eq!(validate(good.as_bytes()), Ok(()), "{good}");
        }
        assert_eq!(validate(nested(MAX_DEPTH).as_bytes()), Ok(()));
    }

    #[test]
    fn refuses_duplicates_anywhere() {
        for (bad, key) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"x":{"b":1,"c":2,"b":3}}"#, "b"),
            (r#"[{"k":1},{"k":1,"k":1}]"#, "k"),
            (r#"{"model":"a","mod\u0065l":"b"}"#, "model"),
            (r#"{"\u0061":1,"a":2}"#, "a"),
        ] {
            assert_eq!(
                validate(bad.as_bytes()),
                Err(JsonError::Violation(Violation::DuplicateKey(key.into()))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_keys_equal_once_case_is_folded() {
        for (bad, key, of) in [
            (r#"{"model":"a","Model":"b"}"#, "Model", "model"),
            (r#"{"x":{"STREAM":1,"stream":2}}"#, "stream", "STREAM"),
            (
                r#"{"messages":1,"me\u017f\u017fages":2}"#,
                "me\u{17f}\u{17f}ages",
                "messages",
            ),
            (r#"{"k":1,"\u212a":2}"#, "\u{212a}", "k"),
            (
                r#"{"stra\u00dfe":1,"stra\u1e9ee":2}"#,
                "stra\u{1e9e}e",
                "stra\u{df}e",
            ),
        ] {
            let of = of.to_owned();
            let key = key.to_owned();
            assert_eq!(
                validate(bad.as_bytes()),
                Err(JsonError::Violation(Violation::CaseVariant { key, of })),
                "{bad}"
            );
        }
        // Full case mappings that are not simple folds stay apart (`ß` is not `ss`).
        assert_eq!(validate(br#"{"stra\u00dfe":1,"strasse":2}"#), Ok(()));
    }

    #[test]
    fn folded_characters() {
        for (a, b) in [
            ('A', 'a'),
            ('\u{17f}', 's'),
            ('\u{212a}', 'k'),
            ('\u{3a3}', '\u{3c2}'),
        ] {
            assert_eq!(fold_char(a), fold_char(b), "{a:?} {b:?}");
        }
        assert_ne!(fold_char('\u{130}'), fold_char('i'));
    }

    #[test]
    fn case_variant_found_in_large_object() {
        let mut body = String::from("{");
        for i in 0..1000 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"K500\":0}");
        assert_eq!(
            validate(body.as_bytes()),
            Err(JsonError::Violation(Violation::CaseVariant {
                key: "K500".into(),
                of: "k500".into()
            }))
        );
    }

    #[test]
    fn duplicate_found_in_large_object() {
        let mut body = String::from("{");
        for i in 0..1000 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"k500\":0}");
        assert_eq!(
            validate(body.as_bytes()),
            Err(JsonError::Violation(Violation::DuplicateKey("k500".into())))
        );
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_far() {
        let deep = nested(MAX_DEPTH + 1);
        assert_eq!(
            validate(deep.as_bytes()),
            Err(JsonError::Violation(Violation::TooDeep))
        );
        let very_deep = "[".repeat(1_000_000);
        assert!(validate(very_deep.as_bytes()).is_err());
        let deep_objects = "{\"a\":".repeat(100_000);
        assert!(validate(deep_objects.as_bytes()).is_err());
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\":1}x",
            b"{\"a\":1}{}",
            b"{'a':1}",
            b"{\"a\":NaN}",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"tab\there\"}",
            b"\xef\xbb\xbf{}",
            b"// comment\n{}",
        ] {
            assert!(
                matches!(validate(bad), Err(JsonError::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
