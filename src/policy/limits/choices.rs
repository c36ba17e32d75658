//! The counts a request gives: token counts as the filter reads them, and how many outputs a
//! request generates (choices times prompts), which share the output-token cap.

use super::{both_spellings, raw};
use crate::policy::body::{Located, Watched};
use crate::policy::classify::ApiFamily;
use crate::policy::reply::{Code, Reply};

/// A token count as a request gives it.
pub(super) enum TokenValue {
    Null,
    /// `0`, `-0` or a negative integer: proto3 (Gemini) reads 0 as "not set", and servers that
    /// take 0 or a negative count as "no limit" or "the model's default" exist, so such a
    /// value is treated as absent and replaced by the cap.
    Unset,
    Count(u64),
    Invalid,
}

/// Only a JSON integer literal (no fraction or exponent) that fits a u64, a zero or negative
/// one, or `null`: providers differ on what else they accept, and the filter must read what
/// they read.
pub(super) fn token_value(text: &[u8]) -> TokenValue {
    if text == b"null" {
        return TokenValue::Null;
    }
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return TokenValue::Invalid;
    }
    if negative || digits.iter().all(|digit| *digit == b'0') {
        return TokenValue::Unset;
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|digits| digits.parse().ok())
        .map_or(TokenValue::Invalid, TokenValue::Count)
}

/// How many outputs one request generates: prompts times choices, and the fields that say so.
#[derive(Debug, Clone, Copy)]
pub(super) struct Choices {
    /// Every output the provider generates: `prompts` times `per_prompt`.
    pub count: u64,
    /// The prompts a completions request gives in a list; 1 otherwise.
    prompts: u64,
    /// The choices generated for each prompt.
    per_prompt: u64,
    /// The choice-count field that gives `per_prompt`.
    name: &'static str,
}

impl Choices {
    /// The fields that multiply the outputs, for the start of a message.
    pub fn subject(&self) -> String {
        match (self.prompts > 1, self.per_prompt > 1) {
            (true, true) => format!("\"prompt\" with \"{}\"", self.name),
            (true, false) => "\"prompt\"".to_owned(),
            (false, _) => format!("\"{}\"", self.name),
        }
    }

    /// How many outputs, and why: `4 choices ("n")` (the field only `with_field`),
    /// `16 outputs (8 prompts, 2 choices each from "n")`.
    pub fn describe(&self, with_field: bool) -> String {
        match (self.prompts > 1, self.per_prompt > 1) {
            (true, true) => format!(
                "{} outputs ({} prompts, {} choices each from \"{}\")",
                self.count, self.prompts, self.per_prompt, self.name
            ),
            (true, false) => format!("{} outputs (one per prompt)", self.count),
            (false, _) if with_field => format!("{} choices (\"{}\")", self.count, self.name),
            (false, _) => format!("{} choices", self.count),
        }
    }

    /// What the cap is shared among.
    pub fn unit(&self) -> &'static str {
        if self.prompts > 1 {
            "output"
        } else {
            "choice"
        }
    }
}

/// The choice-count fields of each API: `n` and `best_of` (OpenAI completions generate
/// `best_of` and return `n`), Gemini's `candidateCount` in either spelling.
pub(super) const CHOICE_FIELDS: [(Watched, &str); 4] = [
    (Watched::Choices, "n"),
    (Watched::BestOf, "best_of"),
    (Watched::GeminiCandidateCount, "candidateCount"),
    (Watched::GeminiCandidateCountSnake, "candidate_count"),
];

/// The outputs a request asks for: the largest choice count it gives (1 when it gives none,
/// null, 0 or less) times the prompts of a completions `prompt` list. The count is held to
/// the same form as a token count, so the filter reads what the provider reads. More outputs
/// than a u64 holds count as that many.
pub(super) fn choices(body: &[u8], located: &Located, shape: ApiFamily) -> Result<Choices, Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidRequest, shape, message);
    let given = |what| located.get(what).is_some();
    if given(Watched::GeminiCandidateCount) && given(Watched::GeminiCandidateCountSnake) {
        return Err(invalid(both_spellings("candidateCount", "candidate_count")));
    }
    let mut per_prompt = 1;
    let mut name = "n";
    for (what, field) in CHOICE_FIELDS {
        let Some(found) = located.get(what) else {
            continue;
        };
        match token_value(raw(body, &found)) {
            TokenValue::Null | TokenValue::Unset => {}
            TokenValue::Invalid => {
                return Err(invalid(format!(
                    "\"{field}\" must be a whole number of choices (a JSON integer) or null"
                )))
            }
            TokenValue::Count(count) if count > per_prompt => {
                per_prompt = count;
                name = field;
            }
            TokenValue::Count(_) => {}
        }
    }
    let prompts = located
        .get(Watched::Prompt)
        .map_or(1, |found| prompts(raw(body, &found)));
    Ok(Choices {
        count: prompts.saturating_mul(per_prompt),
        prompts,
        per_prompt,
        name,
    })
}

/// How many prompts a completions `prompt` gives, each answered with its own outputs: a list
/// of strings or of token lists gives one per item; a string, or one list of token ids, is one
/// prompt. A list that holds any string or list counts every item, so a mixed list is never
/// counted low.
fn prompts(raw: &[u8]) -> u64 {
    let text = raw.trim_ascii();
    if text.first() != Some(&b'[') {
        return 1;
    }
    let (mut depth, mut in_string, mut escaped, mut expecting) = (0u32, false, false, false);
    let (mut items, mut texts) = (0u64, 0u64);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if expecting && !byte.is_ascii_whitespace() && byte != b']' {
            expecting = false;
            items = items.saturating_add(1);
            if matches!(byte, b'"' | b'[') {
                texts = texts.saturating_add(1);
            }
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                expecting = depth == 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    if texts == 0 {
        1
    } else {
        items
    }
}
