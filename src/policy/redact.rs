//! The forwarded body's edits, applied in one copy: the model swapped in place, and each
//! redacted string replaced by its re-encoded, redacted text. Every other byte is the client's.

use std::borrow::Cow;
use std::ops::Range;

use super::body::text::unescape;

/// A replacement of `span` (bytes of the body) by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub span: Range<usize>,
    pub text: String,
}

/// Applies non-overlapping edits in one copy. `None` if an edit does not fit the body.
pub fn apply(body: &[u8], edits: Vec<Edit>) -> Option<Vec<u8>> {
    apply_tracked(body, &edits).map(|(out, _)| out)
}

/// Applies non-overlapping edits in one copy, and says where each edit's text landed in the
/// result (by the edits' order as given). `None` if an edit does not fit the body.
pub fn apply_tracked(body: &[u8], edits: &[Edit]) -> Option<(Vec<u8>, Vec<Range<usize>>)> {
    let mut order: Vec<usize> = (0..edits.len()).collect();
    order.sort_by_key(|&index| edits.get(index).map_or(0, |edit| edit.span.start));
    let mut out = Vec::with_capacity(
        body.len()
            .checked_add(edits.iter().map(|e| e.text.len()).sum())?,
    );
    let mut landed = vec![0..0; edits.len()];
    let mut at = 0usize;
    for index in order {
        let edit = edits.get(index)?;
        out.extend_from_slice(body.get(at..edit.span.start)?);
        let start = out.len();
        out.extend_from_slice(edit.text.as_bytes());
        *landed.get_mut(index)? = start..out.len();
        at = edit.span.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some((out, landed))
}

/// Redacts one JSON string (`raw`, quotes included, a token the walk read): each range of its
/// decoded text becomes `[REDACTED:<rule>]`. Where ranges overlap, a later one covers only what
/// an earlier one left. The text is decoded as the walk decoded it, and only when it has
/// escapes.
///
/// The decoded text may itself be JSON text (a tool call's arguments) with escapes of its
/// own: a range that starts or ends inside one (`\n`, `\u00e9`, a surrogate pair) is widened
/// to take in the whole escape (`escapes_of`), so no backslash is left to escape the marker
/// and no escape is cut in two.
pub fn redact_string(raw: &[u8], ranges: &[(Range<usize>, &str)]) -> Option<String> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let inner = std::str::from_utf8(inner).ok()?;
    let text = match unescape(inner) {
        Some(decoded) => Cow::Owned(decoded),
        None => Cow::Borrowed(inner),
    };
    let escapes = escapes_of(&text);
    let widened: Vec<(Range<usize>, &str)> = ranges
        .iter()
        .map(|(range, rule)| (widen(range, &escapes), *rule))
        .collect();
    let mut sorted: Vec<&(Range<usize>, &str)> = widened.iter().collect();
    sorted.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for (range, rule) in sorted {
        if range.end <= at {
            continue;
        }
        let start = range.start.max(at);
        out.push_str(text.get(at..start)?);
        out.push_str("[REDACTED:");
        out.push_str(rule);
        out.push(']');
        at = range.end;
    }
    out.push_str(text.get(at..)?);
    serde_json::to_string(&out).ok()
}

/// The backslash escapes of `text` read as the inside of a JSON string, in order: `\uXXXX`
/// (with the low surrogate after a high one, as one), and a backslash with the character
/// after it, whatever it is (an invalid escape is still one unit a marker must not split).
/// Empty, without work, when `text` has no backslash.
pub fn escapes_of(text: &str) -> Vec<Range<usize>> {
    let mut escapes = Vec::new();
    let bytes = text.as_bytes();
    let mut at = match text.find('\\') {
        Some(first) => first,
        None => return escapes,
    };
    while let Some(byte) = bytes.get(at) {
        if *byte != b'\\' {
            at = at.saturating_add(1);
            continue;
        }
        let hex4 = |from: usize| {
            bytes
                .get(from..from.saturating_add(4))
                .filter(|digits| digits.len() == 4 && digits.iter().all(u8::is_ascii_hexdigit))
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| u16::from_str_radix(digits, 16).ok())
        };
        let after = at.saturating_add(1);
        let end = match bytes.get(after) {
            None => after,
            Some(b'u') => match hex4(after.saturating_add(1)) {
                Some(unit) => {
                    let one = at.saturating_add(6);
                    let low = bytes.get(one..one.saturating_add(2)) == Some(b"\\u".as_slice())
                        && hex4(one.saturating_add(2))
                            .is_some_and(|low| (0xDC00..0xE000).contains(&low));
                    if (0xD800..0xDC00).contains(&unit) && low {
                        one.saturating_add(6)
                    } else {
                        one
                    }
                }
                None => after.saturating_add(1),
            },
            Some(_) => {
                let next = text
                    .get(after..)
                    .and_then(|rest| rest.chars().next())
                    .map_or(1, char::len_utf8);
                after.saturating_add(next)
            }
        };
        escapes.push(at..end);
        at = end;
    }
    escapes
}

/// `range` widened to take in every escape (of `escapes`, in order) that it starts or ends
/// strictly inside.
pub fn widen(range: &Range<usize>, escapes: &[Range<usize>]) -> Range<usize> {
    let inside = |at: usize| {
        let index = escapes.partition_point(|escape| escape.start < at);
        index
            .checked_sub(1)
            .and_then(|index| escapes.get(index))
            .filter(|escape| at < escape.end)
            .cloned()
    };
    let start = inside(range.start).map_or(range.start, |escape| escape.start);
    let end = inside(range.end).map_or(range.end, |escape| escape.end);
    start..end.max(start)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn redacts_decoded_ranges_and_reencodes() {
        let raw = br#""key: AKIA\u0031234 and \"more\"""#;
        let text: String = serde_json::from_slice(raw).unwrap();
        let start = text.find("AKIA").unwrap();
        let redacted = redact_string(raw, &[(start..start + 8, "aws")]).unwrap();
        assert_eq!(redacted, r#""key: [REDACTED:aws] and \"more\"""#);
    }

    /// Redacts `needle` in the JSON string holding `inner` (as JSON text), returning the
    /// redacted inner text.
    fn redact_in(inner: &str, needle: &str) -> String {
        let raw = serde_json::to_string(inner).unwrap();
        let start = inner.find(needle).unwrap();
        let redacted = redact_string(raw.as_bytes(), &[(start..start + needle.len(), "r")]);
        serde_json::from_str(&redacted.unwrap()).unwrap()
    }

    #[test]
    fn a_redaction_takes_in_the_escape_it_starts_or_ends_inside() {
        for (inner, needle, expected) in [
            // The email detector reads the `n` of `\n` as part of the address.
            (
                r#"{"body":"Hi,\nbob@x.org"}"#,
                "nbob@x.org",
                r#"{"body":"Hi,[REDACTED:r]"}"#,
            ),
            (
                r#"{"b":"\tbob@x.org"}"#,
                "tbob@x.org",
                r#"{"b":"[REDACTED:r]"}"#,
            ),
            (
                r#"{"to":"\u00e9bob@x.org"}"#,
                "00e9bob@x.org",
                r#"{"to":"[REDACTED:r]"}"#,
            ),
            (
                r#"{"to":"b\u00f6b@x.org"}"#,
                "f6b@x.org",
                r#"{"to":"b[REDACTED:r]"}"#,
            ),
            (
                r#"{"k":"\ud83d\ude00x"}"#,
                "ude00x",
                r#"{"k":"[REDACTED:r]"}"#,
            ),
            // Ending inside an escape takes the rest of it.
            (r#"{"k":"abc\ndef"}"#, r"abc\", r#"{"k":"[REDACTED:r]def"}"#),
            (
                r#"{"k":"ab\u0041cd"}"#,
                r"ab\u00",
                r#"{"k":"[REDACTED:r]cd"}"#,
            ),
            // An escaped backslash is one escape; the `n` after it is plain text.
            (
                r#"{"k":"\\nbob@x.org"}"#,
                "nbob@x.org",
                r#"{"k":"\\[REDACTED:r]"}"#,
            ),
            // After an escaped quote, nothing to widen.
            (
                r#"{"to":"\"bob@x.org\""}"#,
                "bob@x.org",
                r#"{"to":"\"[REDACTED:r]\""}"#,
            ),
        ] {
            let redacted = redact_in(inner, needle);
            assert_eq!(redacted, expected, "{inner}");
            let parsed: serde_json::Value = serde_json::from_str(&redacted).unwrap();
            assert!(parsed.is_object(), "{redacted}");
        }
    }

    #[test]
    fn overlapping_ranges_merge() {
        let redacted = redact_string(
            br#""abcdefgh""#,
            &[(1..4, "r1"), (2..6, "r2"), (7..8, "r3")],
        )
        .unwrap();
        assert_eq!(redacted, r#""a[REDACTED:r1][REDACTED:r2]g[REDACTED:r3]""#);
    }

    #[test]
    fn edits_apply_in_order() {
        let body = b"0123456789";
        let edits = vec![
            Edit {
                span: 6..8,
                text: "B".into(),
            },
            Edit {
                span: 1..2,
                text: "AA".into(),
            },
        ];
        assert_eq!(apply(body, edits).unwrap(), b"0AA2345B89");
    }
}
