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
//! reported before: the reader cannot tell what else it would have said. Where several sources
//! give usage (the metrics, the model's events, `metadata` events), each count is the largest
//! any gave: a source a provider adds cannot lower the charge.

use base64::Engine as _;
use serde_json::Value;

use super::{Counts, Unreadable, Usage, UsageExtractor, UsageFormat};
use crate::policy::eventstream::{Event, EventStream};

const METADATA: &[u8] = b"metadata";
const CHUNK: &[u8] = b"chunk";
const METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

/// The usage read from a Bedrock event stream so far.
pub(super) struct BedrockEvents {
    stream: EventStream,
    /// The model's own events, decoded from `chunk` events, read as Anthropic's.
    model_events: UsageExtractor,
    /// `amazon-bedrock-invocationMetrics`, once a chunk gave them (the largest of each count
    /// where several did).
    metrics: Option<Counts>,
    /// Invocation metrics with a count that could not be read: the usage is unknown.
    metrics_unreadable: bool,
}

impl BedrockEvents {
    pub(super) fn new() -> Self {
        BedrockEvents {
            stream: EventStream::new(&[METADATA, CHUNK]),
            model_events: UsageExtractor::new(UsageFormat::Anthropic, false),
            metrics: None,
            metrics_unreadable: false,
        }
    }

    /// Feeds a chunk of the body; `converse` reads each `metadata` event's payload.
    pub(super) fn feed(&mut self, chunk: &[u8], converse: &mut UsageExtractor) {
        let model_events = &mut self.model_events;
        let metrics = &mut self.metrics;
        let metrics_unreadable = &mut self.metrics_unreadable;
        self.stream.feed(chunk, &mut |event: Event<'_>| {
            if event.event_type == METADATA {
                converse.feed(event.payload);
                converse.end_document();
            } else if let Some(decoded) = chunk_bytes(event.payload) {
                match invocation_metrics(&decoded) {
                    Ok(Some(found)) => {
                        *metrics = Some(metrics.map_or(found, |earlier| earlier.merged(found)));
                    }
                    Ok(None) => {}
                    Err(Unreadable) => *metrics_unreadable = true,
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

    /// The usage: the largest of each count that Bedrock's invocation metrics, the model's
    /// own events and the `metadata` events (read by `converse`) gave, each source counted
    /// once complete. Unknown when any source could not be read.
    pub(super) fn usage(&self, converse: &UsageExtractor) -> Option<Usage> {
        if !self.intact()
            || self.metrics_unreadable
            || self.model_events.unreadable
            || converse.unreadable
        {
            return None;
        }
        let metrics = self
            .metrics
            .filter(|counts| counts.complete(UsageFormat::BedrockConverse))
            .map(|counts| counts.normalise(UsageFormat::BedrockConverse));
        [metrics, self.model_events.usage(), converse.usage()]
            .into_iter()
            .flatten()
            .reduce(Usage::larger)
    }

    /// The input tokens reported so far, while the usage is not complete: the largest any
    /// source gave, in the messages that passed their checks (a later failure does not undo
    /// what the provider said before it).
    pub(super) fn partial_input(&self, converse: &UsageExtractor) -> Option<u64> {
        let metrics = self
            .metrics
            .and_then(|counts| counts.known_input(UsageFormat::BedrockConverse));
        [
            metrics,
            self.model_events.known_input(),
            converse.known_input(),
        ]
        .into_iter()
        .flatten()
        .max()
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
/// input count without the cache reads and writes, as in Bedrock's usage headers); an error
/// when a count there cannot be read.
fn invocation_metrics(event: &[u8]) -> Result<Option<Counts>, Unreadable> {
    // Most events are text deltas: only one that names the metrics is parsed.
    if !contains(event, METRICS_KEY.as_bytes()) {
        return Ok(None);
    }
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(event) else {
        return Ok(None);
    };
    let metrics = match event.get(METRICS_KEY) {
        Some(Value::Object(metrics)) => metrics,
        None | Some(Value::Null) => return Ok(None),
        Some(_) => return Err(Unreadable),
    };
    let count = |name: &str| super::count(metrics, &[name]);
    Ok(Some(Counts {
        input: count("inputTokenCount")?,
        output: count("outputTokenCount")?,
        cache_read: count("cacheReadInputTokenCount")?,
        cache_write: count("cacheWriteInputTokenCount")?,
        ..Counts::default()
    }))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
#[path = "usage_eventstream_tests.rs"]
mod tests;
