//! The approval step: the request's model (from the path or the body, and the same in both)
//! found in the catalogue, its provider able to serve the request's API, and the model
//! approved for the consumer; in audit mode a refusal of the consumer is recorded instead.

use super::refusals::{audit_or_refuse, body_reply, no_consumer};
use super::state::Facts;
use crate::policy::body::{BodyError, Walked};
use crate::policy::classify::{Classified, Endpoint};
use crate::policy::compiled::{Consumer, Policy, Pool, Provider};
use crate::policy::shorten::shorten;
use crate::policy::{ApiFamily, Code, Reply};

/// An approved model: the name the client sent, the provider's name for it, and the provider.
/// For a model served through a pool cluster, `upstream` and `provider` are its first
/// target's, and `pool` holds them all.
pub(super) struct Approved<'a> {
    pub name: &'a str,
    pub upstream: &'a str,
    pub provider: &'a Provider,
    pub pool: Option<&'a Pool>,
}

/// The approved model, and the refusal audit mode turned into a record, if any.
pub(super) fn approve<'a>(
    policy: &'a Policy,
    classified: &'a Classified,
    walked: &'a Walked,
    consumer: Option<&Consumer>,
    shape: ApiFamily,
    facts: &mut Facts,
) -> Result<(Approved<'a>, Option<Reply>), Reply> {
    let endpoint = classified.endpoint;
    // The model: from the path for the families that put it there, else from the body.
    let name = match (&classified.path_model, &walked.model) {
        (Some(path_model), _) => path_model.name.as_str(),
        (None, Some(body_model)) => body_model.name.as_str(),
        (None, None) => return Err(body_reply(BodyError::ModelMissing, shape)),
    };
    // Where the path names the model, a `model` in the body must name the same one: the
    // provider may read either, and the filter must never judge one and forward the other.
    if let Some(path_model) = &classified.path_model {
        if walked
            .model
            .iter()
            .chain(&walked.inner_models)
            .any(|body| !same_model(endpoint, &body.name, &path_model.name))
        {
            return Err(Reply::new(
                Code::InvalidModel,
                shape,
                "the body's \"model\" names another model than the path; send the same \
                 model in both, or leave it out of the body",
            ));
        }
    }
    facts.model = Some(name.to_owned());
    let Some(model) = policy.models.get(name) else {
        return Err(Reply::new(
            Code::ModelNotFound,
            shape,
            format!(
                "model \"{}\" is not in this gateway's catalogue of approved models",
                shorten(name)
            ),
        ));
    };
    let Some(provider) = policy.providers.get(model.provider) else {
        return Err(Reply::new(
            Code::InternalError,
            shape,
            "the policy is inconsistent",
        ));
    };
    let upstream = model.upstream_model.as_deref().unwrap_or(name);
    // A pool's provider and upstream name are known only once an attempt is answered.
    if model.pool.is_none() {
        facts.provider = Some(provider.name.clone());
        facts.upstream_model = Some(upstream.to_owned());
    }
    // Approval comes before the API check, so that a model the consumer may not use is
    // refused alike whichever API it is asked through, and its provider is never named.
    let audited = match consumer {
        None => audit_or_refuse(policy.mode, no_consumer(shape))?,
        Some(consumer) if !consumer.approved.contains(name) => {
            audit_or_refuse(consumer.mode, not_approved(name, consumer, shape))?
        }
        Some(_) => None,
    };
    if !policy.model_families(model).contains(&endpoint.family()) {
        let served_by = match &model.pool {
            Some(_) => "by providers that do not all accept".to_owned(),
            None => format!("by provider \"{}\", which does not accept", provider.name),
        };
        return Err(Reply::new(
            Code::ProviderApiMismatch,
            shape,
            format!(
                "model \"{}\" is served {served_by} the {} API",
                shorten(name),
                endpoint.family().as_str(),
            ),
        ));
    }
    let approved = Approved {
        name,
        upstream,
        provider,
        pool: model.pool.as_ref(),
    };
    Ok((approved, audited))
}

/// Whether a body's `model` names the path's model: the same name, or for Gemini the same
/// resource name (`models/gemini-2.5-flash`).
fn same_model(endpoint: Endpoint, body: &str, path: &str) -> bool {
    body == path
        || (endpoint == Endpoint::GeminiGenerate && body.strip_prefix("models/") == Some(path))
}

fn not_approved(model: &str, consumer: &Consumer, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::ModelNotApproved,
        shape,
        format!(
            "model \"{}\" is not approved for consumer \"{}\"",
            shorten(model),
            consumer.name
        ),
    )
}
