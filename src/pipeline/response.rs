//! The response step of a forwarded request: upstream status and timing metrics, and token
//! usage read from the body as it passes (never held back). The driver settles once the
//! response ends (`settle.rs`).

use std::cell::RefCell;

use super::host::Host;
use super::metrics::{self, MetricIds};
use super::record::Labels;
use super::state::{Reservation, Settlement};
use crate::policy::usage::{
    usage_from_bedrock_headers, BedrockHeaders, Framing, Usage, UsageFormat, UsageReader,
};
use crate::policy::usage_chunk::UsageChunkRemover;
use crate::policy::Policy;

/// What the filter reads from the response of a request it forwarded.
pub(super) struct Upstream {
    /// The usage format the endpoint answers with; `None` when it reports no usage.
    pub(super) format: Option<UsageFormat>,
    /// When the request went upstream, in nanoseconds since the epoch.
    pub(super) forwarded_at: Option<u64>,
    /// Set when the response is a success whose body can be read for usage.
    pub(super) reader: Option<UsageReader>,
    /// Usage given in response headers (Bedrock).
    pub(super) header_usage: Option<Usage>,
    /// The filter asked for stream usage the client did not: the usage chunk is taken out.
    pub(super) usage_chunk_added: bool,
    pub(super) remover: Option<UsageChunkRemover>,
    /// A request forwarded on an endpoint that reports usage owes its usage from the moment
    /// it goes upstream, whatever happens next (the client leaves, the upstream times out or
    /// resets); only an error answered by the provider itself, which it does not bill, or a
    /// reply from Envoy before the request reached the upstream, clears it.
    pub(super) expects_usage: bool,
    /// The provider answered with a success: its body bytes count toward an estimate.
    pub(super) answered: bool,
    /// Usage has been counted (or found missing); later callbacks do nothing.
    pub(super) settled: bool,
    /// The answer's body did not end (the client left, the upstream reset): settled with only
    /// the counts a provider gives in a final event of their own.
    pub(super) cut: bool,
    /// Trailers ended the body: the answer is whole although no body callback said so.
    pub(super) ended_by_trailers: bool,
    /// The size of the body forwarded, and the bytes of a successful answer relayed so far:
    /// what a budget is charged when the answer never reports its usage.
    pub(super) request_bytes: u64,
    pub(super) relayed_bytes: u64,
    /// What the request holds against its consumer's budget until it settles.
    pub(super) reservation: Option<Reservation>,
    /// What the answer was charged, once settled.
    pub(super) settlement: Option<Settlement>,
}

impl Upstream {
    pub(super) fn new(
        format: Option<UsageFormat>,
        forwarded_at: Option<u64>,
        usage_chunk_added: bool,
        request_bytes: usize,
    ) -> Self {
        Upstream {
            format,
            forwarded_at,
            reader: None,
            header_usage: None,
            usage_chunk_added,
            remover: None,
            expects_usage: format.is_some(),
            answered: false,
            settled: false,
            cut: false,
            ended_by_trailers: false,
            request_bytes: u64::try_from(request_bytes).unwrap_or(u64::MAX),
            relayed_bytes: 0,
            reservation: None,
            settlement: None,
        }
    }
}

pub(super) fn millis_between(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    Some(end?.checked_sub(start?)? / 1_000_000)
}

/// What the response step reads and writes besides the upstream's state.
pub(super) struct Context<'a, H: Host> {
    pub host: &'a H,
    pub policy: Option<&'a Policy>,
    pub metrics: &'a RefCell<MetricIds>,
    /// The metric labels of the decided request.
    pub labels: Option<&'a Labels>,
}

impl Upstream {
    /// The response's headers: count its status class, time the first byte, and decide
    /// whether its body can be read for usage. True when the provider's answer ends here, so
    /// it is settled now; Envoy's own replies are settled at the end of the stream.
    /// `from_upstream` is false for an answer Envoy (or a filter after this one) made in the
    /// provider's stead: neither an upstream response nor a source of usage.
    pub(super) fn headers<H: Host>(
        &mut self,
        cx: &Context<H>,
        from_upstream: bool,
        end_of_stream: bool,
    ) -> bool {
        let upstream = self;
        if !from_upstream {
            // Envoy's own reply. If the request reached an upstream host (a timeout, a reset)
            // the provider may have billed it: it still owes, and is charged at the end.
            let reached = cx
                .host
                .property(&["upstream", "address"])
                .map_or(true, |address| {
                    address.is_some_and(|value| !value.is_empty())
                });
            if !reached {
                // Nothing is owed; settled now, which gives any reservation back.
                upstream.expects_usage = false;
                return true;
            }
            return false;
        }
        let now = cx.host.now_nanos().ok();
        let headers = cx.host.response_headers().unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_slice())
        };
        let status = header(":status")
            .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
            .unwrap_or(0);
        let success = (200..300).contains(&status);
        if !success {
            // A provider does not bill the errors it answers.
            upstream.expects_usage = false;
        }
        if let Some(format) = upstream.format.filter(|_| success) {
            upstream.answered = true;
            if format == UsageFormat::BedrockConverse {
                upstream.header_usage = usage_from_bedrock_headers(BedrockHeaders {
                    input: header("x-amzn-bedrock-input-token-count"),
                    output: header("x-amzn-bedrock-output-token-count"),
                    cache_read: header("x-amzn-bedrock-cache-read-input-token-count"),
                    cache_write: header("x-amzn-bedrock-cache-write-input-token-count"),
                });
            }
            let identity = header("content-encoding")
                .is_none_or(|encoding| encoding.eq_ignore_ascii_case(b"identity"));
            // Only Bedrock answers in the AWS event stream; another provider's body in it is
            // not read.
            let framing = header("content-type")
                .and_then(Framing::from_content_type)
                .filter(|framing| {
                    *framing != Framing::EventStream || format == UsageFormat::BedrockConverse
                });
            // The body is read even when the headers give usage: the larger reading is
            // charged.
            if let (true, Some(framing)) = (identity, framing) {
                upstream.reader = Some(UsageReader::new(format, framing));
            }
            if identity && framing == Some(Framing::Sse) && upstream.usage_chunk_added {
                // Events are taken out, so a length the provider sent would be wrong.
                match cx.host.remove_response_header("content-length") {
                    Ok(()) => upstream.remover = Some(UsageChunkRemover::new()),
                    Err(error) => log::warn!("{error}; the usage chunk stays in the stream"),
                }
            }
        }
        let first_byte = millis_between(upstream.forwarded_at, now);
        if let (Some(labels), Ok(mut metrics)) = (cx.labels, cx.metrics.try_borrow_mut()) {
            metrics.count(
                cx.host,
                metrics::UPSTREAM_RESPONSES,
                &[
                    ("consumer", &labels.consumer),
                    ("model", &labels.model),
                    ("provider", &labels.provider),
                    ("class", metrics::status_class(status)),
                ],
                1,
            );
            if let Some(first_byte) = first_byte {
                metrics.record(
                    cx.host,
                    metrics::UPSTREAM_FIRST_BYTE,
                    &[("model", &labels.model)],
                    first_byte,
                );
            }
        }
        end_of_stream
    }

    /// A chunk of the response body: read for usage and passed on as it is, except for a
    /// usage chunk the client did not ask for.
    pub(super) fn body<H: Host>(&mut self, cx: &Context<H>, body_size: usize, end_of_stream: bool) {
        self.relay(body_size);
        if self.reader.is_some() || self.remover.is_some() {
            match cx.host.response_body(body_size) {
                Ok(chunk) => {
                    if let Some(edited) = self.read(&chunk, end_of_stream) {
                        if let Err(error) = cx.host.replace_response_body(body_size, &edited) {
                            log::warn!("{error}; the usage chunk stays in the stream");
                            self.remover = None;
                        }
                    }
                }
                Err(error) => self.unreadable(&error),
            }
        }
    }

    /// Counts `body_size` bytes of the answer as relayed, for an estimate.
    pub(super) fn relay(&mut self, body_size: usize) {
        if self.answered {
            let size = u64::try_from(body_size).unwrap_or(u64::MAX);
            self.relayed_bytes = self.relayed_bytes.saturating_add(size);
        }
    }

    /// Reads a chunk of the provider's bytes for usage; the chunk without the usage chunk the
    /// client did not ask for, when it held one.
    pub(super) fn read(&mut self, chunk: &[u8], end_of_stream: bool) -> Option<Vec<u8>> {
        if let Some(reader) = self.reader.as_mut() {
            reader.feed(chunk);
        }
        self.remover
            .as_mut()
            .and_then(|remover| remover.edit(chunk, end_of_stream))
    }

    /// The body could not be read: its usage is unknown.
    pub(super) fn unreadable(&mut self, error: &super::host::HostError) {
        log::warn!("{error}; usage of this response is unknown");
        self.reader = None;
        self.remover = None;
    }
}
