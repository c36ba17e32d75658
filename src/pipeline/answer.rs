//! Refusals, and the one way a local answer reaches the client: recorded first, then sent.
//!
//! `Host::send_reply` takes an `Answer` (status, headers, body), and only `answer` (a refusal)
//! and `answer_allowed` (a request the gateway serves itself, such as a model list) below can
//! make one, right after recording it; so no step, and no adapter, can answer a request that
//! the metrics, the log line and the access log do not show.

use std::cell::RefCell;

use super::host::{Host, HostError};
use super::metrics::MetricIds;
use super::record::{Decided, Recorder};
use super::state::Facts;
use super::Flow;
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// A request the pipeline refuses: the reply, and what was known of the request when it was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply: Reply,
    pub facts: Facts,
}

impl Refusal {
    pub fn new(reply: Reply, facts: Facts) -> Self {
        Refusal { reply, facts }
    }

    /// A refusal made before anything about the request is known.
    pub fn bare(reply: Reply) -> Self {
        Refusal::new(reply, Facts::default())
    }

    /// A host call failed: the request cannot be read or forwarded as decided, so it is
    /// refused (500) in the caller's API shape.
    pub fn host_failed(error: &HostError, shape: ApiFamily, facts: Facts) -> Self {
        log::error!("{error}; refusing the request");
        Refusal::new(
            Reply::new(
                Code::InternalError,
                shape,
                "the gateway could not read the request",
            ),
            facts,
        )
    }
}

/// A recorded answer, ready to be sent: its status, headers and body are all an adapter
/// sends. Only this file makes one.
pub struct Answer<'a> {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The refusal it renders, when it is one.
    refusal: Option<&'a Reply>,
}

impl Answer<'_> {
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The refusal this answer renders, if it is one: for hosts that keep what was refused
    /// (the test host). Adapters send status, headers and body, nothing else.
    pub fn refusal(&self) -> Option<&Reply> {
        self.refusal
    }
}

/// Records the refusal (decision `deny`), then answers the request locally.
pub(super) fn answer<H: Host>(
    host: &H,
    recorder: &mut Recorder,
    policy: Option<&Policy>,
    metrics: &RefCell<MetricIds>,
    refusal: &Refusal,
) -> Flow {
    let decided = Decided {
        facts: &refusal.facts,
        reply: Some(&refusal.reply),
        forwarded: false,
    };
    recorder.record(host, policy, metrics, decided);
    send(
        host,
        &Answer {
            status: refusal.reply.status(),
            headers: refusal.reply.headers(),
            body: refusal.reply.body(),
            refusal: Some(&refusal.reply),
        },
    )
}

/// Records a request the gateway serves itself (decision `allow`, never forwarded), then
/// answers it with 200 and this JSON body.
pub(super) fn answer_allowed<H: Host>(
    host: &H,
    recorder: &mut Recorder,
    policy: Option<&Policy>,
    metrics: &RefCell<MetricIds>,
    facts: &Facts,
    body: Vec<u8>,
) -> Flow {
    let decided = Decided {
        facts,
        reply: None,
        forwarded: false,
    };
    recorder.record(host, policy, metrics, decided);
    send(
        host,
        &Answer {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body,
            refusal: None,
        },
    )
}

/// An answer whose reason is counted and logged by its caller rather than recorded as a
/// decision: the upstream filter's refusal of one attempt (`attempt.rs`, counted as class
/// `refused`), and a forwarded request's answer replaced because Envoy answered in the
/// provider's stead or a pool answered without its upstream filter (the decision was
/// recorded when the request was forwarded).
pub(super) fn answer_recorded_elsewhere<H: Host>(host: &H, reply: &Reply) -> Flow {
    send(
        host,
        &Answer {
            status: reply.status(),
            headers: reply.headers(),
            body: reply.body(),
            refusal: Some(reply),
        },
    )
}

fn send<H: Host>(host: &H, answer: &Answer) -> Flow {
    if let Err(error) = host.send_reply(answer) {
        log::error!("{error}; the request could not be answered");
    }
    Flow::Pause
}
