//! External guard services, pure: a compiled guard, the call it makes (headers and JSON body,
//! built from the request's folded text and never from its raw body or headers), and how its
//! answer is read: allowed, flagged, or an error that the guard's `on_error` decides.

use std::ops::Range;

use serde_json::{json, Value};

use super::body::{Span, TextAt, TextSink, Walked};
use super::classify::Endpoint;
use super::config::{Field, GuardAction, GuardApi, GuardOnError};
use super::fold::fold;
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

/// A sink the walk feeds beside the scanner's: it keeps each string value as read (decoded
/// layers aside: the guard reads what the model reads) when guards apply, and passes
/// everything on to `inner`. Without guards it keeps nothing, so the walk costs no copy.
pub struct GuardText<'s, S: TextSink> {
    inner: &'s mut S,
    keep: bool,
    pieces: Vec<(String, TextAt)>,
}

impl<'s, S: TextSink> GuardText<'s, S> {
    pub fn new(inner: &'s mut S, keep: bool) -> Self {
        GuardText {
            inner,
            keep,
            pieces: Vec::new(),
        }
    }

    /// What was kept, once the walk is over; `None` when nothing was to be kept.
    pub fn into_kept(self) -> Option<KeptText> {
        self.keep.then_some(KeptText(self.pieces))
    }
}

/// The strings a walk kept for the guards, each with where it sat.
#[derive(Debug, Default)]
pub struct KeptText(Vec<(String, TextAt)>);

impl KeptText {
    /// Each guard's text, once the walk has learnt the messages' roles: the pieces it looks
    /// at, each folded as a reader sees it, joined by newlines. A guard with no text is left
    /// out: there is nothing to ask it.
    ///
    /// `redactions` are the enforced redactions, `(span of the string, range of its text, rule
    /// id)`: a guard is sent the text as it will be forwarded, so a secret the policy redacts
    /// never reaches a guard service either.
    pub fn texts(
        mut self,
        guards: &[(usize, &Guard)],
        walked: &Walked,
        redactions: &[(Span, Range<usize>, &str)],
    ) -> Vec<(usize, String)> {
        if !redactions.is_empty() {
            for (piece, at) in &mut self.0 {
                let ranges: Vec<(Range<usize>, &str)> = redactions
                    .iter()
                    .filter(|(span, _, _)| Some(*span) == at.span)
                    .map(|(_, range, rule)| (range.clone(), *rule))
                    .collect();
                if !ranges.is_empty() {
                    *piece = redacted(piece, ranges);
                }
            }
        }
        let mut texts = Vec::with_capacity(guards.len());
        for (index, guard) in guards {
            let mut text = String::new();
            for (piece, at) in &self.0 {
                let role = role_of(at, walked);
                if !guard.looks_at(field_of(at.field, role), role) {
                    continue;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                match fold(piece) {
                    Some(folded) => text.push_str(&folded.text),
                    None => text.push_str(piece),
                }
            }
            if !text.is_empty() {
                texts.push((*index, text));
            }
        }
        texts
    }
}

impl<S: TextSink> TextSink for GuardText<'_, S> {
    fn text(&mut self, text: &str, at: TextAt) {
        // String values only: keys, role names and the model are the request's structure,
        // which inspection rules still scan; a guard judges what the request says.
        if self.keep && at.span.is_some() && !text.is_empty() {
            self.pieces.push((text.to_owned(), at));
        }
        self.inner.text(text, at);
    }

    fn decoded(&mut self, text: &str, layers: &[super::body::Offsets], at: TextAt) {
        self.inner.decoded(text, layers, at);
    }

    // Without this the scanner behind would never see a turn's text parts joined.
    fn text_parts(&mut self, spans: &[super::body::Span]) {
        self.inner.text_parts(spans);
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
        let field_ok = self
            .fields
            .as_ref()
            .is_none_or(|fields| fields.contains(&field));
        let role_ok = self
            .roles
            .as_ref()
            .is_none_or(|roles| role.is_some_and(|role| roles.iter().any(|r| r == role)));
        field_ok && role_ok
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
                "request_id": subject.request_id,
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
