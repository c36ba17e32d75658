//! A streamed answer (server-sent events) edited as it passes: whole events are read, each
//! family's text deltas are gathered into channels that hold back only what a match could
//! still span (`channel`), and every event is written back in one canonical form with the
//! text that may be sent. A block or an unreadable stream cuts it with the family's error
//! event; nothing is sent after that.

use serde_json::Value;

use super::channel::{Channel, Release, Template, HOLD_CAP};
use super::families::{self, ChannelKey, Plan};
use super::hits::{redact, scan_text};
use super::json_strings::{self, JsonString};
use super::sse_event::{self, SseEvent};
use super::{AnswerScan, AnswerShape, AnswerText, Effect, Findings, StreamStep};
use linger::Linger;

#[path = "stream_linger.rs"]
mod linger;
use crate::policy::redact::{apply, Edit};
use crate::policy::sse::whole_events;

/// Channels open at once: a stream with more is cut as unreadable.
pub const MAX_CHANNELS: usize = 64;
/// Channels over a whole stream (open or ended), so lookups stay cheap.
const MAX_CHANNELS_EVER: usize = 4096;
/// The longest event read: a longer one is cut as unreadable (it cannot be passed on unread).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The most `held()` can report for a scanner of this window: one incomplete event, and each
/// open channel's unsent text (tool arguments look six times as far, for their escapes), which
/// may pass `HOLD_CAP` by a sixteenth before it is decided again.
pub fn held_bound(window: usize) -> usize {
    let channel = window.saturating_mul(6).saturating_add(HOLD_CAP);
    // One channel more: a text part that ended with text held, and the events queued behind
    // it (at most one event past the queue's limit).
    channel
        .saturating_add(channel / 16)
        .saturating_mul(MAX_CHANNELS.saturating_add(1))
        .saturating_add(MAX_EVENT_BYTES.saturating_mul(3))
}

/// Why the stream stops.
pub(super) enum Stop {
    Blocked(usize),
    Unreadable,
}

#[derive(Debug)]
pub(super) struct Stream {
    shape: AnswerShape,
    findings: Findings,
    /// The start of an event whose end has not arrived.
    partial: Vec<u8>,
    channels: Vec<(ChannelKey, Channel)>,
    /// Cut: nothing more is sent.
    stopped: bool,
    /// The first bytes were seen (a byte order mark there is dropped, as clients drop it).
    started: bool,
    /// The last `sequence_number` seen (Responses), for the error event's.
    sequence: u64,
    /// A text part that ended with text held, and the events since, until the next part
    /// shows whether a match spans the two (`stream_linger`).
    linger: Option<Linger>,
}

impl Stream {
    pub(super) fn new(shape: AnswerShape) -> Self {
        Stream {
            shape,
            findings: Findings::default(),
            partial: Vec::new(),
            channels: Vec::new(),
            stopped: false,
            started: false,
            sequence: 0,
            linger: None,
        }
    }

    pub(super) fn findings(&self) -> &Findings {
        &self.findings
    }

    pub(super) fn held(&self) -> usize {
        let queued = self.linger.as_ref().map_or(0, Linger::queued);
        self.channels
            .iter()
            .map(|(_, channel)| channel.held())
            .fold(self.partial.len(), usize::saturating_add)
            .saturating_add(queued)
    }

    pub(super) fn push(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        scan: &dyn AnswerScan,
    ) -> StreamStep {
        if self.stopped {
            return StreamStep::Send(Vec::new());
        }
        let ends_no_line = !chunk.iter().any(|&byte| byte == b'\n' || byte == b'\r');
        if self.started && !end_of_stream && ends_no_line && self.partial.last() != Some(&b'\r') {
            // The chunk only lengthens the last line of an event still arriving: nothing to
            // read yet, and reading the event again for each small chunk would be quadratic.
            self.partial.extend_from_slice(chunk);
            if self.partial.len() > MAX_EVENT_BYTES {
                return self.cut(Vec::new(), Stop::Unreadable, scan);
            }
            return StreamStep::Send(Vec::new());
        }
        let mut data = std::mem::take(&mut self.partial);
        data.extend_from_slice(chunk);
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if data.len() < BOM.len() && BOM.starts_with(&data) && !end_of_stream {
                self.partial = data;
                return StreamStep::Send(Vec::new());
            }
            self.started = true;
            if let Some(rest) = data.strip_prefix(BOM) {
                data = rest.to_vec();
            }
        }
        let mut out = Vec::new();
        let mut events = Vec::new();
        let complete = whole_events(&data, end_of_stream, |event| events.push(event));
        for event in events {
            let raw = data.get(event).unwrap_or_default();
            if let Err(stop) = self.event(raw, scan, &mut out) {
                return self.cut(out, stop, scan);
            }
        }
        let rest = data.get(complete..).unwrap_or_default();
        if rest.len() > MAX_EVENT_BYTES {
            return self.cut(out, Stop::Unreadable, scan);
        }
        self.partial = rest.to_vec();
        if end_of_stream {
            if let Err(stop) = self.end_channels(None, scan, &mut out) {
                return self.cut(out, stop, scan);
            }
        }
        StreamStep::Send(out)
    }

    /// Ends the stream with the family's error event.
    fn cut(&mut self, mut out: Vec<u8>, stop: Stop, scan: &dyn AnswerScan) -> StreamStep {
        self.stopped = true;
        self.partial = Vec::new();
        self.linger = None;
        self.channels = Vec::new();
        let (code, message) = match stop {
            Stop::Blocked(rule) => {
                self.findings.blocked_by.get_or_insert(rule);
                (
                    "response_blocked",
                    format!(
                        "the answer was blocked by rule \"{}\": its text matched what the rule forbids",
                        scan.rule_id(rule)
                    ),
                )
            }
            Stop::Unreadable => {
                self.findings.unreadable = true;
                (
                    "response_unreadable",
                    "the provider's answer could not be inspected, so the rest of it was not sent"
                        .to_owned(),
                )
            }
        };
        let sequence = self.sequence.saturating_add(1);
        let (name, payload) = families::error_event(self.shape, code, &message, sequence);
        sse_event::write_new(&mut out, name, &payload);
        StreamStep::Cut(out)
    }

    /// One whole event.
    pub(super) fn event(
        &mut self,
        raw: &[u8],
        scan: &dyn AnswerScan,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let event = sse_event::parse(raw);
        // The event's name and id reach the client too: scanned, never redacted in place.
        for field in [&event.name, &event.id].into_iter().flatten() {
            let field = std::str::from_utf8(field).map_err(|_| Stop::Unreadable)?;
            scan_alone(field, AnswerText::Other, false, scan, &mut self.findings)?;
        }
        let Some(data) = &event.data else {
            if event.any_line {
                // A comment or a field without data: clients dispatch nothing; a keep-alive
                // is kept as one, without the provider's words.
                out.extend_from_slice(b":\n\n");
            }
            return Ok(());
        };
        let text = std::str::from_utf8(data).map_err(|_| Stop::Unreadable)?;
        if text.trim() == "[DONE]" {
            self.end_channels(None, scan, out)?;
            sse_event::write(out, event.name.as_deref(), &event, data);
            return Ok(());
        }
        match json_strings::read(data) {
            Some(read) if read.logprobs => Err(Stop::Unreadable),
            Some(read) => self.json_event(raw, &event, text, &read.strings, scan, out),
            // JSON the reader refuses (malformed, a repeated key): a client may still read
            // something from it, so it cannot pass.
            None if text.trim_start().starts_with(['{', '[']) => Err(Stop::Unreadable),
            // Other text: scanned whole, as it stands.
            None => {
                let edited = scan_alone(text, AnswerText::Other, true, scan, &mut self.findings)?;
                let data = edited.as_deref().unwrap_or(text);
                sse_event::write(out, event.name.as_deref(), &event, data.as_bytes());
                Ok(())
            }
        }
    }

    fn json_event(
        &mut self,
        raw: &[u8],
        event: &SseEvent,
        payload: &str,
        strings: &[JsonString],
        scan: &dyn AnswerScan,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let value: Value = serde_json::from_str(payload).map_err(|_| Stop::Unreadable)?;
        if let Some(sequence) = value.get("sequence_number").and_then(Value::as_u64) {
            self.sequence = self.sequence.max(sequence);
        }
        let plan = families::plan(self.shape, &value, strings);
        if self.linger_before(raw, &plan, scan, out)? {
            return Ok(());
        }
        let mut delta_keys: Vec<ChannelKey> = Vec::new();
        for (at, key, kind) in &plan.deltas {
            let text = strings.get(*at).map_or("", |string| string.text.as_str());
            if !text.is_empty() && self.ended(*key) {
                // Clients append text that comes after a channel's end to what they already
                // have, but that text was sent as final: a match joining the two could never
                // be held whole, so the stream stops here.
                return Err(Stop::Unreadable);
            }
            self.channel(*key, *kind)?.push(text);
            if !delta_keys.contains(key) {
                delta_keys.push(*key);
            }
        }
        // Channels this event ends without text of theirs: their held text goes out first.
        self.end_channels(Some((&plan, &delta_keys)), scan, out)?;
        let mut replaced: Vec<(usize, String)> = Vec::new();
        for key in &delta_keys {
            let last = plan.ends(*key);
            let released = self.release(*key, last, scan, out)?;
            let mut first = true;
            for (at, _, _) in plan.deltas.iter().filter(|(_, each, _)| each == key) {
                let text = if std::mem::take(&mut first) {
                    released.clone()
                } else {
                    String::new()
                };
                replaced.push((*at, text));
            }
        }
        for (index, string) in strings.iter().enumerate() {
            if plan.deltas.iter().any(|(at, _, _)| *at == index) {
                continue;
            }
            let whole = plan.wholes.iter().find(|(at, _, _)| *at == index);
            let sent = whole.and_then(|(_, key, _)| self.sent(*key));
            if let Some(sent) = sent {
                if sent != string.text {
                    replaced.push((index, sent));
                }
                continue;
            }
            let kind = if string.is_key {
                AnswerText::Other
            } else {
                plan.kind_of(index)
            };
            let edited = scan_alone(&string.text, kind, !string.is_key, scan, &mut self.findings)?;
            if let Some(edited) = edited {
                replaced.push((index, edited));
            }
        }
        let edits: Vec<Edit> = replaced
            .into_iter()
            .filter_map(|(at, text)| {
                let string = strings.get(at)?;
                let unchanged = !string.is_key && text == string.text;
                let encoded = serde_json::to_string(&text).ok()?;
                (!unchanged).then(|| Edit {
                    span: string.span.clone(),
                    text: encoded,
                })
            })
            .collect();
        let sent = if edits.is_empty() {
            payload.to_owned()
        } else {
            let edited = apply(payload.as_bytes(), edits).ok_or(Stop::Unreadable)?;
            String::from_utf8(edited).map_err(|_| Stop::Unreadable)?
        };
        sse_event::write(out, event.name.as_deref(), event, sent.as_bytes());
        // Copies of this event take its envelope as sent, never the provider's unscanned.
        for key in &delta_keys {
            if let Some((_, channel)) = self.channels.iter_mut().find(|(each, _)| each == key) {
                channel.template = Template {
                    payload: sent.clone(),
                };
            }
        }
        Ok(())
    }

    /// The open channel `key`, made if new.
    fn channel(&mut self, key: ChannelKey, kind: AnswerText) -> Result<&mut Channel, Stop> {
        let open = self.channels.iter().filter(|(_, each)| each.open).count();
        let position = self.channels.iter().position(|(each, _)| *each == key);
        let index = match position {
            Some(index) => index,
            None => {
                if self.channels.len() >= MAX_CHANNELS_EVER {
                    return Err(Stop::Unreadable);
                }
                let keep_sent = self.shape == AnswerShape::OpenAiResponses;
                self.channels.push((key, Channel::new(kind, keep_sent)));
                self.channels.len().saturating_sub(1)
            }
        };
        let (_, channel) = self.channels.get_mut(index).ok_or(Stop::Unreadable)?;
        if !channel.open || position.is_none() {
            if open >= MAX_CHANNELS {
                return Err(Stop::Unreadable);
            }
            channel.open = true;
        }
        Ok(channel)
    }

    /// Whether the channel was ended (its text sent as final).
    fn ended(&self, key: ChannelKey) -> bool {
        self.channels
            .iter()
            .any(|(each, channel)| *each == key && !channel.open)
    }

    /// What was sent for the channel, for an event repeating its whole text.
    fn sent(&self, key: ChannelKey) -> Option<String> {
        self.channels
            .iter()
            .find(|(each, _)| *each == key)
            .and_then(|(_, channel)| channel.sent.clone())
    }

    /// Decides the channel's text; on a block, sends the text before the match in a copy of
    /// its delta event and stops.
    fn release(
        &mut self,
        key: ChannelKey,
        last: bool,
        scan: &dyn AnswerScan,
        out: &mut Vec<u8>,
    ) -> Result<String, Stop> {
        let shape = self.shape;
        let Some((_, channel)) = self.channels.iter_mut().find(|(each, _)| *each == key) else {
            return Ok(String::new());
        };
        match channel.release(scan, last, &mut self.findings) {
            Release::Send(text) => Ok(text),
            Release::Block { rule, before } => {
                if !before.is_empty() {
                    let (name, payload) =
                        families::copy(shape, key, &channel.template.payload, &before);
                    sse_event::write_new(out, name.as_deref(), &payload);
                }
                Err(Stop::Blocked(rule))
            }
        }
    }

    /// Ends channels and sends their held text, each in a copy of its last delta event: the
    /// ones `plan` ends that have no delta in its event (`delta_keys`), or every open one.
    fn end_channels(
        &mut self,
        plan: Option<(&Plan, &[ChannelKey])>,
        scan: &dyn AnswerScan,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        if plan.is_none() {
            self.settle(scan, out)?;
        }
        let ending: Vec<ChannelKey> = self
            .channels
            .iter()
            .filter(|(key, channel)| {
                channel.open
                    && plan.is_none_or(|(plan, deltas)| plan.ends(*key) && !deltas.contains(key))
            })
            .map(|(key, _)| *key)
            .collect();
        for key in ending {
            let text = self.release(key, true, scan, out)?;
            if text.is_empty() {
                continue;
            }
            self.write_copy(key, &text, out);
        }
        Ok(())
    }

    /// Writes `text` in a copy of the channel's last delta event.
    fn write_copy(&self, key: ChannelKey, text: &str, out: &mut Vec<u8>) {
        let template = self
            .channels
            .iter()
            .find(|(each, _)| *each == key)
            .map_or("", |(_, channel)| channel.template.payload.as_str());
        let (name, payload) = families::copy(self.shape, key, template, text);
        sse_event::write_new(out, name.as_deref(), &payload);
    }
}

/// Scans one string on its own: its redacted text if a match redacts it (`None` when
/// nothing changes), or the block.
fn scan_alone(
    text: &str,
    kind: AnswerText,
    can_redact: bool,
    scan: &dyn AnswerScan,
    findings: &mut Findings,
) -> Result<Option<String>, Stop> {
    let mut hits = Vec::new();
    scan_text(scan, text, kind, &mut hits);
    if hits.is_empty() {
        return Ok(None);
    }
    let mut ranges = Vec::new();
    for hit in &hits {
        let effect = hit.effect_given(can_redact);
        findings.fire(hit.rule, effect);
        match effect {
            Effect::Block => return Err(Stop::Blocked(hit.rule)),
            Effect::Redact => ranges.push((hit.range.clone(), hit.rule)),
            Effect::Record => {}
        }
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    findings.redactions = findings.redactions.saturating_add(ranges.len());
    match redact(text, &ranges, scan) {
        Some(redacted) => Ok(Some(redacted)),
        None => Err(Stop::Blocked(hits.first().map_or(0, |hit| hit.rule))),
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stream_evasion_tests.rs"]
mod evasion_tests;
