//! The text the walk hands out: what a string is to the model (`TextField`), where it sits
//! (`TextAt`), the sink that receives it, and the JSON text decoded inside strings, with the
//! offsets that lead a match in decoded text back to the string as read.

use std::borrow::Cow;
use std::ops::Range;

use super::span::Span;

/// What a piece of text is to the model, before its message's role is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TextField {
    /// Content of a message: prompt, system or tool result depending on the role.
    MessageContent,
    /// Prompt text outside messages (completions `prompt`, embeddings `input`).
    Prompt,
    System,
    ToolArguments,
    ToolResults,
    /// Anything else: tool definitions, metadata, unknown keys. Still reaches the provider.
    Other,
}

/// Where a string sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TextAt {
    /// The span of this string value in the body, quotes included: how a redaction finds it.
    /// `None` for an object key, and for text that cannot be redacted in place.
    pub span: Option<Span>,
    /// The message it belongs to, if any: an index into `Walked::roles`.
    pub message: Option<u32>,
    pub field: TextField,
}

/// Receives every string of the body as it is read.
pub trait TextSink {
    fn text(&mut self, text: &str, at: TextAt);

    /// The text of the string last handed out, with the JSON escapes inside it decoded (see
    /// `decoded_layers`). It has no span: it cannot be redacted in place. `layers` lead
    /// back to the string as read: the last maps `text` to the layer it was decoded from, the
    /// first maps the first decoded layer to the string as read (see `read_offset`).
    fn decoded(&mut self, text: &str, layers: &[Offsets], at: TextAt) {
        let _ = layers;
        self.text(text, TextAt { span: None, ..at });
    }

    /// Consecutive text parts of one message's content (or of system text), of one kind: the
    /// spans of their `text` strings, each already handed out, at least two. A model reads
    /// them as one text; a sink that scans may join them.
    fn text_parts(&mut self, spans: &[Span]) {
        let _ = spans;
    }

    /// The key just handed out (`key`, at `token` in the body) is one the model reads as text:
    /// a key of a free-form value (a tool's parameter names, a schema's properties, a tool
    /// call's input), not of the body's own structure. Rules scan every key already.
    fn key_read(&mut self, key: &str, at: TextAt, token: Span) {
        let _ = (key, at, token);
    }

    /// The strings and keys already handed out within `bytes` of the body are not text the
    /// model reads: the data of an image, a file or other opaque content, or a part's `type`.
    /// Rules scan them still; a sink that passes on what the model reads drops them.
    fn not_read(&mut self, bytes: Range<usize>) {
        let _ = bytes;
    }
}

/// A sink that ignores text: validation and model extraction only.
pub struct NoText;

impl TextSink for NoText {
    fn text(&mut self, _: &str, _: TextAt) {}
}

/// How many layers of JSON text inside a string are decoded: a string holding the JSON text
/// of a string holding JSON text is already unusual.
const DECODED_LAYERS: usize = 3;

/// JSON text inside a string (a tool call's `arguments` is a JSON document in a string; serving
/// stacks decode it before the model reads it, and models read escapes anyway) may spell text
/// with escapes: `\u0041KIA...`. Whatever string holds a backslash is decoded as the inside
/// of a JSON string, leniently (a lone surrogate becomes U+FFFD, an unknown escape stays), and
/// each layer that differs is handed out too, as decoded text (`TextSink::decoded`).
pub(crate) fn decoded_layers<S: TextSink + ?Sized>(text: &str, at: TextAt, sink: &mut S) {
    let mut layer = Cow::Borrowed(text);
    let mut layers: Vec<Offsets> = Vec::new();
    for _ in 0..DECODED_LAYERS {
        if !layer.contains('\\') {
            return;
        }
        let Some((next, offsets)) = unescape_mapped(&layer) else {
            return;
        };
        layers.push(offsets);
        sink.decoded(&next, &layers, at);
        layer = Cow::Owned(next);
    }
}

/// Where the bytes of a decoded layer were read in the layer it was decoded from, kept sparse
/// (a long string with a few escapes costs a few entries): one run per stretch copied as it
/// was and per escape decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `(decoded start, read start, copied)`, in order: from its decoded start on, a copied
    /// run maps byte for byte; every byte an escape decoded to maps to the escape's start.
    /// The last run starts at the decoded end and maps it to the end of what was read.
    runs: Vec<(usize, usize, bool)>,
}

impl Offsets {
    /// The bytes this map holds in the Wasm module (three 4-byte fields a run).
    pub fn cost(&self) -> usize {
        self.runs.len().saturating_mul(12)
    }

    /// Where the byte at `at` (or the end, at the decoded length) was read.
    pub fn read_at(&self, at: usize) -> Option<usize> {
        let index = self
            .runs
            .partition_point(|(start, _, _)| *start <= at)
            .checked_sub(1)?;
        let (start, read, copied) = *self.runs.get(index)?;
        if copied {
            read.checked_add(at.checked_sub(start)?)
        } else {
            Some(read)
        }
    }
}

/// Where `at` in the innermost of `layers` (see `TextSink::decoded`) was read in the string
/// as read.
pub fn read_offset(layers: &[Offsets], at: usize) -> Option<usize> {
    layers
        .iter()
        .rev()
        .try_fold(at, |at, offsets| offsets.read_at(at))
}

/// The text with its JSON escapes decoded, or `None` when it has none to decode.
pub(crate) fn unescape(text: &str) -> Option<String> {
    unescape_mapped(text).map(|(decoded, _)| decoded)
}

/// As `unescape`, with where each byte of the decoded text, and its end, came from in `text`:
/// a match in the decoded text is judged by the place it covers in the text as read.
pub(crate) fn unescape_mapped(text: &str) -> Option<(String, Offsets)> {
    let mut out = String::with_capacity(text.len());
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find('\\') {
        let offset = text.len().saturating_sub(rest.len());
        if at > 0 {
            runs.push((out.len(), offset, true));
            out.push_str(rest.get(..at)?);
        }
        let escape_at = offset.saturating_add(at);
        let tail = rest.get(at..)?;
        let mut chars = tail.chars();
        chars.next();
        let decoded = match chars.next() {
            Some('n') => Some(('\n', 2)),
            Some('t') => Some(('\t', 2)),
            Some('r') => Some(('\r', 2)),
            Some('b') => Some(('\u{8}', 2)),
            Some('f') => Some(('\u{c}', 2)),
            Some(c @ ('"' | '\\' | '/')) => Some((c, 2)),
            Some('u') => unicode_escape(tail),
            _ => None,
        };
        runs.push((out.len(), escape_at, false));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                changed = true;
                rest = tail.get(len..)?;
            }
            None => {
                out.push('\\');
                rest = tail.get(1..)?;
            }
        }
    }
    if !rest.is_empty() {
        runs.push((out.len(), text.len().saturating_sub(rest.len()), true));
        out.push_str(rest);
    }
    runs.push((out.len(), text.len(), false));
    changed.then_some((out, Offsets { runs }))
}

/// A `\uXXXX` escape at the start of `text` (with its low surrogate, if it is a high one):
/// the character and the bytes it took. A lone surrogate is U+FFFD, as lenient decoders read it.
fn unicode_escape(text: &str) -> Option<(char, usize)> {
    let unit = |from: usize| -> Option<u32> {
        let hex = text.get(from..from.checked_add(6)?)?;
        let digits = hex.strip_prefix("\\u")?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    };
    let high = unit(0)?;
    if (0xD800..0xDC00).contains(&high) {
        if let Some(low) = unit(6).filter(|low| (0xDC00..0xE000).contains(low)) {
            let code = 0x10000u32
                .checked_add((high.checked_sub(0xD800)?) << 10)?
                .checked_add(low.checked_sub(0xDC00)?)?;
            return Some((char::from_u32(code)?, 12));
        }
    }
    Some((char::from_u32(high).unwrap_or('\u{fffd}'), 6))
}
