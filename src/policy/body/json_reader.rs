//! A JSON reader for request bodies. The walk and the strict check pull tokens from it
//! (`value`, `next_element`, `next_key`), each string with its span in the body, and return
//! their own errors as values. It is also a `serde::Deserializer`, built on the same steps,
//! so it can be compared with serde_json (tests and the `strict_json` fuzz target).
//!
//! It exists for speed on large bodies. A prompt body is mostly long strings, and serde_json
//! scans each one eight bytes at a time, then validates its UTF-8 in a second pass. Here the
//! whole body is validated as UTF-8 once (a JSON document is UTF-8 throughout), and strings are
//! scanned sixteen bytes at a time (Wasm SIMD in the module) for their end, escapes and control
//! characters. It accepts exactly the documents serde_json accepts and hands visitors the same
//! strings: the `strict_json` fuzz target compares the two on every input.
//!
//! What it does not do: build values, or parse numbers more precisely than serde_json does
//! (a number is checked against the JSON grammar and handed over as u64, i64 or f64 like
//! serde_json, but floats are parsed by the standard library, which may differ from
//! serde_json's in the last bit; no visitor here reads a float's value).

use std::borrow::Cow;
use std::fmt;

use serde::de;

use super::plain_run::plain_run;
use super::span::Span;

/// serde_json's own limit: deeper documents are refused rather than risk the stack.
const RECURSION_LIMIT: usize = 128;

/// Why the bytes are not one JSON document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub(super) message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Reads one JSON document. Call `end` after the value to refuse trailing bytes.
pub struct Reader<'de> {
    text: &'de str,
    at: usize,
    depth_left: usize,
    /// Decoded text of a string with escapes; reused across strings.
    scratch: String,
}

/// A decoded string: borrowed from the input when it had no escapes.
pub enum Text<'de, 's> {
    Borrowed(&'de str),
    /// Decoded into the reader's buffer: valid until the next read.
    Decoded(&'s str),
}

impl<'de> Text<'de, '_> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Decoded(text) => text,
        }
    }

    /// The text, still borrowed from the input where it was; copied only if it was decoded.
    pub fn into_cow(self) -> Cow<'de, str> {
        match self {
            Text::Borrowed(text) => Cow::Borrowed(text),
            Text::Decoded(text) => Cow::Owned(text.to_owned()),
        }
    }
}

/// A number as serde_json hands it over: u64 for a non-negative integer that fits, i64 for a
/// negative one, f64 otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

/// What `Reader::value` read: a whole scalar, or the opening of an array or object, whose
/// members are then pulled with `next_element` or `next_key` until they say it closed.
pub enum Token<'de, 's> {
    Null,
    Bool(bool),
    Number(Number),
    /// A string, and its span in the input, quotes included.
    String(Text<'de, 's>, Span),
    Array,
    Object,
}

impl<'de> Reader<'de> {
    /// A reader over `input`, refused at once if it is not UTF-8: no JSON document is.
    pub fn new(input: &'de [u8]) -> Result<Self, Error> {
        match std::str::from_utf8(input) {
            Ok(text) => Ok(Reader {
                text,
                at: 0,
                depth_left: RECURSION_LIMIT,
                scratch: String::new(),
            }),
            Err(invalid) => Err(error_at(
                input,
                invalid.valid_up_to(),
                "invalid unicode code point",
            )),
        }
    }

    fn input(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// `input[start..end]` as text. Both ends are next to ASCII bytes (quotes, structure), so
    /// they are character boundaries and the slice is always there.
    fn text_between(&self, start: usize, end: usize) -> Result<&'de str, Error> {
        self.text
            .get(start..end)
            .ok_or_else(|| self.error("internal: not a character boundary"))
    }

    /// Where the reader is in the input: just past what it last read.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Only white space may follow the document.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.skip_space() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// An error at the current position.
    pub(super) fn error(&self, what: &str) -> Error {
        error_at(self.input(), self.at, what)
    }

    fn peek(&self) -> Option<u8> {
        self.input().get(self.at).copied()
    }

    fn bump(&mut self) {
        self.at = self.at.saturating_add(1);
    }

    /// Skips JSON white space; the next byte, if any.
    fn skip_space(&mut self) -> Option<u8> {
        while let Some(byte) = self.peek() {
            if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(byte);
            }
            self.bump();
        }
        None
    }

    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), Error> {
        let end = self.at.saturating_add(literal.len());
        match self.input().get(self.at..end) {
            Some(found) if found == literal => {
                self.at = end;
                Ok(())
            }
            _ => {
                // Point at the first byte that differs, as serde_json does.
                let same = self
                    .input()
                    .get(self.at..)
                    .unwrap_or_default()
                    .iter()
                    .zip(literal)
                    .take_while(|(a, b)| a == b)
                    .count();
                self.at = self.at.saturating_add(same);
                if self.peek().is_none() {
                    Err(self.error("EOF while parsing a value"))
                } else {
                    Err(self.error("expected ident"))
                }
            }
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        // serde_json refuses the 128th level: `remaining_depth` reaching zero.
        match self.depth_left.checked_sub(1).filter(|left| *left > 0) {
            Some(left) => {
                self.depth_left = left;
                Ok(())
            }
            None => Err(self.error("recursion limit exceeded")),
        }
    }

    fn leave(&mut self) {
        self.depth_left = self.depth_left.saturating_add(1);
    }

    /// Reads a string whose opening quote is the current byte; its span, quotes included.
    fn read_string<'s>(&'s mut self) -> Result<(Text<'de, 's>, Span), Error> {
        let quote = self.at;
        self.bump();
        let start = self.at;
        self.skip_plain();
        match self.peek() {
            Some(b'"') => {
                let text = self.text_between(start, self.at)?;
                self.bump();
                Ok((Text::Borrowed(text), Span::new(quote, self.at)))
            }
            Some(b'\\') => {
                let head = self.text_between(start, self.at)?;
                self.scratch.clear();
                self.scratch.push_str(head);
                self.read_escaped_rest()?;
                Ok((Text::Decoded(&self.scratch), Span::new(quote, self.at)))
            }
            Some(_) => Err(self.control_character()),
            None => Err(self.error("EOF while parsing a string")),
        }
    }

    /// Moves past plain string content: up to the next `"`, `\` or control character.
    fn skip_plain(&mut self) {
        let rest = self.input().get(self.at..).unwrap_or_default();
        self.at = self.at.saturating_add(plain_run(rest));
    }

    fn control_character(&self) -> Error {
        self.error("control character (\\u0000-\\u001F) found while parsing a string")
    }

    /// The rest of a string from its first backslash, decoded into `scratch`, and its closing
    /// quote.
    fn read_escaped_rest(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.bump();
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump();
                    self.read_escape()?;
                }
                Some(_) => {
                    let start = self.at;
                    self.skip_plain();
                    if self.at == start {
                        return Err(self.control_character());
                    }
                    let chunk = self.text_between(start, self.at)?;
                    self.scratch.push_str(chunk);
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// One escape after its backslash, appended to `scratch`.
    fn read_escape(&mut self) -> Result<(), Error> {
        let Some(byte) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.bump();
        let simple = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.read_unicode_escape(),
            _ => return Err(self.error("invalid escape")),
        };
        self.scratch.push(simple);
        Ok(())
    }

    /// `\uXXXX`, with a following `\uXXXX` for a surrogate pair. A lone surrogate is refused,
    /// as serde_json refuses it when reading a string.
    fn read_unicode_escape(&mut self) -> Result<(), Error> {
        let first = self.read_hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.peek() != Some(b'\\') {
                    return Err(self.lone_surrogate());
                }
                self.bump();
                if self.peek() != Some(b'u') {
                    return Err(self.lone_surrogate());
                }
                self.bump();
                let second = self.read_hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.lone_surrogate());
                }
                let high = u32::from(first).saturating_sub(0xD800);
                let low = u32::from(second).saturating_sub(0xDC00);
                (high << 10 | low).saturating_add(0x1_0000)
            }
            0xDC00..=0xDFFF => return Err(self.lone_surrogate()),
            other => u32::from(other),
        };
        let Some(decoded) = char::from_u32(code) else {
            return Err(self.lone_surrogate());
        };
        self.scratch.push(decoded);
        Ok(())
    }

    fn lone_surrogate(&self) -> Error {
        self.error("lone leading surrogate in hex escape")
    }

    fn read_hex4(&mut self) -> Result<u16, Error> {
        let mut value: u16 = 0;
        for _ in 0..4 {
            let Some(byte) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            let digit = match byte {
                b'0'..=b'9' => byte.wrapping_sub(b'0'),
                b'a'..=b'f' => byte.wrapping_sub(b'a').wrapping_add(10),
                b'A'..=b'F' => byte.wrapping_sub(b'A').wrapping_add(10),
                _ => return Err(self.error("invalid escape")),
            };
            value = value.wrapping_shl(4) | u16::from(digit);
            self.bump();
        }
        Ok(value)
    }

    /// Checks a number against the JSON grammar and reads it as serde_json would.
    fn read_number(&mut self) -> Result<Number, Error> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => {
                self.bump();
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        let integer_end = self.at;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.bump();
            self.require_digit()?;
            self.skip_digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            self.require_digit()?;
            self.skip_digits();
        }
        let text = self.text_between(start, self.at)?;
        if integer {
            let digits =
                self.text_between(start.saturating_add(usize::from(negative)), integer_end)?;
            if let Ok(magnitude) = digits.parse::<u64>() {
                if !negative {
                    return Ok(Number::U64(magnitude));
                }
                let value = 0i64.wrapping_sub_unsigned(magnitude);
                if value < 0 {
                    return Ok(Number::I64(value));
                }
                // -0, and magnitudes past i64::MIN: serde_json hands these over as floats.
            }
        }
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Number::F64(value)),
            _ => Err(self.error("number out of range")),
        }
    }

    fn skip_digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
        }
    }

    fn require_digit(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'0'..=b'9') => Ok(()),
            Some(_) => Err(self.error("invalid number")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// Reads any value without visiting it.
    fn skip_value(&mut self) -> Result<(), Error> {
        de::Deserializer::deserialize_any(&mut *self, de::IgnoredAny).map(|_| ())
    }

    /// Reads the next value: a scalar whole, an array or object up to its opening bracket.
    pub fn value(&mut self) -> Result<Token<'de, '_>, Error> {
        let Some(byte) = self.skip_space() else {
            return Err(self.error("EOF while parsing a value"));
        };
        match byte {
            b'n' => {
                self.expect_literal(b"null")?;
                Ok(Token::Null)
            }
            b't' => {
                self.expect_literal(b"true")?;
                Ok(Token::Bool(true))
            }
            b'f' => {
                self.expect_literal(b"false")?;
                Ok(Token::Bool(false))
            }
            b'-' | b'0'..=b'9' => self.read_number().map(Token::Number),
            b'"' => {
                let (text, span) = self.read_string()?;
                Ok(Token::String(text, span))
            }
            b'[' => {
                self.enter()?;
                self.bump();
                Ok(Token::Array)
            }
            b'{' => {
                self.enter()?;
                self.bump();
                Ok(Token::Object)
            }
            _ => Err(self.error("expected value")),
        }
    }

    /// After `Token::Array`: whether another element follows (read it next), or the array
    /// closed. `first` starts `true` for each array.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool, Error> {
        match self.skip_space() {
            Some(b']') => {
                self.bump();
                self.leave();
                return Ok(false);
            }
            Some(b',') if !*first => {
                self.bump();
                if self.skip_space() == Some(b']') {
                    return Err(self.error("trailing comma"));
                }
            }
            Some(_) if *first => {}
            Some(_) => return Err(self.error("expected `,` or `]`")),
            None => return Err(self.error("EOF while parsing a list")),
        }
        *first = false;
        Ok(true)
    }

    /// After `Token::Object`: the next key and its span, or `None` when the object closed.
    /// Call `colon` before reading the key's value. `first` starts `true` for each object.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<(Text<'de, '_>, Span)>, Error> {
        match self.skip_space() {
            Some(b'}') => {
                self.bump();
                self.leave();
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.bump();
                match self.skip_space() {
                    Some(b'"') => {}
                    Some(b'}') => return Err(self.error("trailing comma")),
                    Some(_) => return Err(self.error("key must be a string")),
                    None => return Err(self.error("EOF while parsing an object")),
                }
            }
            Some(b'"') if *first => {}
            Some(_) if *first => return Err(self.error("key must be a string")),
            Some(_) => return Err(self.error("expected `,` or `}`")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        *first = false;
        self.read_string().map(Some)
    }

    /// The `:` between a key and its value.
    pub fn colon(&mut self) -> Result<(), Error> {
        match self.skip_space() {
            Some(b':') => {
                self.bump();
                Ok(())
            }
            Some(_) => Err(self.error("expected `:`")),
            None => Err(self.error("EOF while parsing an object")),
        }
    }

    /// Reads the next value without looking inside it: its raw text and span.
    pub fn raw_value(&mut self) -> Result<(&'de str, Span), Error> {
        if self.skip_space().is_none() {
            return Err(self.error("EOF while parsing a value"));
        }
        let start = self.at;
        self.skip_value()?;
        Ok((
            self.text_between(start, self.at)?,
            Span::new(start, self.at),
        ))
    }

    /// A reader over a value already read (`raw_value`), to read it again: the spans it gives
    /// are still spans of the whole input.
    pub fn reread(&self, span: Span) -> Result<Reader<'de>, Error> {
        let text = self
            .text
            .get(..span.end)
            .ok_or_else(|| self.error("internal: a value could not be located"))?;
        Ok(Reader {
            text,
            at: span.start,
            depth_left: RECURSION_LIMIT,
            scratch: String::new(),
        })
    }
}

/// An error at byte `at` of `input`, with line and column as serde_json gives them.
fn error_at(input: &[u8], at: usize, what: &str) -> Error {
    let before = input.get(..at).unwrap_or(input);
    let line = before
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        .saturating_add(1);
    let column = before
        .iter()
        .rev()
        .take_while(|b| **b != b'\n')
        .count()
        .saturating_add(1);
    Error {
        message: format!("{what} at line {line} column {column}"),
    }
}

#[cfg(test)]
#[path = "json_reader_tests.rs"]
mod tests;
