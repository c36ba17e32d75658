//! The guard step: once a request is otherwise allowed, every guard that applies to its
//! consumer is called at once (`Host::dispatch_http_call`) while the request stays paused;
//! each answer is read as it arrives, timed and counted; once all are in, the guards' verdicts
//! decide — flagged and `block` refuses (403 `guard_blocked`), failed and `on_error: block`
//! refuses (503 `guard_unavailable`), text over a guard's `max_text_bytes` refuses whatever
//! `on_error` says (413 `body_too_large`), anything else lets the request go.
//!
//! A guard sees only the request's text (`crate::policy::guards`), never its raw body or a
//! header of the client's, and nothing of its answer reaches the forwarded request.

use std::cell::RefCell;

use super::host::Host;
use super::metrics::{self, MetricIds};
use super::response::millis_between;
use super::state::{Facts, Forward};
use crate::policy::config::{GuardAction, GuardOnError, Mode};
use crate::policy::guards::{GuardRequest, Subject, Verdict};
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// The largest guard answer read; a larger one is an error. Moderation answers are small.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How much earlier than its timeout a failed call still counts as timed out.
const TIMER_MARGIN_MS: u64 = 10;

/// A request waiting for its guards, with everything its forwarding needs afterwards.
pub(super) struct Guarded {
    pub calls: Vec<Call>,
    pub forward: Forward,
    pub facts: Facts,
    pub audited: Option<Reply>,
    pub body_size: usize,
    pub shape: ApiFamily,
    /// How the answer is to be inspected, planned before the guards were asked.
    pub answers: Option<super::answer_inspection::Answers>,
}

/// One guard call.
pub(super) struct Call {
    /// Index into `Policy::guards`.
    guard: usize,
    /// `None` when the call was never made (it failed to start, or the text is too long).
    token: Option<u32>,
    /// The text the guard would be sent, in bytes, when it is over the guard's
    /// `max_text_bytes`: the call is never made and the request is refused.
    too_large: Option<usize>,
    started_at: Option<u64>,
    outcome: Option<Outcome>,
}

/// How a guard call ended, as metrics and the access log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Allow,
    Flagged,
    Error,
    Timeout,
    /// The text is over the guard's `max_text_bytes`: never sent.
    TooLarge,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Flagged => "flagged",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::TooLarge => "too_large",
        }
    }
}

/// What a call's outcome is counted and logged with.
pub(super) struct Counting<'a, H: Host> {
    pub host: &'a H,
    pub policy: &'a Policy,
    pub metrics: &'a RefCell<MetricIds>,
    pub request_id: Option<&'a str>,
}

/// Calls every guard of `request` at once. A call that cannot start ends at once as an error.
/// A text over the guard's `max_text_bytes` is never sent, nor cut (the part left out could be
/// what the guard must see): it is no failure of the guard, which `on_error: allow` would let
/// pass, but a request too large to judge, refused by `judge` whatever `on_error` says.
pub(super) fn start<H: Host>(
    cx: &Counting<'_, H>,
    request: &GuardRequest,
    subject: &Subject<'_>,
) -> Vec<Call> {
    let started_at = cx.host.now_nanos().ok();
    let mut calls = Vec::with_capacity(request.texts.len());
    for (index, text) in &request.texts {
        let Some(guard) = cx.policy.guards.get(*index) else {
            continue;
        };
        let mut call = Call {
            guard: *index,
            token: None,
            too_large: None,
            started_at,
            outcome: None,
        };
        if text.len() > guard.max_text_bytes {
            call.too_large = Some(text.len());
            let why = format!(
                "the text is longer than the guard's max_text_bytes ({})",
                guard.max_text_bytes
            );
            call.finish(cx, Verdict::Error(why), None);
        } else {
            let body = guard.call_body(text, subject);
            match cx.host.dispatch_http_call(
                &guard.cluster,
                &guard.call_headers(),
                &body,
                guard.timeout_ms,
            ) {
                Ok(token) => call.token = Some(token),
                Err(error) => call.finish(cx, Verdict::Error(error.to_string()), None),
            }
        }
        calls.push(call);
    }
    calls
}

/// The answer to call `token` has arrived (`num_headers` 0: the call failed without one).
/// Returns false when the token is none of these calls'.
pub(super) fn answered<H: Host>(
    cx: &Counting<'_, H>,
    calls: &mut [Call],
    token: u32,
    (num_headers, body_size): (usize, usize),
) -> bool {
    let Some(call) = calls
        .iter_mut()
        .find(|call| call.token == Some(token) && call.outcome.is_none())
    else {
        return false;
    };
    let Some(guard) = cx.policy.guards.get(call.guard) else {
        return false;
    };
    let verdict = if num_headers == 0 {
        Verdict::Error("the call failed without an answer".to_owned())
    } else if body_size > MAX_ANSWER_BYTES {
        Verdict::Error(format!("the answer is over {MAX_ANSWER_BYTES} bytes"))
    } else {
        match (
            cx.host.http_call_response_headers(),
            cx.host.http_call_response_body(body_size),
        ) {
            (Ok(headers), Ok(body)) => {
                let status = headers
                    .iter()
                    .find(|(name, _)| name == ":status")
                    .and_then(|(_, value)| std::str::from_utf8(value).ok());
                guard.read_answer(status, &body)
            }
            (Err(error), _) | (_, Err(error)) => Verdict::Error(error.to_string()),
        }
    };
    let now = cx.host.now_nanos().ok();
    call.finish(cx, verdict, now);
    true
}

/// Every call has its outcome.
pub(super) fn all_answered(calls: &[Call]) -> bool {
    calls.iter().all(|call| call.outcome.is_some())
}

/// The guards' verdicts, once all are in: each outcome goes to the facts; the first flag of a
/// blocking guard refuses, else the first failure of a guard whose `on_error` blocks. Audit
/// mode (the consumer's or the policy's) records either instead, as it does rules.
pub(super) fn judge(
    policy: &Policy,
    guarded: &mut Guarded,
    consumer_mode: Mode,
) -> Result<(), Reply> {
    let shape = guarded.shape;
    let mut refusal: Option<Reply> = None;
    for call in &guarded.calls {
        let (Some(guard), Some(outcome)) = (policy.guards.get(call.guard), call.outcome) else {
            continue;
        };
        guarded
            .facts
            .guards
            .push((guard.id.clone(), outcome.as_str()));
        let reply = match outcome {
            Outcome::Allow => continue,
            Outcome::Flagged => {
                let reply = Reply::new(
                    Code::GuardBlocked,
                    shape,
                    format!("the request was blocked by guard \"{}\"", guard.id),
                );
                if guard.action == GuardAction::Audit {
                    let audit = Reply::new(
                        Code::GuardBlocked,
                        shape,
                        format!("guard \"{}\" flagged the request (audit)", guard.id),
                    );
                    guarded.audited.get_or_insert(audit);
                    continue;
                }
                reply
            }
            // Never `on_error`: a client must not be able to skip a guard by sending more
            // text. A guard on trial (`action: audit`) records it, as it records a flag.
            Outcome::TooLarge => {
                let reply = Reply::new(
                    Code::BodyTooLarge,
                    shape,
                    format!(
                        "the request's text for guard \"{}\" is longer than the guard's \
                         max_text_bytes ({}); send less text",
                        guard.id, guard.max_text_bytes
                    ),
                );
                if guard.action == GuardAction::Audit {
                    guarded.audited.get_or_insert(reply);
                    continue;
                }
                reply
            }
            Outcome::Error | Outcome::Timeout => {
                if guard.on_error == GuardOnError::Allow {
                    continue;
                }
                Reply::new(
                    Code::GuardUnavailable,
                    shape,
                    format!(
                        "guard \"{}\" could not judge the request ({}); try again later",
                        guard.id,
                        outcome.as_str()
                    ),
                )
            }
        };
        // A flag outranks a text too large, which outranks a failure: the request is
        // refused for what it is.
        let outranks = refusal
            .as_ref()
            .is_none_or(|first| rank(reply.code) > rank(first.code));
        if outranks {
            refusal = Some(reply);
        }
    }
    match refusal {
        Some(reply) if consumer_mode == Mode::Enforce => Err(reply),
        Some(reply) => {
            guarded.audited.get_or_insert(reply);
            Ok(())
        }
        None => Ok(()),
    }
}

/// How strongly a guard's refusal speaks of the request itself.
fn rank(code: Code) -> u8 {
    match code {
        Code::GuardBlocked => 2,
        Code::BodyTooLarge => 1,
        _ => 0,
    }
}

impl Call {
    /// Records the call's outcome: counted, timed, and logged when it is not an allow (with
    /// the guard's reason, already sanitised, or why the call failed).
    fn finish<H: Host>(&mut self, cx: &Counting<'_, H>, verdict: Verdict, now: Option<u64>) {
        let Some(guard) = cx.policy.guards.get(self.guard) else {
            return;
        };
        let elapsed = millis_between(self.started_at, now);
        let (outcome, detail) = match verdict {
            Verdict::Allow => (Outcome::Allow, String::new()),
            Verdict::Flagged(reason) => (Outcome::Flagged, reason),
            Verdict::Error(why) => {
                // Envoy ends a call that runs out of time with its own 504; told apart from
                // other failures by the time taken. Envoy's timer and the wall clock read
                // here differ by a few milliseconds, hence the margin.
                let timed_out = self.token.is_some()
                    && elapsed.is_some_and(|ms| {
                        ms.saturating_add(TIMER_MARGIN_MS) >= u64::from(guard.timeout_ms)
                    });
                let outcome = if self.too_large.is_some() {
                    Outcome::TooLarge
                } else if timed_out {
                    Outcome::Timeout
                } else {
                    Outcome::Error
                };
                (outcome, why)
            }
        };
        self.outcome = Some(outcome);
        if let Ok(mut metrics) = cx.metrics.try_borrow_mut() {
            metrics.count(
                cx.host,
                metrics::GUARD_CALLS,
                &[("guard", &guard.id), ("outcome", outcome.as_str())],
                1,
            );
            if let Some(elapsed) = elapsed {
                metrics.record(
                    cx.host,
                    metrics::GUARD_DURATION,
                    &[("guard", &guard.id)],
                    elapsed,
                );
            }
        }
        if outcome != Outcome::Allow {
            let line = serde_json::json!({
                "request_id": cx.request_id,
                "guard": guard.id,
                "outcome": outcome.as_str(),
                "reason": detail,
            });
            log::info!("{line}");
        }
    }
}

#[cfg(test)]
#[path = "guards_tests.rs"]
mod tests;
