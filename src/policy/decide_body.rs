//! The decision on a request the gateway reads: its body walked once (validated, model taken
//! out, text scanned, the limits' fields located), the model approved, the inspection judged,
//! the limits applied, the edits made in one copy.

use std::collections::BTreeMap;

use super::body::{walk_watching, BodyError, JsonError, NoText, Span, Violation, Walked, Watch};
use super::classify::{encode_segment, Classified, Endpoint};
use super::compile::{Consumer, Policy};
use super::config::{Mode, RuleAction};
use super::decide::{audit_or_refuse, no_consumer, rebase, Decision, Facts, Forward, Pending};
use super::extract::display_model;
use super::inspect::{ScanSink, Verdict};
use super::limits::stream_usage as limits_usage;
use super::limits::{self, CapRequest, Change};
use super::redact::{apply, redact_string, Edit};
use super::reply::{Code, Reply};
use super::ApiFamily;

impl Policy {
    pub(crate) fn decide_endpoint(
        &self,
        pending: &Pending,
        classified: &Classified,
        body: &[u8],
        facts: &mut Facts,
    ) -> Result<Decision, Reply> {
        let shape = pending.shape;
        let endpoint = classified.endpoint;
        facts.family = Some(endpoint.family().as_str());
        if body.len() > self.max_body_bytes {
            return Err(self.too_large(shape));
        }
        let consumer = pending
            .consumer
            .as_deref()
            .and_then(|consumer| self.consumers.get(consumer));

        // One pass: scan only when some rule applies to this consumer; locate the limits'
        // fields only when a limit applies.
        let inspected = consumer.map_or(!self.rules.is_empty(), Consumer::has_rules);
        let watch = Watch {
            stream: limits::has_stream_flag(endpoint),
            output_tokens: consumer.is_some_and(|consumer| consumer.output_cap.is_some())
                && limits::has_cap_fields(classified),
        };
        let (walked, hits) = match self.scanner.as_ref().filter(|_| inspected) {
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
        let Some(model) = self.models.get(name) else {
            return Err(Reply::new(
                Code::ModelNotFound,
                shape,
                format!(
                    "model \"{}\" is not in this gateway's catalogue of approved models",
                    display_model(name)
                ),
            ));
        };
        let Some(provider) = self.providers.get(model.provider) else {
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
            None => audit_or_refuse(self.mode, no_consumer(shape))?,
            Some(consumer) if !consumer.approved.contains(name) => {
                audit_or_refuse(consumer.mode, not_approved(name, consumer, shape))?
            }
            Some(_) => None,
        };

        let verdict = self.judge(consumer, &walked, &hits);
        facts.rules.clone_from(&verdict.fired);
        facts.redactions = verdict.redactions.len();
        if let Some(rule) = verdict.blocked_by {
            let id = self.rule_id(rule);
            return Err(Reply::new(
                Code::PromptBlocked,
                shape,
                format!("the request was blocked by rule \"{id}\": its text matched what the rule forbids"),
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
        let changes = self.limit_changes(request, consumer, &walked, facts, &mut audited)?;

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
        edits.extend(self.redaction_edits(body, &verdict).ok_or_else(|| {
            Reply::new(Code::InternalError, shape, "the body could not be redacted")
        })?);
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

    /// The changes the request limits make: usage asked of a stream, and the consumer's
    /// output-token cap. In audit mode the cap changes nothing and what it would have done is
    /// recorded; a refusal is a policy denial.
    fn limit_changes(
        &self,
        (classified, pending, body): (&Classified, &Pending, &[u8]),
        consumer: Option<&Consumer>,
        walked: &Walked,
        facts: &mut Facts,
        audited: &mut Option<Reply>,
    ) -> Result<Vec<Change>, Reply> {
        let shape = classified.endpoint.family();
        let flags = limits_usage::flags(body, &walked.located, shape)?;
        let mut changes = Vec::new();
        if self.inject_stream_usage && limits::reports_stream_usage(classified.endpoint) {
            if let Some(change) = limits::stream_usage(body, &walked.located) {
                changes.push(change);
                facts.stream_usage_added = true;
            }
        }
        // A budget is charged with the usage the response reports: a request whose usage will
        // not be read would never be charged.
        if let Some(consumer) =
            consumer.filter(|consumer| self.budget_for(&consumer.name).is_some())
        {
            let unread = limits_usage::unread_usage(
                classified,
                &pending.path,
                flags,
                facts.stream_usage_added,
            )
            .or_else(|| pending.unread_headers.clone());
            if let Some(reason) = unread {
                let reply = Reply::new(
                    Code::UsageUnreadable,
                    shape,
                    format!(
                        "consumer \"{}\" has a token budget, which is charged with the usage \
                         each answer reports, and {reason}",
                        consumer.name
                    ),
                );
                if let Some(reply) = audit_or_refuse(consumer.mode, reply)? {
                    audited.get_or_insert(reply);
                }
            }
        }
        let Some((consumer, cap)) =
            consumer.and_then(|consumer| Some((consumer, consumer.output_cap?)))
        else {
            return Ok(changes);
        };
        let request = CapRequest {
            cap,
            consumer: &consumer.name,
            shape: classified.endpoint.family(),
        };
        let outcome = limits::output_cap(classified, body, &walked.located, request)?;
        match (consumer.mode, outcome.over) {
            (Mode::Enforce, Some(over)) if outcome.refused => Err(over),
            (Mode::Enforce, _) => {
                changes.extend(outcome.changes);
                facts.output_cap_clamped = outcome.clamped;
                facts.output_cap_added = outcome.added;
                Ok(changes)
            }
            (Mode::Audit, over) => {
                if let Some(over) = over {
                    audited.get_or_insert(over);
                }
                Ok(changes)
            }
        }
    }

    /// One edit per redacted string: its span in the body, and its redacted re-encoding.
    fn redaction_edits(&self, body: &[u8], verdict: &Verdict) -> Option<Vec<Edit>> {
        if verdict.redactions.is_empty() {
            return Some(Vec::new());
        }
        let mut by_string: BTreeMap<Span, Vec<(std::ops::Range<usize>, &str)>> = BTreeMap::new();
        for (span, range, rule) in &verdict.redactions {
            by_string
                .entry(*span)
                .or_default()
                .push((range.clone(), self.rule_id(*rule)));
        }
        by_string
            .iter()
            .map(|(span, ranges)| {
                let text = redact_string(body.get(span.range())?, ranges)?;
                Some(Edit {
                    span: span.range(),
                    text,
                })
            })
            .collect()
    }
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

fn opaque_reply(kind: &str, shape: ApiFamily) -> Reply {
    Reply::new(
        Code::OpaqueContent,
        shape,
        format!(
            "the request has {kind} content, which the gateway cannot inspect, and inspection \
             rules apply; send text only, or ask for \"opaque_content\": \"allow\""
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
