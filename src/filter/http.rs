//! The per-request state machine: hold the headers, buffer the body, ask the policy, apply.
//! The response half (usage, budgets, upstream metrics) is in `response`.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::types::Action;
use serde_json::json;

use super::host::{Host, HostError};
use super::metrics::{self, MetricIds};
use super::response::Upstream;
use crate::policy::budget;
use crate::policy::compile::Identity;
use crate::policy::config::DEFAULT_ROUTE_HEADER;
use crate::policy::{ApiFamily, Code, Decision, Facts, Forward, Pending, Policy, Reply};

enum Stage {
    /// Nothing seen yet.
    Headers,
    /// Headers held; the body is being buffered until its end.
    Body(Pending),
    /// Decided: forwarded or answered. Later callbacks pass through untouched.
    Done,
}

pub struct HttpFilter<H: Host> {
    pub(super) host: H,
    /// The policy in force when the request started; a new configuration applies to new
    /// requests only.
    pub(super) policy: Option<Rc<Policy>>,
    stage: Stage,
    /// The `x-posturio-decision` value, when the policy asks for debug headers.
    debug_header: Option<String>,
    /// For the decision log line: Envoy's `x-request-id`, and the body's size.
    request_id: Option<String>,
    body_bytes: usize,
    /// The client sent `accept-encoding`, which must go when the response is read for usage.
    accept_encoding_sent: bool,
    pub(super) metrics: Rc<RefCell<MetricIds>>,
    /// When the request's headers arrived, in nanoseconds since the epoch.
    pub(super) started_at: Option<u64>,
    /// The metric labels of the decided request.
    pub(super) labels: Option<Labels>,
    /// A budget overrun that audit mode let through, recorded with the decision.
    budget_audit: Option<Reply>,
    /// Set once the request is forwarded: what to read from the response.
    pub(super) upstream: Option<Upstream>,
}

/// Label values of a decided request: names from the configuration only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Labels {
    pub consumer: String,
    pub model: String,
    pub provider: String,
}

impl<H: Host> HttpFilter<H> {
    pub fn new(host: H, policy: Option<Rc<Policy>>, metrics: Rc<RefCell<MetricIds>>) -> Self {
        HttpFilter {
            host,
            policy,
            stage: Stage::Headers,
            debug_header: None,
            request_id: None,
            body_bytes: 0,
            accept_encoding_sent: false,
            metrics,
            started_at: None,
            labels: None,
            budget_audit: None,
            upstream: None,
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.started_at = self.host.now_nanos().ok();
        let Some(policy) = self.policy.clone() else {
            // Still strip the route header, then refuse: never forward unchecked.
            let _ = self.host.set_request_header(DEFAULT_ROUTE_HEADER, None);
            return self.refuse(&Reply::new(
                Code::InternalError,
                ApiFamily::OpenAi,
                "the gateway has no valid policy loaded",
            ));
        };
        let headers = match self.host.request_headers() {
            Ok(headers) => headers,
            Err(error) => return self.host_failed(&error),
        };
        // The route header is the filter's alone: whatever the client sent is dropped first,
        // on every request, before anything can return early. A header that is not there
        // needs no host call (each costs Envoy about a microsecond).
        let sent = |name: &str| {
            crate::policy::request::values(&headers, name)
                .next()
                .is_some()
        };
        if sent(&policy.route_header) {
            if let Err(error) = self.host.set_request_header(&policy.route_header, None) {
                return self.host_failed(&error);
            }
        }
        self.accept_encoding_sent = sent("accept-encoding");
        self.request_id = crate::policy::request::only(&headers, "x-request-id")
            .ok()
            .flatten()
            .map(crate::policy::extract::display_model);
        let metadata_identity = match &policy.identity {
            Identity::Metadata { namespace, path } => {
                let mut property = vec!["metadata", "filter_metadata", namespace.as_str()];
                property.extend(path.iter().map(String::as_str));
                match self.host.property(&property) {
                    Ok(value) => value,
                    // A value Envoy cannot hand over (a null claim) is there, and names nobody.
                    Err(error) if error.status == "SerializationFailure" => {
                        Some(crate::policy::identity::NOT_A_NAME.to_vec())
                    }
                    Err(error) => return self.host_failed(&error),
                }
            }
            _ => None,
        };
        match policy.on_headers(&headers, metadata_identity.as_deref()) {
            Err(reply) => {
                self.record(&Facts::default(), Some(&reply), false);
                self.refuse(&reply)
            }
            Ok(pending) => self.after_headers(&policy, pending, end_of_stream),
        }
    }

    fn after_headers(&mut self, policy: &Policy, pending: Pending, end_of_stream: bool) -> Action {
        match pending {
            pending if end_of_stream => self.decide(policy, &pending, &[], 0),
            pending => {
                self.stage = Stage::Body(pending);
                Action::Pause
            }
        }
    }

    /// Refuses a consumer whose token budget is used up (429 with `Retry-After`); in audit
    /// mode the overrun is kept to be recorded with the decision.
    fn check_budget(&mut self, policy: &Policy, pending: &Pending) -> Result<(), Reply> {
        let Some(consumer) = pending.consumer.as_deref() else {
            return Ok(());
        };
        let Some(limits) = policy.budget_for(consumer) else {
            return Ok(());
        };
        let now = match self.host.now_nanos() {
            Ok(nanos) => nanos / 1_000_000_000,
            Err(error) => {
                log::warn!("{error}; budget of {consumer} not checked");
                return Ok(());
            }
        };
        let host = &self.host;
        let over = budget::exceeded(limits, now, |window| {
            let stored = host
                .shared_data(&budget::shared_key(consumer, window))
                .map(|(value, _)| value)
                .unwrap_or_default();
            budget::Counter::decode(stored.as_deref())
        });
        let Some(over) = over else {
            return Ok(());
        };
        let reply = Reply::new(
            Code::BudgetExceeded,
            pending.shape(),
            over.message(consumer),
        )
        .with_retry_after(over.retry_after);
        match policy.consumer_mode(consumer) {
            Some(crate::policy::Mode::Audit) => {
                self.budget_audit = Some(reply);
                Ok(())
            }
            _ => Err(reply),
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Stage::Body(pending), Some(policy)) = (&self.stage, self.policy.clone()) else {
            return Action::Continue;
        };
        self.body_bytes = body_size;
        if body_size > policy.max_body_bytes {
            // Answer as soon as the limit is crossed, without buffering the rest.
            let reply = policy.too_large(pending.shape());
            let facts = policy.facts_before_body(pending);
            self.record(&facts, Some(&reply), false);
            return self.refuse(&reply);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        // The body is complete: the request is decided now, so its pending state is taken
        // rather than copied.
        let Stage::Body(pending) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Action::Continue;
        };
        match self.host.request_body(body_size) {
            Ok(body) => self.decide(&policy, &pending, &body, body_size),
            Err(error) => self.host_failed(&error),
        }
    }

    /// With trailers the body never reaches end of stream, and the buffered body cannot be
    /// rewritten reliably from here: refuse rather than forward it unread.
    pub fn on_request_trailers(&mut self) -> Action {
        let (Stage::Body(pending), Some(policy)) = (&self.stage, self.policy.clone()) else {
            return Action::Continue;
        };
        let reply = Reply::new(
            Code::InvalidRequest,
            pending.shape(),
            "requests with trailers are not accepted; send the body without trailers",
        );
        let facts = policy.facts_before_body(pending);
        self.record(&facts, Some(&reply), false);
        self.refuse(&reply)
    }

    fn decide(
        &mut self,
        policy: &Policy,
        pending: &Pending,
        body: &[u8],
        body_size: usize,
    ) -> Action {
        let (decision, facts) = policy.on_body(pending, body);
        match decision {
            Decision::Refuse(reply) => {
                self.record(&facts, Some(&reply), false);
                self.refuse(&reply)
            }
            Decision::Forward(forward) => {
                // Checked once the request is otherwise allowed, so that a refusal is recorded
                // with the model and provider the client asked for.
                if let Err(reply) = self.check_budget(policy, pending) {
                    self.record(&facts, Some(&reply), false);
                    return self.refuse(&reply);
                }
                let audited = forward.audited.clone().or_else(|| self.budget_audit.take());
                self.record(&facts, audited.as_ref(), true);
                match self.forward(policy, &forward, body_size) {
                    Ok(()) => {
                        self.stage = Stage::Done;
                        self.upstream = Some(Upstream::new(
                            forward.usage,
                            self.host.now_nanos().ok(),
                            facts.stream_usage_added,
                            body_size,
                        ));
                        Action::Continue
                    }
                    Err(error) => self.host_failed(&error),
                }
            }
        }
    }

    fn forward(
        &self,
        policy: &Policy,
        forward: &Forward,
        body_size: usize,
    ) -> Result<(), HostError> {
        if let Some(body) = &forward.body {
            self.host.replace_request_body(body_size, body)?;
            // The length changed: say the new one, and drop any chunked framing so the upstream
            // request can never carry two conflicting lengths.
            self.host.set_request_header("transfer-encoding", None)?;
            self.host
                .set_request_header("content-length", Some(&body.len().to_string()))?;
        }
        if let Some(path) = &forward.path {
            self.host.set_request_header(":path", Some(path))?;
        }
        if forward.usage.is_some() && self.accept_encoding_sent {
            // Usage is read from the response, which a compressed body would hide.
            self.host.set_request_header("accept-encoding", None)?;
        }
        self.host
            .set_request_header(&policy.route_header, Some(&forward.cluster))
    }

    fn refuse(&mut self, reply: &Reply) -> Action {
        self.stage = Stage::Done;
        if let Err(error) = self.host.send_reply(reply) {
            log::error!("{error}; the request could not be answered");
        }
        Action::Pause
    }

    fn host_failed(&mut self, error: &HostError) -> Action {
        log::error!("{error}; refusing the request");
        self.refuse(&Reply::new(
            Code::InternalError,
            ApiFamily::OpenAi,
            "the gateway could not read the request",
        ))
    }
}

fn decision_name(reply: Option<&Reply>, forwarded: bool) -> &'static str {
    match (reply, forwarded) {
        (None, _) => "allow",
        (Some(_), true) => "audit",
        (Some(_), false) => "deny",
    }
}

/// The decision as one JSON line for Envoy's log. Names and codes only, never prompt text.
fn decision_line(
    decision: &str,
    facts: &Facts,
    reply: Option<&Reply>,
    request_id: Option<&str>,
    body_bytes: usize,
) -> String {
    let rules: Vec<_> = facts
        .rules
        .iter()
        .map(|fired| {
            json!({
                "id": fired.rule,
                "action": fired.action.as_str(),
                "enforced": fired.enforced,
            })
        })
        .collect();
    json!({
        "request_id": request_id,
        "decision": decision,
        "code": reply.map(|reply| reply.code.as_str()),
        "consumer": facts.consumer,
        "api": facts.family,
        "model": facts.model.as_deref().map(crate::policy::extract::display_model),
        "upstream_model": facts.upstream_model,
        "provider": facts.provider,
        "rules": rules,
        "redactions": facts.redactions,
        "body_bytes": body_bytes,
    })
    .to_string()
}

impl<H: Host> HttpFilter<H> {
    /// One log line per decision, the same facts in filter state for the access log, and the
    /// debug header if asked for.
    fn record(&mut self, facts: &Facts, reply: Option<&Reply>, forwarded: bool) {
        let decision = decision_name(reply, forwarded);
        self.count_decision(facts, reply, decision);
        // Plain allows are logged at debug, and their line built only when it will be
        // written; anything a rule matched is logged at info, audits and redactions included.
        let level = if decision == "allow" && facts.rules.is_empty() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if log::log_enabled!(level) {
            let line = decision_line(
                decision,
                facts,
                reply,
                self.request_id.as_deref(),
                self.body_bytes,
            );
            log::log!(level, "{line}");
        }
        let state = [
            ("posturio.decision", decision),
            (
                "posturio.code",
                reply.map_or("", |reply| reply.code.as_str()),
            ),
            ("posturio.consumer", facts.consumer.as_deref().unwrap_or("")),
            ("posturio.model", facts.model.as_deref().unwrap_or("")),
            (
                "posturio.upstream_model",
                facts.upstream_model.as_deref().unwrap_or(""),
            ),
            ("posturio.provider", facts.provider.as_deref().unwrap_or("")),
            ("posturio.api", facts.family.unwrap_or("")),
        ];
        // An empty value is left unset: the access log shows it as absent, and each value
        // costs a host call.
        for (key, value) in state.into_iter().filter(|(_, value)| !value.is_empty()) {
            if let Err(error) = self.host.set_property(&[key], value.as_bytes()) {
                log::warn!("{error}; the access log will miss {key}");
            }
        }
        let rules = facts
            .rules
            .iter()
            .map(|fired| format!("{}:{}", fired.rule, fired.action.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        if !rules.is_empty() {
            if let Err(error) = self
                .host
                .set_property(&["posturio.rules"], rules.as_bytes())
            {
                log::warn!("{error}; the access log will miss posturio.rules");
            }
        }
        if self
            .policy
            .as_ref()
            .is_some_and(|policy| policy.debug_headers)
        {
            self.debug_header = Some(if rules.is_empty() {
                decision.to_owned()
            } else {
                format!("{decision}; rules={rules}")
            });
        }
    }

    /// The request and rule counters, and the labels the response's metrics will carry.
    fn count_decision(&mut self, facts: &Facts, reply: Option<&Reply>, decision: &str) {
        let catalogue_model = facts.model.as_deref().filter(|model| {
            self.policy
                .as_ref()
                .is_some_and(|policy| policy.models.contains_key(*model))
        });
        let labels = Labels {
            consumer: facts.consumer.clone().unwrap_or_default(),
            model: catalogue_model.unwrap_or_default().to_owned(),
            provider: facts.provider.clone().unwrap_or_default(),
        };
        let Ok(mut metrics) = self.metrics.try_borrow_mut() else {
            return;
        };
        metrics.count(
            &self.host,
            metrics::REQUESTS,
            &[
                ("consumer", &labels.consumer),
                ("model", &labels.model),
                ("provider", &labels.provider),
                ("decision", decision),
                ("code", reply.map_or("", |reply| reply.code.as_str())),
            ],
            1,
        );
        for fired in &facts.rules {
            metrics.count(
                &self.host,
                metrics::RULE_HITS,
                &[
                    ("rule", &fired.rule),
                    ("action", fired.action.as_str()),
                    ("consumer", &labels.consumer),
                ],
                1,
            );
        }
        drop(metrics);
        self.labels = Some(labels);
    }

    /// Adds the debug header to the response, when the policy asks for it, and starts
    /// reading the upstream's response.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if let Some(value) = self.debug_header.take() {
            if let Err(error) = self.host.set_response_header("x-posturio-decision", &value) {
                log::warn!("{error}; no debug header");
            }
        }
        self.response_started(end_of_stream);
        Action::Continue
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
