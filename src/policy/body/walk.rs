//! One strict pass over a request body: validate it, take out the top-level `model`, and hand
//! every string (and object key) to a sink together with where it sits, so prompt inspection
//! scans each piece of text once, as decoded text, never as raw bytes. Each string value goes
//! out with its span in the body, which is how a redaction finds it again.
//!
//! Where a string sits is told by the keys above it (`places`), never by sibling values such
//! as `"type"`, which may come after the content they describe. A message's role may also come
//! after its content, so strings carry their message's index and the roles are resolved after
//! the walk.
//!
//! On request (`Watch`), the same pass also locates the values the request limits edit (see
//! `watch`). The walk pulls tokens from the reader and returns its errors as values.

use std::borrow::Cow;

use super::json_reader::{Reader, Token};
use super::places::{is_data_url, opaque_key, role_name, Place};
use super::read_keys::read_key_variant;
use super::span::Span;
use super::strict_json::{JsonError, KeySet, Violation, MAX_DEPTH};
use super::text::{decoded_layers, TextAt, TextField, TextSink};
use super::turns::{ContentRuns, SameRoleTurns};
use super::watch::{top_object_end, watched, Located, LocatedValue, ObjectEnd, Watch, Watched};
use super::{BodyError, ModelField};
use crate::policy::classify::Endpoint;
use crate::policy::parts::{opaque_part, unread_key, Family};

/// What the walk found besides the text it handed out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walked {
    pub model: Option<ModelField>,
    /// The `model` of a Gemini `countTokens` body's `generateContentRequest`, one per spelling
    /// of that key present (`generate_content_request` too): the provider reads one of them.
    pub inner_models: Vec<ModelField>,
    /// The role of each message, by index: the one it names if an API defines it, else the one
    /// its provider reads it as (`Node::default_role`). The usual roles are not copied: a long
    /// conversation has one per message.
    pub roles: Vec<Option<Cow<'static, str>>>,
    /// The first content part the filter cannot read as text (an image, audio, a file).
    pub opaque: Option<&'static str>,
    /// The values a `Watch` asked for. Empty without one.
    pub located: Located,
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
    let mut reader = Reader::new(body)?;
    let mut state = State {
        sink,
        walked: Walked::default(),
        part_type: None,
        last_string: None,
        text_part: None,
        content_runs: None,
        turn_runs: None,
    };
    let root = Node {
        endpoint,
        watch,
        place: Place::Top,
        message: None,
        depth: 0,
        watched: None,
    };
    root.value(&mut reader, &mut state)?;
    reader.end()?;
    let mut walked = state.walked;
    if watch.any() {
        walked.located.top = top_object_end(body);
    }
    Ok(walked)
}

/// What the walk carries from value to value.
struct State<'s, S> {
    sink: &'s mut S,
    walked: Walked,
    /// The `type` of the content part being read, once its value has been.
    part_type: Option<String>,
    /// The last string value handed out, with the depth it was read at.
    last_string: Option<(Span, usize)>,
    /// Set by a content part that is a text part, when it ends: the span of its `text`.
    text_part: Option<Span>,
    /// Set by a list of content parts when it ends: its runs of text parts at either end.
    content_runs: Option<ContentRuns>,
    /// A turn's `content`, as runs of text parts, once read (see `turns`).
    turn_runs: Option<ContentRuns>,
}

impl<S> State<'_, S> {
    fn opaque(&mut self, kind: &'static str) {
        self.walked.opaque.get_or_insert(kind);
    }

    /// A new message: its index, with room for its role.
    fn new_message(&mut self) -> Result<u32, BodyError> {
        let index = u32::try_from(self.walked.roles.len())
            .map_err(|_| BodyError::Json(JsonError::Syntax("too many messages".to_owned())))?;
        self.walked.roles.push(None);
        Ok(index)
    }

    /// The role slot of a message, if the value belongs to one.
    fn role_of(&mut self, message: Option<u32>) -> Option<&mut Option<Cow<'static, str>>> {
        message.and_then(|index| self.walked.roles.get_mut(index as usize))
    }
}

/// The value being read: where it sits, and what holds it.
#[derive(Debug, Clone, Copy)]
struct Node {
    endpoint: Endpoint,
    watch: Watch,
    place: Place,
    message: Option<u32>,
    depth: usize,
    /// Set on a watched object whose own keys are watched too (`stream_options`, ...).
    watched: Option<Watched>,
}

impl Node {
    fn child(&self, place: Place) -> Result<Node, BodyError> {
        match self.depth.checked_add(1) {
            Some(depth) if depth <= MAX_DEPTH => Ok(Node {
                place,
                depth,
                watched: None,
                ..*self
            }),
            _ => Err(Violation::TooDeep.into()),
        }
    }

    /// Reads one value and everything inside it.
    fn value<'de, S: TextSink>(
        self,
        reader: &mut Reader<'de>,
        state: &mut State<'_, S>,
    ) -> Result<(), BodyError> {
        match reader.value()? {
            Token::Null | Token::Bool(_) => self.scalar(state),
            Token::Number(_) => self.number(state),
            Token::String(text, span) => {
                if self.place == Place::Top {
                    return Err(BodyError::NotAnObject);
                }
                self.string(text.as_str(), span, state);
                Ok(())
            }
            Token::Array => self.array(reader, state),
            Token::Object => self.object(reader, state),
        }
    }

    /// A string value, handed to the sink with its span (a role is recorded instead).
    fn string<S: TextSink>(self, text: &str, span: Span, state: &mut State<'_, S>) {
        if self.place == Place::Message {
            // A bare string where a message is expected is read as a turn of its own.
            self.default_role(None, state);
        }
        let data_url = self.place == Place::ModelFields && is_data_url(text);
        if data_url {
            state.opaque("inline data");
        }
        if self.place == Place::Role {
            if let Some(role) = state.role_of(self.message) {
                *role = Some(role_name(Family::of(self.endpoint), text));
            }
            // Scanned like every string, as a key is: without a span (a redaction there would
            // change the role, so it blocks) and outside any role.
            let at = TextAt {
                span: None,
                message: None,
                field: TextField::Other,
            };
            state.sink.text(text, at);
            return;
        }
        if self.place == Place::PartType {
            state.part_type = Some(text.to_owned());
        }
        state.last_string = Some((span, self.depth));
        let at = TextAt {
            span: Some(span),
            message: self.message,
            field: self.place.field(),
        };
        state.sink.text(text, at);
        decoded_layers(text, at, &mut *state.sink);
        if data_url || self.place == Place::PartType {
            state.sink.not_read(span.range());
        }
    }

    /// A key, scanned as any string. The keys of a free-form value (`Subtree`: a tool's
    /// schema, a call's input, metadata) are text the model may read; those of an object
    /// whose layout the API defines are the body's structure.
    fn key<S: TextSink>(self, key: &str, token: Span, field: TextField, state: &mut State<'_, S>) {
        let at = TextAt {
            span: None,
            message: self.message,
            field,
        };
        state.sink.text(key, at);
        decoded_layers(key, at, &mut *state.sink);
        if matches!(self.place, Place::Subtree(_)) {
            state.sink.key_read(key, at, token);
        }
    }

    fn array<'de, S: TextSink>(
        self,
        reader: &mut Reader<'de>,
        state: &mut State<'_, S>,
    ) -> Result<(), BodyError> {
        if self.place == Place::Top {
            return Err(BodyError::NotAnObject);
        }
        self.role_not_text(state);
        let element = match self.place {
            Place::Messages | Place::ResponsesInput | Place::Instructions => Place::Message,
            Place::PartType | Place::Role => Place::Subtree(TextField::Other),
            other => other,
        };
        let element = self.child(element)?;
        // Consecutive text parts of this list, to be read as one text (see `TextSink::text_parts`).
        let mut run: Vec<Span> = Vec::new();
        let mut leading: Option<Vec<Span>> = None;
        // Turns whose provider merges those of the same role (see `turns`).
        let mut turns = (self.place == Place::Messages
            && matches!(
                Family::of(self.endpoint),
                Family::Anthropic | Family::Invoke
            ))
        .then(SameRoleTurns::default);
        let mut first = true;
        while reader.next_element(&mut first)? {
            let node = match element.place {
                Place::Message => Node {
                    message: Some(state.new_message()?),
                    ..element
                },
                _ => element,
            };
            state.text_part = None;
            state.turn_runs = None;
            node.value(reader, state)?;
            if let Some(turns) = turns.as_mut() {
                let role = state
                    .role_of(node.message)
                    .and_then(|role| role.as_deref().map(str::to_owned));
                let runs = state.turn_runs.take();
                if let Some(spans) = turns.turn(role.as_deref(), runs) {
                    state.sink.text_parts(&spans);
                }
            }
            match state.text_part.take() {
                Some(span) if matches!(self.place, Place::Text(_)) => run.push(span),
                _ => {
                    leading.get_or_insert_with(|| run.clone());
                    joined_parts(&mut run, state);
                }
            }
        }
        if let Some(spans) = turns.as_mut().and_then(SameRoleTurns::finish) {
            state.sink.text_parts(&spans);
        }
        if matches!(self.place, Place::Text(_)) {
            state.content_runs = Some(ContentRuns {
                all_text: leading.is_none(),
                leading: leading.unwrap_or_else(|| run.clone()),
                trailing: run.clone(),
            });
        }
        joined_parts(&mut run, state);
        Ok(())
    }

    fn object<'de, S: TextSink>(
        self,
        reader: &mut Reader<'de>,
        state: &mut State<'_, S>,
    ) -> Result<(), BodyError> {
        self.role_not_text(state);
        // The object's opening brace, just read: an opaque part is dropped from here on.
        let start = reader.position().saturating_sub(1);
        let mut keys = KeySet::new();
        let watching = self.watch.any() && (self.place == Place::Top || self.watched.is_some());
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
                message: Some(state.new_message()?),
                ..self
            };
        }
        let part = node
            .place
            .is_part(node.endpoint)
            .then(|| Family::of(node.endpoint));
        let reads_keys = node.reads_keys();
        let mut part_type = None;
        let mut text = None;
        let mut unread = None;
        let mut first = true;
        while let Some((key, key_span)) = reader.next_key(&mut first)? {
            let key = key.into_cow();
            if let Err(seen) = keys.insert(key.clone()) {
                return Err(seen.violation(key).into());
            }
            if reads_keys {
                if let Some(of) = read_key_variant(&key) {
                    let key = key.into_owned();
                    let of = of.to_owned();
                    return Err(Violation::CaseVariant { key, of }.into());
                }
            }
            if matches!(node.place, Place::Top | Place::InnerRequest) && key == "model" {
                reader.colon()?;
                node.model(reader, state)?;
                continue;
            }
            let mut place = node.place.of_key(node.endpoint, &key);
            if let Some(family) = part {
                if key == "type" {
                    place = Place::PartType;
                } else if unread.is_none() {
                    unread = unread_key(family, &key);
                }
            }
            let opaque_value = opaque_key(node.endpoint, node.place, place, &key);
            if let Some(kind) = opaque_value {
                state.opaque(kind);
            }
            let key_field = match place {
                Place::Subtree(field) => field,
                _ => TextField::Other,
            };
            node.key(&key, key_span, key_field, state);
            if watching {
                if let Some(what) = watched(node.endpoint, node.watch, node.watched, &key) {
                    reader.colon()?;
                    node.capture(what, place, reader, state)?;
                    continue;
                }
            }
            let child = node.child(place)?;
            reader.colon()?;
            state.last_string = None;
            state.content_runs = None;
            let value_start = reader.position();
            child.value(reader, state)?;
            if opaque_value.is_some() {
                state.sink.not_read(value_start..reader.position());
            }
            if node.place == Place::Message && key == "content" {
                // A string content is one text part.
                let string = state
                    .last_string
                    .filter(|(_, depth)| *depth == child.depth)
                    .map(|(span, _)| ContentRuns {
                        leading: vec![span],
                        trailing: vec![span],
                        all_text: true,
                    });
                state.turn_runs = state.content_runs.take().or(string);
            }
            if place == Place::PartType {
                part_type = state.part_type.take();
            }
            if part.is_some() && key == "text" {
                // The part's text, when the value is a string (not a list of them).
                text = state
                    .last_string
                    .filter(|(_, depth)| *depth == child.depth)
                    .map(|(span, _)| span);
            }
        }
        if let Some(family) = part {
            let item = node.place == Place::Message;
            let opaque = opaque_part(family, item, part_type.as_deref(), unread);
            if let Some(kind) = opaque {
                state.opaque(kind);
                state.sink.not_read(start..reader.position());
            }
            // A text part: one whose text a model reads on from the part before it.
            let text_type = part_type
                .as_deref()
                .is_none_or(|kind| matches!(kind, "text" | "input_text" | "output_text"));
            if opaque.is_none() && text_type && matches!(node.place, Place::Text(_)) {
                state.text_part = text;
            }
        }
        if node.place == Place::Message {
            node.default_role(part_type.as_deref(), state);
        }
        Ok(())
    }

    /// A number where text is read is a token id (completions `prompt` and embeddings `input`
    /// take lists of them): text the filter cannot read.
    fn number<S>(self, state: &mut State<'_, S>) -> Result<(), BodyError> {
        if let Place::Text(_) = self.place {
            state.opaque("token ids");
        }
        self.scalar(state)
    }

    fn scalar<S>(self, state: &mut State<'_, S>) -> Result<(), BodyError> {
        if self.place == Place::Top {
            return Err(BodyError::NotAnObject);
        }
        self.role_not_text(state);
        Ok(())
    }

    /// Whether the filter reads meaning from the keys of an object here (see
    /// `Place::reads_keys`), or the limits read its members.
    fn reads_keys(self) -> bool {
        self.watched.is_some() || self.place.reads_keys()
    }

    /// A role that is not a string (a list, an object, a number, `null`) names no role any API
    /// defines: its turn is judged as the user's, and the strings inside it are never read as
    /// the role, so `["assistant"]` cannot pass for what a lenient server may make of it.
    fn role_not_text<S>(self, state: &mut State<'_, S>) {
        if self.place != Place::Role {
            return;
        }
        if let Some(role) = state.role_of(self.message) {
            *role = Some(Cow::Borrowed("user"));
        }
    }

    /// A turn that names no role gets the one its provider reads it as: Gemini's `contents`
    /// default to `user`; a Responses item without a role is the model's (a call, reasoning)
    /// or a tool's (a call's output) by its type, else the user's. The other families refuse a
    /// message without a role; it is judged as the user's all the same. So is a role no API
    /// defines (`User`, `user `): a provider lenient about spelling would read it as one.
    fn default_role<S>(self, item_type: Option<&str>, state: &mut State<'_, S>) {
        let Some(role) = state.role_of(self.message) else {
            return;
        };
        if let Some(Cow::Owned(_)) = role {
            *role = Some(Cow::Borrowed("user"));
            return;
        }
        if role.is_some() {
            return;
        }
        let default = match (self.endpoint, item_type) {
            (Endpoint::Responses, Some(kind)) if kind.ends_with("_output") => "tool",
            (Endpoint::Responses, Some(kind)) if kind.ends_with("_call") || kind == "reasoning" => {
                "assistant"
            }
            _ => "user",
        };
        *role = Some(Cow::Borrowed(default));
    }

    /// A watched value: located, then walked like any other value at `place` (its text is
    /// still scanned). Only the few small values the limits edit are read twice: once whole,
    /// so a syntax error anywhere in one is found before what it holds is judged.
    fn capture<'de, S: TextSink>(
        self,
        what: Watched,
        place: Place,
        reader: &mut Reader<'de>,
        state: &mut State<'_, S>,
    ) -> Result<(), BodyError> {
        let (text, span) = reader.raw_value()?;
        let object = match text.as_bytes() {
            [b'{', inside @ .., b'}'] => Some(ObjectEnd {
                close: span
                    .end
                    .checked_sub(1)
                    .ok_or_else(|| internal("empty span"))?,
                empty: inside.iter().all(u8::is_ascii_whitespace),
            }),
            _ => None,
        };
        state
            .walked
            .located
            .set(what, LocatedValue { span, object });
        if let Some(b'{' | b'[' | b'"') = text.as_bytes().first() {
            let node = Node {
                watched: object.map(|_| what),
                ..self.child(place)?
            };
            node.value(&mut reader.reread(span)?, state)?;
        }
        Ok(())
    }

    /// The top-level `model`: a string, located by its span so it can be swapped in place.
    /// Read whole first, so a syntax error inside a value of another type is found first.
    fn model<'de, S: TextSink>(
        self,
        reader: &mut Reader<'de>,
        state: &mut State<'_, S>,
    ) -> Result<(), BodyError> {
        let (_, span) = reader.raw_value()?;
        let name = match reader.reread(span)?.value() {
            Ok(Token::String(text, _)) => text.as_str().to_owned(),
            _ => return Err(BodyError::ModelNotString),
        };
        // The model is scanned like any other string, whatever the family uses it for. It is
        // handed out as a key is, without a span: a redaction there would change the model,
        // so it blocks instead.
        let at = TextAt {
            span: None,
            message: None,
            field: TextField::Other,
        };
        state.sink.text(&name, at);
        let field = ModelField {
            name,
            span: span.range(),
        };
        if self.place == Place::InnerRequest {
            state.walked.inner_models.push(field);
        } else {
            state.walked.model = Some(field);
        }
        Ok(())
    }
}

/// Hands a run of at least two consecutive text parts to the sink, and starts a new run.
fn joined_parts<S: TextSink>(run: &mut Vec<Span>, state: &mut State<'_, S>) {
    if run.len() > 1 {
        state.sink.text_parts(run);
    }
    run.clear();
}

/// An error that valid input never causes.
fn internal(what: &str) -> BodyError {
    BodyError::Json(JsonError::Syntax(format!("internal: {what}")))
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
