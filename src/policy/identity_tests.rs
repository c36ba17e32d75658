//! One named case a line: the value the identity gives, and what it resolves to.

use super::*;
use crate::policy::Policy;

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4o": { "provider": "openai" } },
  "consumers": {
    "default": { "models": ["gpt-4o"] },
    "search-team": { "models": ["gpt-4o"], "max_output_tokens": 100 },
    "Équipe": { "models": ["gpt-4o"] },
    "two words": { "models": ["gpt-4o"] }
  }
}"#;

/// What a value resolves to.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// This consumer, matched exactly.
    Named(&'static str),
    /// No consumer: evaluated as `default`.
    Stranger,
    /// Refused.
    Refused(Unusable),
}
use Expect::*;

fn check(value: &[u8], expected: Expect) {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let got = match resolve(&policy.consumers, value) {
        Ok(Some(consumer)) => Expect::Named(
            ["default", "search-team", "Équipe", "two words"]
                .into_iter()
                .find(|name| *name == consumer.name)
                .unwrap(),
        ),
        Ok(None) => Stranger,
        Err(unusable) => Refused(unusable),
    };
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(value));
}

macro_rules! cases {
    ($($name:ident: $value:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            check($value, $expected);
        }
    )*};
}

fn spaces(consumer: Option<&str>) -> Expect {
    Refused(Unusable::Spaces {
        consumer: consumer.map(str::to_owned),
    })
}

fn case_of(consumer: &str) -> Expect {
    Refused(Unusable::OtherCase {
        consumer: consumer.to_owned(),
    })
}

cases! {
    exact: b"search-team" => Named("search-team");
    exact_default: b"default" => Named("default");
    exact_unicode: "Équipe".as_bytes() => Named("Équipe");
    exact_inner_space: b"two words" => Named("two words");
    unknown_team_is_a_stranger: b"marketing" => Stranger;
    unknown_with_inner_space: b"no entry" => Stranger;
    other_case: b"Search-Team" => case_of("search-team");
    upper_case: b"SEARCH-TEAM" => case_of("search-team");
    default_other_case: b"Default" => case_of("default");
    unicode_other_case: "éQUIPE".as_bytes() => case_of("Équipe");
    leading_space: b" search-team" => spaces(Some("search-team"));
    trailing_space: b"search-team " => spaces(Some("search-team"));
    trailing_tab_is_control: b"search-team\t" => Refused(Unusable::NotAName);
    spaces_and_case: b" Search-Team " => spaces(Some("search-team"));
    no_break_space: "search-team\u{a0}".as_bytes() => spaces(Some("search-team"));
    spaces_around_a_stranger: b" marketing" => spaces(None);
    only_spaces: b"   " => spaces(None);
    newline: b"search-team\n" => Refused(Unusable::NotAName);
    nul: b"search-team\0" => Refused(Unusable::NotAName);
    not_utf8: b"search-\xffteam" => Refused(Unusable::NotAName);
    too_long: &[b'a'; 257] => Refused(Unusable::TooLong);
    longest: &[b'a'; 256] => Stranger;
    // What Envoy hands the module for claims of other types (proxy-wasm serialisation).
    claim_list: b"\x01\x00\x00\x00\x0b\x00\x00\x00\x00\x00\x00\x00search-team\x00\x00" => Refused(Unusable::NotAName);
    claim_empty_list: b"\x00\x00\x00\x00" => Refused(Unusable::NotAName);
    claim_object: b"\x01\x00\x00\x00\x04\x00\x00\x00\x0b\x00\x00\x00name\x00search-team\x00" => Refused(Unusable::NotAName);
    claim_number_seven: &7.0_f64.to_le_bytes() => Refused(Unusable::NotAName);
    claim_true: b"\x01" => Refused(Unusable::NotAName);
    claim_false: b"\x00" => Refused(Unusable::NotAName);
    // Values that render as a consumer's name without being it: refused, never `default`.
    zero_width_space: "search-team\u{200b}".as_bytes() => Refused(Unusable::Characters);
    zero_width_inside: "search\u{200b}-team".as_bytes() => Refused(Unusable::Characters);
    zero_width_joiner: "search\u{200d}-team".as_bytes() => Refused(Unusable::Characters);
    word_joiner: "search-team\u{2060}".as_bytes() => Refused(Unusable::Characters);
    soft_hyphen: "search\u{ad}-team".as_bytes() => Refused(Unusable::Characters);
    byte_order_mark: "\u{feff}search-team".as_bytes() => Refused(Unusable::Characters);
    bidi_override: "search-team\u{202e}".as_bytes() => Refused(Unusable::Characters);
    tag_character: "search-team\u{e0041}".as_bytes() => Refused(Unusable::Characters);
    combining_acute: "search-te\u{301}am".as_bytes() => Refused(Unusable::Characters);
    decomposed_unicode_name: "E\u{301}quipe".as_bytes() => Refused(Unusable::Characters);
    full_width_letter: "\u{ff53}earch-team".as_bytes() => Refused(Unusable::Characters);
    full_width_hyphen: "search\u{ff0d}team".as_bytes() => Refused(Unusable::Characters);
    mathematical_bold: "\u{1d42c}earch-team".as_bytes() => Refused(Unusable::Characters);
    ligature: "search-\u{fb06}eam".as_bytes() => Refused(Unusable::Characters);
    circled_letter: "\u{24e2}earch-team".as_bytes() => Refused(Unusable::Characters);
    superscript_digit: "team\u{b2}".as_bytes() => Refused(Unusable::Characters);
    cyrillic_look_alike: "search-te\u{430}m".as_bytes() => Refused(Unusable::Characters);
    greek_look_alike: "search-te\u{3b1}m".as_bytes() => Refused(Unusable::Characters);
    ideographic_space_inside: "search\u{3000}team".as_bytes() => Refused(Unusable::Characters);
    comma_in_a_claim: b"search-team,default" => Refused(Unusable::Characters);
    cyrillic_alone_is_a_stranger: "\u{43a}\u{43e}\u{43c}\u{430}\u{43d}\u{434}\u{430}".as_bytes() => Stranger;
    greek_with_digits_is_a_stranger: "\u{3b1}\u{3b2}-7".as_bytes() => Stranger;
    cjk_is_a_stranger: "\u{56e2}\u{961f}".as_bytes() => Stranger;
}

/// Whether a configuration with this consumer name compiles.
macro_rules! names {
    ($($name:ident: $consumer:expr => $valid:expr;)*) => {$(
        #[test]
        fn $name() {
            let policy = format!(
                r#"{{"providers":{{"p":{{"cluster":"c","api":"openai"}}}},"models":{{"m":{{"provider":"p"}}}},"consumers":{{{}:{{"models":["m"]}}}}}}"#,
                serde_json::to_string($consumer).unwrap()
            );
            let compiled = Policy::from_json(policy.as_bytes());
            assert_eq!(compiled.is_ok(), $valid, "{:?}: {:?}", $consumer, compiled.err());
        }
    )*};
}

// Configuration names and identity values are held to one set of characters, so every name a
// configuration holds can be given exactly, and no value renders as one it is not.
names! {
    name_ascii: "search-team" => true;
    name_punctuation: "x.model=y/z@w:1" => true;
    name_inner_space: "two words" => true;
    name_accented: "\u{c9}quipe" => true;
    name_cjk: "\u{56e2}\u{961f}" => true;
    name_zero_width: "team\u{200b}" => false;
    name_combining: "E\u{301}quipe" => false;
    name_full_width: "\u{ff54}eam" => false;
    name_mixed_scripts: "te\u{430}m" => false;
    name_leading_space: " team" => false;
    name_trailing_no_break_space: "team\u{a0}" => false;
    name_comma: "a,b" => false;
}

#[test]
fn reasons_never_repeat_the_value() {
    for unusable in [
        Unusable::NotAName,
        Unusable::TooLong,
        Unusable::Spaces { consumer: None },
        Unusable::Characters,
    ] {
        assert!(!unusable.reason().contains("secret"), "{unusable:?}");
    }
    assert!(case_reason().contains("consumer \"search-team\""));
}

fn case_reason() -> String {
    Unusable::OtherCase {
        consumer: "search-team".to_owned(),
    }
    .reason()
}
