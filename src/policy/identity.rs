//! Which consumer a request is evaluated as, from the name its identity gives.
//!
//! Names match consumers exactly, byte for byte. A value that is there but cannot be a name
//! is refused, never read as no identity: Envoy hands a JWT claim that is a list, an object, a
//! number or a boolean to the module in a binary form (proxy-wasm's serialisation), and a
//! fallback to `default` would give the team behind that token `default`'s rights instead of
//! its own caps and budget. A name that differs from a consumer's only in case or surrounding
//! white space is refused too: it is a misspelt team, not a stranger.

use std::collections::HashMap;

use super::compile::Consumer;

/// What the filter passes for a value that is there but that Envoy cannot hand to the module
/// (it fails to serialise a null claim): a value that is no name.
pub const NOT_A_NAME: &[u8] = b"\0";

/// The longest consumer name a configuration may hold.
const MAX_NAME_BYTES: usize = 256;

/// Why a present identity names no consumer and is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not text: bytes that are not UTF-8, or that hold control characters (a claim of another
    /// type than string, as Envoy serialises it).
    NotAName,
    /// Longer than any consumer name can be.
    TooLong,
    /// White space before or after the name.
    Spaces { consumer: Option<String> },
    /// The name of a consumer in another case.
    OtherCase { consumer: String },
}

impl Unusable {
    /// Why, in words for the reply. Never repeats the value: it may be anything.
    pub fn reason(&self) -> String {
        match self {
            Unusable::NotAName => "is not a name: it is not text (a claim must be a JSON string, \
                                   not a list, an object, a number or a boolean)"
                .to_owned(),
            Unusable::TooLong => format!("is longer than {MAX_NAME_BYTES} bytes"),
            Unusable::Spaces {
                consumer: Some(consumer),
            } => format!(
                "has white space around consumer \"{consumer}\"'s name; names match exactly"
            ),
            Unusable::Spaces { consumer: None } => {
                "has white space around it; names match exactly".to_owned()
            }
            Unusable::OtherCase { consumer } => {
                format!("differs from consumer \"{consumer}\" only in case; names match exactly")
            }
        }
    }
}

/// The consumer a present identity `value` names: `Ok(None)` for a well-formed name with no
/// entry (the request is then evaluated as `default`), `Err` for a value that is refused. An
/// empty value is no identity, and is not passed here.
pub(crate) fn resolve<'p>(
    consumers: &'p HashMap<String, Consumer>,
    value: &[u8],
) -> Result<Option<&'p Consumer>, Unusable> {
    let name = std::str::from_utf8(value).map_err(|_| Unusable::NotAName)?;
    if name.chars().any(char::is_control) {
        return Err(Unusable::NotAName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Unusable::TooLong);
    }
    let trimmed = name.trim();
    if trimmed.len() != name.len() {
        let consumer = consumers
            .keys()
            .find(|consumer| consumer.trim() == trimmed || same_but_case(consumer, trimmed));
        return Err(Unusable::Spaces {
            consumer: consumer.cloned(),
        });
    }
    if let Some(consumer) = consumers.get(name) {
        return Ok(Some(consumer));
    }
    match consumers
        .keys()
        .find(|consumer| same_but_case(consumer, name))
    {
        Some(consumer) => Err(Unusable::OtherCase {
            consumer: consumer.clone(),
        }),
        None => Ok(None),
    }
}

/// Equal but for case, in any script.
fn same_but_case(one: &str, other: &str) -> bool {
    one == other || one.to_lowercase() == other.to_lowercase()
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
