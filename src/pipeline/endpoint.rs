//! The decision on an endpoint request, its steps in order: the body walked once (validated,
//! model taken out, text scanned, the limits' fields located), the model approved
//! (approval), the inspection judged (`inspection.rs`), the limits applied
//! (`request_limits.rs`), the edits made in one copy (`rewrite.rs`).

use super::classification::no_consumer;
use super::classification::{too_large, Pending};
use super::decision::{audit_or_refuse, rebase, Decision, Facts, Forward};
use super::inspection::{judge, opaque_reply};
use super::request_limits::limit_changes;
use super::rewrite::redaction_edits;
use crate::policy::classify::{encode_segment, Classified, Endpoint};
use crate::policy::compile::{Consumer, Policy};
use crate::policy::config::RuleAction;
use crate::policy::extract::{display_model, BodyError};
use crate::policy::inspect::ScanSink;
use crate::policy::limits;
use crate::policy::redact::{apply, Edit};
use crate::policy::reply::{Code, Reply};
use crate::policy::strict_json::{JsonError, Violation};
use crate::policy::walk::{walk_watching, NoText, Watch};
use crate::policy::ApiFamily;

pub(super) fn decide_endpoint(
    policy: &Policy,
    pending: &Pending,
    classified: &Classified,
    body: &[u8],
    facts: &mut Facts,
) -> Result<Decision, Reply> {
    let shape = pending.shape;
    let endpoint = classified.endpoint;
    facts.family = Some(endpoint.family().as_str());
    if body.len() > policy.max_body_bytes {
        return Err(too_large(policy, shape));
    }
    let consumer = pending
        .consumer
        .as_deref()
        .and_then(|consumer| policy.consumers.get(consumer));

    // One pass: scan only when some rule applies to this consumer; locate the limits'
    // fields only when a limit applies.
    let inspected = consumer.map_or(!policy.rules.is_empty(), Consumer::has_rules);
    let watch = Watch {
        stream: limits::has_stream_flag(endpoint),
        output_tokens: consumer.is_some_and(|consumer| consumer.output_cap.is_some())
            && limits::has_cap_fields(classified),
    };
    let (walked, hits) = match policy.scanner.as_ref().filter(|_| inspected) {
        Some(scanner) => {
            let mut sink = ScanSink::new(scanner, body.len());
            let walked = walk_watching(body, endpoint, watch, &mut sink);
            (walked, sink.finish())
        }
        None => (
            walk_watching(body, endpoint, watch, &mut NoText),
            Vec::new(),
        ),
    };
    let walked = walked.map_err(|error| body_reply(error, shape))?;

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
                display_model(name)
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
    facts.provider = Some(provider.name.clone());
    let upstream = model.upstream_model.as_deref().unwrap_or(name);
    facts.upstream_model = Some(upstream.to_owned());
    if !provider.families.contains(&endpoint.family()) {
        return Err(Reply::new(
            Code::ProviderApiMismatch,
            shape,
            format!(
                "model \"{}\" is served by provider \"{}\", which does not accept the {} API",
                display_model(name),
                provider.name,
                endpoint.family().as_str(),
            ),
        ));
    }

    let mut audited = match consumer {
        None => audit_or_refuse(policy.mode, no_consumer(shape))?,
        Some(consumer) if !consumer.approved.contains(name) => {
            audit_or_refuse(consumer.mode, not_approved(name, consumer, shape))?
        }
        Some(_) => None,
    };

    let verdict = judge(policy, consumer, &walked, &hits);
    facts.rules.clone_from(&verdict.fired);
    facts.redactions = verdict.redactions.len();
    if let Some(rule) = verdict.blocked_by {
        let id = policy.rule_id(rule);
        return Err(Reply::new(
            Code::PromptBlocked,
            shape,
            format!(
                "the request was blocked by rule \"{id}\": its text matched what the rule forbids"
            ),
        )
        .with_rule(id));
    }
    // A block or redaction that audit mode turned into a record makes the decision an audit.
    if let Some(trial) = verdict
        .fired
        .iter()
        .find(|fired| !fired.enforced && fired.action != RuleAction::Audit)
    {
        audited.get_or_insert_with(|| {
            Reply::new(
                Code::PromptBlocked,
                shape,
                format!("rule \"{}\" matched (audit mode)", trial.rule),
            )
            .with_rule(&trial.rule)
        });
    }
    if let Some((kind, enforced)) = verdict.opaque {
        let reply = opaque_reply(kind, shape);
        if enforced {
            return Err(reply);
        }
        audited.get_or_insert(reply);
    }

    let request = (classified, pending, body);
    let changes = limit_changes(policy, request, consumer, &walked, facts, &mut audited)?;

    // Edits: the model (in the path or the body), the redactions and the limits' changes,
    // in one copy.
    let mut path = None;
    let mut edits = limits::into_edits(changes);
    if upstream != name {
        // A rewrite that cannot be made is refused: never forward the client's name.
        let failed = || {
            Reply::new(
                Code::InternalError,
                shape,
                "the model could not be rewritten",
            )
        };
        match (&classified.path_model, &walked.model) {
            (Some(path_model), _) => {
                let before = pending.path.get(..path_model.segment.start);
                let after = pending.path.get(path_model.segment.end..);
                let (Some(before), Some(after)) = (before, after) else {
                    return Err(failed());
                };
                path = Some(format!("{before}{}{after}", encode_segment(upstream)));
                // The body's copies of the model follow the path's, in the form they had.
                for body_model in walked.model.iter().chain(&walked.inner_models) {
                    let text = match body_model.name.strip_prefix("models/") {
                        Some(_) => format!("models/{upstream}"),
                        None => upstream.to_owned(),
                    };
                    edits.push(Edit {
                        span: body_model.span.clone(),
                        text: serde_json::to_string(&text).map_err(|_| failed())?,
                    });
                }
            }
            (None, Some(body_model)) => edits.push(Edit {
                span: body_model.span.clone(),
                text: serde_json::to_string(upstream).map_err(|_| failed())?,
            }),
            (None, None) => {}
        }
    }
    edits.extend(
        redaction_edits(policy, body, &verdict).ok_or_else(|| {
            Reply::new(Code::InternalError, shape, "the body could not be redacted")
        })?,
    );
    let body = if edits.is_empty() {
        None
    } else {
        Some(apply(body, edits).ok_or_else(|| {
            Reply::new(
                Code::InternalError,
                shape,
                "the body could not be rewritten",
            )
        })?)
    };
    let current = path.as_deref().unwrap_or(&pending.path);
    let path = rebase(current, provider.base_path.as_deref()).or(path);
    Ok(Decision::Forward(Forward {
        cluster: provider.cluster.clone(),
        path,
        body,
        audited,
        usage: limits::usage_format(classified),
    }))
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
            display_model(model),
            consumer.name
        ),
    )
}

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
