//! The answer inspection step: for a request whose consumer has rules that read answers, the
//! provider's answer is inspected before the client gets it. A whole (JSON) answer is held to
//! its end, then sent as it is, edited, or replaced by an error in the caller's shape; a
//! stream is edited event by event as it passes (`policy::answer::StreamEditor`), holding back
//! only what a match could still span, and cut with the family's error event when a rule
//! blocks. A consumer without such rules never reaches this step.

use super::answer_array::inspect_gemini_array;
use super::host::{Host, HostError};
use super::state::{Facts, Pending, RequestKind};
use crate::policy::answer::{
    inspect_whole, AnswerShape, Findings, StreamEditor, StreamStep, WholeAnswer,
};
use crate::policy::answer_scan::AnswerRules;
use crate::policy::classify::{split_query, Classified, Endpoint};
use crate::policy::compiled::Policy;
use crate::policy::config::Mode;
use crate::policy::usage::Framing;
use crate::policy::{ApiFamily, Code, Reply};

/// The most a whole answer is buffered to, whatever `max_body_bytes` allows.
const WHOLE_ANSWER_CAP: usize = 16 * 1024 * 1024;

/// What became of an answer, for `posturio_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Passed,
    Redacted,
    Blocked,
    Unreadable,
    /// The answer ended before its inspection did: the client left, or the stream ended with
    /// trailers. Whatever was held back (a whole answer, or the end of a stream's text) was
    /// never sent.
    CutShort,
}

impl Verdict {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Redacted => "redacted",
            Verdict::Blocked => "blocked",
            Verdict::Unreadable => "unreadable",
            Verdict::CutShort => "cut_short",
        }
    }
}

enum State {
    /// The response's headers have not arrived.
    Waiting,
    /// A whole answer being buffered to its end.
    Whole,
    /// A stream, edited as it passes.
    Stream(Box<StreamEditor>),
    /// A stream cut by a rule: every later byte is dropped.
    Cut,
    /// Nothing (more) to inspect: an error answer, or the answer already dealt with.
    Done,
}

/// One forwarded request's answer inspection.
pub(super) struct Answers {
    shape: AnswerShape,
    /// The rules that read answers and apply to the consumer, by index.
    rules: Vec<usize>,
    consumer_mode: Mode,
    /// The most bytes of a whole answer held.
    whole_cap: usize,
    state: State,
    /// What the inspection found, once it is over.
    findings: Findings,
}

/// What the driver does after a response callback of this step.
pub(super) enum Next {
    /// Pass the response on (as edited).
    Continue,
    /// Hold it: the whole answer is still arriving.
    Hold,
    /// The answer is replaced by this error; the step is over.
    Replace(Reply),
    /// The inspection is over: record it.
    Finished(Verdict),
}

/// The answer inspection a forwarded request needs: `None` when no rule that reads answers
/// applies to its consumer (no work, no host call), or its endpoint generates no text. A
/// request that would stream in a format the engine cannot read is refused when a rule would
/// block or redact, else (every rule only records) forwarded as an audit.
pub(super) fn plan(
    policy: &Policy,
    pending: &Pending,
    facts: &Facts,
    audited: &mut Option<Reply>,
) -> Result<Option<Answers>, Reply> {
    let RequestKind::Endpoint(classified) = &pending.kind else {
        return Ok(None);
    };
    let consumer = pending
        .consumer
        .as_deref()
        .and_then(|consumer| policy.consumers.get(consumer));
    let rules = policy.answer_rules(consumer);
    if rules.is_empty() {
        return Ok(None);
    }
    let Some(shape) = answer_shape(classified, facts.upstream_model.as_deref()) else {
        return Ok(None);
    };
    let mode = consumer.map_or(policy.mode, |consumer| consumer.mode);
    if bedrock_stream(&pending.path) {
        let reply = unreadable_stream_reply(pending.shape);
        if AnswerRules::new(policy, &rules, mode).enforces() {
            return Err(reply);
        }
        audited.get_or_insert(reply);
        return Ok(None);
    }
    Ok(Some(Answers::new(policy, shape, rules, mode)))
}

/// The answer format of an endpoint that generates text; `None` for embeddings, token counts
/// and model lists, whose answers hold no model text.
fn answer_shape(classified: &Classified, upstream_model: Option<&str>) -> Option<AnswerShape> {
    use Endpoint::*;
    Some(match classified.endpoint {
        ChatCompletions | AzureChatCompletions => AnswerShape::OpenAiChat,
        Completions | AzureCompletions => AnswerShape::OpenAiCompletions,
        Responses => AnswerShape::OpenAiResponses,
        Messages => AnswerShape::Anthropic,
        GeminiGenerate if !classified.counts_tokens => AnswerShape::Gemini,
        BedrockConverse => AnswerShape::BedrockConverse,
        // An Anthropic model's own format; any other model's is read as all output.
        BedrockInvoke if upstream_model.is_some_and(|model| model.contains("anthropic.")) => {
            AnswerShape::Anthropic
        }
        BedrockInvoke => AnswerShape::BedrockInvoke,
        Embeddings | AzureEmbeddings | CountTokens | GeminiGenerate => return None,
    })
}

/// Whether the request asks for a Bedrock event stream, a binary framing the engine does not
/// read.
fn bedrock_stream(path: &str) -> bool {
    let (path, _) = split_query(path);
    path.ends_with("/converse-stream") || path.ends_with("/invoke-with-response-stream")
}

/// The refusal of a request whose answer would have to be inspected in a stream format the
/// gateway cannot read.
fn unreadable_stream_reply(shape: ApiFamily) -> Reply {
    Reply::new(
        Code::InvalidRequest,
        shape,
        "answers on this endpoint are inspected and its stream format cannot be; send the \
         request without streaming",
    )
}

impl Answers {
    pub(super) fn new(
        policy: &Policy,
        shape: AnswerShape,
        rules: Vec<usize>,
        consumer_mode: Mode,
    ) -> Self {
        Answers {
            shape,
            rules,
            consumer_mode,
            whole_cap: policy
                .max_body_bytes
                .saturating_mul(4)
                .min(WHOLE_ANSWER_CAP),
            state: State::Waiting,
            findings: Findings::default(),
        }
    }

    pub(super) fn findings(&self) -> &Findings {
        &self.findings
    }

    /// Whether a whole answer is being held (its body callbacks then see the buffer so far).
    pub(super) fn holds_whole(&self) -> bool {
        matches!(self.state, State::Whole)
    }

    /// Whether the answer is edited chunk by chunk (its body callbacks read each chunk).
    pub(super) fn edits_chunks(&self) -> bool {
        matches!(self.state, State::Stream(_) | State::Cut)
    }

    /// The provider's response headers: an error answer passes as it is; a success must be
    /// one this step can read (identity encoding, JSON or server-sent events), or it is
    /// replaced.
    pub(super) fn headers<H: Host>(
        &mut self,
        host: &H,
        headers: &[(String, Vec<u8>)],
        shape: ApiFamily,
    ) -> Next {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_slice())
        };
        let status = header(":status")
            .and_then(|value| std::str::from_utf8(value).ok()?.parse::<u16>().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            // A provider's error carries no model text; it passes as today.
            self.state = State::Done;
            return Next::Continue;
        }
        // Every value counts: a second `content-encoding` or `content-type` the client reads
        // must not hide behind a first one that passes.
        let values = |name: &'static str| {
            headers
                .iter()
                .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_slice())
        };
        let identity =
            values("content-encoding").all(|encoding| encoding.eq_ignore_ascii_case(b"identity"));
        let mut types = values("content-type");
        let framing = match (types.next(), types.next()) {
            (Some(only), None) => Framing::from_content_type(only),
            _ => None,
        };
        match (identity, framing) {
            (true, Some(Framing::Json)) => {
                self.state = State::Whole;
                Next::Hold
            }
            (true, Some(Framing::Sse)) => match StreamEditor::new(self.shape, Framing::Sse) {
                Some(editor) => {
                    // Events are edited, so the provider's length would be wrong.
                    if header("content-length").is_some() {
                        if let Err(error) = host.remove_response_header("content-length") {
                            return self.unreadable_after(&error, shape);
                        }
                    }
                    self.state = State::Stream(Box::new(editor));
                    Next::Continue
                }
                None => self.unreadable(shape),
            },
            _ => self.unreadable(shape),
        }
    }

    /// A body callback while a whole answer is held (`body_size` is everything so far):
    /// `None` once the answer is complete, to be read and given to `whole_end`.
    pub(super) fn whole_progress(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
        shape: ApiFamily,
    ) -> Option<Next> {
        if body_size > self.whole_cap {
            return Some(self.unreadable(shape));
        }
        (!end_of_stream).then_some(Next::Hold)
    }

    /// The whole answer, complete: what to do with it, and the body to send instead when it
    /// was edited.
    pub(super) fn whole_end(
        &mut self,
        policy: &Policy,
        body: Result<&[u8], &HostError>,
        shape: ApiFamily,
    ) -> (Next, Option<Vec<u8>>) {
        let body = match body {
            Ok(body) => body,
            Err(error) => return (self.unreadable_after(error, shape), None),
        };
        let scan = AnswerRules::new(policy, &self.rules, self.consumer_mode);
        self.state = State::Done;
        let array = match self.shape {
            AnswerShape::Gemini => inspect_gemini_array(body, &scan, &mut self.findings),
            _ => None,
        };
        let inspected =
            array.unwrap_or_else(|| inspect_whole(self.shape, body, &scan, &mut self.findings));
        match inspected {
            WholeAnswer::Unchanged => (Next::Finished(self.passed()), None),
            WholeAnswer::Edited(edited) => (Next::Finished(self.passed()), Some(edited)),
            WholeAnswer::Blocked { rule } => {
                self.findings.blocked_by.get_or_insert(rule);
                (Next::Replace(blocked_reply(policy, rule, shape)), None)
            }
            WholeAnswer::Unreadable => (self.unreadable(shape), None),
        }
    }

    /// The answer is not the provider's (Envoy's or another filter's own): nothing to read.
    pub(super) fn skip(&mut self) {
        self.state = State::Done;
    }

    /// A chunk of a stream (after the usage chunk remover, if any): what to send instead, and
    /// whether the inspection is over.
    pub(super) fn stream_chunk(
        &mut self,
        policy: &Policy,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> (Vec<u8>, Option<Verdict>) {
        let State::Stream(editor) = &mut self.state else {
            // Cut: nothing after the error event reaches the client.
            return (Vec::new(), None);
        };
        let scan = AnswerRules::new(policy, &self.rules, self.consumer_mode);
        match editor.push(chunk, end_of_stream, &scan) {
            StreamStep::Send(bytes) => {
                if !end_of_stream {
                    return (bytes, None);
                }
                self.findings = editor.findings().clone();
                self.state = State::Done;
                (bytes, Some(self.passed()))
            }
            StreamStep::Cut(bytes) => {
                self.findings = editor.findings().clone();
                self.state = State::Cut;
                let verdict = if self.findings.blocked_by.is_some() {
                    Verdict::Blocked
                } else {
                    Verdict::Unreadable
                };
                (bytes, Some(verdict))
            }
        }
    }

    /// The answer ended before the inspection saw its end (the client left, or trailers
    /// ended the body): `CutShort`, with what was found so far, once; `None` when the
    /// inspection was over or never began (no answer arrived).
    pub(super) fn cut_short(&mut self) -> Option<Verdict> {
        match &self.state {
            State::Stream(editor) => self.findings = editor.findings().clone(),
            State::Whole => {}
            State::Waiting | State::Cut | State::Done => return None,
        }
        self.state = State::Done;
        Some(Verdict::CutShort)
    }

    fn passed(&self) -> Verdict {
        if self.findings.redactions > 0 {
            Verdict::Redacted
        } else {
            Verdict::Passed
        }
    }

    pub(super) fn unreadable(&mut self, shape: ApiFamily) -> Next {
        self.state = State::Done;
        Next::Replace(unreadable_reply(shape))
    }

    fn unreadable_after(&mut self, error: &HostError, shape: ApiFamily) -> Next {
        log::warn!("{error}; the answer cannot be inspected");
        self.unreadable(shape)
    }
}

fn blocked_reply(policy: &Policy, rule: usize, shape: ApiFamily) -> Reply {
    let id = policy.rule_id(rule);
    Reply::new(
        Code::ResponseBlocked,
        shape,
        format!("the answer was blocked by rule \"{id}\": its text matched what the rule forbids"),
    )
    .with_rule(id)
}

pub(super) fn unreadable_reply(shape: ApiFamily) -> Reply {
    Reply::new(
        Code::ResponseUnreadable,
        shape,
        "the provider's answer could not be inspected (compressed, too large, or not in its \
         API's format), so it was not sent; retry, or ask the gateway's operators",
    )
}

#[cfg(test)]
#[path = "answer_inspection_tests.rs"]
mod tests;
