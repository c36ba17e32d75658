//! The output a request asks for, as a budget's reservation reads it: the largest value of the
//! API's output-token fields (the ones the cap reads) and the outputs it asks for (choices
//! times prompts). Read from the values the walk located; nothing is parsed again.
//!
//! A reservation must never hold less than the provider may produce, so a value the provider
//! could read as more than the filter does is refused (400) rather than guessed at: text, a
//! fraction, an exponent, a count beyond 64 bits, a negative count (servers exist that read it
//! as "no limit"), and `null` where the API has no "no limit" (Anthropic's `max_tokens`). A
//! `null` the API allows, or `0` (proto3's "not set", elsewhere the API's default or an error),
//! is read as not given: the budget reserves its `default_output_tokens` for each output.

use super::choices::{choices, token_value, TokenValue, CHOICE_FIELDS};
use super::output_cap::{target, OutputFields};
use super::{both_spellings, raw};
use crate::policy::body::Located;
use crate::policy::classify::{ApiFamily, Classified, Endpoint};
use crate::policy::reply::{Code, Reply};

/// What a request asks to be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskedOutput {
    /// The largest output-token value the request gives, for each output; `None` when it gives
    /// none (or only values read as not given).
    pub per_output: Option<u64>,
    /// How many outputs the provider generates: choices times prompts, at least 1.
    pub outputs: u64,
}

impl AskedOutput {
    /// Nothing read: a body without output-token fields, an API whose body is the model's own
    /// format (Bedrock `invoke`), or a recorded request (replay).
    pub const NOT_READ: AskedOutput = AskedOutput {
        per_output: None,
        outputs: 1,
    };

    /// Every output token the request may have generated, when it says.
    pub fn total(self) -> Option<u64> {
        self.per_output
            .map(|per_output| per_output.saturating_mul(self.outputs))
    }
}

/// Reads the output a walked request asks for, for the reservation of `consumer`'s budget.
/// `Err` is a 400 naming the field the reservation cannot read.
pub fn asked_output(
    classified: &Classified,
    body: &[u8],
    located: &Located,
    consumer: &str,
    shape: ApiFamily,
) -> Result<AskedOutput, Reply> {
    let OutputFields::Fields(target) = target(classified) else {
        return Ok(AskedOutput::NOT_READ);
    };
    let refuse = |name: &str, why: &str, expected: &str| {
        Reply::new(
            Code::InvalidRequest,
            shape,
            format!(
                "\"{name}\" {why}; it must be {expected}: consumer \"{consumer}\" has a budget, \
                 which reserves the output a request asks for before forwarding it"
            ),
        )
    };
    for (what, field) in CHOICE_FIELDS {
        if located
            .get(what)
            .is_some_and(|found| negative(raw(body, &found)))
        {
            return Err(refuse(
                field,
                "is negative",
                "a whole number of choices or null",
            ));
        }
    }
    let outputs = choices(body, located, shape)?.count.max(1);

    // The object that holds the fields, where the API has one: one spelling of its key, an
    // object (or null, which gives no fields).
    let mut prefix = "";
    let mut containers = target
        .container
        .iter()
        .filter_map(|key| Some((key, located.get(key.what)?)));
    let first = containers.next();
    if let (Some((one, _)), Some((other, _))) = (first, containers.next()) {
        return Err(Reply::new(
            Code::InvalidRequest,
            shape,
            both_spellings(one.name, other.name),
        ));
    }
    if let Some((key, found)) = first {
        if found.object.is_none() && raw(body, &found) != b"null" {
            return Err(refuse(key.name, "is not an object", "an object"));
        }
        prefix = key.name;
    }

    let null_allowed = classified.endpoint != Endpoint::Messages;
    let expected = if null_allowed {
        "a whole number of tokens (a JSON integer, 0 or more, that fits 64 bits) or null"
    } else {
        "a whole number of tokens (a JSON integer, 1 or more, that fits 64 bits)"
    };
    let mut per_output: Option<u64> = None;
    for field in target.fields {
        let Some(found) = located.get(field.what) else {
            continue;
        };
        let name = match prefix {
            "" => field.name.to_owned(),
            prefix => format!("{prefix}.{}", field.name),
        };
        let text = raw(body, &found);
        match token_value(text) {
            TokenValue::Count(asked) => {
                per_output = Some(per_output.map_or(asked, |most| most.max(asked)));
            }
            TokenValue::Null if null_allowed => {}
            TokenValue::Null => return Err(refuse(&name, "is null", expected)),
            TokenValue::Unset if negative(text) => {
                return Err(refuse(&name, "is negative", expected))
            }
            TokenValue::Unset => {}
            TokenValue::Invalid => {
                return Err(refuse(&name, "is not a whole number of tokens", expected))
            }
        }
    }
    Ok(AskedOutput {
        per_output,
        outputs,
    })
}

/// A negative JSON integer other than `-0`.
fn negative(text: &[u8]) -> bool {
    text.strip_prefix(b"-").is_some_and(|digits| {
        !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && digits.iter().any(|digit| *digit != b'0')
    })
}

#[cfg(test)]
#[path = "asked_output_tests.rs"]
mod tests;
