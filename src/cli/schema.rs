//! `posturio schema`: the JSON Schema of the policy, derived from the config types so that it
//! cannot drift from what the filter accepts.
//!
//! The schema checks shape only: keys, types, enum values. What needs the whole document (a
//! glob that matches no model, an unknown provider, a name given twice) is left to
//! `posturio check`, which runs the filter's own loader.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::{CliError, Output};
use crate::policy::config::{ApiList, Config};
use crate::policy::price::Usd;
use crate::policy::ApiFamily;

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "urn:posturio:policy";

/// Every API family, in the order the schema lists them.
const API_FAMILIES: [ApiFamily; 5] = [
    ApiFamily::OpenAi,
    ApiFamily::Anthropic,
    ApiFamily::Gemini,
    ApiFamily::AzureOpenAi,
    ApiFamily::Bedrock,
];

/// Fails to compile when a family is added, until it is added to `API_FAMILIES` too.
#[allow(dead_code)]
fn every_family_is_listed(family: ApiFamily) {
    match family {
        ApiFamily::OpenAi
        | ApiFamily::Anthropic
        | ApiFamily::Gemini
        | ApiFamily::AzureOpenAi
        | ApiFamily::Bedrock => {}
    }
}

/// `ApiList` has its own deserializer (one name, or a list of names), so its schema is written
/// out here to match it.
impl JsonSchema for ApiList {
    fn schema_name() -> Cow<'static, str> {
        "ApiList".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = API_FAMILIES.iter().map(|family| family.as_str()).collect();
        json_schema!({
            "oneOf": [
                { "type": "string", "enum": names },
                {
                    "type": "array",
                    "items": { "type": "string", "enum": names },
                    "minItems": 1,
                    "uniqueItems": true
                }
            ]
        })
    }
}

/// `Usd` has its own deserializer (a decimal string, never a number), so its schema is
/// written out here to match it.
impl JsonSchema for Usd {
    fn schema_name() -> Cow<'static, str> {
        "Usd".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]{1,9}(\\.[0-9]{1,6})?$",
            "description": "US dollars as a decimal string, such as \"2.50\"."
        })
    }
}

/// The policy's JSON Schema (draft 2020-12).
pub fn policy_schema() -> Value {
    let mut schema = schemars::schema_for!(Config);
    schema.insert("$id".to_owned(), Value::from(SCHEMA_ID));
    schema.insert("title".to_owned(), Value::from("Posturio policy"));
    schema.insert(
        "description".to_owned(),
        Value::from(
            "The configuration of the Posturio filter. This schema checks keys, types and \
             enum values; `posturio check` also resolves names and expands globs, as the \
             filter does on load.",
        ),
    );
    schema.to_value()
}

pub fn schema(args: &[String]) -> Result<Output, CliError> {
    if !args.is_empty() {
        return Err(CliError::Usage("schema takes no arguments".to_owned()));
    }
    let text = serde_json::to_string_pretty(&policy_schema())
        .map_err(|error| CliError::Read(format!("cannot print the schema: {error}")))?;
    Ok(Output {
        code: 0,
        stdout: text,
        stderr: String::new(),
    })
}
