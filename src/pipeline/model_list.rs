//! The model-list step: `GET /v1/models` and the like, answered by the gateway from the
//! consumer's approved models (`crate::policy::model_list`), never forwarded. Only a bodiless
//! request is a model list: `decision.rs` treats one with a body as what it would be without
//! this step, a passthrough or an unsupported endpoint.

use super::refusals::no_consumer;
use super::state::{Decision, Facts, Pending};
use crate::policy::model_list::{self, ModelListRequest};
use crate::policy::{Policy, Reply};

/// The consumer's list (or the one model asked for), as a local answer; a model outside the
/// list is refused (404). Without a consumer there is no list to show, in any mode: audit
/// mode forwards what it would refuse, and a list is never forwarded.
pub(super) fn decide_model_list(
    policy: &Policy,
    pending: &Pending,
    list: &ModelListRequest,
    facts: &mut Facts,
) -> Result<Decision, Reply> {
    facts.family = Some(list.family.as_str());
    facts.model.clone_from(&list.id);
    let Some(consumer) = &pending.consumer else {
        return Err(no_consumer(pending.shape));
    };
    model_list::answer(policy, consumer, list).map(Decision::AnswerLocally)
}

#[cfg(test)]
#[path = "model_list_tests.rs"]
mod tests;
