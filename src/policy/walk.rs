//! One strict pass over a request body: validate it, take out the top-level `model`, and hand
//! every string (and object key) to a sink together with where it sits, so prompt inspection
//! scans each piece of text once, as decoded text, never as raw bytes.
//!
//! Where a string sits is told by the keys above it, never by sibling values such as `"type"`,
//! which may come after the content they describe. A message's role may also come after its
//! content, so strings carry their message's index and the roles are resolved after the walk.
//!
//! On request (`Watch`), the same pass also locates the values the request limits edit (see
//! `limits`): the output-token fields, `stream` and `stream_options`, and where the objects
//! holding them close, so a key can be inserted without re-serialising the body.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::classify::Endpoint;
use super::extract::{BodyError, ModelField};
use super::json_reader::{Raw, Reader};
use super::limits::{watched, Watched, WATCHED_KINDS};
use super::parts::{opaque_part, unread_key, Family};
use super::strict_json::{classify_error, fold_char, KeySeed, KeySet, Violation, MAX_DEPTH};

/// What a piece of text is to the model, before its message's role is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextAt {
    /// The index of this string among the body's string values in document order (keys are
    /// not counted); `None` for an object key.
    pub ordinal: Option<u32>,
    /// The message it belongs to, if any: an index into `Walked::roles`.
    pub message: Option<u32>,
    pub slot: Slot,
}

/// Receives every string of the body as it is read.
pub trait TextSink {
    fn text(&mut self, text: &str, at: TextAt);

    /// The text of the string last handed out, with the JSON escapes inside it decoded (see
    /// `decoded_layers`). It has no ordinal: it cannot be redacted in place. `layers` lead
    /// back to the string as read: the last maps `text` to the layer it was decoded from, the
    /// first maps the first decoded layer to the string as read (see `read_offset`).
    fn decoded(&mut self, text: &str, layers: &[Offsets], at: TextAt) {
        let _ = layers;
        self.text(
            text,
            TextAt {
                ordinal: None,
                ..at
            },
        );
    }
}

/// A sink that ignores text: validation and model extraction only.
pub struct NoText;

impl TextSink for NoText {
    fn text(&mut self, _: &str, _: TextAt) {}
}

/// What the walk found besides the text it handed out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walked {
    pub model: Option<ModelField>,
    /// The `model` of a Gemini `countTokens` body's `generateContentRequest`, one per spelling
    /// of that key present (`generate_content_request` too): the provider reads one of them.
    pub inner_models: Vec<ModelField>,
    /// The role of each message, by index: the one it names if an API defines it, else the one
    /// its provider reads it as (`Node::default_role`). The usual roles are not copied: a long conversation has
    /// one per message.
    pub roles: Vec<Option<Cow<'static, str>>>,
    /// The first content part the filter cannot read as text (an image, audio, a file).
    pub opaque: Option<&'static str>,
    /// The values a `Watch` asked for. Empty without one.
    pub located: Located,
}

/// Which values the walk locates for the request limits, besides its usual work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// `stream`, `stream_options` and `stream_options.include_usage`.
    pub stream: bool,
    /// The endpoint's output-token fields and the objects that hold them.
    pub output_tokens: bool,
}

impl Watch {
    pub fn any(self) -> bool {
        self.stream || self.output_tokens
    }
}

/// Where an object closes: the offset of its `}`, and whether it has no members (so a key
/// inserted before the brace needs no comma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEnd {
    pub close: usize,
    pub empty: bool,
}

/// A located value: the span of its raw JSON text in the body, and where it closes if it is an
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub object: Option<ObjectEnd>,
}

impl Found {
    pub fn span(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// The values located for a `Watch`. A fixed table: locating allocates nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Located {
    /// The top-level object; set whenever something was watched.
    pub top: Option<ObjectEnd>,
    found: [Option<Found>; WATCHED_KINDS],
}

impl Located {
    pub fn get(&self, what: Watched) -> Option<Found> {
        self.found.get(what as usize).copied().flatten()
    }

    fn set(&mut self, what: Watched, found: Found) {
        if let Some(slot) = self.found.get_mut(what as usize) {
            *slot = Some(found);
        }
    }
}

/// Walks a whole body. `endpoint` says which keys carry prompts.
pub fn walk<S: TextSink>(
    body: &[u8],
    endpoint: Endpoint,
    sink: &mut S,
) -> Result<Walked, BodyError> {
    walk_watching(body, endpoint, Watch::default(), sink)
}

/// Walks a whole body, also locating what `watch` asks for.
pub fn walk_watching<S: TextSink>(
    body: &[u8],
    endpoint: Endpoint,
    watch: Watch,
    sink: &mut S,
) -> Result<Walked, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let state = RefCell::new(State {
        sink,
        walked: Walked::default(),
        ordinal: 0,
        shape_error: None,
        part_type: None,
    });
    let violation = Cell::new(None);
    let root = Node {
        shared: &Shared {
            state: &state,
            violation: &violation,
            body,
            endpoint,
            watch,
        },
        place: Place::Top,
        message: None,
        depth: 0,
        watched: None,
    };
    let mut reader = match Reader::new(body) {
        Ok(reader) => reader,
        Err(error) => return Err(BodyError::Json(classify_error(error, &violation))),
    };
    let result = root.deserialize(&mut reader).and_then(|()| reader.end());
    let state = state.into_inner();
    match (result, state.shape_error) {
        (Ok(()), _) => {
            let mut walked = state.walked;
            if watch.any() {
                walked.located.top = top_object_end(body);
            }
            Ok(walked)
        }
        (Err(_), Some(shape)) => Err(shape),
        (Err(error), None) => Err(BodyError::Json(classify_error(error, &violation))),
    }
}

/// Where the top-level object of a walked body closes: its last byte but white space.
fn top_object_end(body: &[u8]) -> Option<ObjectEnd> {
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let inside = body.get(open.checked_add(1)?..close)?;
    Some(ObjectEnd {
        close,
        empty: inside.iter().all(u8::is_ascii_whitespace),
    })
}

struct State<'s, S> {
    sink: &'s mut S,
    walked: Walked,
    ordinal: u32,
    shape_error: Option<BodyError>,
    /// The `type` of the content part being read, once its value has been.
    part_type: Option<String>,
}

struct Shared<'a, 's, S> {
    state: &'a RefCell<State<'s, S>>,
    violation: &'a Cell<Option<Violation>>,
    body: &'a [u8],
    endpoint: Endpoint,
    watch: Watch,
}

/// What the value being read is, judged from the keys above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The top-level object.
    Top,
    /// A list of messages (or of Responses API input items).
    Messages,
    /// One message or input item.
    Message,
    /// A message's `role`.
    Role,
    /// Responses API `input`: a prompt string or a list of items.
    ResponsesInput,
    /// Responses API `instructions`: system text, or a list of items, each with its own role.
    Instructions,
    /// Fields of a model's own request format that the filter does not map: the rest of a
    /// Bedrock InvokeModel body, and Converse `additionalModelRequestFields`, which Bedrock
    /// hands to the model. A string here is judged as the user's prompt, and a key or value
    /// that names an image, a file or other media is opaque.
    ModelFields,
    /// Text, or parts holding text, of the given kind. Objects here are content parts.
    Text(Slot),
    /// Everything beneath is of this kind, keys included (tool arguments are free-form JSON).
    Subtree(Slot),
    /// A content part's `type`: recorded to judge the part (see `parts`), and scanned.
    PartType,
    /// A Gemini `countTokens` body's `generateContentRequest`: read as a request of its own.
    InnerRequest,
    /// An object of settings the filter reads some members of: `stream_options`, Gemini's
    /// `generationConfig`, Converse's `inferenceConfig`.
    Settings,
    /// A Responses API `prompt` (a stored template), and its `variables` (Bedrock Converse's
    /// `promptVariables`), whose values are text or input parts put into the prompt.
    PromptTemplate,
    Variables,
}

struct Node<'n, 'a, 's, S> {
    shared: &'n Shared<'a, 's, S>,
    place: Place,
    message: Option<u32>,
    depth: usize,
    /// Set on a watched object whose own keys are watched too (`stream_options`, ...).
    watched: Option<Watched>,
}

// Written by hand: derived impls would require the sink itself to be `Copy`.
impl<S> Clone for Node<'_, '_, '_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Node<'_, '_, '_, S> {}

impl<'n, 'a, 's, S: TextSink> Node<'n, 'a, 's, S> {
    fn child<E: de::Error>(&self, place: Place) -> Result<Self, E> {
        match self.depth.checked_add(1) {
            Some(depth) if depth <= MAX_DEPTH => Ok(Node {
                place,
                depth,
                watched: None,
                ..*self
            }),
            _ => Err(self.violate(Violation::TooDeep)),
        }
    }

    fn violate<E: de::Error>(&self, violation: Violation) -> E {
        let message = violation.to_string();
        self.shared.violation.set(Some(violation));
        E::custom(message)
    }

    fn shape<E: de::Error>(&self, error: BodyError) -> E {
        let message = error.to_string();
        if let Ok(mut state) = self.shared.state.try_borrow_mut() {
            state.shape_error = Some(error);
        }
        E::custom(message)
    }

    fn slot(&self) -> Slot {
        match self.place {
            Place::Text(slot) | Place::Subtree(slot) => slot,
            Place::ResponsesInput | Place::Messages | Place::ModelFields => Slot::Prompt,
            Place::Instructions => Slot::System,
            // A bare string where a message is expected: its message's content.
            Place::Message => Slot::MessageContent,
            _ => Slot::Other,
        }
    }

    /// A string value: counted, and handed to the sink (a role is recorded instead).
    fn string<E: de::Error>(&self, text: &str) -> Result<(), E> {
        if self.place == Place::Message {
            // A bare string where a message is expected is read as a turn of its own.
            self.default_role(None);
        }
        if self.place == Place::ModelFields && is_data_url(text) {
            self.opaque("inline data");
        }
        let mut state = self
            .shared
            .state
            .try_borrow_mut()
            .map_err(|_| E::custom("internal: walk state busy"))?;
        let ordinal = state.ordinal;
        state.ordinal = ordinal.saturating_add(1);
        if self.place == Place::Role {
            if let Some(role) = self
                .message
                .and_then(|index| state.walked.roles.get_mut(index as usize))
            {
                *role = Some(role_name(Family::of(self.shared.endpoint), text));
            }
            // Scanned like every string, as a key is: without an ordinal (a redaction there
            // would change the role, so it blocks) and outside any role.
            let at = TextAt {
                ordinal: None,
                message: None,
                slot: Slot::Other,
            };
            state.sink.text(text, at);
            return Ok(());
        }
        if self.place == Place::PartType {
            state.part_type = Some(text.to_owned());
        }
        let at = TextAt {
            ordinal: Some(ordinal),
            message: self.message,
            slot: self.slot(),
        };
        state.sink.text(text, at);
        decoded_layers(text, at, &mut *state.sink);
        Ok(())
    }

    fn key<E: de::Error>(&self, key: &str, slot: Slot) -> Result<(), E> {
        let mut state = self
            .shared
            .state
            .try_borrow_mut()
            .map_err(|_| E::custom("internal: walk state busy"))?;
        let at = TextAt {
            ordinal: None,
            message: self.message,
            slot,
        };
        state.sink.text(key, at);
        decoded_layers(key, at, &mut *state.sink);
        Ok(())
    }

    /// A new message: its index, with room for its role.
    fn new_message<E: de::Error>(&self) -> Result<u32, E> {
        let mut state = self
            .shared
            .state
            .try_borrow_mut()
            .map_err(|_| E::custom("internal: walk state busy"))?;
        let index =
            u32::try_from(state.walked.roles.len()).map_err(|_| E::custom("too many messages"))?;
        state.walked.roles.push(None);
        Ok(index)
    }

    fn opaque(&self, kind: &'static str) {
        if let Ok(mut state) = self.shared.state.try_borrow_mut() {
            state.walked.opaque.get_or_insert(kind);
        }
    }

    /// A turn that names no role gets the one its provider reads it as: Gemini's `contents`
    /// default to `user`; a Responses item without a role is the model's (a call, reasoning)
    /// or a tool's (a call's output) by its type, else the user's. The other families refuse a
    /// message without a role; it is judged as the user's all the same. So is a role no API
    /// defines (`User`, `user `): a provider lenient about spelling would read it as one.
    fn default_role(&self, item_type: Option<&str>) {
        let Ok(mut state) = self.shared.state.try_borrow_mut() else {
            return;
        };
        let Some(role) = self
            .message
            .and_then(|index| state.walked.roles.get_mut(index as usize))
        else {
            return;
        };
        if let Some(Cow::Owned(_)) = role {
            *role = Some(Cow::Borrowed("user"));
            return;
        }
        if role.is_some() {
            return;
        }
        let default = match (self.shared.endpoint, item_type) {
            (Endpoint::Responses, Some(kind)) if kind.ends_with("_output") => "tool",
            (Endpoint::Responses, Some(kind)) if kind.ends_with("_call") || kind == "reasoning" => {
                "assistant"
            }
            _ => "user",
        };
        *role = Some(Cow::Borrowed(default));
    }

    fn take_part_type(&self) -> Option<String> {
        self.shared
            .state
            .try_borrow_mut()
            .ok()
            .and_then(|mut state| state.part_type.take())
    }

    /// Whether the filter reads meaning from the keys of an object here: the top level, a
    /// message, a content part, a stored prompt, an object whose members the limits read. A
    /// key there that differs from one the filter reads only in letter case is refused (see
    /// `read_key_variant`).
    fn reads_keys(&self) -> bool {
        self.watched.is_some()
            || matches!(
                self.place,
                Place::Top
                    | Place::InnerRequest
                    | Place::Message
                    | Place::Text(_)
                    | Place::PromptTemplate
                    | Place::Settings
            )
    }

    /// Whether an object here is a content part (see `parts`): anything where text or parts
    /// are read, and each Responses API input item.
    fn is_part(&self) -> bool {
        match self.place {
            Place::Text(_) => true,
            Place::Message => self.shared.endpoint == Endpoint::Responses,
            _ => false,
        }
    }

    /// Where the value under `key` sits, in an object at this node's place.
    fn place_of(&self, key: &str) -> Place {
        match self.place {
            Place::Top | Place::InnerRequest => top_level_place(self.shared.endpoint, key),
            Place::Message => match key {
                "role" => Place::Role,
                // `message`: a Cohere Command R `chat_history` turn.
                "content" | "parts" | "name" | "message" => Place::Text(Slot::MessageContent),
                "tool_calls" | "function_call" | "arguments" | "input" => {
                    Place::Subtree(Slot::ToolArguments)
                }
                "output" => Place::Text(Slot::ToolResults),
                _ => Place::Subtree(Slot::Other),
            },
            // Keys of a content part. Where a tool's result may itself hold parts (Anthropic
            // `tool_result.content`, Converse `toolResult`, Gemini `functionResponse.parts`,
            // Responses `output`), those are parts too, and judged as such.
            Place::Text(slot) => {
                match key {
                    "text" | "thinking" | "refusal" | "parts" | "guardContent"
                    | "reasoningContent" | "reasoningText" => Place::Text(slot),
                    "input" | "args" | "arguments" | "functionCall" | "function_call"
                    | "toolUse" => Place::Subtree(Slot::ToolArguments),
                    "content" | "output" | "functionResponse" | "function_response"
                    | "toolResult" => Place::Text(Slot::ToolResults),
                    "response" | "json" => Place::Subtree(Slot::ToolResults),
                    _ => Place::Subtree(Slot::Other),
                }
            }
            Place::PromptTemplate if key == "variables" => Place::Variables,
            Place::Variables => Place::Text(Slot::Prompt),
            Place::Subtree(slot) => Place::Subtree(slot),
            Place::ModelFields => Place::ModelFields,
            Place::Messages
            | Place::Role
            | Place::ResponsesInput
            | Place::Instructions
            | Place::Settings
            | Place::PartType
            | Place::PromptTemplate => Place::Subtree(Slot::Other),
        }
    }
}

/// A message's role, without a copy when it is one its family defines. Any other role, one
/// another family defines included (`model` in an OpenAI chat, `system` in an Anthropic or
/// Converse turn, `assistant` in a Gemini one), is copied, and judged as the user's: a
/// provider lenient about roles reads it so.
fn role_name(family: Family, text: &str) -> Cow<'static, str> {
    const OPENAI: &[&str] = &[
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "function",
    ];
    const RESPONSES: &[&str] = &["user", "assistant", "system", "developer"];
    const USER_ASSISTANT: &[&str] = &["user", "assistant"];
    const GEMINI: &[&str] = &["user", "model"];
    // An InvokeModel body is in the model's own format, which may be any of the others.
    const ANY: &[&str] = &[
        "user",
        "assistant",
        "system",
        "developer",
        "tool",
        "function",
        "model",
    ];
    let known = match family {
        Family::OpenAi => OPENAI,
        Family::Responses => RESPONSES,
        Family::Anthropic | Family::Converse => USER_ASSISTANT,
        Family::Gemini => GEMINI,
        Family::Invoke => ANY,
    };
    match known.iter().find(|known| **known == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

/// Keys outside content parts that carry what the filter cannot read: a chat message's `audio`
/// (an earlier answer's audio, by id), a file by id anywhere (a code interpreter's container,
/// a tool's resources: the same file an `input_file` part would send), and in a model's own
/// fields (`ModelFields`) any key that names an image, a file or other media.
/// `place` is the object's, `value` the place of the value under `key`.
fn opaque_key(endpoint: Endpoint, place: Place, value: Place, key: &str) -> Option<&'static str> {
    if is_file_reference(key) {
        return Some("file");
    }
    match (place, value) {
        (Place::Message, _) if endpoint != Endpoint::Responses && key == "audio" => Some("audio"),
        (_, Place::ModelFields) => media_key(key),
        _ => None,
    }
}

/// `file_id`, `file_ids`, `fileId`, ...: a file the provider fetches from its own store.
fn is_file_reference(key: &str) -> bool {
    if key.len() > 9 {
        return false;
    }
    let letters = || {
        key.bytes()
            .filter(|b| *b != b'_' && *b != b'-')
            .map(|b| b.to_ascii_lowercase())
    };
    letters().eq(b"fileid".iter().copied()) || letters().eq(b"fileids".iter().copied())
}

/// What a key in a model's own fields names, if it is media the filter cannot read: an image
/// (`images`, `init_image`, `inputImage`), audio, video, a file or document, raw bytes or
/// base64 text, a media source or a location in storage.
fn media_key(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let label = super::parts::kind_label(&lower);
    if label != "unrecognised" {
        return Some(label);
    }
    const MEDIA: [&str; 7] = ["media", "base64", "bytes", "s3", "uri", "url", "video"];
    MEDIA
        .iter()
        .any(|word| lower.contains(word))
        .then_some("media")
}

/// A `data:` URL, leading white space aside: a scheme is matched without regard to case
/// (RFC 3986, section 3.1), so `DATA:` and `Data:` are one too.
fn is_data_url(text: &str) -> bool {
    text.trim_start()
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
}

/// How many layers of JSON text inside a string are decoded: a string holding the JSON text
/// of a string holding JSON text is already unusual.
const DECODED_LAYERS: usize = 3;

/// JSON text inside a string (a tool call's `arguments` is a JSON document in a string; serving
/// stacks decode it before the model reads it, and models read escapes anyway) may spell text
/// with escapes: `\u0041KIA...`. Whatever string holds a backslash is decoded as the inside
/// of a JSON string, leniently (a lone surrogate becomes U+FFFD, an unknown escape stays), and
/// each layer that differs is handed out too, as decoded text (`TextSink::decoded`).
fn decoded_layers<S: TextSink + ?Sized>(text: &str, at: TextAt, sink: &mut S) {
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
#[cfg(test)]
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

/// Every key the filter reads meaning from, in any family: the top level's, a message's, a
/// content part's, the limits'. Where the filter reads keys (`Node::reads_keys`), a key equal
/// to one of these once letter case is folded, but not the same, is refused: a provider that
/// ignores case (Go's `encoding/json`, .NET) would read it as the key the filter passed over.
/// Matched at run time by `read_key_folded`; a test holds the two in step.
#[cfg(test)]
const READ_KEYS: &[&str] = &[
    // Top level.
    "model",
    "messages",
    "contents",
    "system",
    "prompt",
    "suffix",
    "input",
    "instructions",
    "inputText",
    "message",
    "chat_history",
    "preamble",
    "documents",
    "promptVariables",
    "variables",
    "systemInstruction",
    "system_instruction",
    "generateContentRequest",
    "generate_content_request",
    "additionalModelRequestFields",
    // What the limits read.
    "stream",
    "stream_options",
    "include_usage",
    "background",
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "n",
    "best_of",
    "generationConfig",
    "generation_config",
    "maxOutputTokens",
    "candidateCount",
    "inferenceConfig",
    "maxTokens",
    // Messages.
    "role",
    "content",
    "parts",
    "name",
    "tool_calls",
    "function_call",
    "arguments",
    "output",
    "audio",
    // Content parts.
    "type",
    "text",
    "thinking",
    "refusal",
    "guardContent",
    "reasoningContent",
    "reasoningText",
    "args",
    "functionCall",
    "toolUse",
    "functionResponse",
    "function_response",
    "toolResult",
    "response",
    "json",
];

/// The key the filter reads that `key` is a case variant of, if any.
fn read_key_variant(key: &str) -> Option<&'static str> {
    // The longest key the filter reads is shorter than this; a longer key folds to none.
    const LONGEST: usize = 32;
    let mut buffer = [0u8; LONGEST];
    let mut len = 0usize;
    for c in key.chars().map(fold_char) {
        let slot = buffer.get_mut(len)?;
        *slot = u8::try_from(u32::from(c)).ok().filter(u8::is_ascii)?;
        len = len.checked_add(1)?;
    }
    let read = read_key_folded(buffer.get(..len)?)?;
    (read != key).then_some(read)
}

/// The key the filter reads whose folded (lowercase ASCII) form is `folded`: every key in
/// `READ_KEYS` and in `parts::READ_PART_KEYS` (a test holds the two in step).
fn read_key_folded(folded: &[u8]) -> Option<&'static str> {
    Some(match folded {
        b"additionalmodelrequestfields" => "additionalModelRequestFields",
        b"annotations" => "annotations",
        b"args" => "args",
        b"arguments" => "arguments",
        b"audio" => "audio",
        b"background" => "background",
        b"best_of" => "best_of",
        b"cache_control" => "cache_control",
        b"cachepoint" => "cachePoint",
        b"call_id" => "call_id",
        b"candidatecount" => "candidateCount",
        b"chat_history" => "chat_history",
        b"citations" => "citations",
        b"code_execution_result" => "code_execution_result",
        b"codeexecutionresult" => "codeExecutionResult",
        b"content" => "content",
        b"contents" => "contents",
        b"data" => "data",
        b"documents" => "documents",
        b"encrypted_content" => "encrypted_content",
        b"executable_code" => "executable_code",
        b"executablecode" => "executableCode",
        b"function_call" => "function_call",
        b"function_response" => "function_response",
        b"functioncall" => "functionCall",
        b"functionresponse" => "functionResponse",
        b"generate_content_request" => "generate_content_request",
        b"generatecontentrequest" => "generateContentRequest",
        b"generation_config" => "generation_config",
        b"generationconfig" => "generationConfig",
        b"guardcontent" => "guardContent",
        b"id" => "id",
        b"include_usage" => "include_usage",
        b"inferenceconfig" => "inferenceConfig",
        b"input" => "input",
        b"inputtext" => "inputText",
        b"instructions" => "instructions",
        b"is_error" => "is_error",
        b"json" => "json",
        b"logprobs" => "logprobs",
        b"max_completion_tokens" => "max_completion_tokens",
        b"max_output_tokens" => "max_output_tokens",
        b"max_tokens" => "max_tokens",
        b"maxoutputtokens" => "maxOutputTokens",
        b"maxtokens" => "maxTokens",
        b"message" => "message",
        b"messages" => "messages",
        b"model" => "model",
        b"n" => "n",
        b"name" => "name",
        b"output" => "output",
        b"part_metadata" => "part_metadata",
        b"partmetadata" => "partMetadata",
        b"parts" => "parts",
        b"preamble" => "preamble",
        b"prompt" => "prompt",
        b"promptvariables" => "promptVariables",
        b"qualifiers" => "qualifiers",
        b"reasoningcontent" => "reasoningContent",
        b"reasoningtext" => "reasoningText",
        b"redactedcontent" => "redactedContent",
        b"refusal" => "refusal",
        b"response" => "response",
        b"role" => "role",
        b"scheduling" => "scheduling",
        b"signature" => "signature",
        b"status" => "status",
        b"stream" => "stream",
        b"stream_options" => "stream_options",
        b"suffix" => "suffix",
        b"summary" => "summary",
        b"system" => "system",
        b"system_instruction" => "system_instruction",
        b"systeminstruction" => "systemInstruction",
        b"text" => "text",
        b"thinking" => "thinking",
        b"thought" => "thought",
        b"thought_signature" => "thought_signature",
        b"thoughtsignature" => "thoughtSignature",
        b"tool_calls" => "tool_calls",
        b"tool_use_id" => "tool_use_id",
        b"toolresult" => "toolResult",
        b"tooluse" => "toolUse",
        b"tooluseid" => "toolUseId",
        b"type" => "type",
        b"variables" => "variables",
        b"will_continue" => "will_continue",
        b"willcontinue" => "willContinue",
        _ => return None,
    })
}

fn top_level_place(endpoint: Endpoint, key: &str) -> Place {
    use Endpoint::*;
    match (endpoint, key) {
        // `suffix`: the text after the insertion point, read as prompt text.
        (Completions | AzureCompletions, "prompt" | "suffix")
        | (Embeddings | AzureEmbeddings, "input")
        // Cohere Command R's `message` (its `chat_history` is its messages).
        | (BedrockInvoke, "prompt" | "inputText" | "input" | "message") => {
            Place::Text(Slot::Prompt)
        }
        // Cohere Command R's grounding documents: objects of text fields.
        (BedrockInvoke, "documents") => Place::Subtree(Slot::Prompt),
        (BedrockInvoke, "chat_history") => Place::Messages,
        (BedrockInvoke, "preamble") => Place::Text(Slot::System),
        (Responses, "input") => Place::ResponsesInput,
        (Responses, "instructions") => Place::Instructions,
        (Responses, "prompt") => Place::PromptTemplate,
        (BedrockConverse, "promptVariables") => Place::Variables,
        (GeminiGenerate, "contents") => Place::Messages,
        (GeminiGenerate, "systemInstruction" | "system_instruction") => Place::Text(Slot::System),
        (GeminiGenerate, "generateContentRequest" | "generate_content_request") => {
            Place::InnerRequest
        }
        (_, "messages") => Place::Messages,
        (_, "system") => Place::Text(Slot::System),
        (GeminiGenerate, "generationConfig" | "generation_config")
        | (BedrockConverse, "inferenceConfig")
        | (_, "stream_options") => Place::Settings,
        // Tool definitions are read as in every family (their property names are not media).
        (BedrockInvoke, "tools" | "tool_choice" | "toolConfig") => Place::Subtree(Slot::Other),
        (BedrockConverse, "additionalModelRequestFields") | (BedrockInvoke, _) => {
            Place::ModelFields
        }
        _ => Place::Subtree(Slot::Other),
    }
}

impl<'de, S: TextSink> DeserializeSeed<'de> for Node<'_, '_, '_, S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: TextSink> Visitor<'de> for Node<'_, '_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.number()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.number()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.number()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if self.place == Place::Top {
            return Err(self.shape(BodyError::NotAnObject));
        }
        self.string(text)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.place == Place::Top {
            return Err(self.shape(BodyError::NotAnObject));
        }
        self.role_not_text();
        let element = match self.place {
            Place::Messages | Place::ResponsesInput | Place::Instructions => Place::Message,
            Place::PartType | Place::Role => Place::Subtree(Slot::Other),
            other => other,
        };
        let element = self.child(element)?;
        loop {
            let node = match element.place {
                Place::Message => Node {
                    message: Some(self.new_message()?),
                    ..element
                },
                _ => element,
            };
            if seq.next_element_seed(node)?.is_none() {
                return Ok(());
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.role_not_text();
        let mut keys = KeySet::new();
        let watching =
            self.shared.watch.any() && (self.place == Place::Top || self.watched.is_some());
        let mut node = self;
        // A bare object where messages are expected is one message: Google's JSON mapping
        // reads a single value where a list is expected (Gemini `contents`), and the Responses
        // API takes one item; where a provider would refuse it, it is judged all the same.
        if matches!(
            node.place,
            Place::ResponsesInput | Place::Messages | Place::Instructions
        ) {
            node = Node {
                place: Place::Message,
                message: Some(self.new_message()?),
                ..self
            };
        }
        let part = node.is_part().then(|| Family::of(node.shared.endpoint));
        let reads_keys = node.reads_keys();
        let mut part_type = None;
        let mut unread = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Err(seen) = keys.insert(key.clone()) {
                return Err(node.violate(seen.violation(key)));
            }
            if reads_keys {
                if let Some(of) = read_key_variant(&key) {
                    let key = key.into_owned();
                    let of = of.to_owned();
                    return Err(node.violate(Violation::CaseVariant { key, of }));
                }
            }
            if matches!(node.place, Place::Top | Place::InnerRequest) && key == "model" {
                let raw: Raw<'de> = map.next_value()?;
                node.model(raw)?;
                continue;
            }
            let mut place = node.place_of(&key);
            if let Some(family) = part {
                if key == "type" {
                    place = Place::PartType;
                } else if unread.is_none() {
                    unread = unread_key(family, &key);
                }
            }
            if let Some(kind) = opaque_key(node.shared.endpoint, node.place, place, &key) {
                node.opaque(kind);
            }
            let key_slot = match place {
                Place::Subtree(slot) => slot,
                _ => Slot::Other,
            };
            node.key(&key, key_slot)?;
            if watching {
                let shared = node.shared;
                if let Some(what) = watched(shared.endpoint, shared.watch, node.watched, &key) {
                    let raw: Raw<'de> = map.next_value()?;
                    node.capture(what, raw, place)?;
                    continue;
                }
            }
            map.next_value_seed(node.child(place)?)?;
            if place == Place::PartType {
                part_type = node.take_part_type();
            }
        }
        if let Some(family) = part {
            let item = node.place == Place::Message;
            if let Some(kind) = opaque_part(family, item, part_type.as_deref(), unread) {
                node.opaque(kind);
            }
        }
        if node.place == Place::Message {
            node.default_role(part_type.as_deref());
        }
        Ok(())
    }
}

impl<S: TextSink> Node<'_, '_, '_, S> {
    /// A number where text is read is a token id (completions `prompt` and embeddings `input`
    /// take lists of them): text the filter cannot read.
    fn number<E: de::Error>(&self) -> Result<(), E> {
        if let Place::Text(_) = self.place {
            self.opaque("token ids");
        }
        self.scalar()
    }

    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.place == Place::Top {
            return Err(self.shape(BodyError::NotAnObject));
        }
        self.role_not_text();
        Ok(())
    }

    /// A role that is not a string (a list, an object, a number, `null`) names no role any API
    /// defines: its turn is judged as the user's, and the strings inside it are never read as
    /// the role, so `["assistant"]` cannot pass for what a lenient server may make of it.
    fn role_not_text(&self) {
        if self.place != Place::Role {
            return;
        }
        let Ok(mut state) = self.shared.state.try_borrow_mut() else {
            return;
        };
        if let Some(role) = self
            .message
            .and_then(|index| state.walked.roles.get_mut(index as usize))
        {
            *role = Some(Cow::Borrowed("user"));
        }
    }

    /// Where a raw value borrowed from the body sits in it.
    fn span_of<E: de::Error>(&self, raw: Raw) -> Result<std::ops::Range<usize>, E> {
        let body = self.shared.body;
        let start = (raw.0.as_ptr() as usize).checked_sub(body.as_ptr() as usize);
        start
            .and_then(|start| Some(start..start.checked_add(raw.0.len())?))
            .filter(|span| body.get(span.clone()) == Some(raw.0.as_bytes()))
            .ok_or_else(|| E::custom("internal: a value could not be located"))
    }

    /// A watched value: located, then walked like any other value at `place` (its text is
    /// still scanned and counted). Only the few small values the limits edit are read twice.
    fn capture<E: de::Error>(&self, what: Watched, raw: Raw, place: Place) -> Result<(), E> {
        let span = self.span_of(raw)?;
        let text = raw.0;
        let object = match text.as_bytes() {
            [b'{', inside @ .., b'}'] => Some(ObjectEnd {
                close: span
                    .end
                    .checked_sub(1)
                    .ok_or_else(|| E::custom("internal: empty span"))?,
                empty: inside.iter().all(u8::is_ascii_whitespace),
            }),
            _ => None,
        };
        {
            let mut state = self
                .shared
                .state
                .try_borrow_mut()
                .map_err(|_| E::custom("internal: walk state busy"))?;
            state.walked.located.set(
                what,
                Found {
                    start: span.start,
                    end: span.end,
                    object,
                },
            );
        }
        if let Some(b'{' | b'[' | b'"') = text.as_bytes().first() {
            let node = Node {
                watched: object.map(|_| what),
                ..self.child(place)?
            };
            let mut inner = Reader::new(text.as_bytes()).map_err(E::custom)?;
            node.deserialize(&mut inner).map_err(E::custom)?;
        }
        Ok(())
    }

    /// The top-level `model`: a string, located by its span so it can be swapped in place.
    fn model<E: de::Error>(&self, raw: Raw) -> Result<(), E> {
        let name = Reader::new(raw.0.as_bytes())
            .and_then(|mut reader| de::Deserialize::deserialize(&mut reader));
        let Ok(name) = name else {
            return Err(self.shape(BodyError::ModelNotString));
        };
        let name: String = name;
        let span = self.span_of(raw)?;
        let mut state = self
            .shared
            .state
            .try_borrow_mut()
            .map_err(|_| E::custom("internal: walk state busy"))?;
        // The model is a string value: it takes an ordinal like any other, and is scanned like
        // any other, whatever the family uses it for. It is handed out as a key is, without
        // an ordinal: a redaction there would change the model, so it blocks instead.
        state.ordinal = state.ordinal.saturating_add(1);
        let at = TextAt {
            ordinal: None,
            message: None,
            slot: Slot::Other,
        };
        state.sink.text(&name, at);
        let field = ModelField { name, span };
        if self.place == Place::InnerRequest {
            state.walked.inner_models.push(field);
        } else {
            state.walked.model = Some(field);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
