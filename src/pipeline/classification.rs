//! The classification step: what the headers alone say of a request — its endpoint (a model
//! list, or a passthrough), its consumer (the identity step), its media type and declared
//! size. It refuses what the headers condemn and otherwise keeps a `Pending` until the body
//! arrives.

use super::identity;
pub use super::identity::IdentityInputs;
use super::refusals::{no_consumer, too_large};
use super::state::{Facts, Pending, RequestKind};
use crate::policy::api_keys::without_credential_parameters;
use crate::policy::classify::{classify, is_canonical_path, is_under, split_query};
use crate::policy::config::Mode;
use crate::policy::limits::stream_usage;
use crate::policy::model_list;
use crate::policy::request::{self, check_json_body, Headers};
use crate::policy::shorten::shorten;
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// Decides what the headers alone can decide. `identity` holds what the host gave the identity
/// step besides the headers (the clock, metadata, the peer certificate).
pub fn classify_request(
    policy: &Policy,
    headers: &Headers,
    identity: &IdentityInputs,
) -> Result<Pending, Reply> {
    let shape = reply_shape(headers);
    let method = request::only(headers, ":method")
        .ok()
        .flatten()
        .unwrap_or_default();
    let Ok(Some(path)) = request::only(headers, ":path") else {
        return Err(Reply::new(
            Code::InvalidRequest,
            shape,
            "the request has no readable path",
        ));
    };
    if request::values(headers, "upgrade").next().is_some()
        || request::values(headers, ":protocol").next().is_some()
    {
        return Err(Reply::new(
            Code::UnsupportedEndpoint,
            shape,
            "protocol upgrades (WebSocket and the like) are not forwarded",
        ));
    }

    // A model list comes before any passthrough that would also match its path.
    let kind = if let Some(classified) = classify(method, path) {
        RequestKind::Endpoint(classified)
    } else if let Some(list) = model_list::recognise(method, path, headers) {
        RequestKind::ModelList(list)
    } else {
        RequestKind::Passthrough(passthrough_for(policy, method, path, shape)?)
    };
    let shape = match &kind {
        RequestKind::Endpoint(classified) => classified.endpoint.family(),
        RequestKind::ModelList(list) => list.family,
        RequestKind::Passthrough(_) => shape,
    };

    let consumer = identity::consumer_for(policy, headers, path, identity, shape)?;
    if consumer.is_none() && policy.mode == Mode::Enforce {
        return Err(no_consumer(shape));
    }

    if let RequestKind::Endpoint(_) = kind {
        if let Err(error) = check_json_body(headers) {
            return Err(Reply::new(
                Code::UnsupportedMediaType,
                shape,
                error.to_string(),
            ));
        }
        if request::content_length(headers)
            .is_some_and(|length| length > policy.max_body_bytes as u64)
        {
            return Err(too_large(policy, shape));
        }
    }
    let unread_headers = match &kind {
        RequestKind::Endpoint(classified) => stream_usage::unread_headers(classified, headers),
        RequestKind::Passthrough(_) | RequestKind::ModelList(_) => None,
    };
    // A credential in the query never reaches the provider; only a policy that reads keys
    // looks.
    let without_keys = policy
        .identity
        .api_keys()
        .and_then(|_| without_credential_parameters(path));
    Ok(Pending {
        kind,
        consumer: consumer.map(|consumer| consumer.name.clone()),
        path_rewritten: without_keys.is_some(),
        path: without_keys.unwrap_or_else(|| path.to_owned()),
        shape,
        unread_headers,
    })
}

/// What is known of a request before its body is read, for a refusal made then: the
/// consumer, the API family, and the model and its provider when the path names the model.
pub fn facts_before_body(policy: &Policy, pending: &Pending) -> Facts {
    let mut facts = Facts {
        consumer: pending.consumer.clone(),
        ..Facts::default()
    };
    let RequestKind::Endpoint(classified) = &pending.kind else {
        return facts;
    };
    facts.family = Some(classified.endpoint.family().as_str());
    let Some(path_model) = &classified.path_model else {
        return facts;
    };
    let name = path_model.name.as_str();
    facts.model = Some(name.to_owned());
    // A pooled model's provider is known only once an attempt is answered.
    if let Some(model) = policy.models.get(name).filter(|model| model.pool.is_none()) {
        if let Some(provider) = policy.providers.get(model.provider) {
            facts.provider = Some(provider.name.clone());
            facts.upstream_model = Some(model.upstream_model.as_deref().unwrap_or(name).to_owned());
        }
    }
    facts
}

/// The reply for a method and path that is no endpoint, no model list and no passthrough.
pub(super) fn unsupported_endpoint(method: &str, target: &str, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::UnsupportedEndpoint,
        shape,
        format!(
            "{} {} is not an endpoint this gateway serves",
            shorten(method),
            shorten(split_query(target).0)
        ),
    )
}

/// The passthrough entry that serves this method and path; else 404 `unsupported_endpoint`.
/// A path that may name a listing of models (or of deployments) is never forwarded, whatever
/// entry matches it: model lists are the gateway's to answer, and the provider's would list
/// every model it serves, under its own names.
pub(crate) fn passthrough_for(
    policy: &Policy,
    method: &str,
    target: &str,
    shape: ApiFamily,
) -> Result<usize, Reply> {
    let (path, _) = split_query(target);
    let index = is_canonical_path(path)
        .then(|| {
            policy
                .passthrough
                .iter()
                .position(|entry| entry.method == method && is_under(path, &entry.path_prefix))
        })
        .flatten()
        .ok_or_else(|| unsupported_endpoint(method, target, shape))?;
    if model_list::names_model_listing(path) {
        return Err(Reply::new(
            Code::UnsupportedEndpoint,
            shape,
            format!(
                "{} {} is not forwarded: a passthrough never forwards a path that names a model \
                 list, which would show the provider's own; model lists are answered by the \
                 gateway at {}",
                shorten(method),
                shorten(path),
                model_list::list_paths()
            ),
        ));
    }
    Ok(index)
}

/// The reply shape when the endpoint is not known: Anthropic's SDK always sends
/// `anthropic-version`; everyone else gets OpenAI's shape.
pub fn reply_shape(headers: &Headers) -> ApiFamily {
    if request::values(headers, "anthropic-version")
        .next()
        .is_some()
    {
        ApiFamily::Anthropic
    } else {
        ApiFamily::OpenAi
    }
}
