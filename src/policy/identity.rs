//! Which consumer a request is evaluated as, from the name its identity gives.
//!
//! Names match consumers exactly, byte for byte. A value that is there but cannot be a name
//! is refused, never read as no identity: Envoy hands a JWT claim that is a list, an object, a
//! number or a boolean to the module in a binary form (proxy-wasm's serialisation), and a
//! fallback to `default` would give the team behind that token `default`'s rights instead of
//! its own caps and budget. A name that differs from a consumer's only in case or surrounding
//! white space is refused too: it is a misspelt team, not a stranger. So is a value with a
//! character no consumer name may hold (`name_char`): an invisible, combining or compatibility
//! character, or Latin letters mixed with look-alike letters of another script, makes a value
//! that renders as a consumer's name without being it.

use std::collections::HashMap;

use super::compiled::Consumer;

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
    /// A character no consumer name may hold (see `name_char`), or Latin letters mixed with
    /// letters of a script that looks like Latin.
    Characters,
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
            Unusable::Characters => "holds a character no consumer name may hold: an invisible, \
                                     combining or compatibility character (such as a full-width \
                                     letter), or Latin letters mixed with look-alike Greek, \
                                     Cyrillic, Armenian or Cherokee ones; names match exactly"
                .to_owned(),
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
    if !well_formed(name) {
        return Err(Unusable::Characters);
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

/// Whether a character may be part of a consumer name: printable ASCII but ',', or a letter or
/// digit of any script that is not a compatibility form of another character. So no control,
/// format (zero-width, soft hyphen, bidi), combining-only or non-ASCII space character, and no
/// full-width, circled, mathematical, ligature, superscript or presentation form: each renders
/// like a name it is not. Configuration names and identity values are held to the same set.
pub(crate) fn name_char(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c) && c != ',';
    }
    c.is_alphanumeric() && !compatibility_form(c)
}

/// Letters and digits whose compatibility decomposition is another character (NFKC would
/// fold them), by block.
fn compatibility_form(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AA | 0x00B2 | 0x00B3 | 0x00B5 | 0x00B9 | 0x00BA | 0x00BC..=0x00BE
            | 0x0132 | 0x0133 | 0x013F | 0x0140 | 0x0149 | 0x017F
            | 0x01C4..=0x01CC | 0x01F1..=0x01F3
            | 0x02B0..=0x02FF // modifier letters
            | 0x1D2C..=0x1DBF // phonetic modifiers
            | 0x2070..=0x209F // superscripts and subscripts
            | 0x2100..=0x218F // letterlike symbols, number forms
            | 0x2460..=0x24FF // enclosed alphanumerics
            | 0x3130..=0x318F // Hangul compatibility jamo
            | 0x3200..=0x33FF // enclosed CJK, CJK compatibility
            | 0xFB00..=0xFDFF // presentation forms
            | 0xFE70..=0xFEFF // Arabic presentation forms
            | 0xFF00..=0xFFEF // half-width and full-width forms
            | 0x1D400..=0x1D7FF // mathematical alphanumerics
            | 0x1F100..=0x1F1FF // enclosed alphanumeric supplement
            | 0x1FBF0..=0x1FBF9 // segmented digits
    )
}

/// Letters of scripts with look-alikes of Latin letters: Greek, Cyrillic, Armenian, Cherokee.
fn latin_look_alike(c: char) -> bool {
    matches!(u32::from(c), 0x0370..=0x058F | 0x13A0..=0x13FF | 0x1C80..=0x1C8F | 0xA640..=0xA69F)
}

/// Whether every character may be in a name, and Latin letters are not mixed with look-alike
/// ones (`сapped` with a Cyrillic `с`).
pub(crate) fn well_formed(name: &str) -> bool {
    name.chars().all(name_char)
        && !(name.chars().any(|c| c.is_ascii_alphabetic()) && name.chars().any(latin_look_alike))
}

/// Equal but for case, in any script.
fn same_but_case(one: &str, other: &str) -> bool {
    one == other || one.to_lowercase() == other.to_lowercase()
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
