//! The decision record, made once per decided request: the decision's name, its metrics,
//! one log line, the same facts in filter state for Envoy's access log, and the debug header.
//! Names and codes only, never prompt text.

use std::borrow::Cow;
use std::cell::RefCell;

use serde_json::json;

use super::host::Host;
use super::metrics::{self, MetricIds};
use super::state::{Facts, Settlement};
use crate::policy::answer::{Effect, Findings};
use crate::policy::budget::Reserve;
use crate::policy::shorten::{loggable, shorten};
use crate::policy::{Policy, Reply};

/// Label values of a decided request: names from the configuration only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Labels {
    pub consumer: String,
    pub model: String,
    pub provider: String,
}

/// The serving target, as the upstream filter wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServedBy {
    pub provider: String,
    /// The provider's name for the model.
    pub upstream_model: Option<String>,
    pub attempts: u32,
}

/// How a request was decided, as the record needs it.
pub(super) struct Decided<'a> {
    pub facts: &'a Facts,
    /// The refusal, or what audit mode let through.
    pub reply: Option<&'a Reply>,
    pub forwarded: bool,
}

/// What the record keeps of a request: its identifiers for the log line, and what it leaves
/// for the response (the metric labels and the debug header).
#[derive(Default)]
pub(super) struct Recorder {
    /// Envoy's `x-request-id`, for the log line.
    pub request_id: Option<String>,
    /// The body's size, for the log line.
    pub body_bytes: usize,
    /// The `x-posturio-decision` value, when the policy asks for debug headers.
    pub debug_header: Option<String>,
    /// The metric labels of the decided request.
    pub labels: Option<Labels>,
    /// Set for a request forwarded to a pool cluster: its log line waits for the serving
    /// provider (`served`), or the end of the stream (`flush`).
    pub defer_line: bool,
    /// Set for a forwarded request that expects usage: its log line waits for the settlement
    /// (`settled`), which it carries.
    pub until_settled: bool,
    /// What a budgeted request reserved, or would have (a budget refusal's line shows it).
    pub reserved: Option<Reserve>,
    pending_line: Option<(log::Level, serde_json::Value)>,
}

/// `allow` when nothing was found, `audit` when audit mode forwarded what it would have
/// refused, `deny` when refused.
pub(super) fn decision_name(reply: Option<&Reply>, forwarded: bool) -> &'static str {
    match (reply, forwarded) {
        (None, _) => "allow",
        (Some(_), true) => "audit",
        (Some(_), false) => "deny",
    }
}

impl Recorder {
    /// One log line per decision, the same facts in filter state for the access log, the
    /// counters, and the debug header if asked for. `policy` is `None` when none is loaded.
    pub fn record<H: Host>(
        &mut self,
        host: &H,
        policy: Option<&Policy>,
        metrics: &RefCell<MetricIds>,
        decided: Decided<'_>,
    ) {
        let Decided {
            facts,
            reply,
            forwarded,
        } = decided;
        let decision = decision_name(reply, forwarded);
        // Counted once per request: a forward that fails after its decision was recorded is
        // logged and put in filter state as the refusal it became, but not counted twice.
        if self.labels.is_none() {
            self.count_decision(host, policy, metrics, facts, reply, decision);
        }
        // Plain allows are logged at debug, and their line built only when it will be
        // written; anything a rule matched is logged at info, audits and redactions included.
        let level = if decision == "allow" && facts.rules.is_empty() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if log::log_enabled!(level) {
            let mut line = decision_line(
                decision,
                facts,
                reply,
                self.request_id.as_deref(),
                self.body_bytes,
            );
            if let (Some(reserved), Some(object)) = (self.reserved, line.as_object_mut()) {
                object.insert("reserved_tokens".to_owned(), json!(reserved.tokens));
                object.insert("reserved_microusd".to_owned(), json!(reserved.microusd));
            }
            if (self.defer_line || self.until_settled) && forwarded {
                self.pending_line = Some((level, line));
            } else {
                log::log!(level, "{line}");
            }
        }
        // A model outside the catalogue is the client's text: kept short and on one line for
        // the access log.
        let model = facts.model.as_deref().map(|model| {
            if policy.is_some_and(|policy| policy.models.contains_key(model)) {
                Cow::Borrowed(model)
            } else {
                Cow::Owned(loggable(model))
            }
        });
        let state = [
            ("posturio.decision", decision),
            (
                "posturio.code",
                reply.map_or("", |reply| reply.code.as_str()),
            ),
            ("posturio.consumer", facts.consumer.as_deref().unwrap_or("")),
            ("posturio.model", model.as_deref().unwrap_or("")),
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
            if let Err(error) = host.set_property(&[key], value.as_bytes()) {
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
            if let Err(error) = host.set_property(&["posturio.rules"], rules.as_bytes()) {
                log::warn!("{error}; the access log will miss posturio.rules");
            }
        }
        if !facts.guards.is_empty() {
            let guards = facts
                .guards
                .iter()
                .map(|(guard, outcome)| format!("{guard}:{outcome}"))
                .collect::<Vec<_>>()
                .join(",");
            if let Err(error) = host.set_property(&["posturio.guards"], guards.as_bytes()) {
                log::warn!("{error}; the access log will miss posturio.guards");
            }
        }
        if policy.is_some_and(|policy| policy.debug_headers) {
            self.debug_header = Some(if rules.is_empty() {
                decision.to_owned()
            } else {
                format!("{decision}; rules={rules}")
            });
        }
    }

    /// A pooled request's serving provider, once its answer arrives: the response's metric
    /// labels, the access log and the decision's log line name it, with the attempts made.
    pub fn served<H: Host>(&mut self, host: &H, served: &ServedBy) {
        if let Some(labels) = self.labels.as_mut() {
            labels.provider.clone_from(&served.provider);
        }
        let attempts = served.attempts.to_string();
        let state = [
            ("posturio.provider", served.provider.as_str()),
            (
                "posturio.upstream_model",
                served.upstream_model.as_deref().unwrap_or(""),
            ),
            ("posturio.attempts", attempts.as_str()),
        ];
        for (key, value) in state.into_iter().filter(|(_, value)| !value.is_empty()) {
            if let Err(error) = host.set_property(&[key], value.as_bytes()) {
                log::warn!("{error}; the access log will miss {key}");
            }
        }
        if let Some((_, line)) = self.pending_line.as_mut() {
            if let Some(object) = line.as_object_mut() {
                object.insert("provider".to_owned(), json!(served.provider));
                object.insert("upstream_model".to_owned(), json!(served.upstream_model));
                object.insert("attempts".to_owned(), json!(served.attempts));
            }
        }
        if !self.until_settled {
            self.flush();
        }
    }

    /// The answer is settled (`None`: nothing was owed): the waiting decision line gets what
    /// was used, its cost and what was charged, and is logged.
    pub fn settled(&mut self, settlement: Option<&Settlement>) {
        if let (Some((_, line)), Some(settlement)) = (self.pending_line.as_mut(), settlement) {
            if let Some(object) = line.as_object_mut() {
                let tokens = settlement.usage.map(|usage| {
                    json!({
                        "input": usage.input,
                        "output": usage.output,
                        "cached": usage.cached,
                        "reasoning": usage.reasoning,
                    })
                });
                object.insert("tokens".to_owned(), json!(tokens));
                object.insert("cost_microusd".to_owned(), json!(settlement.cost_microusd));
                object.insert(
                    "charged_tokens".to_owned(),
                    json!(settlement.charged_tokens),
                );
                object.insert(
                    "charged_microusd".to_owned(),
                    json!(settlement.charged_microusd),
                );
                if let Some(reserved) = settlement.reserved {
                    object.insert("reserved_tokens".to_owned(), json!(reserved.tokens));
                    object.insert("reserved_microusd".to_owned(), json!(reserved.microusd));
                }
            }
        }
        self.flush();
    }

    /// A forwarded request the upstream filter refused: the decision becomes that refusal in
    /// the access log and in the decision's log line, when it still waits.
    pub fn refused_upstream<H: Host>(&mut self, host: &H, reply: &Reply) {
        if let Err(error) = host.set_property(&["posturio.decision"], b"deny") {
            log::warn!("{error}; the access log will miss posturio.decision");
        }
        if let Some((level, line)) = self.pending_line.as_mut() {
            *level = log::Level::Info;
            if let Some(object) = line.as_object_mut() {
                object.insert("decision".to_owned(), json!("deny"));
                object.insert("code".to_owned(), json!(reply.code.as_str()));
            }
        }
    }

    /// A forwarded request's answer replaced by the gateway's (see `served.rs`): counted, its
    /// code in the access log, and one log line.
    pub fn replaced<H: Host>(&mut self, host: &H, metrics: &RefCell<MetricIds>, reply: &Reply) {
        if !self.until_settled {
            self.flush();
        }
        if let (Some(labels), Ok(mut metrics)) = (self.labels.as_ref(), metrics.try_borrow_mut()) {
            metrics.count(
                host,
                metrics::REPLACED_RESPONSES,
                &[("model", &labels.model), ("code", reply.code.as_str())],
                1,
            );
        }
        if let Err(error) = host.set_property(&["posturio.code"], reply.code.as_str().as_bytes()) {
            log::warn!("{error}; the access log will miss posturio.code");
        }
        let line = json!({
            "request_id": self.request_id,
            "replaced": reply.code.as_str(),
            "status": reply.status(),
            "message": reply.message,
        });
        log::warn!("{line}");
    }

    /// The inspection of a forwarded request's answer, once it is over: the rules that fired
    /// on it counted with direction `response`, what became of it in the access log
    /// (`posturio.response`, `posturio.response_rules`), and one log line when a rule fired
    /// or the answer was not sent.
    pub fn answer_inspected<H: Host>(
        &mut self,
        host: &H,
        policy: Option<&Policy>,
        metrics: &RefCell<MetricIds>,
        (findings, verdict): (&Findings, &str),
    ) {
        let rules: Vec<(&str, &str)> = findings
            .fired
            .iter()
            .map(|(rule, effect)| {
                let id = policy.map_or("?", |policy| policy.rule_id(*rule));
                (id, effect_name(*effect))
            })
            .collect();
        if let (Some(labels), Ok(mut metrics)) = (self.labels.as_ref(), metrics.try_borrow_mut()) {
            for (rule, action) in &rules {
                metrics.count(
                    host,
                    metrics::RULE_HITS,
                    &[
                        ("rule", rule),
                        ("action", action),
                        ("consumer", &labels.consumer),
                        ("direction", "response"),
                    ],
                    1,
                );
            }
        }
        let listed = rules
            .iter()
            .map(|(rule, action)| format!("{rule}:{action}"))
            .collect::<Vec<_>>()
            .join(",");
        let state = [
            ("posturio.response", verdict),
            ("posturio.response_rules", listed.as_str()),
        ];
        for (key, value) in state.into_iter().filter(|(_, value)| !value.is_empty()) {
            if let Err(error) = host.set_property(&[key], value.as_bytes()) {
                log::warn!("{error}; the access log will miss {key}");
            }
        }
        let level = if rules.is_empty() && verdict == "passed" {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if log::log_enabled!(level) {
            let line = json!({
                "request_id": self.request_id,
                "response": verdict,
                "response_rules": rules
                    .iter()
                    .map(|(rule, action)| json!({"id": rule, "action": action}))
                    .collect::<Vec<_>>(),
                "redactions": findings.redactions,
            });
            log::log!(level, "{line}");
        }
    }

    /// Logs a deferred decision line that no serving provider completed.
    pub fn flush(&mut self) {
        if let Some((level, line)) = self.pending_line.take() {
            log::log!(level, "{line}");
        }
    }

    /// The request and rule counters, and the labels the response's metrics will carry.
    fn count_decision<H: Host>(
        &mut self,
        host: &H,
        policy: Option<&Policy>,
        metrics: &RefCell<MetricIds>,
        facts: &Facts,
        reply: Option<&Reply>,
        decision: &str,
    ) {
        let catalogue_model = facts
            .model
            .as_deref()
            .filter(|model| policy.is_some_and(|policy| policy.models.contains_key(*model)));
        let labels = Labels {
            consumer: facts.consumer.clone().unwrap_or_default(),
            model: catalogue_model.unwrap_or_default().to_owned(),
            provider: facts.provider.clone().unwrap_or_default(),
        };
        let Ok(mut metrics) = metrics.try_borrow_mut() else {
            return;
        };
        metrics.count(
            host,
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
                host,
                metrics::RULE_HITS,
                &[
                    ("rule", &fired.rule),
                    ("action", fired.action.as_str()),
                    ("consumer", &labels.consumer),
                    ("direction", "request"),
                ],
                1,
            );
        }
        drop(metrics);
        self.labels = Some(labels);
    }
}

/// A match's effect on an answer, named as rule actions are.
fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Block => "block",
        Effect::Redact => "redact",
        Effect::Record => "audit",
    }
}

/// The decision as one JSON line for Envoy's log. Names and codes only, never prompt text.
fn decision_line(
    decision: &str,
    facts: &Facts,
    reply: Option<&Reply>,
    request_id: Option<&str>,
    body_bytes: usize,
) -> serde_json::Value {
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
    let mut line = json!({
        "request_id": request_id,
        "decision": decision,
        "code": reply.map(|reply| reply.code.as_str()),
        "consumer": facts.consumer,
        "api": facts.family,
        "model": facts.model.as_deref().map(|model| shorten(model).into_owned()),
        "upstream_model": facts.upstream_model,
        "provider": facts.provider,
        "rules": rules,
        "redactions": facts.redactions,
        "body_bytes": body_bytes,
    });
    // Only for a request whose guards were asked: every other line keeps its fields.
    if let (false, Some(object)) = (facts.guards.is_empty(), line.as_object_mut()) {
        let guards = facts
            .guards
            .iter()
            .map(|(guard, outcome)| json!({"id": guard, "outcome": outcome}))
            .collect();
        object.insert("guards".to_owned(), serde_json::Value::Array(guards));
    }
    line
}
