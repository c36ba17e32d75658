//! Usage in Bedrock's event streams: `converse-stream` reports it in its `metadata` event
//! (`{"usage": {"inputTokens", "outputTokens", "cacheReadInputTokens",
//! "cacheWriteInputTokens", "totalTokens"}, "metrics": ...}`), `invoke-with-response-stream`
//! wraps each of the model's own events in a `chunk` event (`{"bytes": "<base64>"}`), the last
//! of which carries `amazon-bedrock-invocationMetrics` (`inputTokenCount`, `outputTokenCount`,
//! `cacheReadInputTokenCount`, `cacheWriteInputTokenCount`), as the Bedrock Runtime API
//! reference (`ConverseStream`, `InvokeModelWithResponseStream`, `PayloadPart`) describes.
//! Without those metrics, an Anthropic model's own events give its usage.
//!
//! A stream that fails a check or ends inside a message has unknown usage, whatever it
//! reported before: the reader cannot tell what else it would have said.

use base64::Engine as _;
use serde_json::Value;

use super::{Counts, Usage, UsageExtractor, UsageFormat};
use crate::policy::eventstream::{Event, EventStream};

const METADATA: &[u8] = b"metadata";
const CHUNK: &[u8] = b"chunk";
const METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

/// The usage read from a Bedrock event stream so far.
pub(super) struct BedrockEvents {
    stream: EventStream,
    /// The model's own events, decoded from `chunk` events, read as Anthropic's.
    model_events: UsageExtractor,
    /// `amazon-bedrock-invocationMetrics`, once a chunk gave them.
    metrics: Option<Counts>,
}

impl BedrockEvents {
    pub(super) fn new() -> Self {
        BedrockEvents {
            stream: EventStream::new(&[METADATA, CHUNK]),
            model_events: UsageExtractor::new(UsageFormat::Anthropic),
            metrics: None,
        }
    }

    /// Feeds a chunk of the body; `converse` reads each `metadata` event's payload.
    pub(super) fn feed(&mut self, chunk: &[u8], converse: &mut UsageExtractor) {
        let model_events = &mut self.model_events;
        let metrics = &mut self.metrics;
        self.stream.feed(chunk, &mut |event: Event<'_>| {
            if event.event_type == METADATA {
                converse.feed(event.payload);
                converse.end_document();
            } else if let Some(decoded) = chunk_bytes(event.payload) {
                if let Some(found) = invocation_metrics(&decoded) {
                    *metrics = Some(found);
                }
                model_events.feed(&decoded);
                model_events.end_document();
            }
        });
    }

    /// Whether what was read can be trusted: no check failed and no message was cut.
    fn intact(&self) -> bool {
        !self.stream.failed() && self.stream.between_messages()
    }

    /// The usage: Bedrock's invocation metrics, else the model's own events, else the
    /// `metadata` event read by `converse`.
    pub(super) fn usage(&self, converse: &UsageExtractor) -> Option<Usage> {
        if !self.intact() {
            return None;
        }
        let complete = |counts: Counts, format| counts.complete(format).then_some(counts);
        let metrics = self
            .metrics
            .and_then(|counts| complete(counts, UsageFormat::BedrockConverse))
            .map(|counts| counts.normalise(UsageFormat::BedrockConverse));
        let model = self
            .model_events
            .found
            .and_then(|counts| complete(counts, UsageFormat::Anthropic))
            .map(|counts| counts.normalise(UsageFormat::Anthropic));
        let metadata = converse
            .found
            .and_then(|counts| complete(counts, UsageFormat::BedrockConverse))
            .map(|counts| counts.normalise(UsageFormat::BedrockConverse));
        metrics.or(model).or(metadata)
    }

    /// The input tokens reported so far, while the usage is not complete.
    pub(super) fn partial_input(&self, converse: &UsageExtractor) -> Option<u64> {
        if self.stream.failed() {
            return None;
        }
        let input = |counts: Counts, format| counts.input.map(|_| counts.normalise(format).input);
        self.metrics
            .and_then(|counts| input(counts, UsageFormat::BedrockConverse))
            .or_else(|| {
                self.model_events
                    .found
                    .and_then(|counts| input(counts, UsageFormat::Anthropic))
            })
            .or_else(|| {
                converse
                    .found
                    .and_then(|counts| input(counts, UsageFormat::BedrockConverse))
            })
    }
}

/// The model's event inside a `chunk` event's payload: its `bytes`, base64-decoded. `None`
/// for a payload that is not an object with a base64 string there.
fn chunk_bytes(payload: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    let encoded = object.get("bytes")?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

/// `amazon-bedrock-invocationMetrics` of a model event, as Bedrock Converse counts (the
/// input count without the cache reads and writes, as in Bedrock's usage headers).
fn invocation_metrics(event: &[u8]) -> Option<Counts> {
    // Most events are text deltas: only one that names the metrics is parsed.
    if !contains(event, METRICS_KEY.as_bytes()) {
        return None;
    }
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(event) else {
        return None;
    };
    let Some(Value::Object(metrics)) = event.get(METRICS_KEY) else {
        return None;
    };
    let count = |name: &str| super::count(metrics, &[name]);
    Some(Counts {
        input: count("inputTokenCount").ok()?,
        output: count("outputTokenCount").ok()?,
        cache_read: count("cacheReadInputTokenCount").ok()?,
        cache_write: count("cacheWriteInputTokenCount").ok()?,
        ..Counts::default()
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
#[path = "usage_eventstream_tests.rs"]
mod tests;
