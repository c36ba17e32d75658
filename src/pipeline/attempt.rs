//! The upstream role: one attempt at a pool cluster's target. Envoy runs this filter once per
//! attempt (each retry gets a new HTTP context) with the target its load balancer picked; the
//! request filter's plan (filter state `posturio_plan`) says what that target gets. Nothing is
//! decided here: the attempt takes the plan's path, length and model text for its target.
//!
//! - request headers: the plan and the target read → every credential header removed (the
//!   header map is shared by all attempts: a key injected for an earlier target is still
//!   there) → the first attempt records the header names it sees (`posturio_headers`); a
//!   later attempt removes every header not in that record, so nothing an earlier attempt's
//!   filters added (an injector's key under any name) reaches the next target →
//!   `x-posturio-target`, `:path` and `content-length` set from the plan;
//! - request body (end): checked against the plan, the target's model text spliced in;
//! - response headers: the attempt counted by status class, the serving provider written to
//!   filter state (`posturio_served`) for the request filter;
//! - done without a response: counted as `reset`.
//!
//! A refused attempt is answered in the caller's shape with a message free of the gateway's
//! internals (the detail goes to the log, with the request id), and its code is written to
//! filter state (`posturio_refused`) so the request filter records the refusal and charges
//! nothing for it.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::answer::answer_recorded_elsewhere;
use super::classification::reply_shape;
use super::host::{Host, HostError};
use super::metrics::{self, MetricIds};
use super::Flow;
use crate::policy::api_keys::credential_headers_sent;
use crate::policy::classify::classify;
use crate::policy::plan::{
    misconfigured, Plan, ATTEMPTS_PROPERTY, HEADERS_PROPERTY, PLAN_PROPERTY, REFUSED_PROPERTY,
    SERVED_PROPERTY, TARGET_HEADER,
};
use crate::policy::request::only;
use crate::policy::shorten::loggable;
use crate::policy::{ApiFamily, Code, Reply};

/// The picked endpoint's metadata value naming its provider
/// (`filter_metadata.posturio.provider` of `xds.upstream_host_metadata`).
pub const TARGET_METADATA: [&str; 5] = [
    "xds",
    "upstream_host_metadata",
    "filter_metadata",
    "posturio",
    "provider",
];

/// What the first attempt saw of the request's headers (filter state `posturio_headers`).
#[derive(Serialize, Deserialize)]
struct HeaderRecord {
    /// The host the client called, before any attempt's `auto_host_rewrite`.
    authority: Option<String>,
    /// Every other header, credential headers aside: its name and its values as the first
    /// attempt saw them (a value that is not UTF-8 is not kept, and its header not resent).
    headers: Vec<(String, Vec<String>)>,
}

impl HeaderRecord {
    fn values(&self, name: &str) -> Option<&[String]> {
        self.headers
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, values)| values.as_slice())
    }
}

/// A header's values as one, the way HTTP combines repeated fields (cookies with `; `).
fn joined(header: &str, values: &[String]) -> String {
    let separator = if header.eq_ignore_ascii_case("cookie") {
        "; "
    } else {
        ", "
    };
    values.join(separator)
}

/// How an attempt ended, as the `class` label of `posturio_attempts_total`.
fn status_class(status: u16) -> &'static str {
    match status {
        429 => "429",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

enum Stage {
    Headers,
    /// Held until the end of the body; the plan and the chosen target's name.
    Body(Plan, String),
    /// Sent on, or refused: later request callbacks pass through.
    Sent,
}

/// One attempt's state.
pub struct Attempt<H: Host> {
    host: H,
    metrics: Rc<RefCell<MetricIds>>,
    stage: Stage,
    /// The model and provider labels, once known.
    model: String,
    provider: String,
    /// The attempt was counted (answered, refused or reset): counted once.
    counted: bool,
}

impl<H: Host> Attempt<H> {
    pub fn new(host: H, metrics: Rc<RefCell<MetricIds>>) -> Self {
        Attempt {
            host,
            metrics,
            stage: Stage::Headers,
            model: String::new(),
            provider: String::new(),
            counted: false,
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Flow {
        let plan = match self.host.property(&[PLAN_PROPERTY]) {
            Ok(Some(bytes)) => Plan::from_json(&bytes),
            Ok(None) => None,
            Err(error) => {
                log::error!("{error}");
                None
            }
        };
        let Some(plan) = plan else {
            return self.refuse(
                self.caller_shape(),
                None,
                500,
                "the pool cluster was reached without Posturio's decision (no readable plan in \
                 filter state posturio_plan); route this cluster only through Posturio's route \
                 header",
            );
        };
        self.model.clone_from(&plan.model);
        let target = match self.host.property(&TARGET_METADATA) {
            Ok(value) => value,
            Err(error) => {
                log::error!("{error}");
                None
            }
        };
        let target = target.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let Some(name) = target.clone().filter(|name| plan.target(name).is_some()) else {
            let named = target.map_or("(none)".to_owned(), |name| {
                format!("\"{}\"", loggable(&name))
            });
            let why = format!(
                "the pool cluster's endpoint names provider {named}, which is not a target of \
                 model \"{}\"; set each endpoint's filter_metadata.posturio.provider to one of \
                 the model's targets",
                loggable(&plan.model)
            );
            return self.refuse(plan.shape, Some(&plan.model), 502, &why);
        };
        self.provider.clone_from(&name);
        let before = match self.count_attempt() {
            Ok(before) => before,
            Err(error) => return self.host_failed(&plan, &error),
        };
        match self.set_headers(&plan, &name, before == 0) {
            Ok(true) => {}
            Ok(false) => {
                return self.refuse(
                    plan.shape,
                    Some(&plan.model),
                    500,
                    "a retry found no record of the first attempt's headers \
                     (posturio_headers), so it cannot tell what an earlier attempt added",
                )
            }
            Err(error) => return self.host_failed(&plan, &error),
        }
        if end_of_stream {
            if plan.body_length.is_some() {
                return self.mismatch(&plan, "the plan has a body and the request has none");
            }
            self.stage = Stage::Sent;
            return Flow::Continue;
        }
        self.stage = Stage::Body(plan, name);
        Flow::Pause
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        if !matches!(self.stage, Stage::Body(..)) {
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        let Stage::Body(plan, name) = std::mem::replace(&mut self.stage, Stage::Sent) else {
            return Flow::Continue;
        };
        let Some(target) = plan.target(&name) else {
            return self.mismatch(&plan, "the target left the plan");
        };
        let body = match self.host.request_body(body_size) {
            Ok(body) => body,
            Err(error) => return self.host_failed(&plan, &error),
        };
        match plan.splice(&body, target) {
            Ok(None) => Flow::Continue,
            Ok(Some(spliced)) => match self.host.replace_request_body(body_size, &spliced) {
                Ok(()) => Flow::Continue,
                Err(error) => self.host_failed(&plan, &error),
            },
            Err(error) => self.mismatch(&plan, &error.to_string()),
        }
    }

    /// With trailers the body never reaches its end here: the body cannot be checked, so it
    /// is not sent.
    pub fn on_request_trailers(&mut self) -> Flow {
        let Stage::Body(plan, _) = std::mem::replace(&mut self.stage, Stage::Sent) else {
            return Flow::Continue;
        };
        self.mismatch(&plan, "the request has trailers")
    }

    /// The target answered: count the attempt by status and name the serving provider.
    pub fn on_response_headers(&mut self) -> Flow {
        if self.counted || self.provider.is_empty() {
            return Flow::Continue;
        }
        let status = match self.host.response_headers() {
            Ok(headers) => headers
                .iter()
                .find(|(name, _)| name == ":status")
                .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
                .unwrap_or(0),
            Err(error) => {
                log::warn!("{error}");
                0
            }
        };
        self.count(status_class(status));
        if let Err(error) = self
            .host
            .set_property(&[SERVED_PROPERTY], self.provider.as_bytes())
        {
            log::warn!("{error}; the request filter will not know the serving provider");
        }
        Flow::Continue
    }

    /// The attempt is over: one that never got response headers was reset or refused to
    /// connect.
    pub fn on_done(&mut self) {
        if !self.counted && !self.provider.is_empty() {
            self.count("reset");
        }
    }

    /// `:path`, `content-length` and `x-posturio-target` from the plan, after every
    /// credential header is removed: set from kept values, never from what an earlier attempt
    /// left in the shared header map. The first attempt records the other header names it
    /// sees, and the host the client called; a later one removes every header not in that
    /// record (pseudo-headers aside) and puts the client's host back, so whatever Envoy or an
    /// earlier attempt's filters added after this one ran (an injector's key under a name that
    /// is no credential header, the previous target's host from `auto_host_rewrite`, which
    /// Envoy then keeps as `x-envoy-original-host`) never reaches the next target. False when
    /// a later attempt finds no record.
    fn set_headers(&self, plan: &Plan, name: &str, first: bool) -> Result<bool, HostError> {
        let headers = self.host.request_headers()?;
        let credentials = credential_headers_sent(&headers);
        for credential in &credentials {
            self.host.set_request_header(credential, None)?;
        }
        let others = headers
            .iter()
            .map(|(header, value)| (header.as_str(), value.as_slice()))
            .filter(|(header, _)| {
                !header.starts_with(':')
                    && !credentials
                        .iter()
                        .any(|credential| credential.eq_ignore_ascii_case(header))
            });
        if first {
            let mut record = HeaderRecord {
                authority: headers
                    .iter()
                    .find(|(header, _)| header == ":authority")
                    .map(|(_, value)| String::from_utf8_lossy(value).into_owned()),
                headers: Vec::new(),
            };
            for (header, value) in others {
                let Ok(value) = std::str::from_utf8(value) else {
                    continue;
                };
                match record
                    .headers
                    .iter_mut()
                    .find(|(known, _)| known.eq_ignore_ascii_case(header))
                {
                    Some((_, values)) => values.push(value.to_owned()),
                    None => record
                        .headers
                        .push((header.to_owned(), vec![value.to_owned()])),
                }
            }
            let json = serde_json::to_vec(&record).unwrap_or_default();
            self.host.set_property(&[HEADERS_PROPERTY], &json)?;
        } else {
            let record = self
                .host
                .property(&[HEADERS_PROPERTY])?
                .and_then(|bytes| serde_json::from_slice::<HeaderRecord>(&bytes).ok());
            let Some(record) = record else {
                return Ok(false);
            };
            // Every header back to what the first attempt saw: one an earlier attempt's
            // filters added is removed, and one they overwrote (an injector writing its key
            // over a header of the same name the client sent) gets the client's value back.
            let mut done: Vec<&str> = Vec::new();
            for (header, _) in others.clone() {
                if done.iter().any(|seen| seen.eq_ignore_ascii_case(header)) {
                    continue;
                }
                done.push(header);
                let now: Vec<&[u8]> = others
                    .clone()
                    .filter(|(other, _)| other.eq_ignore_ascii_case(header))
                    .map(|(_, value)| value)
                    .collect();
                match record.values(header) {
                    None => self.host.set_request_header(header, None)?,
                    // Envoy's own per-attempt headers (`x-envoy-attempt-count`, the expected
                    // timeout) are the router's to update.
                    Some(_) if header.to_ascii_lowercase().starts_with("x-envoy-") => {}
                    Some(values) => {
                        let same = now.len() == values.len()
                            && now
                                .iter()
                                .zip(values)
                                .all(|(now, kept)| *now == kept.as_bytes());
                        if !same {
                            self.host
                                .set_request_header(header, Some(&joined(header, values)))?;
                        }
                    }
                }
            }
            // A header the first attempt carried that an earlier attempt removed is sent again.
            for (header, values) in &record.headers {
                if !done.iter().any(|seen| seen.eq_ignore_ascii_case(header)) {
                    self.host
                        .set_request_header(header, Some(&joined(header, values)))?;
                }
            }
            if let Some(authority) = &record.authority {
                self.host
                    .set_request_header(":authority", Some(authority))?;
            }
        }
        let Some(target) = plan.target(name) else {
            return Ok(true);
        };
        self.host.set_request_header(TARGET_HEADER, Some(name))?;
        self.host.set_request_header(":path", Some(&target.path))?;
        if let Some(length) = target.body_length {
            self.host.set_request_header("transfer-encoding", None)?;
            self.host
                .set_request_header("content-length", Some(&length.to_string()))?;
        }
        Ok(true)
    }

    /// Without a plan, the caller's shape as the request filter derives it before a body:
    /// the endpoint the path names, else what the headers suggest.
    fn caller_shape(&self) -> ApiFamily {
        let Ok(headers) = self.host.request_headers() else {
            return ApiFamily::OpenAi;
        };
        let method = only(&headers, ":method").ok().flatten().unwrap_or_default();
        only(&headers, ":path")
            .ok()
            .flatten()
            .and_then(|path| classify(method, path))
            .map_or_else(
                || reply_shape(&headers),
                |classified| classified.endpoint.family(),
            )
    }

    /// `posturio_attempts`: the attempts so far, this one included. Returns the attempts
    /// before this one (0 for the first).
    fn count_attempt(&self) -> Result<u32, HostError> {
        let before = self
            .host
            .property(&[ATTEMPTS_PROPERTY])?
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        let now = before.saturating_add(1).to_string();
        self.host
            .set_property(&[ATTEMPTS_PROPERTY], now.as_bytes())?;
        Ok(before)
    }

    fn count(&mut self, class: &str) {
        self.counted = true;
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.count(
                &self.host,
                metrics::ATTEMPTS,
                &[
                    ("model", &self.model),
                    ("provider", &self.provider),
                    ("class", class),
                ],
                1,
            );
        }
    }

    fn mismatch(&mut self, plan: &Plan, why: &str) -> Flow {
        let why = format!(
            "the request for model \"{}\" does not match Posturio's plan for it, and is not \
             sent half rewritten: {why}",
            loggable(&plan.model)
        );
        self.refuse(plan.shape, Some(&plan.model), 500, &why)
    }

    fn host_failed(&mut self, plan: &Plan, error: &HostError) -> Flow {
        let why = format!("the request could not be prepared for its provider: {error}");
        self.refuse(plan.shape, Some(&plan.model), 500, &why)
    }

    /// The one place an attempt is refused: logged in full with the request id, counted as
    /// `refused`, its code left for the request filter, and answered with a message that
    /// names nothing of the gateway's wiring.
    fn refuse(&mut self, shape: ApiFamily, model: Option<&str>, status: u16, why: &str) -> Flow {
        let request_id = self.request_id();
        log::error!(
            "upstream attempt refused (request id {}): {why}",
            request_id.as_deref().unwrap_or("none")
        );
        self.stage = Stage::Sent;
        self.count("refused");
        let code = Code::InternalError;
        if let Err(error) = self
            .host
            .set_property(&[REFUSED_PROPERTY], code.as_str().as_bytes())
        {
            log::warn!("{error}; the request filter will not know the attempt was refused");
        }
        let reply = Reply::new(code, shape, misconfigured(model, request_id.as_deref()))
            .with_status(status);
        answer_recorded_elsewhere(&self.host, &reply)
    }

    /// Envoy's `x-request-id` of the request, for the log and the reply.
    fn request_id(&self) -> Option<String> {
        let headers = self.host.request_headers().ok()?;
        let (_, value) = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))?;
        Some(loggable(&String::from_utf8_lossy(value)))
    }
}

#[cfg(test)]
#[path = "attempt_tests.rs"]
mod tests;
