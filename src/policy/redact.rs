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
pub fn redact_string(raw: &[u8], ranges: &[(Range<usize>, &str)]) -> Option<String> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let inner = std::str::from_utf8(inner).ok()?;
    let text = match unescape(inner) {
        Some(decoded) => Cow::Owned(decoded),
        None => Cow::Borrowed(inner),
    };
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
