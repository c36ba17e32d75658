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
}

#[test]
fn reasons_never_repeat_the_value() {
    for unusable in [
        Unusable::NotAName,
        Unusable::TooLong,
        Unusable::Spaces { consumer: None },
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
