//! Answer inspection: the model's output in a response, read in every family's format, whole
//! or as a stream, and edited (redacted), cut (blocked) or recorded as the rules that look at
//! answers decide. Pure: the pipeline feeds it the response bytes and sends what it returns.
//!
//! The scanning itself (which rules apply to the consumer, folding, detectors and patterns) is
//! behind `AnswerScan`, so this module knows answer formats and nothing of the policy.

use std::ops::Range;

use super::usage::Framing;

mod channel;
mod families;
mod hits;
mod json_strings;
mod kinds;
mod parts;
mod sse_event;
mod stream;
#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod test_scan;
mod whole;

pub use channel::HOLD_CAP;
pub use stream::{held_bound, MAX_CHANNELS, MAX_EVENT_BYTES};

/// The format of an answer, from the endpoint the request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerShape {
    /// OpenAI (and Azure OpenAI) chat completions.
    OpenAiChat,
    /// OpenAI (and Azure OpenAI) completions.
    OpenAiCompletions,
    /// OpenAI Responses.
    OpenAiResponses,
    /// Anthropic Messages (and Bedrock `invoke` of an Anthropic model).
    Anthropic,
    /// Gemini `generateContent` and `streamGenerateContent`.
    Gemini,
    /// Bedrock Converse.
    BedrockConverse,
    /// Bedrock `invoke` of a model whose answer format is its own: every string is output.
    BedrockInvoke,
}

/// What a piece of answer text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerText {
    /// Text the model wrote for the reader: message content, completions text, refusals,
    /// reasoning shown to the client.
    Output,
    /// Arguments of a tool call the model made (JSON text, or a JSON value in the answer).
    ToolArguments,
    /// Any other string in the answer.
    Other,
}

/// What a match does to the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The answer must not reach the client.
    Block,
    /// The matched text is replaced by `[REDACTED:<rule id>]`.
    Redact,
    /// Recorded only (audit).
    Record,
}

/// A match in a piece of answer text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMatch {
    /// The rule, by index into the policy's rules.
    pub rule: usize,
    /// Bytes of the text scanned.
    pub range: Range<usize>,
    pub effect: Effect,
}

/// Scans answer text for the rules that apply to the request's consumer.
pub trait AnswerScan {
    /// Appends the matches in `text`, which is of kind `kind`.
    fn scan(&self, text: &str, kind: AnswerText, out: &mut Vec<AnswerMatch>);
    /// The marker a redaction by `rule` writes: `[REDACTED:<rule id>]`.
    fn marker(&self, rule: usize) -> String;
    /// How many bytes a stream holds back so that a match is seen whole before any of it is
    /// sent: the longest match the rules can make, capped.
    fn window(&self) -> usize;
    /// Where a match that has no length bound may have begun and still be growing: the
    /// start of a possible match that runs to the end of `text` (a JWT's `eyJ` followed by
    /// token characters only, a private key's BEGIN line with no END after it), and the
    /// rule that would redact or block it. A stream holds from there, up to its cap, so no
    /// part of such a match is sent before it is seen whole. By default none.
    fn open_match(&self, text: &str, kind: AnswerText) -> Option<(usize, usize)> {
        let _ = (text, kind);
        None
    }
    /// The rule's id, for the message of a blocked answer. By default read back from the
    /// rule's marker.
    fn rule_id(&self, rule: usize) -> String {
        let marker = self.marker(rule);
        marker
            .strip_prefix("[REDACTED:")
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(&marker)
            .to_owned()
    }
}

/// What inspection found in one answer, for the record and the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Each rule that matched, with its effect, once per rule and effect, in order found.
    pub fired: Vec<(usize, Effect)>,
    /// How many redactions were made.
    pub redactions: usize,
    /// The rule that blocked the answer, if one did.
    pub blocked_by: Option<usize>,
    /// The answer could not be read, so it was not sent (a stream: cut there): a malformed or
    /// oversized event, too many channels, log probabilities in a stream.
    pub unreadable: bool,
}

impl Findings {
    /// Notes that `rule` fired with `effect`, once per rule and effect.
    fn fire(&mut self, rule: usize, effect: Effect) {
        if !self.fired.contains(&(rule, effect)) {
            self.fired.push((rule, effect));
        }
    }
}

/// What becomes of a whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WholeAnswer {
    /// Send it as it is.
    Unchanged,
    /// Send this instead (still valid JSON of the same shape).
    Edited(Vec<u8>),
    /// Do not send it: the pipeline answers with an error in the caller's shape.
    Blocked { rule: usize },
    /// It could not be read as an answer of its shape, so it could not be inspected: the
    /// pipeline does not send it either.
    Unreadable,
}

/// Inspects a whole answer (`framing` Json: one JSON document, or a JSON array of them as
/// Gemini streams without `alt=sse`).
pub fn inspect_whole(
    shape: AnswerShape,
    body: &[u8],
    scan: &dyn AnswerScan,
    findings: &mut Findings,
) -> WholeAnswer {
    whole::inspect(shape, body, scan, findings)
}

/// What to send after a chunk of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStep {
    /// Send these bytes now (possibly none): whole events only, edited where needed.
    Send(Vec<u8>),
    /// Send these bytes (the events before the match, then the family's error event) and end
    /// the stream; nothing more is sent.
    Cut(Vec<u8>),
}

/// Edits a streamed answer (server-sent events) as it passes, holding back only what a match
/// could still span.
#[derive(Debug)]
pub struct StreamEditor {
    state: stream::Stream,
}

impl StreamEditor {
    /// `None` when the shape's streams cannot be read (the pipeline then does not forward a
    /// request whose answer it would have to inspect): Bedrock's binary event streams, and
    /// framing Json (buffered and read with `inspect_whole`).
    pub fn new(shape: AnswerShape, framing: Framing) -> Option<StreamEditor> {
        let readable = !matches!(
            shape,
            AnswerShape::BedrockConverse | AnswerShape::BedrockInvoke
        );
        (framing == Framing::Sse && readable).then(|| StreamEditor {
            state: stream::Stream::new(shape),
        })
    }

    /// Takes the next chunk of the stream; `end_of_stream` with the last one (possibly empty).
    pub fn push(&mut self, chunk: &[u8], end_of_stream: bool, scan: &dyn AnswerScan) -> StreamStep {
        self.state.push(chunk, end_of_stream, scan)
    }

    pub fn findings(&self) -> &Findings {
        self.state.findings()
    }

    /// Bytes held back right now, for the memory bound (`held_bound`).
    pub fn held(&self) -> usize {
        self.state.held()
    }
}
