//! Folding: each evasion a reader does not see folded away, the way back exact where it can
//! be and refused where it cannot, the table of removed characters checked against Unicode's
//! general categories, and folding segment by segment checked against NFKC of the whole.

#![allow(
    clippy::arithmetic_side_effects,
    clippy::string_slice,
    clippy::reversed_empty_ranges
)]

use std::ops::Range;

use unicode_general_category::{get_general_category, GeneralCategory};
use unicode_normalization::UnicodeNormalization;

use super::*;

fn folded(text: &str) -> String {
    fold(text).map_or_else(|| text.to_owned(), |folded| folded.text)
}

#[test]
fn what_folding_leaves_alone() {
    for text in [
        "",
        "plain ASCII, AKIAIOSFODNN7EXAMPLE",
        "café au lait",
        "日本語のテキスト",
        "naïve résumé – “quotes”",
        "emoji 🎉 stay",
    ] {
        assert_eq!(fold(text), None, "{text:?}");
    }
}

#[test]
fn each_evasion_folds_to_what_a_reader_sees() {
    for (name, text, expected) in [
        ("zero-width space", "AKIA\u{200B}IOSF", "AKIAIOSF"),
        ("zero-width non-joiner", "AK\u{200C}IA", "AKIA"),
        ("zero-width joiner", "AK\u{200D}IA", "AKIA"),
        ("soft hyphen", "pass\u{AD}word", "password"),
        ("word joiner", "ig\u{2060}nore", "ignore"),
        ("byte order mark", "\u{FEFF}AKIA", "AKIA"),
        ("bidi embedding", "A\u{202A}K\u{202C}IA", "AKIA"),
        ("bidi isolate", "A\u{2066}KIA\u{2069}", "AKIA"),
        ("left-to-right mark", "A\u{200E}KIA", "AKIA"),
        ("tag characters", "AK\u{E0001}IA\u{E007F}", "AKIA"),
        (
            "tag characters spelling ASCII",
            "\u{E0041}\u{E004B}\u{E0049}\u{E0041} \u{E0020}x",
            "AKIA  x",
        ),
        ("NUL", "AK\u{0}IA", "AKIA"),
        ("bell and delete", "ig\u{7}no\u{7F}re", "ignore"),
        ("C1 control, next line", "AK\u{85}IA", "AKIA"),
        ("Greek small lookalikes", "ρνϲια", "pvcia"),
        ("Cyrillic izhitsa", "ѵ", "v"),
        ("Latin variants", "ɑɡıɪ", "agii"),
        ("Lisu capitals", "ꓮꓗꓲꓮ", "AKIA"),
        ("Coptic capitals", "ⲀⲔⲒⲀ", "AKIA"),
        ("variation selector", "A\u{FE0F}KIA", "AKIA"),
        ("variation selector supplement", "AK\u{E0100}IA", "AKIA"),
        ("combining grapheme joiner", "AK\u{34F}IA", "AKIA"),
        ("Hangul filler", "AK\u{3164}IA", "AKIA"),
        ("Arabic letter mark", "AK\u{61C}IA", "AKIA"),
        ("Mongolian vowel separator", "AK\u{180E}IA", "AKIA"),
        ("full-width letters", "ＡＫＩＡ", "AKIA"),
        (
            "full-width phrase",
            "ｉｇｎｏｒｅ　ｐｒｅｖｉｏｕｓ",
            "ignore previous",
        ),
        ("ligature", "ﬁle", "file"),
        ("superscript", "x²", "x2"),
        ("no-break space", "ignore\u{A0}previous", "ignore previous"),
        ("mathematical bold", "𝐀𝐊𝐈𝐀", "AKIA"),
        ("circled letters", "Ⓐⓚ", "Ak"),
        ("Cyrillic lookalikes", "АКІА раssword", "AKIA password"),
        ("Greek lookalikes", "ΑΚΙΑ Ρ", "AKIA P"),
        ("Greek mathematical", "𝚨𝚱", "AK"),
        ("combining mark after removed", "e\u{200B}\u{301}", "é"),
        ("only invisible", "\u{200B}\u{200C}", ""),
    ] {
        assert_eq!(folded(text), expected, "{name}");
    }
}

#[test]
fn matches_map_back_to_the_source() {
    type Case = (&'static str, Range<usize>, Option<Range<usize>>);
    // (text, folded range, source range or None)
    let cases: &[Case] = &[
        // A removed character goes with what follows it.
        ("AK\u{200B}IA", 0..4, Some(0..7)),
        ("AK\u{200B}IA", 2..4, Some(2..7)),
        ("AK\u{200B}IA", 0..2, Some(0..2)),
        ("x\u{200B}AKIA\u{200B}y", 1..5, Some(1..8)),
        ("\u{FEFF}AKIA", 0..4, Some(0..7)),
        ("AKIA\u{200B}", 0..4, Some(0..7)),
        // Full-width letters map one to one.
        ("ＡＫＩＡ", 0..4, Some(0..12)),
        ("ＡＫＩＡ", 1..3, Some(3..9)),
        // A ligature's letters cannot be split.
        ("xﬁy", 1..3, Some(1..4)),
        ("xﬁy", 2..4, None),
        ("xﬁy", 1..2, None),
        // Out of range, or not on a boundary.
        ("xﬁy", 0..9, None),
        ("ＡＫ", 3..1, None),
    ];
    for (text, range, expected) in cases {
        let folded = fold(text).unwrap();
        assert_eq!(
            folded.source_range(range.clone()),
            *expected,
            "{text:?} {range:?}"
        );
    }
}

#[test]
fn a_cover_holds_what_cannot_be_mapped_exactly() {
    let folded = fold("xﬁy").unwrap();
    assert_eq!(folded.source_cover(2..4), Some(1..5));
    assert_eq!(folded.source_cover(1..2), Some(1..4));
    assert_eq!(folded.source_cover(0..1), Some(0..1));
    assert_eq!(folded.source_cover(0..9), None);
}

/// Unicode 16's `Default_Ignorable_Code_Point` characters that are not format characters
/// (DerivedCoreProperties.txt): what the table removes besides general category Cf.
const IGNORABLE_NOT_FORMAT: &[(u32, u32)] = &[
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0000),
    (0xE0002, 0xE001F),
    (0xE0080, 0xE0FFF),
];

#[test]
fn the_removed_characters_are_the_format_and_ignorable_ones() {
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let format = get_general_category(c) == GeneralCategory::Format;
        let ignorable = IGNORABLE_NOT_FORMAT
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&u32::from(c)));
        assert_eq!(
            is_invisible(c),
            format || ignorable,
            "U+{:04X} ({:?})",
            u32::from(c),
            get_general_category(c)
        );
    }
}

#[test]
fn each_lookalike_is_a_letter_that_folds_to_ascii() {
    for c in (0x80..=0x10FFFF).filter_map(char::from_u32) {
        if let Some(latin) = latin_lookalike(c) {
            assert!(latin.is_ascii_alphabetic(), "{c}");
            assert_eq!(folded(&c.to_string()), latin.to_string());
        }
    }
}

/// Characters that exercise every path: ASCII, removed characters, compatibility forms,
/// lookalikes, combining marks (in and out of order), Hangul jamo that compose, starters that
/// combine with what comes before them (Indic vowel signs), and plain non-ASCII text.
const PALETTE: &[char] = &[
    'a',
    'e',
    'K',
    ' ',
    '1',
    '\u{200B}',
    '\u{AD}',
    '\u{FE0F}',
    '\u{E0041}',
    '\u{E0001}',
    '\u{0}',
    '\u{85}',
    '\u{B}',
    'ꓮ',
    'ϲ',
    '\u{3164}',
    'Ａ',
    'ﬁ',
    '²',
    '\u{A0}',
    '𝐀',
    'а',
    'Ο',
    '\u{301}',
    '\u{308}',
    '\u{323}',
    '\u{34F}',
    '\u{1100}',
    '\u{1161}',
    '\u{11A8}',
    '가',
    '\u{B47}',
    '\u{B3E}',
    '\u{9C7}',
    '\u{9BE}',
    'é',
    '日',
    'ǅ',
    '㎏',
    'ſ',
    '\u{1E9B}',
    'ℌ',
    '…',
    '\u{FFA0}',
];

/// A small generator, so the table below is the same on every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % below
    }
}

fn whole_text_fold(text: &str) -> String {
    text.chars()
        .map(|c| tag_ascii(c).unwrap_or(c))
        .filter(|c| !is_removed(*c))
        .nfkc()
        .map(|c| latin_lookalike(c).unwrap_or(c))
        .filter(|c| !is_removed(*c))
        .collect()
}

#[test]
fn folding_by_segments_is_nfkc_of_the_whole_and_maps_back_exactly() {
    let mut draw = Draw(7);
    for _ in 0..20_000 {
        let length = 1 + draw.next(8);
        let text: String = (0..length)
            .map(|_| PALETTE[draw.next(PALETTE.len())])
            .collect();
        let Some(folded) = fold(&text) else {
            assert_eq!(whole_text_fold(&text), text, "{text:?} left alone");
            continue;
        };
        assert_eq!(folded.text, whole_text_fold(&text), "{text:?}");
        let bounds: Vec<usize> = folded
            .text
            .char_indices()
            .map(|(at, _)| at)
            .chain([folded.text.len()])
            .collect();
        for &start in &bounds {
            for &end in bounds.iter().filter(|end| **end >= start) {
                let cover = folded.source_cover(start..end).unwrap();
                assert!(text.is_char_boundary(cover.start) && text.is_char_boundary(cover.end));
                let Some(source) = folded.source_range(start..end) else {
                    continue;
                };
                assert!(source.start <= source.end && source.end <= text.len());
                assert_eq!(cover, source, "{text:?} {start}..{end}");
                // What the range came from folds to exactly the range.
                assert_eq!(
                    whole_text_fold(&text[source.clone()]),
                    folded.text[start..end],
                    "{text:?} {start}..{end} -> {source:?}"
                );
            }
        }
    }
}
