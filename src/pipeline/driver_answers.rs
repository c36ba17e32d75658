//! The driver's answer inspection callbacks (see `answer_inspection.rs`): the response
//! headers held or passed, each body callback of an inspected answer, and what the step's
//! outcome does to the response — continue, hold, or replace it — and to the record.

use crate::pipeline::answer::answer_recorded_elsewhere;
use crate::pipeline::answer_inspection::{self, Next};
use crate::pipeline::host::Host;
use crate::pipeline::settle::settle;
use crate::pipeline::{Flow, Request};
use crate::policy::Code;

impl<H: Host> Request<H> {
    /// The provider's response headers, when its answer is inspected: held for a whole
    /// answer, passed for a stream, replaced when the answer cannot be read.
    pub(super) fn answer_headers(&mut self, end_of_stream: bool) -> Flow {
        let Some(answers) = self.answers.as_mut() else {
            return Flow::Continue;
        };
        let headers = match self.host.response_headers() {
            Ok(headers) => headers,
            Err(error) => {
                log::warn!("{error}; the answer cannot be inspected");
                Vec::new()
            }
        };
        let next = match answers.headers(&self.host, &headers, self.shape) {
            // A success with no body at all is no answer of its API.
            Next::Hold if end_of_stream => answers.unreadable(self.shape),
            next => next,
        };
        self.answer_next(next)
    }

    /// A body callback of an inspected answer.
    pub(super) fn answer_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        let (Some(policy), Some(answers)) = (self.policy.clone(), self.answers.as_mut()) else {
            return Flow::Continue;
        };
        if answers.holds_whole() {
            if let Some(next) = answers.whole_progress(body_size, end_of_stream, self.shape) {
                if let (Next::Replace(_), Some(upstream)) = (&next, self.upstream.as_mut()) {
                    upstream.relay(body_size);
                }
                return self.answer_next(next);
            }
            // Complete: read once, for usage (the provider's bytes) and for inspection.
            let body = self.host.response_body(body_size);
            if let (Ok(body), Some(upstream)) = (&body, self.upstream.as_mut()) {
                upstream.relay(body_size);
                upstream.read(body, true);
            }
            let (next, edited) =
                answers.whole_end(&policy, body.as_ref().map(Vec::as_slice), self.shape);
            if let Some(edited) = edited {
                // The length changed: say the new one, and drop any chunked framing so the
                // answer can never carry two conflicting lengths.
                let replaced = self
                    .host
                    .replace_response_body(body_size, &edited)
                    .and_then(|()| self.host.remove_response_header("transfer-encoding"))
                    .and_then(|()| {
                        self.host
                            .set_response_header("content-length", &edited.len().to_string())
                    });
                if let Err(error) = replaced {
                    // The provider's answer must not go out unedited.
                    log::warn!("{error}; the edited answer could not be sent");
                    let reply = answer_inspection::unreadable_reply(self.shape);
                    return self.answer_next(Next::Replace(reply));
                }
            }
            let flow = self.answer_next(next);
            return self.settled(flow);
        }
        // A stream: each chunk read once, for usage (the provider's bytes) and for editing.
        let chunk = match self.host.response_body(body_size) {
            Ok(chunk) => chunk,
            Err(error) => {
                log::warn!("{error}; the stream cannot be inspected and is cut");
                Vec::new()
            }
        };
        let without_usage = self.upstream.as_mut().and_then(|upstream| {
            upstream.relay(body_size);
            upstream.read(&chunk, end_of_stream)
        });
        let input = without_usage.as_deref().unwrap_or(&chunk);
        let (bytes, verdict) = answers.stream_chunk(&policy, input, end_of_stream);
        if bytes != chunk {
            if let Err(error) = self.host.replace_response_body(body_size, &bytes) {
                log::error!("{error}; the stream could not be edited");
            }
        }
        if let Some(verdict) = verdict {
            self.record_answer(verdict.as_str());
        }
        if end_of_stream {
            return self.settled(Flow::Continue);
        }
        Flow::Continue
    }

    /// Acts on what the answer step decided.
    pub(super) fn answer_next(&mut self, next: Next) -> Flow {
        match next {
            Next::Continue => Flow::Continue,
            Next::Hold => Flow::Pause,
            Next::Finished(verdict) => {
                self.record_answer(verdict.as_str());
                Flow::Continue
            }
            Next::Replace(reply) => {
                self.replaced = true;
                let verdict = if reply.code == Code::ResponseBlocked {
                    "blocked"
                } else {
                    "unreadable"
                };
                self.record_answer(verdict);
                self.recorder.replaced(&self.host, &self.metrics, &reply);
                let flow = answer_recorded_elsewhere(&self.host, &reply);
                // The provider's answer ends here for its usage: the gateway's own reply that
                // follows is not read as the provider's.
                self.settled(flow)
            }
        }
    }

    pub(super) fn record_answer(&mut self, verdict: &str) {
        if let Some(answers) = self.answers.as_ref() {
            self.recorder.answer_inspected(
                &self.host,
                self.policy.as_deref(),
                &self.metrics,
                (answers.findings(), verdict),
            );
        }
    }

    /// Settles the response's usage (its end was seen), then goes on with `flow`.
    pub(super) fn settled(&mut self, flow: Flow) -> Flow {
        if let (cx, Some(upstream)) = self.response_step() {
            settle(upstream, &cx);
        }
        flow
    }
}
