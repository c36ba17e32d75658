//! Output limits under names the filter does not read. OpenAI-compatible servers read output
//! limits under their own names (llama.cpp `n_predict`, which wins over `max_tokens`; vLLM and
//! TGI `max_new_tokens`, `min_tokens`, `ignore_eos`; Ollama `num_predict`; ...), and model
//! adapters parse numbers leniently. A list of such names could never be complete, so for a
//! capped consumer the list is of what passes: the API's own parameters and a few sampling
//! settings known to leave the length alone. Every other top-level number is refused. The same
//! holds at every depth of Bedrock Converse `additionalModelRequestFields`, which Bedrock
//! hands to the model as they are (`additional_limit`).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::policy::classify::Endpoint;

/// Whether text is read as a number by a lenient parser: Rust's and JSON's syntax, and what
/// Python's `int`/`float` (digit groups with `_`, any Unicode decimal digit, surrounding
/// whitespace, a sign), `int(x, 0)` and Java's `Integer.decode` (`0x`, `0o`, `0b` prefixes)
/// accept. Text that merely contains digits (`"interleaved-thinking-2025-05-14"`) is not.
pub fn reads_as_number(text: &str) -> bool {
    let text = text.trim();
    if text.parse::<f64>().is_ok() {
        return true;
    }
    let unsigned = text
        .strip_prefix(['+', '-', '\u{2212}', '\u{ff0b}', '\u{ff0d}'])
        .unwrap_or(text)
        .trim_start();
    let lower = unsigned.to_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            let digits = digits.trim_start_matches('_');
            return !digits.is_empty()
                && digits
                    .chars()
                    .all(|c| c == '_' || c.is_digit(radix) || fullwidth_digit(c, radix));
        }
    }
    let (mantissa, exponent) = match lower.split_once(['e', '\u{ff45}']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (lower.as_str(), None),
    };
    let digits = |part: &str| part.chars().any(char::is_numeric);
    let mantissa_ok = digits(mantissa)
        && mantissa.chars().filter(|c| *c == '.').count() <= 1
        && mantissa
            .chars()
            .all(|c| c.is_numeric() || c == '_' || c == '.');
    let exponent_ok = exponent.is_none_or(|exponent| {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        digits(exponent) && exponent.chars().all(|c| c.is_numeric() || c == '_')
    });
    mantissa_ok && exponent_ok
}

/// Full-width Latin letters and digits, which NFKC-normalising parsers read as ASCII.
fn fullwidth_digit(c: char, radix: u32) -> bool {
    let Some(offset) = u32::from(c).checked_sub(0xfee0) else {
        return false;
    };
    char::from_u32(offset).is_some_and(|ascii| ascii.is_ascii() && ascii.is_digit(radix))
}

/// A top-level value, as far as the check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A number, or text that reads as one.
    Number,
    True,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = Shape;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Shape, E> {
                Ok(if value { Shape::True } else { Shape::Other })
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Number)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Number)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Number)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Shape, E> {
                Ok(if reads_as_number(value) {
                    Shape::Number
                } else {
                    Shape::Other
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
        }
        deserializer.deserialize_any(ShapeVisitor)
    }
}

/// The top-level members of a body: keys and the shapes of their values, without building
/// the values.
struct Members(Vec<(String, Shape)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Shape>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The request parameters OpenAI documents for chat completions (Azure's `data_sources` and
/// `user_security_context` too).
const CHAT: &[&str] = &[
    "model",
    "messages",
    "audio",
    "best_of",
    "data_sources",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "user_security_context",
    "verbosity",
    "web_search_options",
];

/// The request parameters OpenAI documents for (legacy) completions.
const COMPLETIONS: &[&str] = &[
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// The request parameters OpenAI documents for Responses.
const RESPONSES: &[&str] = &[
    "model",
    "input",
    "background",
    "context_management",
    "conversation",
    "include",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// Sampling settings OpenAI-compatible servers (vLLM, llama.cpp, TGI, Ollama) read that leave
/// the length and number of outputs alone.
const SAMPLING: &[&str] = &[
    "top_k",
    "min_p",
    "top_a",
    "typical_p",
    "tfs_z",
    "repetition_penalty",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "random_seed",
];

/// Non-numeric settings that lengthen output whatever their value (`ignore_eos: true`
/// generates up to the limit every time) or name a limit: refused unless the API defines them.
fn names_a_limit(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "ignore_eos"
        || key.contains("predict")
        || (key.contains("max") && (key.contains("token") || key.contains("len")))
        || (key.contains("min") && key.contains("token"))
}

/// The parameters an endpoint's API defines; `None` when the endpoint is not checked here.
fn defined(endpoint: Endpoint) -> Option<&'static [&'static str]> {
    use Endpoint::*;
    match endpoint {
        ChatCompletions | AzureChatCompletions => Some(CHAT),
        Completions | AzureCompletions => Some(COMPLETIONS),
        Responses => Some(RESPONSES),
        _ => None,
    }
}

/// The first top-level key of an OpenAI-family body that the API does not define and that may
/// lengthen output on an OpenAI-compatible server: a number (or text that reads as one) that
/// is not a known sampling setting, or a key that names a limit (`max_new_tokens`,
/// `ignore_eos`) with any value but `null` or `false`. `Ok(None)` for other endpoints; `Err`
/// when the body cannot be read as an object (it was validated by the walk, so never in
/// practice).
pub(crate) fn undefined_limit(endpoint: Endpoint, body: &[u8]) -> Result<Option<String>, ()> {
    let Some(defined) = defined(endpoint) else {
        return Ok(None);
    };
    let Members(members) = serde_json::from_slice(body).map_err(|_| ())?;
    Ok(members.into_iter().find_map(|(key, shape)| {
        if defined.contains(&key.as_str()) {
            return None;
        }
        let refused = match shape {
            Shape::Number => !SAMPLING.contains(&key.as_str()) || names_a_limit(&key),
            Shape::True => names_a_limit(&key),
            Shape::Other => false,
        };
        refused.then_some(key)
    }))
}

/// Whether a model-specific request field limits generated tokens, or multiplies them, whatever
/// the model family spells it: `max_tokens`, `max_tokens_to_sample`, `maxTokenCount`,
/// `max_gen_len`, `max_new_tokens`, `n`, `num_generations`, `candidateCount`, ... Matched
/// loosely on purpose: a false match only asks the client to use `inferenceConfig.maxTokens`
/// instead, or to leave the field out.
fn limits_output_tokens(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let choices = matches!(
        key.as_str(),
        "n" | "best_of"
            | "num_generations"
            | "numgenerations"
            | "candidate_count"
            | "candidatecount"
            | "num_return_sequences"
            | "numresults"
            | "num_results"
    );
    choices || (key.contains("max") && (key.contains("token") || key.contains("gen_len")))
}

/// Model-specific numeric settings known to leave the length and number of outputs alone:
/// sampling, penalties and seeds, in the spellings model families use. Every other number in
/// `additionalModelRequestFields` may bound output (`max_length`, `num_predict`, `length`, ...)
/// and is refused for a capped consumer: a list of what limits output could never be complete.
/// Anthropic's `thinking.budget_tokens` is here because Anthropic refuses one that is not
/// below `max_tokens`, which the cap sets.
const NEUTRAL_NUMBERS: &[&str] = &[
    "temperature",
    "top_p",
    "topp",
    "top_k",
    "topk",
    "min_p",
    "minp",
    "seed",
    "random_seed",
    "randomseed",
    "presence_penalty",
    "presencepenalty",
    "frequency_penalty",
    "frequencypenalty",
    "repetition_penalty",
    "repetitionpenalty",
    "repeat_penalty",
    "budget_tokens",
];

/// Whether a key's numeric value is known not to change how much is generated.
fn neutral_number(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    NEUTRAL_NUMBERS.contains(&key.as_str())
}

/// Whether a value is a number, or text a lenient parser reads as one (`"5000"`, `"5_000"`,
/// `"0x1388"`, full-width or other Unicode digits).
fn numeric(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(_) => true,
        serde_json::Value::String(text) => reads_as_number(text),
        _ => false,
    }
}

/// The first key, at any depth of `additionalModelRequestFields`, that limits or multiplies
/// output tokens, or that holds a number not known to leave output alone. Bedrock hands the
/// object to the model as it is, and models nest their own settings (Amazon Nova reads
/// `inferenceConfig.max_new_tokens` there), so every level is read; a number in a list belongs
/// to the list's key. `Err` when the value cannot be read (it was validated by the walk, so
/// never in practice).
pub(super) fn additional_limit(raw: &[u8]) -> Result<Option<String>, ()> {
    fn find(key: Option<&str>, value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::Object(object) => object.iter().find_map(|(key, value)| {
                if limits_output_tokens(key) {
                    Some(key.clone())
                } else {
                    find(Some(key), value)
                }
            }),
            serde_json::Value::Array(items) => items.iter().find_map(|item| find(key, item)),
            value if numeric(value) => match key {
                Some(key) if neutral_number(key) => None,
                Some(key) => Some(key.to_owned()),
                None => Some(String::new()),
            },
            _ => None,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|_| ())?;
    Ok(find(None, &value))
}

#[cfg(test)]
mod tests {
    use super::reads_as_number;

    macro_rules! numbers {
        ($($name:ident: $text:expr => $number:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(reads_as_number($text), $number, "{:?}", $text);
            }
        )*};
    }

    numbers! {
        number_plain: "5000" => true;
        number_float: "1.5e3" => true;
        number_inf: "inf" => true;
        number_spaces: " 5000 " => true;
        number_plus: "+5000" => true;
        number_minus: "-1" => true;
        number_underscores: "5_000" => true;
        number_arabic_indic: "\u{665}\u{660}\u{660}\u{660}" => true;
        number_devanagari: "\u{96b}\u{966}" => true;
        number_full_width: "\u{ff15}\u{ff10}\u{ff10}\u{ff10}" => true;
        number_hex: "0x1388" => true;
        number_hex_upper: "0X13_88" => true;
        number_hex_full_width: "0x\u{ff11}\u{ff13}" => true;
        number_octal: "0o11610" => true;
        number_binary: "0b1010" => true;
        number_exponent_underscores: "5_0e1_0" => true;
        number_unicode_space: "\u{3000}5000\u{a0}" => true;
        number_minus_sign: "\u{2212}5" => true;
        text_date: "2025-05-14" => false;
        text_beta: "interleaved-thinking-2025-05-14" => false;
        text_version: "v2" => false;
        text_empty: "" => false;
        text_sign_alone: "-" => false;
        text_hex_prefix_alone: "0x" => false;
        text_hex_bad_digit: "0x12g" => false;
        text_two_points: "1.2.3" => false;
        text_underscore_alone: "_" => false;
        text_exponent_alone: "1e" => false;
        text_words: "five thousand" => false;
        text_digits_and_words: "5000 tokens" => false;
    }
}
