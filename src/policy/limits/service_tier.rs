//! Processing tiers billed above the standard price. OpenAI's `service_tier: "priority"` is
//! billed at about twice the standard rates, and a provider may add tiers at any time; a
//! dollar budget counts the model's configured price, so for a consumer with one, a request
//! may ask only for a tier known to bill at or below it. `auto` is allowed: it bills the
//! standard rate unless the provider's project is set to upgrade it (a documented limit).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::policy::classify::ApiFamily;
use crate::policy::reply::{Code, Reply};

/// The field's name, in every API that has it (OpenAI, Azure OpenAI, Anthropic).
const FIELD: &str = "service_tier";

/// Tiers billed at the standard price or below: OpenAI's `default`, `flex` (half price) and
/// `auto`, Anthropic's `standard_only`.
const STANDARD_TIERS: [&str; 4] = ["auto", "default", "flex", "standard_only"];

/// Refuses a request body whose top-level `service_tier` (any of them, where the key is
/// repeated or spelled with escapes) is not a standard tier or null; `consumer` is named in
/// the reply. A body that is not a JSON object passes: other steps refuse it.
pub fn premium_service_tier(body: &[u8], consumer: &str, shape: ApiFamily) -> Result<(), Reply> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match deserializer.deserialize_any(TierVisitor) {
        Ok(true) | Err(_) => Ok(()),
        Ok(false) => Err(Reply::new(
            Code::InvalidRequest,
            shape,
            format!(
                "\"{FIELD}\" asks for a processing tier billed above the standard price, or one \
                 the gateway does not know; consumer \"{consumer}\" has a dollar budget, which \
                 counts the standard price: send \"auto\", \"default\" or \"flex\", or leave \
                 \"{FIELD}\" out"
            ),
        )),
    }
}

/// Visits the top-level object: true when every `service_tier` in it is standard.
struct TierVisitor;

impl<'de> Visitor<'de> for TierVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut standard = true;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == FIELD {
                let value: Value = map.next_value()?;
                standard &= match &value {
                    Value::Null => true,
                    Value::String(tier) => STANDARD_TIERS.contains(&tier.as_str()),
                    _ => false,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(standard)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Ok(true)
    }
}

#[cfg(test)]
#[path = "service_tier_tests.rs"]
mod tests;
