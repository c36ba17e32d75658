//! Refusals, and the one way a local reply reaches the client: recorded first, then sent.
//!
//! `Host::send_reply` takes an `Answer`, and only `answer` below can make one, right after
//! recording the refusal; so no step, and no adapter, can answer a request that the metrics,
//! the log line and the access log do not show.

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

/// A recorded refusal, ready to be sent. Only `answer` makes one.
pub struct Answer<'a> {
    reply: &'a Reply,
}

impl Answer<'_> {
    pub fn reply(&self) -> &Reply {
        self.reply
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
    let answer = Answer {
        reply: &refusal.reply,
    };
    if let Err(error) = host.send_reply(&answer) {
        log::error!("{error}; the request could not be answered");
    }
    Flow::Pause
}
