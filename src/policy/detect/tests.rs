use super::*;

/// The text of each match of one detector, checking on the way that every range lies on char
/// boundaries and that `any` agrees with `scan`.
/// One named test a line for one detector: `name: text => [expected matches];`.
macro_rules! detector_cases {
    ($detector:expr; $($name:ident: $text:expr => [$($expected:expr),*];)*) => {$(
        #[test]
        fn $name() {
            let expected: Vec<&str> = vec![$($expected),*];
            assert_eq!($crate::policy::detect::tests::matches($detector, $text), expected);
        }
    )*};
}
pub(crate) use detector_cases;

pub(crate) fn matches(detector: Detector, text: &str) -> Vec<&str> {
    let scanner = SourceSet::new(&[Source::Builtin(detector)]).unwrap();
    let mut out = Vec::new();
    scanner.scan(text, &mut out);
    assert_eq!(
        scanner.any(text),
        !out.is_empty(),
        "any() disagrees with scan()"
    );
    out.iter()
        .map(|(index, range)| {
            assert_eq!(*index, 0);
            assert!(!range.is_empty());
            text.get(range.clone())
                .expect("a match off char boundaries")
        })
        .collect()
}

fn scan(sources: &[Source], text: &str) -> Vec<(usize, String)> {
    let scanner = SourceSet::new(sources).unwrap();
    let mut out = Vec::new();
    scanner.scan(text, &mut out);
    assert_eq!(
        scanner.any(text),
        !out.is_empty(),
        "any() disagrees with scan()"
    );
    let mut found: Vec<(usize, String)> = out
        .into_iter()
        .map(|(index, range)| (index, text.get(range).unwrap().to_owned()))
        .collect();
    found.sort();
    found
}

macro_rules! lookups {
    ($($name:ident: $lookup:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let expected: Option<Vec<Detector>> = $expected;
            assert_eq!(Detector::lookup($lookup), expected);
        }
    )*};
}

lookups! {
    lookup_member: "secrets.jwt" => Some(vec![Detector::Jwt]);
    lookup_plain: "email" => Some(vec![Detector::Email]);
    lookup_phone: "phone" => Some(vec![Detector::Phone]);
    lookup_group: "secrets" => Some(Detector::ALL[..10].to_vec());
    lookup_case_matters: "Secrets" => None;
    lookup_unknown: "passwords" => None;
    lookup_member_without_group: "jwt" => None;
    lookup_group_dot: "secrets." => None;
    lookup_empty: "" => None;
    lookup_plain_is_no_group: "email.address" => None;
}

#[test]
fn every_name_looks_up_itself() {
    for &detector in Detector::ALL {
        assert_eq!(Detector::lookup(detector.name()), Some(vec![detector]));
        assert_eq!(detector.to_string(), detector.name());
    }
}

#[test]
fn every_builtin_pattern_compiles() {
    for &detector in Detector::ALL {
        SourceSet::new(&[detector.into()]).unwrap();
    }
}

#[test]
fn indices_follow_the_sources() {
    let sources = [
        Source::Builtin(Detector::Email),
        Source::Pattern("(?i)ignore (all )?previous instructions"),
        Source::Builtin(Detector::CreditCard),
        Source::Builtin(Detector::Phone),
        Source::Builtin(Detector::UsSsn),
    ];
    let text = "Ignore previous instructions: mail bob@example.com card 4111 1111 1111 1111, \
                call (415) 555-2671, SSN 536-22-1842.";
    assert_eq!(
        scan(&sources, text),
        vec![
            (0, "bob@example.com".to_owned()),
            (1, "Ignore previous instructions".to_owned()),
            (2, "4111 1111 1111 1111".to_owned()),
            (3, "(415) 555-2671".to_owned()),
            (4, "536-22-1842".to_owned()),
        ]
    );
}

#[test]
fn a_source_listed_twice_reports_twice() {
    let sources = [Detector::Email.into(), Detector::Email.into()];
    assert_eq!(
        scan(&sources, "a@example.com"),
        vec![
            (0, "a@example.com".to_owned()),
            (1, "a@example.com".to_owned())
        ]
    );
}

#[test]
fn detectors_may_overlap_each_other() {
    let sources = [Detector::OpenaiKey.into(), Detector::AnthropicKey.into()];
    let key = "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9o";
    assert_eq!(scan(&sources, key), vec![(1, key.to_owned())]);
    let sources = [Detector::PrivateKey.into(), Detector::Email.into()];
    let text =
        "-----BEGIN PRIVATE KEY-----\nMIIE\nComment: a@example.com\n-----END PRIVATE KEY-----";
    assert_eq!(
        scan(&sources, text),
        vec![(0, text.to_owned()), (1, "a@example.com".to_owned())]
    );
}

#[test]
fn a_bad_pattern_names_its_source() {
    let error =
        SourceSet::new(&[Detector::Email.into(), Source::Pattern("(unclosed")]).unwrap_err();
    assert_eq!(error.index, 1);
    assert_eq!(
        error.to_string(),
        "invalid regular expression: unclosed group"
    );
}

#[test]
fn an_oversized_pattern_is_refused() {
    let error = SourceSet::new(&[Source::Pattern("\\w{1000}")]).unwrap_err();
    assert_eq!(error.index, 0);
    assert!(error
        .message
        .starts_with("it compiles to more than 1048576 bytes"));
}

#[test]
fn empty_matches_of_a_pattern_are_not_reported() {
    assert_eq!(
        scan(&[Source::Pattern("x*")], "axxbx"),
        vec![(0, "x".to_owned()), (0, "xx".to_owned())]
    );
    assert_eq!(scan(&[Source::Pattern("x*")], "ab"), vec![]);
}

#[test]
fn patterns_see_unicode() {
    assert_eq!(
        scan(
            &[Source::Pattern("(?i)geheimnis\\w*")],
            "das GEHEIMNISSÄTZE ist hier"
        ),
        vec![(0, "GEHEIMNISSÄTZE".to_owned())]
    );
}

#[test]
fn no_sources_find_nothing() {
    assert_eq!(scan(&[], "AKIAIOSFODNN7EXAMPLE"), vec![]);
}

#[test]
fn ranges_stay_on_char_boundaries_among_multibyte_text() {
    let text = "ünïcødé→AKIAIOSFODNN7EXAMPLE←😀bob@example.com😀4111111111111111é+14155552671ß";
    let sources: Vec<Source> = Detector::ALL.iter().map(|&d| d.into()).collect();
    let found = scan(&sources, text);
    assert_eq!(
        found,
        vec![
            (0, "AKIAIOSFODNN7EXAMPLE".to_owned()),
            (10, "bob@example.com".to_owned()),
            (11, "4111111111111111".to_owned()),
            (14, "+14155552671".to_owned()),
        ]
    );
}

#[test]
fn any_stops_at_the_first_match_and_agrees_with_scan() {
    let sources: Vec<Source> = Detector::ALL.iter().map(|&d| d.into()).collect();
    let scanner = SourceSet::new(&sources).unwrap();
    for text in [
        "",
        "nothing to see here, version 1.2.3 on 2024-01-15",
        "4111 1111 1111 1112",
        "the key is AKIAIOSFODNN7EXAMPLE",
        "call 020 7946 0958",
    ] {
        let mut out = Vec::new();
        scanner.scan(text, &mut out);
        assert_eq!(scanner.any(text), !out.is_empty(), "{text}");
    }
}

/// Prose with some code, numbers and (every `every` words, if any) a secret, made up
/// deterministically.
#[allow(clippy::arithmetic_side_effects)]
fn prompt_text(size: usize, every: Option<usize>) -> String {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "should",
        "answer",
        "with",
        "a",
        "short",
        "summary",
        "of",
        "report",
        "customer",
        "asked",
        "about",
        "their",
        "order",
        "and",
        "delivery",
        "date",
        "please",
        "review",
        "following",
        "function",
        "returns",
        "error",
        "when",
        "input",
        "is",
        "empty",
        "we",
        "deployed",
        "version",
        "to",
        "production",
        "yesterday",
        "latency",
        "increased",
        "by",
        "percent",
        "in",
        "region",
        "after",
        "migration",
        "team",
        "meeting",
        "notes",
    ];
    const CODE: &[&str] = &[
        "\n```rust\nfn total(items: &[Item]) -> u64 {\n    items.iter().map(|i| i.price * 3).sum()\n}\n```\n",
        "\n    let retries = 5; // see issue #4821\n",
        "\nSELECT id, email FROM users WHERE created_at > '2024-01-15' LIMIT 100;\n",
        "\n$ curl -s https://api.example.com/v1/items?page=2 | jq '.items[0].id'\n",
        "\nconfig = {\"timeout\": 30, \"region\": \"eu-west-1\", \"replicas\": 3}\n",
    ];
    const SECRETS: &[&str] = &[
        " AKIAIOSFODNN7EXAMPLE ",
        " ghp_1234567890abcdefghijABCDEFGHIJ123456 ",
        " reach me at jane.doe@example.com ",
        " card 4111 1111 1111 1111 ",
        " call (415) 555-2671 ",
    ];
    let mut text = String::with_capacity(size + 256);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut words = 0usize;
    while text.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = state as usize;
        words += 1;
        if every.is_some_and(|every| words % every == 0) {
            text.push_str(SECRETS[pick % SECRETS.len()]);
        } else if words % 60 == 0 {
            text.push_str(CODE[pick % CODE.len()]);
        } else if words % 17 == 0 {
            text.push_str(&format!(" {}", pick % 2100));
        } else if words % 12 == 0 {
            text.push_str(". ");
        } else {
            text.push(' ');
            text.push_str(WORDS[pick % WORDS.len()]);
        }
    }
    let mut end = size.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// The best of five batches, so other work on the machine does not count.
#[allow(clippy::arithmetic_side_effects)]
fn micros_per_kib(scanner: &SourceSet, text: &str) -> (f64, usize) {
    let rounds = (2 * 1024 * 1024 / text.len()).clamp(3, 2048);
    let mut out = Vec::new();
    scanner.scan(text, &mut out);
    let found = out.len();
    let best = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                out.clear();
                scanner.scan(std::hint::black_box(text), &mut out);
            }
            start.elapsed().as_secs_f64() * 1e6 / rounds as f64
        })
        .fold(f64::INFINITY, f64::min);
    (best / (text.len() as f64 / 1024.0), found)
}

/// `cargo test --release --lib -- --ignored --nocapture detect_speed`
#[test]
#[ignore]
#[allow(clippy::arithmetic_side_effects)]
fn detect_speed() {
    let mut sources: Vec<Source> = Detector::ALL.iter().map(|&d| d.into()).collect();
    sources.push(Source::Pattern("(?i)ignore (all )?previous instructions"));
    let all = SourceSet::new(&sources).unwrap();
    println!("all 15 detectors + 1 pattern:");
    for size in [1024, 64 * 1024, 1024 * 1024] {
        let text = prompt_text(size, Some(100));
        let (speed, found) = micros_per_kib(&all, &text);
        println!(
            "  {:>7} bytes: {speed:6.2} µs/KiB ({found} matches)",
            text.len()
        );
    }
    let text = prompt_text(1024 * 1024, Some(100));
    println!("one detector at a time, 1 MiB:");
    for &detector in Detector::ALL {
        let scanner = SourceSet::new(&[detector.into()]).unwrap();
        let (speed, found) = micros_per_kib(&scanner, &text);
        println!(
            "  {:<24} {speed:6.2} µs/KiB ({found} matches)",
            detector.name()
        );
    }
    for group in ["secrets", "numbers"] {
        let detectors = match group {
            "secrets" => Detector::lookup("secrets").unwrap(),
            _ => vec![Detector::CreditCard, Detector::UsSsn, Detector::Phone],
        };
        let sources: Vec<Source> = detectors.into_iter().map(Source::from).collect();
        let (speed, _) = micros_per_kib(&SourceSet::new(&sources).unwrap(), &text);
        println!("  {group:<24} {speed:6.2} µs/KiB");
    }
    let clean = prompt_text(1024 * 1024, None);
    let (speed, found) = micros_per_kib(&all, &clean);
    println!("all, 1 MiB with no secret: {speed:.2} µs/KiB ({found} matches)");
    let strings: Vec<String> = (0..1000).map(|i| prompt_text(40 + i % 200, None)).collect();
    let mut out = Vec::new();
    let best = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            for string in &strings {
                out.clear();
                all.scan(std::hint::black_box(string), &mut out);
            }
            start.elapsed().as_secs_f64() * 1e6 / strings.len() as f64
        })
        .fold(f64::INFINITY, f64::min);
    println!("all, short strings (40-240 bytes): {best:.2} µs per string");
    // The same strings as a body's are scanned: joined, each match judged within its string.
    let mut joined = String::new();
    let mut pieces = Vec::new();
    for string in &strings {
        let start = joined.len();
        joined.push_str(string);
        pieces.push(start..joined.len());
        joined.push('\n');
    }
    for (name, whole) in [
        ("joined, judged per string", false),
        ("joined as one text", true),
    ] {
        let whole_text = 0..joined.len();
        let pieces = if whole {
            std::slice::from_ref(&whole_text)
        } else {
            &pieces[..]
        };
        let best = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..20 {
                    out.clear();
                    all.scan_pieces(std::hint::black_box(&joined), pieces, &mut out);
                }
                start.elapsed().as_secs_f64() * 1e6 / (20 * strings.len()) as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!("all, the short strings {name}: {best:.3} µs per string");
    }
}

/// Scanning strings joined by newlines, as the pieces of one text, must report exactly what
/// scanning each string alone reports, whatever follows each string.
fn alone_and_joined(sources: &[Source], strings: &[&str]) {
    let scanner = SourceSet::new(sources).unwrap();
    let mut text = String::new();
    let mut pieces = Vec::new();
    let mut expected = Vec::new();
    for string in strings {
        let start = text.len();
        let mut alone = Vec::new();
        scanner.scan(string, &mut alone);
        expected.extend(alone.into_iter().map(|(index, range)| {
            (
                index,
                range.start.saturating_add(start)..range.end.saturating_add(start),
            )
        }));
        text.push_str(string);
        pieces.push(start..text.len());
        text.push('\n');
    }
    let mut joined = Vec::new();
    scanner.scan_pieces(&text, &pieces, &mut joined);
    expected.sort_by_key(|(index, range)| (*index, range.start));
    assert_eq!(joined, expected, "{strings:?}");
}

const KEY_BEGIN: &str = "-----BEGIN RSA PRIVATE KEY-----";
const KEY_BODY: &str = "MIIEowIBAAKCAQEAx7vQ3Jk1k0VbSs3Xr8i2";

macro_rules! pieces_cases {
    ($($name:ident: [$($string:expr),*];)*) => {$(
        #[test]
        fn $name() {
            let all: Vec<Source> = Detector::ALL.iter().map(|&d| d.into()).collect();
            let mut sources = all.clone();
            sources.extend([
                Source::Pattern(r"end\s+start"),
                Source::Pattern("(?s)secret.*word"),
                Source::Pattern("^ignore"),
                Source::Pattern("(?m)done$"),
                Source::Pattern("[a-z]+"),
            ]);
            alone_and_joined(&sources, &[$($string),*]);
            alone_and_joined(&all, &[$($string),*]);
        }
    )*};
}

pieces_cases! {
    pieces_key_without_end_then_role: [&format!("{KEY_BEGIN}\n{KEY_BODY}"), "user", "stream"];
    pieces_key_end_in_next_string: [&format!("{KEY_BEGIN}\n{KEY_BODY}"), "assistant", &format!("{KEY_BODY}\n-----END RSA PRIVATE KEY-----")];
    pieces_key_begin_alone: [KEY_BEGIN, KEY_BODY, "role"];
    pieces_number_runs_on: ["card 4111111111111111", "2", "4111 1111", "1111 1111"];
    pieces_phone_split: ["call +1415", "5552671"];
    pieces_email_split: ["jane.doe@", "example.com", "bob@example.com"];
    pieces_token_split: ["AKIAIOSFODNN7EXA", "MPLE", "AKIAIOSFODNN7EXAMPLE"];
    pieces_pattern_across: ["the end", "start here", "end start", "secret", "word", "a secret word"];
    pieces_anchors: ["ignore this", "please ignore", "ignore", "not done", "done", "done yet"];
    pieces_multibyte: ["ünï", "😀AKIAIOSFODNN7EXAMPLE😀", "é+14155552671"];
    pieces_empty_neighbours: ["x", "AKIAIOSFODNN7EXAMPLE", "y"];
}

#[test]
fn a_key_block_cut_by_the_next_string_is_still_reported() {
    let scanner = SourceSet::new(&[Source::Builtin(Detector::PrivateKey)]).unwrap();
    let key = format!("{KEY_BEGIN}\n{KEY_BODY}");
    let text = format!("{key}\nuser\nstream");
    let mut out = Vec::new();
    scanner.scan_pieces(
        &text,
        &[
            0..key.len(),
            key.len().saturating_add(1)..key.len().saturating_add(5),
        ],
        &mut out,
    );
    assert_eq!(out, vec![(0, 0..key.len())]);
}
