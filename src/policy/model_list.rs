//! Each consumer's own model list, answered by the gateway and never forwarded:
//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape (Anthropic's when the request
//! carries `anthropic-version`), `GET /v1beta/models` and `GET /v1beta/models/{id}` in
//! Gemini's.
//!
//! A list holds exactly the catalogue names the consumer may use through the API it was asked
//! in: names in the consumer's approved set whose provider speaks that family, sorted. Never
//! the provider's own list, never an `upstream_model`. A model outside that list is not found,
//! with the same reply whether it exists elsewhere or not, so a list cannot be used to learn
//! another consumer's models.

use serde_json::{json, Value};

use super::classify::{decode_segment, split_query, ApiFamily};
use super::compiled::Policy;
use super::request::{self, Headers};
use super::shorten::shorten;
use super::{Code, Reply};

/// OpenAI's and Anthropic's list path; Anthropic's when `anthropic-version` is sent.
const OPENAI_LIST: &str = "/v1/models";
/// Gemini's list path.
const GEMINI_LIST: &str = "/v1beta/models";
/// What Gemini's SDK expects a generative model to support.
const GEMINI_METHODS: [&str; 3] = ["generateContent", "streamGenerateContent", "countTokens"];

/// A model-list request: the family whose shape it takes, and the one model it asks for, if
/// it asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelListRequest {
    pub family: ApiFamily,
    /// The model id of `GET .../models/{id}`, percent-decoded.
    pub id: Option<String>,
}

impl ModelListRequest {
    /// The list path of this request's family, for messages.
    fn list_path(&self) -> &'static str {
        match self.family {
            ApiFamily::Gemini => GEMINI_LIST,
            _ => OPENAI_LIST,
        }
    }
}

/// The model-list request this is, if it is one. Only `GET` (a `HEAD` or any other method is
/// not), and only the canonical paths; the query string is ignored (one page holds every
/// model). Whether the request has a body is for the caller to say: one with a body is not a
/// model list either.
pub fn recognise(method: &str, target: &str, headers: &Headers) -> Option<ModelListRequest> {
    if method != "GET" {
        return None;
    }
    let (path, _) = split_query(target);
    let (family, id) = if let Some(rest) = path.strip_prefix(OPENAI_LIST) {
        let family = if request::values(headers, "anthropic-version")
            .next()
            .is_some()
        {
            ApiFamily::Anthropic
        } else {
            ApiFamily::OpenAi
        };
        (family, model_id(rest, true)?)
    } else if let Some(rest) = path.strip_prefix(GEMINI_LIST) {
        // `models/{id}:generateContent` and the like are calls, never a model: a colon ends
        // the id in Gemini's paths.
        (ApiFamily::Gemini, model_id(rest, false)?)
    } else {
        return None;
    };
    Some(ModelListRequest { family, id })
}

/// What follows the list path: nothing (`Some(None)`), or `/{one segment}` holding the id.
/// Anything else (`/`, two segments, a bad escape) is no model-list path.
fn model_id(rest: &str, colon_allowed: bool) -> Option<Option<String>> {
    if rest.is_empty() {
        return Some(None);
    }
    let segment = rest.strip_prefix('/')?;
    if !colon_allowed && segment.contains(':') {
        return None;
    }
    decode_segment(segment).map(Some)
}

/// Whether a path has a segment that may name a listing of models or of what serves them, in
/// any ASCII case: one that holds `model` anywhere (`models`, `Models.json`, `models:list`,
/// `tunedModels`, `foundation-models`, LiteLLM's `model/info`), or that is `deployments`
/// (Azure's list of deployments and the models behind them), `engines` (OpenAI's legacy list)
/// or `tags` (Ollama's list), alone or followed by `;`, `.`, `:` or `,`. A passthrough never
/// forwards such a path: it would show the provider's own list, and the provider's names for
/// the catalogue's models, which the gateway's lists keep to themselves. The query is not part
/// of the path.
pub fn names_model_listing(target: &str) -> bool {
    const LISTINGS: [&[u8]; 3] = [b"deployments", b"engines", b"tags"];
    let (path, _) = split_query(target);
    path.split('/').any(|segment| {
        let segment = segment.as_bytes();
        let holds_model = segment
            .windows(b"model".len())
            .any(|window| window.eq_ignore_ascii_case(b"model"));
        let name = segment
            .split(|byte| matches!(byte, b';' | b'.' | b':' | b','))
            .next()
            .unwrap_or_default();
        holds_model
            || LISTINGS
                .iter()
                .any(|listing| name.eq_ignore_ascii_case(listing))
    })
}

/// The paths a client lists models at, for messages.
pub fn list_paths() -> String {
    format!("{OPENAI_LIST} and {GEMINI_LIST}")
}

/// The answer to a model-list request of `consumer`: the 200 body, or the 404 reply for a
/// model outside the consumer's list for that API.
pub fn answer(
    policy: &Policy,
    consumer: &str,
    request: &ModelListRequest,
) -> Result<Vec<u8>, Reply> {
    let listed = listed(policy, consumer, request.family);
    let body = match &request.id {
        None => list_json(request.family, &listed),
        Some(id) => match listed.iter().find(|(name, _)| name == id) {
            Some((name, provider)) => model_json(request.family, name, provider),
            None => return Err(not_listed(request, id)),
        },
    };
    Ok(body.to_string().into_bytes())
}

/// The catalogue names `consumer` may use through `family`, sorted, each with its provider's
/// name. An unknown consumer has none.
pub fn listed<'p>(
    policy: &'p Policy,
    consumer: &str,
    family: ApiFamily,
) -> Vec<(&'p str, &'p str)> {
    let Some(consumer) = policy.consumers.get(consumer) else {
        return Vec::new();
    };
    let mut listed: Vec<_> = consumer
        .approved
        .iter()
        .filter_map(|name| {
            let model = policy.models.get(name)?;
            // A pooled model is listed for the families every target accepts, under its
            // first target's provider.
            let provider = policy.providers.get(model.provider)?;
            policy
                .model_families(model)
                .contains(&family)
                .then_some((name.as_str(), provider.name.as_str()))
        })
        .collect();
    listed.sort_unstable();
    listed
}

fn list_json(family: ApiFamily, listed: &[(&str, &str)]) -> Value {
    let models: Vec<Value> = listed
        .iter()
        .map(|(name, provider)| model_json(family, name, provider))
        .collect();
    match family {
        ApiFamily::Anthropic => json!({
            "data": models,
            "has_more": false,
            "first_id": listed.first().map(|(name, _)| name),
            "last_id": listed.last().map(|(name, _)| name),
        }),
        ApiFamily::Gemini => json!({ "models": models }),
        _ => json!({ "object": "list", "data": models }),
    }
}

fn model_json(family: ApiFamily, name: &str, provider: &str) -> Value {
    match family {
        ApiFamily::Anthropic => json!({
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": "1970-01-01T00:00:00Z",
        }),
        ApiFamily::Gemini => json!({
            "name": format!("models/{name}"),
            "displayName": name,
            "supportedGenerationMethods": GEMINI_METHODS,
        }),
        _ => json!({
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": provider,
        }),
    }
}

/// The one reply for a model outside the consumer's list, whether it exists elsewhere or not.
fn not_listed(request: &ModelListRequest, id: &str) -> Reply {
    Reply::new(
        Code::ModelNotInList,
        request.family,
        format!(
            "the model \"{}\" does not exist or is not available to you through this API; \
             GET {} lists the models you may use",
            shorten(id),
            request.list_path()
        ),
    )
}

#[cfg(test)]
#[path = "model_list_tests.rs"]
mod tests;
