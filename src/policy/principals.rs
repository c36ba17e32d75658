//! Workload identity from the peer certificate: SPIFFE IDs (`spiffe://<trust domain>/<path>`)
//! and the consumers' patterns over them, where a whole path segment may be `*`.
//!
//! The grammar is narrower than SPIFFE's on purpose (no percent-encoding, query, fragment,
//! port or user info; segments of `[A-Za-z0-9._-]`), so one ID has one spelling and a pattern
//! means what it reads. Patterns of the policy never overlap (`compile` refuses two that can
//! match one ID), so an ID names at most one consumer, whatever order they are tried in.

use std::fmt;

const SCHEME: &str = "spiffe://";

/// SPIFFE's own limit on an ID's length.
const MAX_ID_BYTES: usize = 2048;

/// One segment of a pattern's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Exact(String),
    /// `*`: any one whole segment.
    Any,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Segment::Exact(text) => f.write_str(text),
            Segment::Any => f.write_str("*"),
        }
    }
}

/// A compiled pattern and the consumer it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub trust_domain: String,
    pub segments: Vec<Segment>,
    pub consumer: String,
}

impl Principal {
    /// The pattern as written in the policy.
    pub fn pattern(&self) -> String {
        let path: Vec<String> = self.segments.iter().map(ToString::to_string).collect();
        format!("{SCHEME}{}/{}", self.trust_domain, path.join("/"))
    }

    fn matches(&self, trust_domain: &str, segments: &[&str]) -> bool {
        self.trust_domain == trust_domain
            && self.segments.len() == segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(pattern, segment)| match pattern {
                    Segment::Any => true,
                    Segment::Exact(text) => text == segment,
                })
    }

    /// Whether some SPIFFE ID matches both patterns.
    pub fn overlaps(&self, other: &Principal) -> bool {
        self.trust_domain == other.trust_domain
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Any, _) | (_, Segment::Any) => true,
                    (Segment::Exact(one), Segment::Exact(other)) => one == other,
                })
    }
}

/// The compiled patterns of every consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principals {
    pub patterns: Vec<Principal>,
}

/// Why a peer's URI SAN names no consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefused {
    /// Not a well-formed SPIFFE ID.
    Malformed,
    /// Well-formed, and matching no consumer's pattern.
    Unknown,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The consumer the SPIFFE ID `uri` names.
    pub fn consumer_for(&self, uri: &[u8]) -> Result<&str, PeerRefused> {
        let uri = std::str::from_utf8(uri).map_err(|_| PeerRefused::Malformed)?;
        let (trust_domain, segments) = split_id(uri, false).map_err(|_| PeerRefused::Malformed)?;
        self.patterns
            .iter()
            .find(|pattern| pattern.matches(trust_domain, &segments))
            .map(|pattern| pattern.consumer.as_str())
            .ok_or(PeerRefused::Unknown)
    }
}

/// A pattern of the policy, its trust domain and segments, or why it is not one.
pub fn parse_pattern(text: &str) -> Result<(String, Vec<Segment>), String> {
    let (trust_domain, segments) = split_id(text, true)?;
    let segments = segments
        .into_iter()
        .map(|segment| match segment {
            "*" => Segment::Any,
            exact => Segment::Exact(exact.to_owned()),
        })
        .collect();
    Ok((trust_domain.to_owned(), segments))
}

/// Splits a SPIFFE ID (a pattern, whose segments may be `*`, when `wildcards`) into its trust
/// domain and path segments.
fn split_id(text: &str, wildcards: bool) -> Result<(&str, Vec<&str>), String> {
    const SHAPE: &str = "must be a SPIFFE ID such as spiffe://cluster.local/ns/search/sa/api";
    if text.len() > MAX_ID_BYTES {
        return Err(format!("is longer than {MAX_ID_BYTES} bytes"));
    }
    let rest = text.strip_prefix(SCHEME).ok_or(SHAPE)?;
    let (trust_domain, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("{SHAPE}: it needs a path after the trust domain"))?;
    let domain_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if trust_domain.contains('*') {
        return Err("the trust domain cannot hold '*': only a whole path segment can".to_owned());
    }
    if trust_domain.is_empty() || !trust_domain.bytes().all(domain_char) {
        return Err(format!(
            "{SHAPE}: the trust domain holds lowercase letters, digits, '.', '-' and '_' only \
             (no port, user info or upper case)"
        ));
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        if wildcards && segment == "*" {
            segments.push(segment);
            continue;
        }
        if wildcards && segment.contains('*') {
            return Err(format!(
                "\"{segment}\" mixes '*' with text: '*' matches one whole segment, and '**' \
                 does not exist"
            ));
        }
        let segment_char = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "{SHAPE}: no empty, '.' or '..' path segment (nor a trailing '/')"
            ));
        }
        if !segment.bytes().all(segment_char) {
            return Err(format!(
                "{SHAPE}: path segments hold letters, digits, '.', '-' and '_' only (no query, \
                 fragment or percent-encoding)"
            ));
        }
        segments.push(segment);
    }
    Ok((trust_domain, segments))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principals(patterns: &[(&str, &str)]) -> Principals {
        Principals {
            patterns: patterns
                .iter()
                .map(|(pattern, consumer)| {
                    let (trust_domain, segments) = parse_pattern(pattern).unwrap();
                    Principal {
                        trust_domain,
                        segments,
                        consumer: (*consumer).to_owned(),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn matching() {
        let table = principals(&[
            ("spiffe://cluster.local/ns/search/sa/*", "search"),
            ("spiffe://cluster.local/ns/ops/sa/bot", "ops"),
        ]);
        for (id, expected) in [
            ("spiffe://cluster.local/ns/search/sa/api", Ok("search")),
            ("spiffe://cluster.local/ns/search/sa/a.b-c_d", Ok("search")),
            ("spiffe://cluster.local/ns/ops/sa/bot", Ok("ops")),
            (
                "spiffe://cluster.local/ns/ops/sa/bot2",
                Err(PeerRefused::Unknown),
            ),
            (
                "spiffe://cluster.local/ns/search/sa",
                Err(PeerRefused::Unknown),
            ),
            (
                "spiffe://cluster.local/ns/search/sa/api/x",
                Err(PeerRefused::Unknown),
            ),
            (
                "spiffe://other.local/ns/ops/sa/bot",
                Err(PeerRefused::Unknown),
            ),
            (
                "spiffe://cluster.local/ns/search/sa/*",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://Cluster.local/ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local:8443/ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://u@cluster.local/ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local/ns/ops/sa/bot/",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local/ns/ops/sa/bot?x=1",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local/ns/ops/sa/bot#x",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local/ns/ops/sa/b%6Ft",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local/ns/ops/sa/../bot",
                Err(PeerRefused::Malformed),
            ),
            (
                "spiffe://cluster.local//ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            ("spiffe://cluster.local", Err(PeerRefused::Malformed)),
            (
                "SPIFFE://cluster.local/ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            (
                "https://cluster.local/ns/ops/sa/bot",
                Err(PeerRefused::Malformed),
            ),
            ("", Err(PeerRefused::Malformed)),
        ] {
            assert_eq!(table.consumer_for(id.as_bytes()), expected, "{id}");
        }
        assert_eq!(
            table.consumer_for(b"spiffe://cluster.local/ns/\xff/sa/x"),
            Err(PeerRefused::Malformed)
        );
    }

    #[test]
    fn pattern_errors() {
        for (pattern, says) in [
            ("spiffe://*.local/ns/a", "trust domain cannot hold '*'"),
            ("spiffe://cluster.local/ns/sa-*", "mixes '*'"),
            ("spiffe://cluster.local/ns/**", "mixes '*'"),
            ("spiffe://cluster.local", "needs a path"),
            ("spiffe://cluster.local/", "no empty"),
            ("spiffe://cluster.local/ns/./a", "no empty, '.'"),
            ("spiffe://cluster.local/ns/a%20b", "no query"),
            ("spiffe://Cluster.local/ns/a", "lowercase"),
            ("spiffe://cluster.local:1/ns/a", "no port"),
            ("cluster.local/ns/a", "must be a SPIFFE ID"),
        ] {
            let error = parse_pattern(pattern).unwrap_err();
            assert!(error.contains(says), "{pattern}: {error}");
        }
        let (domain, segments) = parse_pattern("spiffe://c_l.-1/ns/*/sa/x").unwrap();
        assert_eq!(domain, "c_l.-1");
        assert_eq!(segments.get(1), Some(&Segment::Any));
    }

    #[test]
    fn overlap() {
        let overlaps = |one: &str, other: &str| {
            let table = principals(&[(one, "a"), (other, "b")]);
            let [first, second] = &table.patterns[..] else {
                panic!("two patterns");
            };
            first.overlaps(second)
        };
        assert!(overlaps("spiffe://td/ns/a/sa/*", "spiffe://td/ns/a/sa/bot"));
        assert!(overlaps("spiffe://td/ns/*/sa/bot", "spiffe://td/ns/a/sa/*"));
        assert!(overlaps("spiffe://td/ns/a", "spiffe://td/ns/a"));
        assert!(!overlaps("spiffe://td/ns/a/sa/*", "spiffe://td/ns/b/sa/*"));
        assert!(!overlaps("spiffe://td/ns/a/sa/*", "spiffe://td/ns/a/sa"));
        assert!(!overlaps("spiffe://td/ns/*", "spiffe://other/ns/*"));
    }
}
