//! The response half of a forwarded request: upstream status and timing metrics, token usage
//! read from the body as it passes (never held back), and the consumer's budget charged once
//! the usage is known.

use super::host::Host;
use super::http::HttpFilter;
use super::metrics;
use crate::policy::budget::{self, Counter, CAS_RETRIES};
use crate::policy::usage::{
    usage_from_bedrock_headers, BedrockHeaders, Framing, Usage, UsageFormat, UsageReader,
};
use crate::policy::usage_chunk::UsageChunkRemover;

/// What the filter reads from the response of a request it forwarded.
pub(super) struct Upstream {
    /// The usage format the endpoint answers with; `None` when it reports no usage.
    format: Option<UsageFormat>,
    /// When the request went upstream, in nanoseconds since the epoch.
    forwarded_at: Option<u64>,
    /// Set when the response is a success whose body can be read for usage.
    reader: Option<UsageReader>,
    /// Usage given in response headers (Bedrock).
    header_usage: Option<Usage>,
    /// The filter asked for stream usage the client did not: the usage chunk is taken out.
    usage_chunk_added: bool,
    remover: Option<UsageChunkRemover>,
    /// A request forwarded on an endpoint that reports usage owes its usage from the moment
    /// it goes upstream, whatever happens next (the client leaves, the upstream times out or
    /// resets); only an error answered by the provider itself, which it does not bill, or a
    /// reply from Envoy before the request reached the upstream, clears it.
    expects_usage: bool,
    /// The provider answered with a success: its body bytes count toward an estimate.
    answered: bool,
    /// Usage has been counted (or found missing); later callbacks do nothing.
    settled: bool,
    /// The size of the body forwarded, and the bytes of a successful answer relayed so far:
    /// what a budget is charged when the answer never reports its usage.
    request_bytes: u64,
    relayed_bytes: u64,
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
            request_bytes: u64::try_from(request_bytes).unwrap_or(u64::MAX),
            relayed_bytes: 0,
        }
    }
}

fn millis_between(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    Some(end?.checked_sub(start?)? / 1_000_000)
}

impl<H: Host> HttpFilter<H> {
    /// The response's headers: count its status class, time the first byte, and decide
    /// whether its body can be read for usage.
    pub(super) fn response_started(&mut self, end_of_stream: bool) {
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        // A filter after this one (rate limiting, say) may answer in the provider's stead:
        // that reply is neither an upstream response nor a source of usage.
        let from_upstream = self
            .host
            .property(&["response", "code_details"])
            .ok()
            .flatten()
            .is_some_and(|details| details == b"via_upstream");
        if !from_upstream {
            // Envoy's own reply. If the request reached an upstream host (a timeout, a reset)
            // the provider may have billed it: it still owes, and is charged at the end.
            let reached = self
                .host
                .property(&["upstream", "address"])
                .map_or(true, |address| {
                    address.is_some_and(|value| !value.is_empty())
                });
            if !reached {
                upstream.settled = true;
            }
            return;
        }
        let now = self.host.now_nanos().ok();
        let headers = self.host.response_headers().unwrap_or_default();
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
            let framing = header("content-type").and_then(Framing::from_content_type);
            // The body is read even when the headers give usage: the larger reading is
            // charged.
            if let (true, Some(framing)) = (identity, framing) {
                upstream.reader = Some(UsageReader::new(format, framing));
            }
            if identity && framing == Some(Framing::Sse) && upstream.usage_chunk_added {
                // Events are taken out, so a length the provider sent would be wrong.
                match self.host.remove_response_header("content-length") {
                    Ok(()) => upstream.remover = Some(UsageChunkRemover::new()),
                    Err(error) => log::warn!("{error}; the usage chunk stays in the stream"),
                }
            }
        }
        let first_byte = millis_between(upstream.forwarded_at, now);
        if let (Some(labels), Ok(mut metrics)) = (&self.labels, self.metrics.try_borrow_mut()) {
            metrics.count(
                &self.host,
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
                    &self.host,
                    metrics::UPSTREAM_FIRST_BYTE,
                    &[("model", &labels.model)],
                    first_byte,
                );
            }
        }
        if end_of_stream {
            self.settle_usage();
        }
    }

    /// A chunk of the response body: read for usage and passed on as it is, except for a
    /// usage chunk the client did not ask for.
    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) {
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        if upstream.answered {
            let size = u64::try_from(body_size).unwrap_or(u64::MAX);
            upstream.relayed_bytes = upstream.relayed_bytes.saturating_add(size);
        }
        if upstream.reader.is_some() || upstream.remover.is_some() {
            match self.host.response_body(body_size) {
                Ok(chunk) => {
                    if let Some(reader) = upstream.reader.as_mut() {
                        reader.feed(&chunk);
                    }
                    let edited = upstream
                        .remover
                        .as_mut()
                        .and_then(|remover| remover.edit(&chunk, end_of_stream));
                    if let Some(edited) = edited {
                        if let Err(error) = self.host.replace_response_body(body_size, &edited) {
                            log::warn!("{error}; the usage chunk stays in the stream");
                            upstream.remover = None;
                        }
                    }
                }
                Err(error) => {
                    log::warn!("{error}; usage of this response is unknown");
                    upstream.reader = None;
                    upstream.remover = None;
                }
            }
        }
        if end_of_stream {
            self.settle_usage();
        }
    }

    /// The stream is over, whole or cut short: time it, and count whatever usage is known.
    pub fn on_log(&mut self) {
        if self.upstream.is_some() {
            self.settle_usage();
        }
        let duration = millis_between(self.started_at, self.host.now_nanos().ok());
        if let (Some(labels), Some(duration), Ok(mut metrics)) =
            (&self.labels, duration, self.metrics.try_borrow_mut())
        {
            metrics.record(
                &self.host,
                metrics::REQUEST_DURATION,
                &[("model", &labels.model)],
                duration,
            );
        }
    }

    /// Counts the response's tokens (or their absence) once, puts them in filter state for
    /// the access log, and charges the consumer's budget.
    fn settle_usage(&mut self) {
        let Some(upstream) = self.upstream.as_mut() else {
            return;
        };
        if upstream.settled {
            return;
        }
        upstream.settled = true;
        if !upstream.expects_usage {
            return;
        }
        let body_usage = upstream.reader.as_ref().and_then(UsageReader::usage);
        let usage = match (upstream.header_usage, body_usage) {
            (Some(headers), Some(body)) => Some(headers.larger(body)),
            (headers, body) => headers.or(body),
        };
        let partial_input = upstream
            .reader
            .as_ref()
            .and_then(UsageReader::partial_input);
        upstream.reader = None;
        let Some(labels) = self.labels.as_ref() else {
            return;
        };
        let by = [
            ("consumer", labels.consumer.as_str()),
            ("model", labels.model.as_str()),
            ("provider", labels.provider.as_str()),
        ];
        let Some(usage) = usage else {
            if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
                metrics.count(&self.host, metrics::USAGE_UNKNOWN, &by, 1);
            }
            // Never free: a budget is charged an estimate from the bytes that passed.
            let output_cap = self
                .policy
                .as_ref()
                .and_then(|policy| policy.output_cap_for(&labels.consumer));
            let estimate = budget::estimate(
                partial_input,
                upstream.request_bytes,
                upstream.relayed_bytes,
                output_cap,
            );
            self.charge_budget(&labels.consumer, estimate);
            return;
        };
        if let Ok(mut metrics) = self.metrics.try_borrow_mut() {
            metrics.count(&self.host, metrics::INPUT_TOKENS, &by, usage.input);
            metrics.count(&self.host, metrics::OUTPUT_TOKENS, &by, usage.output);
            metrics.count(&self.host, metrics::CACHED_INPUT_TOKENS, &by, usage.cached);
        }
        let total = usage.input.saturating_add(usage.output);
        for (key, value) in [
            ("posturio.input_tokens", usage.input),
            ("posturio.output_tokens", usage.output),
            ("posturio.cached_tokens", usage.cached),
            ("posturio.tokens", total),
        ] {
            if let Err(error) = self.host.set_property(&[key], value.to_string().as_bytes()) {
                log::debug!("{error}; the access log will miss {key}");
            }
        }
        self.charge_budget(&labels.consumer, total);
    }

    /// Adds `tokens` to each of the consumer's budget windows, shared by every worker:
    /// compare-and-swap, retried a few times when another worker wrote first.
    fn charge_budget(&self, consumer: &str, tokens: u64) {
        let Some(limits) = self
            .policy
            .as_ref()
            .and_then(|policy| policy.budget_for(consumer))
        else {
            return;
        };
        let Ok(now) = self.host.now_nanos() else {
            return;
        };
        let now = now / 1_000_000_000;
        for limit in &limits.limits {
            let key = budget::shared_key(consumer, limit.window);
            let charged = (0..CAS_RETRIES).any(|_| {
                let Ok((stored, cas)) = self.host.shared_data(&key) else {
                    return false;
                };
                let next = Counter::decode(stored.as_deref()).plus(limit.window, now, tokens);
                self.host
                    .set_shared_data(&key, &next.encode(), cas)
                    .unwrap_or(false)
            });
            if !charged {
                log::warn!(
                    "budget of {consumer} per {} not charged {tokens} tokens: shared data kept \
                     changing or failed",
                    limit.window.as_str()
                );
            }
        }
    }
}
