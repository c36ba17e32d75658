//! `*` globs over model names, as consumers write them (`gpt-4o*`, `claude-*`).
//!
//! Only `*` is special: it matches any run of characters, including none. Globs are matched
//! against the catalogue once, at config load; requests only do set lookups.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty model pattern matches nothing".to_owned());
        }
        if pattern.chars().any(char::is_control) {
            return Err("a model pattern cannot contain control characters".to_owned());
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
        })
    }

    /// Whether `text` matches, compared byte for byte (no case folding). Linear backtracking
    /// over the last `*`, so no pattern can make it exponential.
    pub fn matches(&self, text: &str) -> bool {
        let pattern = self.pattern.as_bytes();
        let text = text.as_bytes();
        let (mut p, mut t) = (0usize, 0usize);
        // Where the last `*` was, and the text position it currently stands for.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match (pattern.get(p), text.get(t)) {
                (Some(b'*'), _) => {
                    star = Some((p, t));
                    p = p.saturating_add(1);
                }
                (Some(expected), Some(actual)) if expected == actual => {
                    p = p.saturating_add(1);
                    t = t.saturating_add(1);
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p.saturating_add(1);
                        t = star_t.saturating_add(1);
                        star = Some((star_p, t));
                    }
                    None => return false,
                },
            }
        }
        pattern
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! globs {
        ($($name:ident: $pattern:expr, $text:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(Glob::new($pattern).unwrap().matches($text), $expected);
            }
        )*};
    }

    globs! {
        exact: "gpt-4o", "gpt-4o" => true;
        exact_differs: "gpt-4o", "gpt-4o-mini" => false;
        no_case_folding: "GPT-4o", "gpt-4o" => false;
        suffix_star: "gpt-4o*", "gpt-4o-mini" => true;
        suffix_star_empty: "gpt-4o*", "gpt-4o" => true;
        suffix_star_miss: "gpt-4o*", "gpt-4" => false;
        prefix_star: "*-mini", "gpt-4o-mini" => true;
        middle_star: "claude-*-4", "claude-sonnet-4" => true;
        middle_star_miss: "claude-*-4", "claude-sonnet-4-5" => false;
        two_stars: "*son*4*", "claude-sonnet-4-20250514" => true;
        star_only: "*", "anything" => true;
        star_backtracks: "a*ab", "aaab" => true;
        star_backtracks_miss: "a*ab", "aaba" => false;
        unicode: "modèle-*", "modèle-é" => true;
        empty_text: "*", "" => true;
    }

    #[test]
    fn empty_pattern_is_an_error() {
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn long_inputs_stay_fast() {
        let text = "a".repeat(10_000);
        let glob = Glob::new(&format!("{}b", "*a".repeat(50))).unwrap();
        assert!(!glob.matches(&text));
    }
}
