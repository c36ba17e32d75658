//! The forwarded body's edits, applied in one copy: the model swapped in place, and each
//! redacted string replaced by its re-encoded, redacted text. Every other byte is the client's.

use std::collections::BTreeMap;
use std::ops::Range;

/// A replacement of `span` (bytes of the body) by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub span: Range<usize>,
    pub text: String,
}

/// Applies non-overlapping edits in one copy. `None` if an edit does not fit the body.
pub fn apply(body: &[u8], mut edits: Vec<Edit>) -> Option<Vec<u8>> {
    edits.sort_by_key(|edit| edit.span.start);
    let mut out = Vec::with_capacity(
        body.len()
            .checked_add(edits.iter().map(|e| e.text.len()).sum())?,
    );
    let mut at = 0usize;
    for edit in &edits {
        out.extend_from_slice(body.get(at..edit.span.start)?);
        out.extend_from_slice(edit.text.as_bytes());
        at = edit.span.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(out)
}

/// The spans of string values (not keys) in a valid JSON document, by ordinal, for the
/// ordinals asked for. Relies on the body having passed the strict walk.
pub fn string_value_spans(body: &[u8], wanted: &BTreeMap<u32, ()>) -> BTreeMap<u32, Range<usize>> {
    let mut spans = BTreeMap::new();
    let mut ordinal = 0u32;
    let mut index = 0usize;
    while let Some(&byte) = body.get(index) {
        if byte != b'"' {
            index = index.saturating_add(1);
            continue;
        }
        let start = index;
        let mut end = start.saturating_add(1);
        while let Some(&inner) = body.get(end) {
            match inner {
                b'\\' => end = end.saturating_add(2),
                b'"' => break,
                _ => end = end.saturating_add(1),
            }
        }
        let after = end.saturating_add(1);
        let is_key = body
            .get(after..)
            .and_then(|rest| rest.iter().find(|b| !b.is_ascii_whitespace()))
            == Some(&b':');
        if !is_key {
            if wanted.contains_key(&ordinal) {
                spans.insert(ordinal, start..after);
            }
            ordinal = ordinal.saturating_add(1);
        }
        index = after;
    }
    spans
}

/// Redacts one JSON string (`raw`, quotes included): each range of its decoded text becomes
/// `[REDACTED:<rule>]`. Where ranges overlap, a later one covers only what an earlier one left.
pub fn redact_string(raw: &[u8], ranges: &[(Range<usize>, &str)]) -> Option<String> {
    let text: String = serde_json::from_slice(raw).ok()?;
    let mut sorted: Vec<&(Range<usize>, &str)> = ranges.iter().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_value_strings_not_keys() {
        let body = br#"{"a" : "x\"y", "b":["z", {"c":"w"}], "d\\":"v"}"#;
        let wanted = (0..10).map(|i| (i, ())).collect();
        let spans = string_value_spans(body, &wanted);
        let texts: Vec<&[u8]> = spans.values().map(|span| &body[span.clone()]).collect();
        assert_eq!(
            texts,
            vec![&br#""x\"y""#[..], br#""z""#, br#""w""#, br#""v""#]
        );
    }

    #[test]
    fn redacts_decoded_ranges_and_reencodes() {
        let raw = br#""key: AKIA\u0031234 and \"more\"""#;
        let text: String = serde_json::from_slice(raw).unwrap();
        let start = text.find("AKIA").unwrap();
        let redacted = redact_string(raw, &[(start..start + 8, "aws")]).unwrap();
        assert_eq!(redacted, r#""key: [REDACTED:aws] and \"more\"""#);
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
