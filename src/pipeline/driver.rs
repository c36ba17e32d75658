//! The driver: one request's steps, in order, callback by callback. Every step either
//! produces what the next needs or a `Refusal`, and `Request::refuse` — the one place a
//! refusal goes — records it and answers (see `answer.rs`).
//!
//! - request headers: route header (and credential headers) dropped → identity and classification
//!   (`classification.rs`, `identity.rs`) → hold, or decide at once without a body;
//! - request body: size limit → the decision (`decision.rs`; for an endpoint `endpoint.rs`:
//!   approval, inspection, limits, rewrite; for a model list `model_list.rs`, answered here
//!   and never forwarded) → budget check (`budget.rs`) → guard calls, the request paused
//!   until every answer is in (`guards.rs`) → record (`record.rs`) → forward (`forward.rs`);
//! - trailers: refused;
//! - response: who answered (`served.rs`: a pool's serving provider; Envoy's own answer
//!   replaced by one in the caller's shape) → upstream metrics and usage read
//!   (`response.rs`) → settlement (`settle.rs`), at the end of the body or at the end of the
//!   stream.

use std::cell::RefCell;
use std::rc::Rc;

use super::answer::{self, answer_recorded_elsewhere, Refusal};
use super::answer_inspection::{self, Answers};
use super::budget::{self, Checked};
use super::classification::{classify_request, facts_before_body, reply_shape, IdentityInputs};
use super::decision::decide_body;
use super::forward::{self, Route};
use super::guards::{self, Counting, Guarded};
use super::host::{Host, HostError};
use super::metrics::{self, MetricIds};
use super::record::{Decided, Recorder};
use super::refusals::too_large;
use super::response::{millis_between, Context, Upstream};
use super::served::{Answered, Pooled, VIA_UPSTREAM};
use super::settle::settle;
use super::state::{Decision, Facts, Pending, Reservation};
use super::Flow;
use crate::policy::api_keys::credential_headers_sent;
use crate::policy::config::DEFAULT_ROUTE_HEADER;
use crate::policy::guards::Subject;
use crate::policy::limits::AskedOutput;
use crate::policy::request::{only, values};
use crate::policy::usage::UsageFormat;
use crate::policy::{ApiFamily, Code, Policy, Reply};

enum Stage {
    /// Nothing seen yet.
    Headers,
    /// Headers held; the body is being buffered until its end.
    Body(Pending),
    /// Allowed, and waiting for its guards' answers (`guards.rs`), the request paused.
    Guards(Box<Guarded>),
    /// Decided: forwarded or answered. Later callbacks pass through untouched.
    Done,
}

/// What the headers step reads from the host.
struct HeadersRead {
    headers: Vec<(String, Vec<u8>)>,
    /// The value at the identity's metadata path, when the identity comes from metadata.
    metadata_identity: Option<Vec<u8>>,
    /// The client certificate's first URI SAN, when the identity reads the peer certificate.
    peer_uri_san: Option<Vec<u8>>,
}

/// The Envoy attribute holding the first URI SAN of the downstream peer certificate Envoy
/// verified (`connection.uri_san_peer_certificate`: `URISanPeerCertificate` in Envoy's
/// `source/extensions/filters/common/expr/context.h`, read by `ConnectionWrapper` in
/// `context.cc` from the connection's SSL info). Never a header such as
/// `x-forwarded-client-cert`, which a client could send.
const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// One request's state, from its headers to the end of its response.
pub struct Request<H: Host> {
    host: H,
    /// The policy in force when the request started; a new configuration applies to new
    /// requests only. `None` when no valid policy is loaded: every request is refused.
    policy: Option<Rc<Policy>>,
    /// Metric ids of this worker, shared by its requests.
    metrics: Rc<RefCell<MetricIds>>,
    stage: Stage,
    /// The API shape a refusal takes: the pending request's, else what the headers suggest,
    /// else OpenAI's.
    shape: ApiFamily,
    recorder: Recorder,
    /// The client sent `accept-encoding`, which must go when the response is read for usage.
    accept_encoding_sent: bool,
    /// When the request's headers arrived, in nanoseconds since the epoch.
    started_at: Option<u64>,
    /// Set once the request is forwarded: what to read from the response.
    upstream: Option<Upstream>,
    /// How the request was decided, once it is.
    outcome: Option<Outcome>,
    /// Set once a request for a pooled model is forwarded.
    pooled: Option<Pooled>,
    /// The response was replaced by the gateway's answer; the answer itself passes through.
    replaced: bool,
    /// Set once a request is forwarded whose consumer has rules that read answers.
    answers: Option<Answers>,
    /// What a budgeted request holds against its consumer's budget until it is forwarded
    /// (then its response holds it) or refused (then it is given back).
    reservation: Option<Reservation>,
}

/// How a request was decided: what `posturio eval` reports. Its parts are moved here from
/// the decision, never copied.
#[derive(Debug)]
pub struct Outcome {
    pub facts: Facts,
    /// The refusal, or what audit mode let through.
    pub reply: Option<Reply>,
    /// False for a refusal, and for a request the gateway answered itself (no reply).
    pub forwarded: bool,
    /// The format the response reports its usage in, for a forwarded request.
    pub usage: Option<UsageFormat>,
}

impl<H: Host> Request<H> {
    pub fn new(host: H, policy: Option<Rc<Policy>>, metrics: Rc<RefCell<MetricIds>>) -> Self {
        Request {
            host,
            policy,
            metrics,
            stage: Stage::Headers,
            shape: ApiFamily::OpenAi,
            recorder: Recorder::default(),
            accept_encoding_sent: false,
            started_at: None,
            upstream: None,
            outcome: None,
            pooled: None,
            replaced: false,
            answers: None,
            reservation: None,
        }
    }

    /// How the request was decided; `None` until it is.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Flow {
        self.started_at = self.host.now_nanos().ok();
        let Some(policy) = self.policy.clone() else {
            return self.no_policy();
        };
        let read = match self.read_headers(&policy) {
            Ok(read) => read,
            Err(error) => return self.refuse(self.host_failed(&error)),
        };
        let identity = IdentityInputs {
            now_seconds: self
                .started_at
                .and_then(|nanos| i64::try_from(nanos / NANOS_PER_SECOND).ok()),
            metadata: read.metadata_identity.as_deref(),
            peer_uri_san: read.peer_uri_san.as_deref(),
        };
        let pending = match classify_request(&policy, &read.headers, &identity) {
            Ok(pending) => pending,
            Err(reply) => return self.refuse(Refusal::bare(reply)),
        };
        self.shape = pending.shape();
        if end_of_stream {
            self.stage = Stage::Done;
            self.decide(&policy, &pending, &[], 0)
        } else {
            self.stage = Stage::Body(pending);
            Flow::Pause
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        let (Stage::Body(pending), Some(policy)) = (&self.stage, self.policy.clone()) else {
            return Flow::Continue;
        };
        self.recorder.body_bytes = body_size;
        if body_size > policy.max_body_bytes {
            // Answer as soon as the limit is crossed, without buffering the rest.
            let refusal = Refusal::new(
                too_large(&policy, pending.shape()),
                facts_before_body(&policy, pending),
            );
            return self.refuse(refusal);
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        // The body is complete: the request is decided now, so its pending state is taken
        // rather than copied.
        let Stage::Body(pending) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Flow::Continue;
        };
        match self.host.request_body(body_size) {
            Ok(body) => self.decide(&policy, &pending, &body, body_size),
            Err(error) => {
                let facts = facts_before_body(&policy, &pending);
                self.refuse(Refusal::host_failed(&error, pending.shape(), facts))
            }
        }
    }

    /// With trailers the body never reaches end of stream, and the buffered body cannot be
    /// rewritten reliably from here: refuse rather than forward it unread.
    pub fn on_request_trailers(&mut self) -> Flow {
        let (Stage::Body(pending), Some(policy)) = (&self.stage, self.policy.clone()) else {
            return Flow::Continue;
        };
        let reply = Reply::new(
            Code::InvalidRequest,
            pending.shape(),
            "requests with trailers are not accepted; send the body without trailers",
        );
        let refusal = Refusal::new(reply, facts_before_body(&policy, pending));
        self.refuse(refusal)
    }

    /// Adds the debug header to the response, when the policy asks for it, learns who
    /// answered (`served.rs`), and starts reading the upstream's response.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Flow {
        if let Some(value) = self.recorder.debug_header.take() {
            if let Err(error) = self.host.set_response_header("x-posturio-decision", &value) {
                log::warn!("{error}; no debug header");
            }
        }
        if self.upstream.is_none() || self.replaced {
            return Flow::Continue;
        }
        let details = self
            .host
            .property(&["response", "code_details"])
            .ok()
            .flatten();
        let from_upstream = details.as_deref() == Some(VIA_UPSTREAM);
        let answered = Answered {
            details: details.as_deref(),
            shape: self.shape,
            model: self
                .outcome
                .as_ref()
                .and_then(|outcome| outcome.facts.model.as_deref()),
            pooled: self.pooled.as_ref(),
        };
        let replacement =
            answered.replacement(&self.host, self.policy.as_deref(), &mut self.recorder);
        let reached_no_provider = replacement
            .as_ref()
            .is_some_and(|replacement| replacement.reached_no_provider);
        if let (cx, Some(upstream)) = self.response_step() {
            if reached_no_provider {
                // The upstream filter refused the request: nothing reached a provider, so
                // nothing is owed and the reservation is given back.
                upstream.expects_usage = false;
                settle(upstream, &cx);
            } else if upstream.headers(&cx, from_upstream && replacement.is_none(), end_of_stream) {
                settle(upstream, &cx);
            }
        }
        match replacement {
            Some(replacement) => {
                self.replaced = true;
                if replacement.reached_no_provider {
                    self.recorder
                        .refused_upstream(&self.host, &replacement.reply);
                }
                self.recorder
                    .replaced(&self.host, &self.metrics, &replacement.reply);
                answer_recorded_elsewhere(&self.host, &replacement.reply)
            }
            None if from_upstream => self.answer_headers(end_of_stream),
            None => {
                if let Some(answers) = self.answers.as_mut() {
                    answers.skip();
                }
                Flow::Continue
            }
        }
    }

    /// A chunk of the response body: read for usage and passed on as it is, except for a
    /// usage chunk the client did not ask for, and edited when the answer is inspected.
    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        if !self.replaced
            && self
                .answers
                .as_ref()
                .is_some_and(|answers| answers.holds_whole() || answers.edits_chunks())
        {
            return self.answer_body(body_size, end_of_stream);
        }
        if let (cx, Some(upstream)) = self.response_step() {
            upstream.body(&cx, body_size, end_of_stream);
            if end_of_stream {
                settle(upstream, &cx);
            }
        }
        Flow::Continue
    }

    /// Response trailers end the body without an end-of-stream body callback: a whole answer
    /// still held could not be inspected as it will be sent, so it is replaced. A stream has
    /// been edited chunk by chunk; what the editor still holds is lost, never sent unread.
    /// A stream ended so is recorded `cut_short`.
    pub fn on_response_trailers(&mut self) -> Flow {
        if let (_, Some(upstream)) = self.response_step() {
            upstream.ended_by_trailers = true;
        }
        if self.replaced {
            return Flow::Continue;
        }
        let Some(answers) = self.answers.as_mut() else {
            return Flow::Continue;
        };
        if answers.holds_whole() {
            let next = answers.unreadable(self.shape);
            return self.answer_next(next);
        }
        if let Some(verdict) = answers.cut_short() {
            self.record_answer(verdict.as_str());
        }
        Flow::Continue
    }

    /// The stream is over, whole or cut short: time it, and count whatever usage is known.
    pub fn on_log(&mut self) {
        // An answer still under inspection was left by the client (or never ended).
        if let Some(verdict) = self.answers.as_mut().and_then(Answers::cut_short) {
            self.record_answer(verdict.as_str());
        }
        let started_at = self.started_at;
        // Reserved, then never forwarded (the client left while its guards were asked).
        if let (Some(reservation), Some(policy)) = (self.reservation.take(), self.policy.as_deref())
        {
            budget::release(&self.host, policy, &reservation);
        }
        let (cx, upstream) = self.response_step();
        let settlement = upstream.and_then(|upstream| {
            // Not settled before the log: the body never ended, unless trailers ended it.
            upstream.cut = !upstream.ended_by_trailers;
            settle(upstream, &cx);
            upstream.settlement
        });
        self.recorder.settled(settlement.as_ref());
        let (cx, _) = self.response_step();
        let duration = millis_between(started_at, cx.host.now_nanos().ok());
        if let (Some(labels), Some(duration), Ok(mut metrics)) =
            (cx.labels, duration, cx.metrics.try_borrow_mut())
        {
            metrics.record(
                cx.host,
                metrics::REQUEST_DURATION,
                &[("model", &labels.model)],
                duration,
            );
        }
    }

    /// What the response steps read (the host, the policy, the metrics and the decided
    /// request's labels), beside the forwarded request's response state, when there is one.
    fn response_step(&mut self) -> (Context<'_, H>, Option<&mut Upstream>) {
        let cx = Context {
            host: &self.host,
            policy: self.policy.as_deref(),
            metrics: &self.metrics,
            labels: self.recorder.labels.as_ref(),
        };
        (cx, self.upstream.as_mut())
    }

    /// Drops the client's route header (and its credential headers, when the policy reads keys),
    /// then reads what identity and classification need: the headers, and the identity
    /// metadata and the peer certificate's URI SAN when the policy reads them.
    fn read_headers(&mut self, policy: &Policy) -> Result<HeadersRead, HostError> {
        let headers = self.host.request_headers()?;
        // A host call that fails from here on is answered in the shape the headers suggest;
        // found only then, since each request is otherwise classified once.
        let failed = |error: HostError, shape: &mut ApiFamily| {
            *shape = reply_shape(&headers);
            error
        };
        // The route header is the filter's alone: whatever the client sent is dropped first,
        // on every request, before anything can return early. A header that is not there
        // needs no host call (each costs Envoy about a microsecond).
        let sent = |name: &str| values(&headers, name).next().is_some();
        if sent(&policy.route_header) {
            self.host
                .set_request_header(&policy.route_header, None)
                .map_err(|error| failed(error, &mut self.shape))?;
        }
        // So is every header a provider reads as a credential, when the policy reads keys: the
        // provider sees only the credential Envoy injects for its cluster.
        if policy.identity.api_keys().is_some() {
            for name in credential_headers_sent(&headers) {
                self.host
                    .set_request_header(name, None)
                    .map_err(|error| failed(error, &mut self.shape))?;
            }
        }
        self.accept_encoding_sent = sent("accept-encoding");
        self.recorder.request_id = only(&headers, "x-request-id")
            .ok()
            .flatten()
            .map(|id| crate::policy::shorten::shorten(id).into_owned());
        let metadata_identity = match policy.identity.metadata() {
            Some((namespace, path)) => {
                let mut property = vec!["metadata", "filter_metadata", namespace];
                property.extend(path.iter().map(String::as_str));
                match self.host.property(&property) {
                    Ok(value) => value,
                    // A value Envoy cannot hand over (a null claim) is there, and names nobody.
                    Err(error) if error.status == "SerializationFailure" => {
                        Some(crate::policy::identity::NOT_A_NAME.to_vec())
                    }
                    Err(error) => return Err(failed(error, &mut self.shape)),
                }
            }
            None => None,
        };
        let peer_uri_san = match policy.identity.peer_certificate() {
            Some(_) => self
                .host
                .property(&PEER_URI_SAN)
                .map_err(|error| failed(error, &mut self.shape))?,
            None => None,
        };
        Ok(HeadersRead {
            headers,
            metadata_identity,
            peer_uri_san,
        })
    }

    /// Decides with the whole body (empty for a request that ended with its headers), then
    /// forwards or refuses.
    fn decide(
        &mut self,
        policy: &Policy,
        pending: &Pending,
        body: &[u8],
        body_size: usize,
    ) -> Flow {
        let (decision, facts) = decide_body(policy, pending, body);
        let mut forward = match decision {
            Decision::Refuse(reply) => return self.refuse(Refusal::new(reply, facts)),
            Decision::AnswerLocally(body) => return self.answer_locally(policy, facts, body),
            Decision::Forward(forward) => forward,
        };
        // Checked once the request is otherwise allowed, so that a refusal is recorded with
        // the model and provider the client asked for.
        // The estimate is reserved from here until the answer settles it; a request refused
        // or never forwarded gives it back (`refuse`, `on_log`).
        let budget_audit = match pending.consumer.as_deref() {
            Some(consumer) if policy.budget_for(consumer).is_some() => {
                let model = facts.model.as_deref();
                let asked = facts.asked_output.unwrap_or(AskedOutput::NOT_READ);
                let estimate = budget::estimate(policy, consumer, model, body_size, asked);
                match budget::reserve(&self.host, policy, pending, estimate) {
                    Checked::Unbudgeted => None,
                    Checked::Reserved(reservation) => {
                        self.reservation = Some(reservation);
                        None
                    }
                    Checked::Audited(reply, reservation) => {
                        self.reservation = reservation;
                        Some(reply)
                    }
                    Checked::Refused(reply, estimate) => {
                        self.recorder.reserved = Some(estimate);
                        return self.refuse(Refusal::new(reply, facts));
                    }
                }
            }
            _ => None,
        };
        let mut audited = forward.audited.take().or(budget_audit);
        // Planned before any guard is asked, so that a request refused for its answer's
        // format never reaches a guard service.
        let answers = match answer_inspection::plan(policy, pending, &facts, &mut audited) {
            Ok(answers) => answers,
            Err(reply) => return self.refuse(Refusal::new(reply, facts)),
        };
        let mut guarded = Guarded {
            calls: Vec::new(),
            forward,
            facts,
            audited,
            body_size,
            shape: pending.shape(),
            answers,
        };
        if let Some(request) = guarded.forward.guards.take() {
            let subject = Subject {
                consumer: guarded.facts.consumer.as_deref(),
                model: guarded.facts.model.as_deref(),
                endpoint: request.endpoint,
                request_id: self.recorder.request_id.as_deref(),
            };
            let cx = Counting {
                host: &self.host,
                policy,
                metrics: &self.metrics,
                request_id: self.recorder.request_id.as_deref(),
            };
            guarded.calls = guards::start(&cx, &request, &subject);
            if !guards::all_answered(&guarded.calls) {
                self.stage = Stage::Guards(Box::new(guarded));
                return Flow::Pause;
            }
        }
        self.guards_judged(policy, guarded)
    }

    /// The answer to a guard call (`num_headers` 0: the call failed without one). Once every
    /// guard has answered, the request is refused or forwarded and resumed.
    pub fn on_guard_answer(&mut self, token: u32, num_headers: usize, body_size: usize) {
        let (Stage::Guards(guarded), Some(policy)) = (&mut self.stage, self.policy.clone()) else {
            return;
        };
        let cx = Counting {
            host: &self.host,
            policy: &policy,
            metrics: &self.metrics,
            request_id: self.recorder.request_id.as_deref(),
        };
        if !guards::answered(&cx, &mut guarded.calls, token, (num_headers, body_size))
            || !guards::all_answered(&guarded.calls)
        {
            return;
        }
        let Stage::Guards(guarded) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return;
        };
        if self.guards_judged(&policy, *guarded) == Flow::Continue {
            if let Err(error) = self.host.resume_request() {
                log::warn!("{error}; the request was not resumed");
            }
        }
    }

    /// The guards have all answered (or none applied): refuse, or record and forward.
    fn guards_judged(&mut self, policy: &Policy, mut guarded: Guarded) -> Flow {
        let consumer_mode = guarded
            .facts
            .consumer
            .as_deref()
            .and_then(|consumer| policy.consumer_mode(consumer))
            .unwrap_or(policy.mode);
        if !guarded.calls.is_empty() {
            if let Err(reply) = guards::judge(policy, &mut guarded, consumer_mode) {
                return self.refuse(Refusal::new(reply, guarded.facts));
            }
        }
        let Guarded {
            forward,
            facts,
            audited,
            body_size,
            shape,
            answers,
            ..
        } = guarded;
        let decided = Decided {
            facts: &facts,
            reply: audited.as_ref(),
            forwarded: true,
        };
        // The line of a request that expects usage waits for its settlement.
        self.recorder.until_settled = forward.usage.is_some();
        if let Some(plan) = &forward.plan {
            self.recorder.defer_line = true;
            self.pooled = Some(Pooled {
                model: plan.model.clone(),
                cluster: forward.cluster.clone(),
            });
        }
        self.recorder
            .record(&self.host, Some(policy), &self.metrics, decided);
        let route = Route {
            header: &policy.route_header,
            body_size,
            accept_encoding_sent: self.accept_encoding_sent,
        };
        if let Err(error) = forward::forward(&self.host, &forward, &route) {
            return self.refuse(Refusal::host_failed(&error, shape, facts));
        }
        let mut upstream = Upstream::new(
            forward.usage,
            self.host.now_nanos().ok(),
            facts.stream_usage_added,
            body_size,
        );
        upstream.reservation = self.reservation.take();
        self.upstream = Some(upstream);
        self.answers = answers;
        self.outcome = Some(Outcome {
            facts,
            reply: audited,
            forwarded: true,
            usage: forward.usage,
        });
        Flow::Continue
    }

    /// A request the gateway serves itself (a model list): recorded as allowed, answered,
    /// never forwarded.
    fn answer_locally(&mut self, policy: &Policy, facts: Facts, body: Vec<u8>) -> Flow {
        let flow = answer::answer_allowed(
            &self.host,
            &mut self.recorder,
            Some(policy),
            &self.metrics,
            &facts,
            body,
        );
        self.outcome = Some(Outcome {
            facts,
            reply: None,
            forwarded: false,
            usage: None,
        });
        flow
    }

    /// Without a valid policy nothing can be decided: the route header still goes, so nothing
    /// is forwarded unchecked, and the request is refused.
    fn no_policy(&mut self) -> Flow {
        let _ = self.host.set_request_header(DEFAULT_ROUTE_HEADER, None);
        if let Ok(headers) = self.host.request_headers() {
            self.shape = reply_shape(&headers);
        }
        let reply = Reply::new(
            Code::InternalError,
            self.shape,
            "the gateway has no valid policy loaded",
        );
        self.refuse(Refusal::bare(reply))
    }

    fn host_failed(&self, error: &HostError) -> Refusal {
        Refusal::host_failed(error, self.shape, Facts::default())
    }

    /// The one place a refusal goes: recorded, then answered; the request is done.
    fn refuse(&mut self, refusal: Refusal) -> Flow {
        self.stage = Stage::Done;
        if let (Some(reservation), Some(policy)) = (self.reservation.take(), self.policy.as_deref())
        {
            budget::release(&self.host, policy, &reservation);
        }
        let flow = answer::answer(
            &self.host,
            &mut self.recorder,
            self.policy.as_deref(),
            &self.metrics,
            &refusal,
        );
        self.outcome = Some(Outcome {
            facts: refusal.facts,
            reply: Some(refusal.reply),
            forwarded: false,
            usage: None,
        });
        flow
    }
}

#[path = "driver_answers.rs"]
mod answers;

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "pool_tests.rs"]
mod pool_tests;

#[cfg(test)]
#[path = "spend_tests.rs"]
mod spend_tests;

#[cfg(test)]
#[path = "asked_output_tests.rs"]
mod asked_output_tests;
