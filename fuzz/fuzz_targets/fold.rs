//! Text through folding and the scan that uses it. Folding never makes a match the text as
//! written has disappear: every (rule, range) the plain scan of a string finds, the scan with
//! folding (and with the string joined to a neighbouring text part) still reports, at the same
//! string and range. `Folded::source_range` never returns a range outside the source or off its
//! character boundaries, and what a mapped range came from folds to exactly the folded range.
//!
//! Input: two bytes choosing where to split the text into two text parts and which ranges of
//! the folded text to map back, then the text (invalid UTF-8 replaced).
#![no_main]

use std::ops::Range;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use posturio::policy::body::{Span, TextAt, TextField, TextSink};
use posturio::policy::detect::Detector;
use posturio::policy::fold::fold;
use posturio::policy::inspect::{RuleSource, ScanSink, Scanner};

/// Every built-in detector, and pattern rules with words and punctuation: built once.
fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(build_scanner)
}

fn build_scanner() -> Scanner {
    let mut sources: Vec<(usize, RuleSource)> = Detector::ALL
        .iter()
        .enumerate()
        .map(|(rule, detector)| (rule, RuleSource::Detector(*detector)))
        .collect();
    for pattern in [
        "(?i)ignore (all )?previous instructions",
        "project-f",
        r"(^|\s)secret\b",
        "a.c",
    ] {
        sources.push((sources.len(), RuleSource::Pattern(pattern.to_owned())));
    }
    Scanner::new(sources).unwrap()
}

fn plain_hits(scanner: &Scanner, text: &str) -> Vec<(usize, Range<usize>)> {
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    scanner.scan(text, &[0..text.len()], &mut scratch, &mut out);
    out
}

fn at(span: usize) -> TextAt {
    TextAt {
        span: Some(Span::new(span, span + 1)),
        message: Some(0),
        field: TextField::MessageContent,
    }
}

/// Folding `text` the way the scan does: the text itself where nothing changes.
fn folded_text(text: &str) -> String {
    fold(text).map_or_else(|| text.to_owned(), |folded| folded.text)
}

fuzz_target!(|data: &[u8]| {
    let [split, pick, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let scanner = scanner();

    // The ways back stay in the source, on its boundaries, and exact.
    if let Some(folded) = fold(&text) {
        assert_ne!(folded.text, *text, "fold returned text it did not change");
        let bounds: Vec<usize> = folded
            .text
            .char_indices()
            .map(|(at, _)| at)
            .chain([folded.text.len()])
            .collect();
        let step = usize::from(*pick % 7) + 1;
        for (index, &start) in bounds.iter().enumerate().step_by(step) {
            for &end in bounds.iter().skip(index).step_by(step) {
                let Some(source) = folded.source_range(start..end) else {
                    continue;
                };
                assert!(source.start <= source.end && source.end <= text.len());
                assert!(text.is_char_boundary(source.start) && text.is_char_boundary(source.end));
                assert_eq!(
                    folded_text(&text[source.clone()]),
                    folded.text[start..end],
                    "{start}..{end} of {:?} came from {source:?} of {text:?}",
                    folded.text
                );
            }
        }
        // Ranges that are not on the folded text's boundaries, or outside it.
        for start in 0..folded.text.len().min(64) + 2 {
            let end = start + usize::from(*pick);
            if let Some(source) = folded.source_range(start..end) {
                assert!(source.start <= source.end && source.end <= text.len());
                assert!(text.is_char_boundary(source.start) && text.is_char_boundary(source.end));
            }
        }
    } else {
        assert!(folded_text(&text) == *text);
    }

    // Every plain match survives the scan with folding, as one string.
    let mut sink = ScanSink::new(scanner, text.len());
    sink.text(&text, at(0));
    let hits = sink.finish().unwrap();
    for (rule, range) in plain_hits(scanner, &text) {
        assert!(
            hits.iter()
                .any(|hit| hit.rule == rule && hit.range == range && hit.at.message == Some(0)),
            "rule {rule} at {range:?} of {text:?} is lost: {hits:?}"
        );
    }

    // And as two text parts, joined.
    let mut cut = usize::from(*split).min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (first, second) = text.split_at(cut);
    let mut sink = ScanSink::new(scanner, text.len());
    sink.text(first, at(0));
    sink.text(second, at(100));
    sink.text_parts(&[Span::new(0, 1), Span::new(100, 101)]);
    let hits = sink.finish().unwrap();
    for (part, span) in [(first, 0), (second, 100)] {
        for (rule, range) in plain_hits(scanner, part) {
            assert!(
                hits.iter().any(|hit| hit.rule == rule
                    && hit.range == range
                    && hit.at.span.is_none_or(|at| at.start == span)),
                "rule {rule} at {range:?} of part {part:?} is lost: {hits:?}"
            );
        }
    }
});
