//! Token usage read from provider responses, chunk by chunk, without holding the response.
//!
//! A [`UsageReader`] sees the body as it passes. It runs a small JSON scanner (strings,
//! escapes, depth, and the keys of the few objects that can lead to usage) over the body, or
//! over each server-sent event's `data:` payload, and copies out only the usage object itself.
//! A copied object is parsed once it closes. Bedrock's binary event streams are unframed
//! first (`eventstream.rs`, `usage_eventstream.rs`). Results never depend on how the body was
//! split.

use serde_json::{Map, Value};

use super::body::strict_json;
use super::sse::{Lines, Piece};
use eventstream::BedrockEvents;

#[path = "usage_eventstream.rs"]
mod eventstream;

/// How a response reports its usage: decided by the endpoint the request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageFormat {
    /// OpenAI (and Azure OpenAI) chat completions, completions and embeddings: `usage`
    /// with `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`,
    /// `total_tokens`.
    OpenAiChat,
    /// OpenAI Responses API: `usage` (or `response.usage` in stream events) with
    /// `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`, `total_tokens`.
    OpenAiResponses,
    /// Anthropic Messages: `usage` / `message.usage` with `input_tokens`, `output_tokens`,
    /// `cache_read_input_tokens`, `cache_creation_input_tokens`.
    Anthropic,
    /// Gemini: `usageMetadata` with `promptTokenCount`, `candidatesTokenCount`,
    /// `thoughtsTokenCount`, `toolUsePromptTokenCount`, `cachedContentTokenCount`,
    /// `totalTokenCount`.
    Gemini,
    /// Bedrock Converse: `usage` with `inputTokens`, `outputTokens`, `cacheReadInputTokens`,
    /// `cacheWriteInputTokens`, `totalTokens`; for `invoke` of an Anthropic model, Anthropic's
    /// names in the same `usage` object.
    BedrockConverse,
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document (or a JSON array of documents, as Gemini streams without `alt=sse`).
    Json,
    /// Server-sent events whose `data:` payloads are JSON documents.
    Sse,
    /// The AWS event stream (`application/vnd.amazon.eventstream`) of Bedrock's
    /// `converse-stream` and `invoke-with-response-stream`.
    EventStream,
}

impl Framing {
    /// From the response's content-type header value: `text/event-stream` -> Sse,
    /// `application/vnd.amazon.eventstream` -> EventStream, `application/json` (and `+json`
    /// types; parameters such as charset ignored, case-insensitive) -> Json, anything else ->
    /// None.
    pub fn from_content_type(value: &[u8]) -> Option<Framing> {
        let essence = value
            .split(|&byte| byte == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            return Some(Framing::Sse);
        }
        if essence.eq_ignore_ascii_case(b"application/vnd.amazon.eventstream") {
            return Some(Framing::EventStream);
        }
        let mut parts = essence.splitn(2, |&byte| byte == b'/');
        let kind = parts.next().unwrap_or_default();
        let subtype = parts.next().unwrap_or_default();
        let plus_json = subtype
            .len()
            .checked_sub(5)
            .filter(|&at| at > 0)
            .and_then(|at| subtype.get(at..))
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(b"+json"));
        let json = (kind.eq_ignore_ascii_case(b"application")
            && subtype.eq_ignore_ascii_case(b"json"))
            || (!kind.is_empty() && plus_json);
        json.then_some(Framing::Json)
    }
}

/// Token counts, normalised across providers: `input` counts every prompt token, cached ones
/// included; `cached` is the part of `input` read from a prompt cache; `output` counts every
/// generated token, reasoning included; `reasoning` is the part of `output` the provider
/// reports as reasoning (0 where it reports none), priced apart only when a price says so;
/// `cache_write` is the part of `input` written to a prompt cache (Anthropic, Bedrock), which
/// those providers bill above the input rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
    pub cache_write: u64,
}

/// The largest count a usage may report: a million million tokens, far above any answer
/// (a day of a large fleet's traffic is below it). A usage reporting more is unreadable (its
/// usage unknown, charged as unknown usage is), so that no sum, metric or log field built
/// from counts can overflow or lose precision (sums of a few counts stay below 2^53).
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// The Bedrock usage response headers, as sent (`None` where absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct BedrockHeaders<'a> {
    /// `x-amzn-bedrock-input-token-count`: the input tokens not read from or written to the
    /// prompt cache.
    pub input: Option<&'a [u8]>,
    /// `x-amzn-bedrock-output-token-count`.
    pub output: Option<&'a [u8]>,
    /// `x-amzn-bedrock-cache-read-input-token-count`.
    pub cache_read: Option<&'a [u8]>,
    /// `x-amzn-bedrock-cache-write-input-token-count`.
    pub cache_write: Option<&'a [u8]>,
}

/// Bedrock's usage from its response headers (decimal counts): the input count plus the cache
/// counts as input, the cache reads as cached. Some only when the input and output counts
/// parse as u64 and each cache count given does too: a count that is there but unreadable
/// leaves the headers unread, never a cache charged as zero.
pub fn usage_from_bedrock_headers(headers: BedrockHeaders<'_>) -> Option<Usage> {
    let optional = |value: Option<&[u8]>| match value {
        None => Some(0),
        Some(value) => decimal(value),
    };
    let cache_read = optional(headers.cache_read)?;
    let cache_write = optional(headers.cache_write)?;
    let input = decimal(headers.input?)?
        .saturating_add(cache_read)
        .saturating_add(cache_write);
    Some(Usage {
        input,
        output: decimal(headers.output?)?,
        cached: cache_read.min(input),
        reasoning: 0,
        cache_write: cache_write.min(input.saturating_sub(cache_read)),
    })
}

impl Usage {
    /// Two readings of one answer's usage (Bedrock's headers and its body): the larger count
    /// of each, so the charge is never below what either says.
    pub fn larger(self, other: Usage) -> Usage {
        let input = self.input.max(other.input);
        let output = self.output.max(other.output);
        let cached = self.cached.max(other.cached).min(input);
        Usage {
            input,
            output,
            cached,
            reasoning: self.reasoning.max(other.reasoning).min(output),
            cache_write: self
                .cache_write
                .max(other.cache_write)
                .min(input.saturating_sub(cached)),
        }
    }
}

/// A header's decimal count: ASCII digits only (surrounding whitespace allowed), at most
/// `MAX_COUNT`.
fn decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let count: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (count <= MAX_COUNT).then_some(count)
}

/// The longest usage object copied out of a body. A longer one is dropped (its usage counts as
/// unknown): real ones are a few hundred bytes.
const CAPTURE_LIMIT: usize = 4096;

/// The longest key, as written (quotes and escapes included), that is decoded and compared.
/// The longest target, `usageMetadata`, written entirely as `\uXXXX` escapes is 80 bytes with
/// its quotes, so every spelling of every target fits.
const KEY_LIMIT: usize = 80;

/// Levels whose kind and key are tracked: a top-level array, a document, and two levels inside
/// it (`response` or `message`; `candidates` or `choices` and their elements, where the end of
/// the answer is marked). Deeper levels only count depth.
const TRACKED_DEPTH: usize = 4;

/// Reads usage from a response body fed chunk by chunk; keeps a bounded amount of state.
///
/// Memory: at most `CAPTURE_LIMIT` (4 KiB) of heap, allocated at the first usage object,
/// plus the reader itself (under 320 bytes), whatever the size or shape of the body; for an
/// event stream, the bounds of `eventstream.rs` as well (4 KiB of a message's headers and
/// 64 KiB of a usage event's payload) and a second `CAPTURE_LIMIT` for the model's own events.
/// Parsing a completed copy (or decoding a chunk's base64) briefly allocates in proportion to
/// that copy.
pub struct UsageReader {
    framing: Framing,
    lines: DataLines,
    scanner: UsageExtractor,
    /// For an event stream: its reader, whose `metadata` events go to `scanner`.
    events: Option<Box<BedrockEvents>>,
}

impl UsageReader {
    pub fn new(format: UsageFormat, framing: Framing) -> Self {
        UsageReader {
            framing,
            lines: DataLines::new(),
            scanner: UsageExtractor::new(format, framing == Framing::Json),
            events: (framing == Framing::EventStream).then(|| Box::new(BedrockEvents::new())),
        }
    }

    /// Feed the next chunk of the body (any split, including mid-UTF-8, mid-escape,
    /// mid-"data:" prefix, mid-CRLF).
    pub fn feed(&mut self, chunk: &[u8]) {
        match self.framing {
            Framing::Json => self.scanner.feed(chunk),
            Framing::Sse => self.lines.feed(chunk, &mut self.scanner),
            Framing::EventStream => {
                if let Some(events) = self.events.as_mut() {
                    events.feed(chunk, &mut self.scanner);
                }
            }
        }
    }

    /// The input tokens reported so far, when the usage is not complete (a stream that ended
    /// before its last usage): what is known of the charge, at least.
    pub fn partial_input(&self) -> Option<u64> {
        if let Some(events) = &self.events {
            return events.partial_input(&self.scanner);
        }
        self.scanner.known_input()
    }

    /// The usage, once the answer has given all of it: `None` if no complete usage has been
    /// read, if a usage object could not be read (a count that is not a whole number of
    /// tokens or above `MAX_COUNT`, an object too long to copy), or if the answer has not
    /// reached its end (see `UsageExtractor::usage`).
    pub fn usage(&self) -> Option<Usage> {
        if let Some(events) = &self.events {
            return events.usage(&self.scanner);
        }
        self.scanner.usage()
    }

    /// The usage of an answer whose body never ended (the client left, the upstream reset):
    /// only Anthropic's and Bedrock's, whose final counts come in events of their own
    /// (`message_delta`, `metadata`, the invocation metrics). OpenAI, Responses and Gemini
    /// repeat or grow their counts chunk by chunk, and a chunk that ends one output (of
    /// several asked for with `n` or `candidateCount`) says nothing of the others: their cut
    /// answers have unknown usage, charged as such.
    pub fn usage_when_cut(&self) -> Option<Usage> {
        match self.scanner.format {
            UsageFormat::Anthropic | UsageFormat::BedrockConverse => self.usage(),
            UsageFormat::OpenAiChat | UsageFormat::OpenAiResponses | UsageFormat::Gemini => None,
        }
    }
}

/// The counts the usage objects gave so far, under the provider's own meaning; `None` where
/// not given. A response may spread its usage over several objects (input in one, output in a
/// later one), or give it more than once (a stream's growing counts, a restated object, a
/// duplicate key): each count is the largest any object gave, so the charge is never below
/// what any reading said.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// The provider's input count: every prompt token for OpenAI and Gemini, only the
    /// uncached ones for Anthropic and Bedrock.
    input: Option<u64>,
    /// Generated tokens; for Gemini the candidates only.
    output: Option<u64>,
    /// Gemini's reasoning tokens, which it counts apart from the candidates.
    thoughts: Option<u64>,
    /// The part of `output` that was reasoning (OpenAI), where reported.
    reasoning: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    /// The total the provider reports, where it reports one: what is charged is at least it,
    /// so a billed count the gateway does not know of is still charged (as input). For
    /// Gemini, at least the object's counts with `toolUsePromptTokenCount`, the results of its
    /// own tools (URL context, search, code execution) read into the prompt, billed as input
    /// but counted apart from `promptTokenCount`.
    total: Option<u64>,
}

/// A usage object with a count that is not a whole number of tokens.
struct Unreadable;

impl Counts {
    /// The counts one object gives. Every count is optional here; which ones a response must
    /// give in all is checked once it ends (`complete`).
    fn read(format: UsageFormat, object: &Map<String, Value>) -> Result<Counts, Unreadable> {
        let counts = match format {
            UsageFormat::OpenAiChat => Counts {
                input: count(object, &["prompt_tokens"])?,
                output: count(object, &["completion_tokens"])?,
                thoughts: None,
                reasoning: lenient(object, &["completion_tokens_details", "reasoning_tokens"]),
                cache_read: count(object, &["prompt_tokens_details", "cached_tokens"])?,
                cache_write: None,
                total: count(object, &["total_tokens"])?,
            },
            UsageFormat::OpenAiResponses => Counts {
                input: count(object, &["input_tokens"])?,
                output: count(object, &["output_tokens"])?,
                thoughts: None,
                reasoning: lenient(object, &["output_tokens_details", "reasoning_tokens"]),
                cache_read: count(object, &["input_tokens_details", "cached_tokens"])?,
                cache_write: None,
                total: count(object, &["total_tokens"])?,
            },
            // `message_delta` repeats only the output count (newer API versions repeat the
            // rest too).
            UsageFormat::Anthropic => Counts {
                input: count(object, &["input_tokens"])?,
                output: count(object, &["output_tokens"])?,
                thoughts: None,
                reasoning: None,
                cache_read: count(object, &["cache_read_input_tokens"])?,
                cache_write: anthropic_cache_write(object)?,
                total: None,
            },
            // Gemini leaves out zero counts (proto3 JSON), and early stream chunks carry only
            // the prompt count.
            UsageFormat::Gemini => {
                let input = count(object, &["promptTokenCount"])?;
                let output = count(object, &["candidatesTokenCount"])?;
                let thoughts = count(object, &["thoughtsTokenCount"])?;
                let tool_use = count(object, &["toolUsePromptTokenCount"])?;
                let total = count(object, &["totalTokenCount"])?;
                let sum = [input, output, thoughts, tool_use]
                    .into_iter()
                    .flatten()
                    .fold(0u64, u64::saturating_add);
                Counts {
                    input,
                    output,
                    thoughts,
                    reasoning: None,
                    cache_read: count(object, &["cachedContentTokenCount"])?,
                    cache_write: None,
                    total: match (total, tool_use) {
                        (None, None) => None,
                        (total, _) => Some(total.unwrap_or(0).max(sum)),
                    },
                }
            }
            // `invoke` answers in the model's own format: Anthropic's names are read too (the
            // larger where both are given).
            UsageFormat::BedrockConverse => Counts {
                input: larger(object, "inputTokens", "input_tokens")?,
                output: larger(object, "outputTokens", "output_tokens")?,
                thoughts: None,
                reasoning: None,
                cache_read: larger(object, "cacheReadInputTokens", "cache_read_input_tokens")?,
                cache_write: larger(
                    object,
                    "cacheWriteInputTokens",
                    "cache_creation_input_tokens",
                )?,
                total: count(object, &["totalTokens"])?,
            },
        };
        Ok(counts)
    }

    /// Later objects restate or complete earlier ones: the largest of each count given.
    fn merged(self, later: Counts) -> Counts {
        let max = |a: Option<u64>, b: Option<u64>| a.max(b);
        Counts {
            input: max(later.input, self.input),
            output: max(later.output, self.output),
            thoughts: max(later.thoughts, self.thoughts),
            reasoning: max(later.reasoning, self.reasoning),
            cache_read: max(later.cache_read, self.cache_read),
            cache_write: max(later.cache_write, self.cache_write),
            total: max(later.total, self.total),
        }
    }

    /// Whether the response gave the counts its format always gives: the input count, and
    /// the output count where the provider never leaves it out (Responses, Anthropic,
    /// Bedrock; OpenAI embeddings have none, Gemini omits a zero). A Gemini usage with only
    /// `totalTokenCount` is not complete: which part was output is unknown, so it is charged
    /// as unknown usage, with the total as the input it is known to have had at least.
    fn complete(&self, format: UsageFormat) -> bool {
        match format {
            UsageFormat::OpenAiChat | UsageFormat::Gemini => self.input.is_some(),
            UsageFormat::OpenAiResponses
            | UsageFormat::BedrockConverse
            | UsageFormat::Anthropic => self.input.is_some() && self.output.is_some(),
        }
    }

    /// The input tokens these counts show at least, when any count shows some.
    fn known_input(self, format: UsageFormat) -> Option<u64> {
        self.input
            .or(self.total)
            .map(|_| self.normalise(format).input)
    }

    fn normalise(self, format: UsageFormat) -> Usage {
        let input = self.input.unwrap_or(0);
        let cache_read = self.cache_read.unwrap_or(0);
        let cache_write = self.cache_write.unwrap_or(0);
        let input = match format {
            UsageFormat::Anthropic | UsageFormat::BedrockConverse => {
                input.saturating_add(cache_read).saturating_add(cache_write)
            }
            UsageFormat::OpenAiChat | UsageFormat::OpenAiResponses | UsageFormat::Gemini => input,
        };
        let output = self
            .output
            .unwrap_or(0)
            .saturating_add(self.thoughts.unwrap_or(0));
        // A total above the counts known here holds tokens billed under a name the gateway
        // does not read: they are charged, as input.
        let unnamed = self
            .total
            .unwrap_or(0)
            .saturating_sub(input.saturating_add(output));
        let input = input.saturating_add(unnamed);
        // Gemini's thoughts are reasoning it counts apart; OpenAI's reasoning is inside its
        // output count.
        let reasoning = match format {
            UsageFormat::Gemini => self.thoughts,
            _ => self.reasoning,
        };
        let cached = cache_read.min(input);
        Usage {
            input,
            output,
            // Cached tokens are part of the input, and reasoning part of the output, whatever
            // a provider claims.
            cached,
            reasoning: reasoning.unwrap_or(0).min(output),
            cache_write: cache_write.min(input.saturating_sub(cached)),
        }
    }
}

/// A count that refines the others (reasoning within output): one that cannot be read counts
/// as not reported, rather than leaving the whole usage unknown.
fn lenient(object: &Map<String, Value>, path: &[&str]) -> Option<u64> {
    count(object, path).ok().flatten()
}

/// Anthropic's cache writes: `cache_creation_input_tokens`, or the sum of its breakdown by
/// time to live (`cache_creation.ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`)
/// where that is larger.
fn anthropic_cache_write(object: &Map<String, Value>) -> Result<Option<u64>, Unreadable> {
    let total = count(object, &["cache_creation_input_tokens"])?;
    let short = count(object, &["cache_creation", "ephemeral_5m_input_tokens"])?;
    let long = count(object, &["cache_creation", "ephemeral_1h_input_tokens"])?;
    let parts = match (short, long) {
        (None, None) => None,
        (short, long) => Some(short.unwrap_or(0).saturating_add(long.unwrap_or(0))),
    };
    Ok(total.max(parts))
}

/// The larger of the counts under two names, `None` when neither is given.
fn larger(object: &Map<String, Value>, name: &str, other: &str) -> Result<Option<u64>, Unreadable> {
    let first = count(object, &[name])?;
    let second = count(object, &[other])?;
    Ok(first.max(second))
}

/// The count at `path`: `None` when it (or an object on the way) is absent or null.
fn count(object: &Map<String, Value>, path: &[&str]) -> Result<Option<u64>, Unreadable> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    let mut object = object;
    for key in parents {
        match object.get(*key) {
            Some(Value::Object(inner)) => object = inner,
            None | Some(Value::Null) => return Ok(None),
            Some(_) => return Err(Unreadable),
        }
    }
    match object.get(*last) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => whole(value).map(Some).ok_or(Unreadable),
    }
}

/// A whole number of tokens: a JSON integer, or a number with no fraction (`11.0`, `1e3`), as
/// some servers write their counts. Negative or fractional counts, and counts above
/// `MAX_COUNT`, are not counts.
fn whole(value: &Value) -> Option<u64> {
    if let Some(count) = value.as_u64() {
        return (count <= MAX_COUNT).then_some(count);
    }
    let float = value.as_f64()?;
    // MAX_COUNT, exactly: every f64 up to it with no fraction fits a u64.
    const LIMIT: f64 = 1_000_000_000_000.0;
    ((0.0..=LIMIT).contains(&float) && float.fract() == 0.0).then_some(float as u64)
}

/// Where a container sits, as far as finding usage goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Other,
    /// A top-level array: each element is a document (Gemini without `alt=sse`).
    List,
    /// A document's top-level object: its keys are compared with the targets.
    Document,
    /// `response` (Responses API) or `message` (Anthropic) in a document: its `usage` counts.
    Prefix,
}

/// What the value after the current key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextValue {
    Other,
    Prefix,
    Usage,
    /// A string here marks the end of the answer (`finishReason`, `finish_reason`,
    /// `blockReason`, a Responses `status`).
    EndMarker,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    container: Container,
    is_object: bool,
    /// The next string in this object is a key.
    expect_key: bool,
    next: NextValue,
}

const UNTRACKED: Level = Level {
    container: Container::Other,
    is_object: false,
    expect_key: false,
    next: NextValue::Other,
};

/// An incremental JSON scanner over a sequence of documents that copies out usage objects.
struct UsageExtractor {
    format: UsageFormat,
    /// Open containers.
    depth: u32,
    /// Levels 1..=TRACKED_DEPTH, by depth minus one.
    levels: [Level; TRACKED_DEPTH],
    in_string: bool,
    /// The previous byte was the backslash of an escape in a string.
    escaped: bool,
    /// Key being read at a tracked document or prefix level, quotes included.
    key: [u8; KEY_LIMIT],
    key_len: usize,
    reading_key: bool,
    key_too_long: bool,
    key_has_escape: bool,
    /// The usage object being copied, from its `{`.
    capture: Vec<u8>,
    capturing: bool,
    capture_too_long: bool,
    /// The object being copied is the `usage` of a `response` or `message` object.
    capture_prefixed: bool,
    /// Depth at which the object being copied opened (the depth of its key's object).
    capture_depth: u32,
    found: Option<Counts>,
    /// A usage object could not be read: the answer's usage is unknown, whatever else it says.
    unreadable: bool,
    /// The body is one JSON value (not a stream of events): closing it ends the answer.
    ends_with_body: bool,
    /// The depth of the current document's object (1, or 2 in a top-level array).
    document_depth: u32,
    /// The key being read is the value after an end marker's key.
    reading_marker: bool,
    /// The answer's end was seen (an end marker, or the body's value closed).
    answer_ended: bool,
    /// Usage was read in the current document before any end marker.
    usage_awaits_end: bool,
    /// Usage was read in a document that marked the end of the answer, or after it.
    usage_final: bool,
}

impl UsageExtractor {
    fn new(format: UsageFormat, ends_with_body: bool) -> Self {
        UsageExtractor {
            format,
            depth: 0,
            levels: [UNTRACKED; TRACKED_DEPTH],
            in_string: false,
            escaped: false,
            key: [0; KEY_LIMIT],
            key_len: 0,
            reading_key: false,
            key_too_long: false,
            key_has_escape: false,
            capture: Vec::new(),
            capturing: false,
            capture_too_long: false,
            capture_prefixed: false,
            capture_depth: 0,
            found: None,
            unreadable: false,
            ends_with_body,
            document_depth: 1,
            reading_marker: false,
            answer_ended: false,
            usage_awaits_end: false,
            usage_final: false,
        }
    }

    /// The usage read, when it is complete and final. Gemini, OpenAI and Responses streams
    /// repeat or grow their usage chunk by chunk: a stream cut before its end would otherwise
    /// show the prompt alone as the whole usage. Their usage counts only once read in the
    /// chunk that marks the answer's end (a candidate's `finishReason`,
    /// `promptFeedback.blockReason`, a choice's `finish_reason`, a response `status` of
    /// `completed`, `incomplete`, `failed` or `cancelled`) or after it, or in a JSON body that
    /// closed. Anthropic and Bedrock give their final counts in events of their own.
    fn usage(&self) -> Option<Usage> {
        if self.unreadable {
            return None;
        }
        let needs_end = match self.format {
            UsageFormat::OpenAiChat | UsageFormat::OpenAiResponses | UsageFormat::Gemini => true,
            UsageFormat::Anthropic | UsageFormat::BedrockConverse => false,
        };
        if needs_end && !self.usage_final {
            return None;
        }
        self.found
            .filter(|counts| counts.complete(self.format))
            .map(|counts| counts.normalise(self.format))
    }

    /// The input tokens the usage read so far shows at least.
    fn known_input(&self) -> Option<u64> {
        self.found
            .and_then(|counts| counts.known_input(self.format))
    }

    /// Whether a key at depth `depth`, in a container of kind `container`, may mark the end
    /// of the answer: only where the provider writes it, never inside content a model wrote.
    fn end_marker(&self, container: Container, depth: u32, key: &[u8]) -> bool {
        let inside = depth.saturating_sub(self.document_depth);
        match self.format {
            UsageFormat::Gemini => {
                (inside == 2 && key == b"finishReason") || (inside == 1 && key == b"blockReason")
            }
            UsageFormat::OpenAiChat => inside == 2 && key == b"finish_reason",
            UsageFormat::OpenAiResponses => container == Container::Prefix && key == b"status",
            UsageFormat::Anthropic | UsageFormat::BedrockConverse => false,
        }
    }

    /// Whether keys at `depth` are read for end markers.
    fn reads_markers_at(&self, depth: u32) -> bool {
        let inside = depth.saturating_sub(self.document_depth);
        match self.format {
            UsageFormat::Gemini => inside == 1 || inside == 2,
            UsageFormat::OpenAiChat => inside == 2,
            UsageFormat::OpenAiResponses
            | UsageFormat::Anthropic
            | UsageFormat::BedrockConverse => false,
        }
    }

    /// The value after an end marker's key: any string ends the answer but a Responses
    /// status still in progress.
    fn marker_value(&mut self, value: &[u8]) {
        let ends = match self.format {
            UsageFormat::OpenAiResponses => matches!(
                value,
                b"completed" | b"incomplete" | b"failed" | b"cancelled"
            ),
            _ => !value.is_empty(),
        };
        if ends {
            self.answer_ends();
        }
    }

    fn answer_ends(&mut self) {
        self.answer_ended = true;
        if self.usage_awaits_end {
            self.usage_final = true;
        }
    }

    /// The document-level key holding usage, and the document-level key of an object whose
    /// own `usage` counts too.
    fn targets(&self) -> (&'static [u8], Option<&'static [u8]>) {
        match self.format {
            UsageFormat::OpenAiChat | UsageFormat::BedrockConverse => (b"usage", None),
            UsageFormat::OpenAiResponses => (b"usage", Some(b"response")),
            UsageFormat::Anthropic => (b"usage", Some(b"message")),
            UsageFormat::Gemini => (b"usageMetadata", None),
        }
    }

    /// Forgets the document in progress (an SSE event ended), keeping what was found.
    fn end_document(&mut self) {
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.reading_key = false;
        self.reading_marker = false;
        self.usage_awaits_end = false;
        self.capturing = false;
        self.capture.clear();
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((&byte, after)) = rest.split_first() {
            if !self.in_string {
                self.keep(std::slice::from_ref(&byte));
                self.structural(byte);
                rest = after;
                continue;
            }
            if self.escaped {
                // The escaped character (or the first of \uXXXX) cannot end the string.
                self.escaped = false;
                self.keep(std::slice::from_ref(&byte));
                rest = after;
                continue;
            }
            // Most of a body is string text: skip to its next quote or backslash at once.
            let Some(at) = rest.iter().position(|&b| b == b'"' || b == b'\\') else {
                self.keep(rest);
                return;
            };
            let Some((text, tail)) = rest.split_at_checked(at) else {
                return;
            };
            self.keep(text);
            let Some((&special, after)) = tail.split_first() else {
                return;
            };
            self.keep(std::slice::from_ref(&special));
            if special == b'\\' {
                self.escaped = true;
                self.key_has_escape |= self.reading_key;
            } else {
                self.in_string = false;
                if self.reading_key {
                    self.end_key();
                }
            }
            rest = after;
        }
    }

    /// Copies bytes into the usage object and the key being read, where one is open.
    fn keep(&mut self, bytes: &[u8]) {
        if self.capturing && !self.capture_too_long {
            match self.capture.len().checked_add(bytes.len()) {
                Some(len) if len <= CAPTURE_LIMIT => self.capture.extend_from_slice(bytes),
                _ => self.capture_too_long = true,
            }
        }
        if self.reading_key && !self.key_too_long {
            let end = self.key_len.checked_add(bytes.len());
            match end.and_then(|end| self.key.get_mut(self.key_len..end)) {
                Some(space) => {
                    space.copy_from_slice(bytes);
                    self.key_len = self.key_len.saturating_add(bytes.len());
                }
                None => self.key_too_long = true,
            }
        }
    }

    /// The level of the innermost open container, if it is tracked.
    fn level(&mut self) -> Option<&mut Level> {
        let index = usize::try_from(self.depth).ok()?.checked_sub(1)?;
        self.levels.get_mut(index)
    }

    /// A byte outside strings.
    fn structural(&mut self, byte: u8) {
        match byte {
            b'"' => {
                self.in_string = true;
                let (_, prefix_key) = self.targets();
                let markers_here = self.reads_markers_at(self.depth);
                if let Some(level) = self.level() {
                    if level.is_object && level.expect_key {
                        level.expect_key = false;
                        level.next = NextValue::Other;
                        let targets_here = match level.container {
                            Container::Document => true,
                            Container::Prefix => prefix_key.is_some(),
                            Container::Other | Container::List => markers_here,
                        };
                        if targets_here {
                            self.start_key(false);
                        }
                    } else {
                        let marker = level.next == NextValue::EndMarker;
                        level.next = NextValue::Other;
                        if marker {
                            self.start_key(true);
                        }
                    }
                }
            }
            b'{' | b'[' => self.open(byte == b'{'),
            b'}' | b']' => self.close(),
            b',' => {
                if let Some(level) = self.level() {
                    level.expect_key = level.is_object;
                    level.next = NextValue::Other;
                }
            }
            b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
            // A scalar (or stray byte): whatever was after the key is not usage.
            _ => {
                if let Some(level) = self.level() {
                    level.next = NextValue::Other;
                }
            }
        }
    }

    fn open(&mut self, is_object: bool) {
        let top = self.depth == 0;
        let container = match self.level() {
            None if top => {
                if is_object {
                    Container::Document
                } else {
                    Container::List
                }
            }
            None => Container::Other,
            Some(level) => {
                let container = match (level.container, level.next, is_object) {
                    (Container::List, _, true) => Container::Document,
                    (_, NextValue::Prefix, true) => Container::Prefix,
                    _ => Container::Other,
                };
                let starts_usage = level.next == NextValue::Usage && is_object;
                let prefixed = level.container == Container::Prefix;
                level.next = NextValue::Other;
                if starts_usage {
                    self.start_capture(prefixed);
                }
                container
            }
        };
        self.depth = self.depth.saturating_add(1);
        if container == Container::Document {
            self.document_depth = self.depth;
        }
        if let Some(level) = self.level() {
            *level = Level {
                container,
                is_object,
                expect_key: is_object,
                next: NextValue::Other,
            };
        }
    }

    fn close(&mut self) {
        let closing = self.level().map(|level| level.container);
        let Some(depth) = self.depth.checked_sub(1) else {
            return;
        };
        self.depth = depth;
        if self.capturing && depth == self.capture_depth {
            self.end_capture();
        }
        if depth == 0 && self.ends_with_body {
            // The whole JSON body arrived: whatever usage it gave is all it gives.
            self.answer_ends();
            self.usage_final |= self.found.is_some();
        }
        if closing == Some(Container::Document) {
            self.usage_awaits_end = false;
        }
    }

    fn start_key(&mut self, marker_value: bool) {
        self.reading_marker = marker_value;
        self.reading_key = true;
        self.key_too_long = false;
        self.key_has_escape = false;
        // The opening quote, already copied into any usage object being captured.
        if let Some(first) = self.key.first_mut() {
            *first = b'"';
        }
        self.key_len = 1;
    }

    fn end_key(&mut self) {
        self.reading_key = false;
        if std::mem::take(&mut self.reading_marker) {
            if self.key_too_long {
                // Longer than any status: a reason all the same, but no Responses status.
                self.marker_value(b"?");
                return;
            }
            let raw = self.key.get(..self.key_len).unwrap_or_default();
            let decoded: Option<String> = serde_json::from_slice(raw).ok();
            if let Some(value) = decoded {
                self.marker_value(value.as_bytes());
            }
            return;
        }
        let slot = if self.key_too_long {
            NextValue::Other
        } else {
            let (usage_key, prefix_key) = self.targets();
            let container = self.level().map(|level| level.container);
            let raw = self.key.get(..self.key_len).unwrap_or_default();
            let decoded: Option<String>;
            let key: &[u8] = if self.key_has_escape {
                decoded = serde_json::from_slice(raw).ok();
                decoded.as_deref().map(str::as_bytes).unwrap_or_default()
            } else {
                raw.strip_prefix(b"\"")
                    .and_then(|key| key.strip_suffix(b"\""))
                    .unwrap_or_default()
            };
            match container {
                Some(Container::Document) if key == usage_key => NextValue::Usage,
                Some(Container::Document) if Some(key) == prefix_key => NextValue::Prefix,
                Some(Container::Prefix) if key == b"usage" => NextValue::Usage,
                Some(container) if self.end_marker(container, self.depth, key) => {
                    NextValue::EndMarker
                }
                _ => NextValue::Other,
            }
        };
        if let Some(level) = self.level() {
            level.next = slot;
        }
    }

    fn start_capture(&mut self, prefixed: bool) {
        if self.capture.capacity() == 0 {
            self.capture.reserve_exact(CAPTURE_LIMIT);
        }
        self.capture.clear();
        self.capturing = true;
        self.capture_prefixed = prefixed;
        self.capture_too_long = false;
        self.capture_depth = self.depth;
        // The `{` itself was kept before the scanner knew it opened usage.
        self.keep(b"{");
    }

    fn end_capture(&mut self) {
        self.capturing = false;
        let object = match serde_json::from_slice::<Value>(&self.capture) {
            _ if self.capture_too_long => None,
            Ok(Value::Object(object)) => Some(object),
            // Not JSON (a stray brace in a broken body): no usage was given here.
            _ => None,
        };
        // A count given twice in one object (parsers differ on which copy wins) is a count
        // the gateway cannot read.
        let repeated = object.is_some() && strict_json::validate(&self.capture).is_err();
        self.unreadable |= self.capture_too_long || repeated;
        let object = object.filter(|_| !repeated);
        if let Some(object) = object {
            match Counts::read(self.format, &object) {
                Ok(mut counts) => {
                    // Anthropic's `message_start` reports an output count of 1 or so before
                    // anything is generated: only a later `message_delta` gives the real one,
                    // so a stream that ends without it has no output count.
                    if self.format == UsageFormat::Anthropic && self.capture_prefixed {
                        counts.output = None;
                    }
                    self.found = Some(match self.found {
                        Some(earlier) => earlier.merged(counts),
                        None => counts,
                    });
                    if self.answer_ended {
                        self.usage_final = true;
                    } else {
                        self.usage_awaits_end = true;
                    }
                }
                Err(Unreadable) => self.unreadable = true,
            }
        }
        self.capture.clear();
    }
}

/// Where the data-line reader is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the stream's start: this many bytes of a UTF-8 byte order mark seen.
    Bom(u8),
    /// In a field name: this many bytes of `data` matched so far, or [`NOT_DATA`].
    Field(u8),
    /// After `data:`, where one space may follow.
    DataStart,
    Data,
    /// A line whose field is not `data`, or a comment.
    Skip,
}

const BOM: &[u8] = b"\xef\xbb\xbf";
const DATA: &[u8] = b"data";
const NOT_DATA: u8 = u8::MAX;

/// Reads an event stream's lines as they pass and hands their `data:` payloads to the
/// scanner, one document per event.
struct DataLines {
    lines: Lines,
    event: EventState,
}

/// Where the reader is within the current line and event.
struct EventState {
    line: Line,
    /// The event in progress has had a `data` line.
    has_data: bool,
}

impl DataLines {
    fn new() -> Self {
        DataLines {
            lines: Lines::default(),
            event: EventState {
                line: Line::Bom(0),
                has_data: false,
            },
        }
    }

    fn feed(&mut self, chunk: &[u8], scanner: &mut UsageExtractor) {
        for piece in self.lines.pieces(chunk) {
            match piece {
                Piece::LineEnd { .. } => self.event.end_line(scanner),
                Piece::Text(text) => {
                    let text = chunk.get(text).unwrap_or_default();
                    self.event.read_text(text, scanner);
                }
            }
        }
    }
}

impl EventState {
    /// Reads text of the current line: its field name byte by byte, then a data line's value
    /// at once.
    fn read_text(&mut self, text: &[u8], scanner: &mut UsageExtractor) {
        let mut rest = text;
        while let Some((&byte, after)) = rest.split_first() {
            match self.line {
                Line::Data => {
                    scanner.feed(rest);
                    return;
                }
                Line::Skip => return,
                Line::Bom(seen) => {
                    let seen_next = seen.saturating_add(1);
                    if BOM.get(usize::from(seen)) == Some(&byte) {
                        self.line = if usize::from(seen_next) == BOM.len() {
                            Line::Field(0)
                        } else {
                            Line::Bom(seen_next)
                        };
                        rest = after;
                    } else {
                        // Not a byte order mark: read this byte as the line's first.
                        self.line = Line::Field(0);
                    }
                    continue;
                }
                Line::Field(matched) => {
                    self.line = if byte == b':' {
                        if usize::from(matched) == DATA.len() {
                            self.start_data(scanner);
                            Line::DataStart
                        } else {
                            Line::Skip
                        }
                    } else if DATA.get(usize::from(matched)) == Some(&byte) {
                        Line::Field(matched.saturating_add(1))
                    } else {
                        Line::Field(NOT_DATA)
                    };
                }
                Line::DataStart => {
                    self.line = Line::Data;
                    if byte != b' ' {
                        continue;
                    }
                }
            }
            rest = after;
        }
    }

    fn start_data(&mut self, scanner: &mut UsageExtractor) {
        // The SSE spec joins an event's data lines with a line feed.
        if self.has_data {
            scanner.feed(b"\n");
        }
        self.has_data = true;
    }

    fn end_line(&mut self, scanner: &mut UsageExtractor) {
        match self.line {
            // An empty line dispatches the event.
            Line::Bom(_) | Line::Field(0) => {
                if self.has_data {
                    scanner.end_document();
                }
                self.has_data = false;
            }
            // `data` alone on its line is a data line with an empty value.
            Line::Field(matched) if usize::from(matched) == DATA.len() => self.start_data(scanner),
            Line::Field(_) | Line::DataStart | Line::Data | Line::Skip => {}
        }
        self.line = Line::Field(0);
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
