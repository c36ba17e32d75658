//! The AWS event stream framing (`application/vnd.amazon.eventstream`) that Bedrock's
//! `converse-stream` and `invoke-with-response-stream` answer with, read as it passes.
//!
//! A message is a 12-byte prelude (total length u32 BE, headers length u32 BE, CRC-32 of those
//! 8 bytes), the headers, the payload, and a CRC-32 of every byte before it; a header is a
//! name (u8 length), a value type (u8) and a value whose size the type gives. This is AWS's
//! "Event stream encoding" (the Amazon Transcribe and Lex V2 developer guides document it,
//! CRC-32 as in gzip) as its SDKs decode it (`aws-c-event-stream`,
//! `aws-smithy-eventstream`): value types 0 and 1 are booleans with no bytes, 2 a byte, 3 a
//! u16, 4 a u32, 5 a u64, 6 bytes and 7 a string (u16 BE length first), 8 a timestamp
//! (8 bytes), 9 a UUID (16 bytes).
//!
//! Both checksums are verified before a message is handed on. A message that fails a check,
//! declares a length no message can have, or is wanted but larger than the reader keeps, ends
//! the reading: the reader fails for good and reads nothing more, since after a bad length
//! every later boundary is a guess.
//!
//! Memory: the headers of the message in progress (at most [`HEADERS_LIMIT`]) and the payload
//! of a wanted message (at most [`PAYLOAD_LIMIT`]); the payloads of other messages only pass
//! through the checksum. Results never depend on how the body was split.

/// The longest message AWS sends: its event stream specification caps a message at 16 MiB.
pub const MESSAGE_LIMIT: u32 = 16 * 1024 * 1024;

/// The longest header block kept. AWS's own are well under 200 bytes (`:event-type`,
/// `:content-type`, `:message-type`); its specification allows 128 KiB.
pub const HEADERS_LIMIT: u32 = 4 * 1024;

/// The longest payload kept, for the messages the reader wants. Bedrock's usage events and
/// `chunk` events are a few hundred bytes to a few KiB.
pub const PAYLOAD_LIMIT: u32 = 64 * 1024;

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// The prelude and the message CRC.
const OVERHEAD: u32 = 16;

/// One verified event handed on: its `:event-type` and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub event_type: &'a [u8],
    pub payload: &'a [u8],
}

/// Where the reader is within the message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prelude,
    Headers,
    Payload,
    Checksum,
}

/// Reads event stream messages from a body fed chunk by chunk, handing on the `event`
/// messages whose `:event-type` is one of those wanted.
pub struct EventStream {
    wanted: &'static [&'static [u8]],
    phase: Phase,
    /// Bytes still to come in the current phase.
    remaining: u32,
    prelude: [u8; PRELUDE_LEN],
    headers: Vec<u8>,
    payload: Vec<u8>,
    checksum: [u8; 4],
    /// The event type of the message in progress, when it is an event that is wanted.
    event_type: Option<Vec<u8>>,
    payload_len: u32,
    crc: crc32fast::Hasher,
    failed: bool,
}

impl EventStream {
    pub fn new(wanted: &'static [&'static [u8]]) -> Self {
        EventStream {
            wanted,
            phase: Phase::Prelude,
            remaining: PRELUDE_LEN as u32,
            prelude: [0; PRELUDE_LEN],
            headers: Vec::new(),
            payload: Vec::new(),
            checksum: [0; 4],
            event_type: None,
            payload_len: 0,
            crc: crc32fast::Hasher::new(),
            failed: false,
        }
    }

    /// A message failed a check: nothing more is read.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// No message is in progress: the body so far ends on a message boundary.
    pub fn between_messages(&self) -> bool {
        self.phase == Phase::Prelude && self.remaining == PRELUDE_LEN as u32
    }

    /// Feeds the next chunk of the body; `on_event` gets each wanted event once its message is
    /// complete and verified.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(Event<'_>)) {
        let mut rest = chunk;
        while !self.failed && !rest.is_empty() {
            let take = rest
                .len()
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            let Some((bytes, after)) = rest.split_at_checked(take) else {
                return;
            };
            rest = after;
            self.take(bytes);
            // `take` is at most `remaining`, which is a u32.
            self.remaining = self
                .remaining
                .saturating_sub(u32::try_from(take).unwrap_or(u32::MAX));
            if self.remaining == 0 {
                self.next_phase(on_event);
            }
        }
    }

    /// Bytes of the current phase.
    fn take(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Checksum {
            self.crc.update(bytes);
        }
        match self.phase {
            Phase::Prelude => {
                let start = PRELUDE_LEN.saturating_sub(self.remaining as usize);
                let end = start.saturating_add(bytes.len());
                if let Some(space) = self.prelude.get_mut(start..end) {
                    space.copy_from_slice(bytes);
                }
            }
            Phase::Headers => self.headers.extend_from_slice(bytes),
            Phase::Payload => {
                if self.event_type.is_some() {
                    self.payload.extend_from_slice(bytes);
                }
            }
            Phase::Checksum => {
                let start = 4usize.saturating_sub(self.remaining as usize);
                let end = start.saturating_add(bytes.len());
                if let Some(space) = self.checksum.get_mut(start..end) {
                    space.copy_from_slice(bytes);
                }
            }
        }
    }

    /// The current phase is complete: check it and move to the next.
    fn next_phase(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        match self.phase {
            Phase::Prelude => self.end_prelude(),
            Phase::Headers => self.end_headers(),
            Phase::Payload => self.enter(Phase::Checksum, 4),
            Phase::Checksum => self.end_message(on_event),
        }
        // A phase with nothing in it is complete as soon as it starts.
        if !self.failed && self.remaining == 0 {
            self.next_phase(on_event);
        }
    }

    fn enter(&mut self, phase: Phase, len: u32) {
        self.phase = phase;
        self.remaining = len;
    }

    fn fail(&mut self) {
        self.failed = true;
        self.headers = Vec::new();
        self.payload = Vec::new();
        self.event_type = None;
    }

    fn end_prelude(&mut self) {
        let [t0, t1, t2, t3, h0, h1, h2, h3, c0, c1, c2, c3] = self.prelude;
        let total = u32::from_be_bytes([t0, t1, t2, t3]);
        let headers = u32::from_be_bytes([h0, h1, h2, h3]);
        let expected = u32::from_be_bytes([c0, c1, c2, c3]);
        let prelude_crc = crc32fast::hash(self.prelude.get(..8).unwrap_or_default());
        let payload = total
            .checked_sub(OVERHEAD)
            .and_then(|rest| rest.checked_sub(headers));
        match payload {
            Some(payload)
                if prelude_crc == expected
                    && total <= MESSAGE_LIMIT
                    && headers <= HEADERS_LIMIT =>
            {
                self.payload_len = payload;
                self.headers.clear();
                self.enter(Phase::Headers, headers);
            }
            _ => self.fail(),
        }
    }

    fn end_headers(&mut self) {
        let Ok(headers) = parse_headers(&self.headers) else {
            return self.fail();
        };
        self.event_type = match (headers.message_type, headers.event_type) {
            (Some(b"event"), Some(event_type)) if self.wanted.contains(&event_type) => {
                Some(event_type.to_vec())
            }
            _ => None,
        };
        if self.event_type.is_some() && self.payload_len > PAYLOAD_LIMIT {
            return self.fail();
        }
        self.payload.clear();
        self.enter(Phase::Payload, self.payload_len);
    }

    fn end_message(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        let computed = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        if computed != u32::from_be_bytes(self.checksum) {
            return self.fail();
        }
        if let Some(event_type) = self.event_type.take() {
            on_event(Event {
                event_type: &event_type,
                payload: &self.payload,
            });
        }
        self.payload.clear();
        self.enter(Phase::Prelude, PRELUDE_LEN as u32);
    }
}

/// The headers a message is read by; a name given twice makes the block malformed, so that no
/// reader can take the other copy.
#[derive(Debug, Default)]
struct Headers<'a> {
    message_type: Option<&'a [u8]>,
    event_type: Option<&'a [u8]>,
}

#[derive(Debug)]
struct Malformed;

fn parse_headers(block: &[u8]) -> Result<Headers<'_>, Malformed> {
    let mut headers = Headers::default();
    let mut rest = block;
    while !rest.is_empty() {
        let (&name_len, after) = rest.split_first().ok_or(Malformed)?;
        let (name, after) = after
            .split_at_checked(usize::from(name_len))
            .ok_or(Malformed)?;
        let (&value_type, after) = after.split_first().ok_or(Malformed)?;
        let (value, after) = header_value(value_type, after)?;
        rest = after;
        let slot = match name {
            b":message-type" => &mut headers.message_type,
            b":event-type" => &mut headers.event_type,
            _ => continue,
        };
        // Only a string names a message or event type.
        if slot.is_some() || value_type != STRING {
            return Err(Malformed);
        }
        *slot = Some(value);
    }
    Ok(headers)
}

const STRING: u8 = 7;

/// A header value of `value_type` at the start of `bytes`, and the bytes after it.
fn header_value(value_type: u8, bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let fixed = match value_type {
        0 | 1 => 0,
        2 => 1,
        3 => 2,
        4 => 4,
        5 | 8 => 8,
        9 => 16,
        6 | STRING => {
            let (len, after) = bytes.split_at_checked(2).ok_or(Malformed)?;
            let len = match len {
                [high, low] => usize::from(u16::from_be_bytes([*high, *low])),
                _ => return Err(Malformed),
            };
            return after.split_at_checked(len).ok_or(Malformed);
        }
        _ => return Err(Malformed),
    };
    bytes.split_at_checked(fixed).ok_or(Malformed)
}

/// One message with string headers, as AWS encodes it: for tests, the mock's checks and the
/// fuzz oracle. `None` when a header or the message is too long to encode.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Option<Vec<u8>> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(u8::try_from(name.len()).ok()?);
        block.extend_from_slice(name.as_bytes());
        block.push(STRING);
        block.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    let headers_len = u32::try_from(block.len()).ok()?;
    let total = OVERHEAD
        .checked_add(headers_len)?
        .checked_add(u32::try_from(payload.len()).ok()?)?;
    let mut message = Vec::with_capacity(usize::try_from(total).ok()?);
    message.extend_from_slice(&total.to_be_bytes());
    message.extend_from_slice(&headers_len.to_be_bytes());
    let prelude_crc = crc32fast::hash(&message);
    message.extend_from_slice(&prelude_crc.to_be_bytes());
    message.extend_from_slice(&block);
    message.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&message);
    message.extend_from_slice(&message_crc.to_be_bytes());
    Some(message)
}

#[cfg(test)]
#[path = "eventstream_tests.rs"]
mod tests;
