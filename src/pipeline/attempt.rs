//! The upstream role: one attempt at a pool cluster's target. Envoy runs this filter once per
//! attempt (each retry gets a new HTTP context) with the target its load balancer picked; the
//! request filter's plan (filter state `posturio_plan`) says what that target gets. Nothing is
//! decided here: the attempt takes the plan's path, length and model text for its target.
//!
//! - request headers: the plan and the target read → every credential header removed (the
//!   header map is shared by all attempts: a key injected for an earlier target is still
//!   there) → `x-posturio-target`, `:path` and `content-length` set from the plan;
//! - request body (end): checked against the plan, the target's model text spliced in;
//! - response headers: the attempt counted by status class, the serving provider written to
//!   filter state (`posturio_served`) for the request filter;
//! - done without a response: counted as `reset`.

use std::cell::RefCell;
use std::rc::Rc;

use super::answer::answer_recorded_elsewhere;
use super::classification::reply_shape;
use super::host::{Host, HostError};
use super::metrics::{self, MetricIds};
use super::Flow;
use crate::policy::api_keys::credential_headers_sent;
use crate::policy::classify::classify;
use crate::policy::plan::{Plan, ATTEMPTS_PROPERTY, PLAN_PROPERTY, SERVED_PROPERTY, TARGET_HEADER};
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
                Reply::new(
                    Code::InternalError,
                    self.caller_shape(),
                    "the pool cluster was reached without Posturio's decision; route this \
                     cluster only through Posturio's route header",
                )
                .with_status(500),
                "no readable plan in filter state posturio_plan",
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
            let message = format!(
                "the pool cluster's endpoint names provider {named}, which is not a target of \
                 model \"{}\"; set each endpoint's filter_metadata.posturio.provider to one of \
                 the model's targets",
                loggable(&plan.model)
            );
            return self.refuse(
                Reply::new(Code::InternalError, plan.shape, message.clone()).with_status(502),
                &message,
            );
        };
        self.provider.clone_from(&name);
        if let Err(error) = self.count_attempt() {
            log::warn!("{error}; posturio_attempts not updated");
        }
        if let Err(error) = self.set_headers(&plan, &name) {
            return self.host_failed(&plan, &error);
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
    /// left in the shared header map.
    fn set_headers(&self, plan: &Plan, name: &str) -> Result<(), HostError> {
        let headers = self.host.request_headers()?;
        for credential in credential_headers_sent(&headers) {
            self.host.set_request_header(credential, None)?;
        }
        let Some(target) = plan.target(name) else {
            return Ok(());
        };
        self.host.set_request_header(TARGET_HEADER, Some(name))?;
        self.host.set_request_header(":path", Some(&target.path))?;
        if let Some(length) = target.body_length {
            self.host.set_request_header("transfer-encoding", None)?;
            self.host
                .set_request_header("content-length", Some(&length.to_string()))?;
        }
        Ok(())
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

    /// `posturio_attempts`: the attempts so far, this one included.
    fn count_attempt(&self) -> Result<(), HostError> {
        let before = self
            .host
            .property(&[ATTEMPTS_PROPERTY])?
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        let now = before.saturating_add(1).to_string();
        self.host.set_property(&[ATTEMPTS_PROPERTY], now.as_bytes())
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
        let message = format!(
            "the request for model \"{}\" does not match Posturio's plan for it, and is not \
             sent half rewritten: {why}",
            loggable(&plan.model)
        );
        self.refuse(
            Reply::new(Code::InternalError, plan.shape, message.clone()),
            &message,
        )
    }

    fn host_failed(&mut self, plan: &Plan, error: &HostError) -> Flow {
        let message = format!("{error}");
        self.refuse(
            Reply::new(
                Code::InternalError,
                plan.shape,
                "the gateway could not prepare the request for its provider",
            ),
            &message,
        )
    }

    /// The one place an attempt is refused: logged, counted as `refused`, answered.
    fn refuse(&mut self, reply: Reply, why: &str) -> Flow {
        log::error!("upstream attempt refused: {why}");
        self.stage = Stage::Sent;
        self.count("refused");
        answer_recorded_elsewhere(&self.host, &reply)
    }
}

#[cfg(test)]
#[path = "attempt_tests.rs"]
mod tests;
