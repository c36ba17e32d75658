//! The plugin configuration as written by a security team: serde types only.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently disabled
//! control. Validation and name resolution happen in `compile`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::classify::ApiFamily;

pub const DEFAULT_ROUTE_HEADER: &str = "x-posturio-cluster";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_route_header")]
    pub route_header: String,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    #[serde(deserialize_with = "unique_map")]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(deserialize_with = "unique_map")]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default, deserialize_with = "unique_map")]
    pub consumers: BTreeMap<String, ConsumerConfig>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub passthrough: Vec<PassthroughConfig>,
}

fn default_route_header() -> String {
    DEFAULT_ROUTE_HEADER.to_owned()
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

/// `enforce` refuses what the policy denies; `audit` records the denial and forwards anyway.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The request header that names the consumer.
    pub header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The Envoy cluster that serves this provider; the route header is set to it.
    pub cluster: String,
    /// The API families this provider's endpoint speaks: one name or a list.
    pub api: ApiList,
    /// Replaces the `/v1` at the start of the request path, for OpenAI-compatible endpoints
    /// that live elsewhere (for example `/v1beta/openai`).
    #[serde(default)]
    pub base_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: String,
    /// The name the provider knows the model by, written into the forwarded body.
    #[serde(default)]
    pub upstream_model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Catalogue names or `*` globs over them.
    pub models: Vec<String>,
    /// Rule ids that apply to this consumer; absent means every rule.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// A prompt inspection rule. The keys are parsed so that mistakes are reported where they are,
/// but this version does not inspect prompts, so `compile` refuses any rule (fail closed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: String,
    #[serde(default)]
    pub detect: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    pub action: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// A bodiless call forwarded without inspection, such as `GET /v1/models`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    pub method: String,
    pub path_prefix: String,
    pub provider: String,
}

/// `"openai"` or `["openai", "anthropic"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiList(pub Vec<ApiFamily>);

impl<'de> Deserialize<'de> for ApiList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ApiListVisitor;

        impl<'de> Visitor<'de> for ApiListVisitor {
            type Value = ApiList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an API family name or a list of them")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<ApiList, E> {
                ApiFamily::deserialize(de::value::StrDeserializer::<E>::new(name))
                    .map(|family| ApiList(vec![family]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ApiList, A::Error> {
                let mut families = Vec::new();
                // Read names as strings first, so a wrong type says "expected a string".
                while let Some(name) = seq.next_element::<String>()? {
                    families.push(ApiFamily::deserialize(de::value::StrDeserializer::<
                        A::Error,
                    >::new(&name))?);
                }
                Ok(ApiList(families))
            }
        }

        deserializer.deserialize_any(ApiListVisitor)
    }
}

/// A name-keyed map that refuses a name given twice: serde_json would keep the last copy, and
/// a security team's edit could silently replace an entry.
fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueMapVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMapVisitor<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object keyed by name")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                if entries.contains_key(&name) {
                    return Err(de::Error::custom(format!("\"{name}\" is defined twice")));
                }
                let value = map.next_value()?;
                entries.insert(name, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(UniqueMapVisitor(std::marker::PhantomData))
}
