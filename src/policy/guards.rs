//! External guard services, pure: a compiled guard, the call it makes (headers and JSON body,
//! built from the text the model reads — decoded, parts joined, folded — and never from the
//! raw body, opaque data or the client's headers), and how its answer is read: allowed,
//! flagged, or an error that the guard's `on_error` decides.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::{json, Value};

use super::body::text::decoded_layers;
use super::body::{Span, TextAt, TextSink, Walked};
use super::classify::Endpoint;
use super::config::{Field, GuardAction, GuardApi, GuardOnError};
use super::fold::fold_within;
use super::inspect::TextTooLarge;
use super::inspect::{field_of, role_of};

/// A compiled guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub id: String,
    pub cluster: String,
    pub api: GuardApi,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u32,
    pub on_error: GuardOnError,
    pub action: GuardAction,
    pub model: Option<String>,
    pub roles: Option<Vec<String>>,
    pub fields: Option<Vec<Field>>,
    pub max_text_bytes: usize,
    /// Fixed extra headers, names lower-case, checked at compile time.
    pub headers: Vec<(String, String)>,
}

/// What the webhook contract tells a guard about the request besides its text: names from
/// the policy and Envoy's request id, never anything else the client sent.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub consumer: Option<&'a str>,
    /// The catalogue name of the model.
    pub model: Option<&'a str>,
    pub endpoint: Endpoint,
    pub request_id: Option<&'a str>,
}

/// How a guard judged a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Flagged, with the guard's reason for the log (sanitised, short).
    Flagged(String),
    /// The call failed or its answer cannot be read: `on_error` decides.
    Error(String),
}

/// What a forwarded request asks of its guards: the endpoint, for the webhook contract, and
/// each applicable guard's text (folded, pieces joined by newlines), by guard index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRequest {
    pub endpoint: Endpoint,
    pub texts: Vec<(usize, String)>,
}

/// A sink the walk feeds beside the scanner's: when guards apply, it keeps what the model
/// reads as text — each string value, the keys of free-form values (`TextSink::key_read`),
/// and which text parts run together (`TextSink::text_parts`) — minus what the walk says the
/// model does not read (`TextSink::not_read`: opaque data, a part's `type`), and passes
/// everything on to `inner`. Without guards it keeps nothing, so the walk costs no copy.
pub struct GuardText<'s, S: TextSink> {
    inner: &'s mut S,
    keep: bool,
    kept: KeptText,
}

impl<'s, S: TextSink> GuardText<'s, S> {
    pub fn new(inner: &'s mut S, keep: bool) -> Self {
        GuardText {
            inner,
            keep,
            kept: KeptText::default(),
        }
    }

    /// What was kept, once the walk is over; `None` when nothing was to be kept.
    pub fn into_kept(self) -> Option<KeptText> {
        self.keep.then_some(self.kept)
    }
}

/// One string or key kept for the guards.
#[derive(Debug)]
struct Piece {
    text: String,
    at: TextAt,
    /// Where its token sits in the body, so opaque content read around it drops it.
    token: Span,
}

/// What a walk kept for the guards: the pieces in body order, and the runs of text parts
/// (by the spans of their strings) that a model reads as one text.
#[derive(Debug, Default)]
pub struct KeptText {
    pieces: Vec<Piece>,
    runs: Vec<Vec<Span>>,
}

impl KeptText {
    /// Each guard's text, once the walk has learnt the messages' roles: the text the model
    /// reads that the guard looks at — each run of text parts joined with nothing, as the
    /// model reads it; each string's JSON-escaped layers decoded, as the rules see them — each
    /// folded as a reader sees it, joined by newlines. A guard with no text is left out:
    /// there is nothing to ask it.
    ///
    /// `redactions` are the enforced redactions, `(span of the string, range of its text, rule
    /// id)`: a guard is sent the text as it will be forwarded, so a secret the policy redacts
    /// never reaches a guard service either (its decoded layers are decoded from the
    /// redacted text).
    ///
    /// The forms shown (each text, its decoded layers, folded) may take at most `budget`
    /// bytes in all (`inspect::derived_budget` of the body): folding can expand text many
    /// times over, and past the budget the request is refused rather than the module run out
    /// of memory.
    pub fn texts(
        mut self,
        guards: &[(usize, &Guard)],
        walked: &Walked,
        redactions: &[(Span, Range<usize>, &str)],
        budget: usize,
    ) -> Result<Vec<(usize, String)>, TextTooLarge> {
        if !redactions.is_empty() {
            for piece in &mut self.pieces {
                let ranges: Vec<(Range<usize>, &str)> = redactions
                    .iter()
                    .filter(|(span, _, _)| Some(*span) == piece.at.span)
                    .map(|(_, range, rule)| (range.clone(), *rule))
                    .collect();
                if !ranges.is_empty() {
                    piece.text = redacted(&piece.text, ranges);
                }
            }
        }
        // Each text as the model reads it, in every form the guard is shown, folded once.
        let mut shown: Vec<(String, TextAt)> = Vec::new();
        let mut spent = 0usize;
        let too_large = TextTooLarge { budget };
        for (text, at) in self.joined() {
            let mut layers = Layers(Vec::new());
            decoded_layers(&text, at, &mut layers);
            for form in std::iter::once(text).chain(layers.0) {
                let left = budget.checked_sub(spent).ok_or(too_large)?;
                let form = match fold_within(&form, left).map_err(|_| too_large)? {
                    Some(folded) => folded.text,
                    None => form,
                };
                spent = spent.saturating_add(form.len());
                if spent > budget {
                    return Err(too_large);
                }
                shown.push((form, at));
            }
        }
        let mut texts = Vec::with_capacity(guards.len());
        for (index, guard) in guards {
            let mut text = String::new();
            for (form, at) in &shown {
                // Past its limit the guard is never called (the request is refused): what
                // more it would have been shown need not be copied.
                if text.len() > guard.max_text_bytes {
                    break;
                }
                let role = role_of(at, walked);
                if !guard.looks_at(field_of(at.field, role), role) {
                    continue;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(form);
            }
            if !text.is_empty() {
                texts.push((*index, text));
            }
        }
        Ok(texts)
    }

    /// The pieces with each run of text parts joined with nothing between them, in the place
    /// of its first part; every other piece as it is.
    fn joined(self) -> Vec<(String, TextAt)> {
        let KeptText { pieces, runs } = self;
        if runs.is_empty() {
            return pieces.into_iter().map(|p| (p.text, p.at)).collect();
        }
        // Each run's member, by span: which run, and whether it is the first.
        let mut member: HashMap<Span, (usize, bool)> = HashMap::new();
        for (run, spans) in runs.iter().enumerate() {
            for (position, span) in spans.iter().enumerate() {
                member.insert(*span, (run, position == 0));
            }
        }
        /// A text in body order: a piece alone, or a run, joined once all its parts are in.
        enum Unit {
            Alone(String, TextAt),
            Run(usize, TextAt),
        }
        let mut texts: HashMap<Span, String> = HashMap::new();
        let mut order: Vec<Unit> = Vec::new();
        for piece in pieces {
            match piece
                .at
                .span
                .and_then(|span| Some((span, *member.get(&span)?)))
            {
                Some((span, (run, first))) => {
                    if first {
                        order.push(Unit::Run(run, piece.at));
                    }
                    texts.insert(span, piece.text);
                }
                None => order.push(Unit::Alone(piece.text, piece.at)),
            }
        }
        order
            .into_iter()
            .map(|unit| match unit {
                Unit::Alone(text, at) => (text, at),
                Unit::Run(run, at) => {
                    let text = runs
                        .get(run)
                        .into_iter()
                        .flatten()
                        .filter_map(|span| texts.get(span).map(String::as_str))
                        .collect::<String>();
                    (text, at)
                }
            })
            .collect()
    }
}

/// Collects the decoded layers of one text.
struct Layers(Vec<String>);

impl TextSink for Layers {
    fn text(&mut self, text: &str, _: TextAt) {
        self.0.push(text.to_owned());
    }
}

impl<S: TextSink> TextSink for GuardText<'_, S> {
    fn text(&mut self, text: &str, at: TextAt) {
        // String values: keys, role names and the model come without a span; the keys the
        // model reads come again through `key_read`.
        if let (true, Some(span)) = (self.keep, at.span) {
            if !text.is_empty() {
                self.kept.pieces.push(Piece {
                    text: text.to_owned(),
                    at,
                    token: span,
                });
            }
        }
        self.inner.text(text, at);
    }

    // Decoded layers are made again from the text as forwarded (see `KeptText::texts`).
    fn decoded(&mut self, text: &str, layers: &[super::body::Offsets], at: TextAt) {
        self.inner.decoded(text, layers, at);
    }

    // Without this the scanner behind would never see a turn's text parts joined.
    fn text_parts(&mut self, spans: &[Span]) {
        if self.keep {
            self.kept.runs.push(spans.to_vec());
        }
        self.inner.text_parts(spans);
    }

    fn key_read(&mut self, key: &str, at: TextAt, token: Span) {
        if self.keep && !key.is_empty() {
            self.kept.pieces.push(Piece {
                text: key.to_owned(),
                at,
                token,
            });
        }
        self.inner.key_read(key, at, token);
    }

    // The walk reads in body order, so what lies within `bytes` is at the end of the pieces.
    fn not_read(&mut self, bytes: Range<usize>) {
        while self
            .kept
            .pieces
            .last()
            .is_some_and(|piece| piece.token.start >= bytes.start)
        {
            self.kept.pieces.pop();
        }
        self.inner.not_read(bytes);
    }
}

/// `text` with each range replaced by `[REDACTED:<rule>]`, as the forwarded body has it
/// (`redact::redact_string`); a range that does not fall on character boundaries redacts the
/// whole string rather than send a part of the secret.
fn redacted(text: &str, mut ranges: Vec<(Range<usize>, &str)>) -> String {
    ranges.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for (range, rule) in &ranges {
        if range.end <= at {
            continue;
        }
        let Some(before) = text.get(at..range.start.max(at)) else {
            return format!("[REDACTED:{}]", rule);
        };
        out.push_str(before);
        out.push_str("[REDACTED:");
        out.push_str(rule);
        out.push(']');
        at = range.end;
    }
    match text.get(at..) {
        Some(rest) => out.push_str(rest),
        None => return "[REDACTED]".to_owned(),
    }
    out
}

/// The longest reason kept for the log, in characters.
const REASON_CHARS: usize = 200;

impl Guard {
    /// Whether the guard reads text in this field, under this role (as rules do).
    pub fn looks_at(&self, field: Field, role: Option<&str>) -> bool {
        super::rules::reads(self.fields.as_deref(), self.roles.as_deref(), field, role)
    }

    /// The call's headers: pseudo-headers, the content type, then the guard's fixed ones.
    pub fn call_headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend(
            self.headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        headers
    }

    /// The call's JSON body for `text` (already folded and joined).
    pub fn call_body(&self, text: &str, subject: &Subject<'_>) -> Vec<u8> {
        let value = match self.api {
            GuardApi::OpenaiModeration => match &self.model {
                Some(model) => json!({ "input": text, "model": model }),
                None => json!({ "input": text }),
            },
            GuardApi::Webhook => json!({
                "text": text,
                "consumer": subject.consumer,
                "model": subject.model,
                "endpoint": endpoint_name(subject.endpoint),
                "request_id": subject.request_id.filter(|id| is_plain_request_id(id)),
            }),
        };
        value.to_string().into_bytes()
    }

    /// Reads the guard's answer: its `:status` and body. Anything but a 2xx with the shape
    /// the guard's API promises is an error.
    pub fn read_answer(&self, status: Option<&str>, body: &[u8]) -> Verdict {
        let status = match status.and_then(|status| status.parse::<u16>().ok()) {
            Some(status) => status,
            None => return Verdict::Error("the answer has no status".to_owned()),
        };
        if !(200..300).contains(&status) {
            return Verdict::Error(format!("the guard answered {status}"));
        }
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return Verdict::Error("the answer is not JSON".to_owned());
        };
        match self.api {
            GuardApi::OpenaiModeration => read_moderation(&answer),
            GuardApi::Webhook => read_webhook(&answer),
        }
    }
}

/// `results[].flagged`: any true flags the request; the reason lists the flagged categories.
fn read_moderation(answer: &Value) -> Verdict {
    let Some(results) = answer.get("results").and_then(Value::as_array) else {
        return Verdict::Error("the answer has no \"results\" list".to_owned());
    };
    if results.is_empty() {
        return Verdict::Error("the answer's \"results\" list is empty".to_owned());
    }
    let mut flagged = false;
    let mut categories: Vec<&str> = Vec::new();
    for result in results {
        match result.get("flagged").and_then(Value::as_bool) {
            Some(true) => flagged = true,
            Some(false) => continue,
            None => return Verdict::Error("a result has no boolean \"flagged\"".to_owned()),
        }
        if let Some(found) = result.get("categories").and_then(Value::as_object) {
            categories.extend(
                found
                    .iter()
                    .filter(|(_, value)| value.as_bool() == Some(true))
                    .map(|(name, _)| name.as_str()),
            );
        }
    }
    if flagged {
        Verdict::Flagged(sanitize(&categories.join(",")))
    } else {
        Verdict::Allow
    }
}

/// `{"verdict": "allow" | "block", "reason"?: string}`.
fn read_webhook(answer: &Value) -> Verdict {
    let reason = match answer.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(reason)) => sanitize(reason),
        Some(_) => return Verdict::Error("\"reason\" is not a string".to_owned()),
    };
    match answer.get("verdict").and_then(Value::as_str) {
        Some("allow") => Verdict::Allow,
        Some("block") => Verdict::Flagged(reason),
        _ => Verdict::Error("\"verdict\" is not \"allow\" or \"block\"".to_owned()),
    }
}

/// The guard's reason as the log may show it: at most 200 characters, control characters
/// replaced, so a guard cannot forge log lines.
pub fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .take(REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The longest request id a webhook guard is sent.
const REQUEST_ID_CHARS: usize = 64;

/// Whether a request id is short and plain enough to hand a guard: at most 64 characters of
/// `A-Za-z0-9-_.:`, as Envoy's own ids (UUIDs) are. A client may set `x-request-id`; a long
/// one or one with other characters could carry text meant for the guard, so it is sent as
/// `null` instead.
pub fn is_plain_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The endpoint as the webhook contract names it.
pub fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::AzureChatCompletions => "chat",
        Endpoint::Completions | Endpoint::AzureCompletions => "completions",
        Endpoint::Embeddings | Endpoint::AzureEmbeddings => "embeddings",
        Endpoint::Responses => "responses",
        Endpoint::Messages => "messages",
        Endpoint::CountTokens => "count_tokens",
        Endpoint::GeminiGenerate => "generate_content",
        Endpoint::BedrockConverse => "converse",
        Endpoint::BedrockInvoke => "invoke",
    }
}

#[cfg(test)]
#[path = "guards_tests.rs"]
mod tests;
