//! Refusals several steps give, and the one rule of audit mode: a policy denial is recorded
//! and the request goes on.

use crate::policy::body::{BodyError, JsonError, Violation};
use crate::policy::config::Mode;
use crate::policy::inspect::TextTooLarge;
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// In audit mode a policy denial is recorded and the request goes on; in enforce mode it is
/// the reply.
pub(crate) fn audit_or_refuse(mode: Mode, reply: Reply) -> Result<Option<Reply>, Reply> {
    match mode {
        Mode::Audit => Ok(Some(reply)),
        Mode::Enforce => Err(reply),
    }
}

/// The reply for a body over `max_body_bytes`.
pub fn too_large(policy: &Policy, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::BodyTooLarge,
        shape,
        format!(
            "the request body is larger than the gateway's limit of {} bytes",
            policy.max_body_bytes
        ),
    )
}

/// The reply for a body that fits `max_body_bytes` but would not once rewritten (redaction
/// markers longer than what they replace, a longer model name): the limit bounds what a
/// provider is sent, and what Envoy buffers for a retry, not only what the client sent.
pub fn rewritten_too_large(policy: &Policy, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::BodyTooLarge,
        shape,
        format!(
            "the request body, once rewritten for the provider (redactions, the model's \
             name), would be larger than the gateway's limit of {} bytes; send a smaller body",
            policy.max_body_bytes
        ),
    )
}

/// The reply for a body whose text, read as the model reads it (invisible characters
/// removed, compatibility forms folded, escapes decoded, text parts joined), would take more
/// than the inspection's budget: refused, since what was not scanned cannot be forwarded.
/// Always refused, in audit mode too: it is a bound of the gateway, not a policy denial.
pub(crate) fn text_too_large(too_large: TextTooLarge, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::BodyTooLarge,
        shape,
        format!(
            "the request's text expands past what the gateway inspects when normalised \
             (invisible characters removed, compatibility characters such as ligatures \
             expanded, escapes decoded, text parts joined): more than {} bytes; send less \
             text, or text with fewer escapes and compatibility characters",
            too_large.budget
        ),
    )
}

/// The request names no consumer the policy knows.
pub(crate) fn no_consumer(shape: ApiFamily) -> Reply {
    Reply::new(
        Code::ConsumerNotAllowed,
        shape,
        "the request names no known consumer and the policy has no \"default\" consumer",
    )
}

/// A body that cannot be read as the endpoint's request.
pub(crate) fn body_reply(error: BodyError, shape: ApiFamily) -> Reply {
    let code = match &error {
        BodyError::Json(JsonError::Violation(
            Violation::DuplicateKey(_) | Violation::CaseVariant { .. },
        )) => Code::DuplicateKey,
        BodyError::Empty | BodyError::Json(_) | BodyError::NotAnObject => Code::InvalidJson,
        BodyError::ModelMissing | BodyError::ModelNotString => Code::InvalidModel,
    };
    Reply::new(code, shape, error.to_string())
}
