//! Reading the JSON access log the shipped Envoy configs write, for `posturio report` and
//! `posturio replay`: one JSON object a line, files or standard input, gzip recognised by its
//! magic bytes (rotated files are just more paths). A line that is not such an object with
//! Posturio's fields (Envoy's own lines can be mixed in) is skipped and counted. Lines are
//! read one at a time, so memory does not grow with the log.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use super::CliError;
use crate::policy::rfc3339;

/// A line longer than this is no access-log line of ours: skipped without being held whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How a request was decided, as `posturio_decision` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Audit,
    Deny,
}

/// One `id:action` (rules) or `id:outcome` (guards) entry of a list field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub value: String,
}

/// The facts of one access-log line. `None` is a field that is null or missing (older logs
/// lack the spend fields) or unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Unix seconds of `start_time`.
    pub start: Option<i64>,
    pub status: Option<u64>,
    /// `None`: a request Posturio never decided (refused by an earlier filter, say).
    pub decision: Option<Decision>,
    pub code: Option<String>,
    pub consumer: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub api: Option<String>,
    /// The request's method and path as Envoy logged them (a passthrough has no model).
    pub method: Option<String>,
    pub path: Option<String>,
    pub bytes_received: Option<u64>,
    pub rules: Vec<Entry>,
    pub response_rules: Vec<Entry>,
    pub guards: Vec<Entry>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub tokens: Option<u64>,
    pub cost_microusd: Option<u64>,
    pub charged_tokens: Option<u64>,
    pub charged_microusd: Option<u64>,
}

impl Record {
    /// Whether the policy let the request go to a provider (`deny` also marks a forwarded
    /// request that failed later; the codes tell those apart).
    pub fn forwarded(&self) -> bool {
        matches!(self.decision, Some(Decision::Allow | Decision::Audit))
    }

    /// The tokens budgets were charged: the charged figure, else input + output.
    pub fn charged_or_used_tokens(&self) -> Option<u64> {
        self.charged_tokens.or(self.tokens).or_else(|| {
            self.input_tokens
                .zip(self.output_tokens)
                .map(|(input, output)| input.saturating_add(output))
        })
    }
}

/// What reading saw besides the records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub lines: u64,
    /// Lines that were a JSON object with `posturio_decision`.
    pub records: u64,
    /// Lines that were not (blank lines are not counted at all).
    pub skipped: u64,
    /// Files that could not be read to their end (a truncated gzip, a read error): each
    /// `name: error`; the records read before the error are counted.
    pub unreadable: Vec<String>,
}

/// One log source, open.
pub struct Source {
    pub name: String,
    reader: Box<dyn BufRead>,
}

/// Opens a file (`-`: standard input), decompressing it if it starts with gzip's magic bytes.
pub fn open(name: &str) -> Result<Source, CliError> {
    let cannot = |error: std::io::Error| CliError::Read(format!("{name}: cannot read: {error}"));
    let raw: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(name).map_err(cannot)?)
    };
    let mut buffered = BufReader::with_capacity(64 * 1024, raw);
    let gzip = buffered
        .fill_buf()
        .map_err(cannot)?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(Source {
        name: name.to_owned(),
        reader,
    })
}

/// A line as read: text within the bound, or one too long (its bytes discarded).
enum Line {
    Text,
    TooLong,
    End,
}

impl Source {
    /// The next line into `line` (without its end), never holding more than `MAX_LINE_BYTES`.
    fn next_line(&mut self, line: &mut Vec<u8>) -> Result<Line, CliError> {
        line.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self
                .reader
                .fill_buf()
                .map_err(|error| CliError::Read(format!("{}: cannot read: {error}", self.name)))?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, used, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (
                    chunk.get(..at).unwrap_or_default(),
                    at.saturating_add(1),
                    true,
                ),
                None => (chunk, chunk.len(), false),
            };
            if !too_long && line.len().saturating_add(part.len()) <= MAX_LINE_BYTES {
                line.extend_from_slice(part);
            } else {
                too_long = true;
                line.clear();
            }
            self.reader.consume(used);
            if ended {
                break;
            }
        }
        Ok(match (any, too_long) {
            (false, _) => Line::End,
            (true, true) => Line::TooLong,
            (true, false) => Line::Text,
        })
    }

    /// The next record, counting what it skips; `None` at the end.
    pub fn next_record(
        &mut self,
        line: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> Result<Option<Record>, CliError> {
        loop {
            match self.next_line(line)? {
                Line::End => return Ok(None),
                Line::TooLong => {
                    stats.lines = stats.lines.saturating_add(1);
                    stats.skipped = stats.skipped.saturating_add(1);
                }
                Line::Text => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    stats.lines = stats.lines.saturating_add(1);
                    // `copytruncate` rotation leaves Envoy writing at its old offset: the file
                    // then starts with a run of NULs on the line of the next record.
                    let text = line
                        .iter()
                        .position(|&byte| byte != 0)
                        .unwrap_or(line.len());
                    match parse_line(line.get(text..).unwrap_or_default()) {
                        Some(record) => {
                            stats.records = stats.records.saturating_add(1);
                            return Ok(Some(record));
                        }
                        None => stats.skipped = stats.skipped.saturating_add(1),
                    }
                }
            }
        }
    }
}

/// What to tell the user, on standard error, about files read only in part; the exit status
/// is then 2 so that a script does not take a partial figure for the whole.
pub fn unreadable_note(stats: &Stats) -> Option<String> {
    (!stats.unreadable.is_empty()).then(|| {
        let mut lines = vec![format!(
            "posturio: {} could not be read to the end; the figures cover what was read before              the error, and every other file:",
            if stats.unreadable.len() == 1 { "1 file" } else { "some files" }
        )];
        lines.extend(stats.unreadable.iter().map(|error| format!("  {error}")));
        lines.join("\n")
    })
}

/// Reads every record of every file, in the order given, handing each to `each`. A file
/// that fails part way (a `.gz` still being written by logrotate) is named in
/// `Stats::unreadable` and the others are still read; a file that cannot be opened is an error.
pub fn read_all(names: &[String], mut each: impl FnMut(Record)) -> Result<Stats, CliError> {
    let mut stats = Stats::default();
    let mut line = Vec::new();
    for name in names {
        let mut source = open(name)?;
        stats.files = stats.files.saturating_add(1);
        loop {
            match source.next_record(&mut line, &mut stats) {
                Ok(Some(record)) => each(record),
                Ok(None) => break,
                Err(CliError::Read(error)) => {
                    stats.unreadable.push(error);
                    break;
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(stats)
}

/// The record of one line: a JSON object that has the `posturio_decision` field (null for a
/// request Posturio never decided); `None` for anything else.
pub fn parse_line(line: &[u8]) -> Option<Record> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let decision = match object.get("posturio_decision")? {
        Value::Null => None,
        Value::String(text) => Some(match text.as_str() {
            "allow" => Decision::Allow,
            "audit" => Decision::Audit,
            "deny" => Decision::Deny,
            _ => return None,
        }),
        _ => return None,
    };
    let text = |key: &str| string(&object, key);
    let number = |key: &str| number(&object, key);
    Some(Record {
        start: text("start_time").and_then(|time| rfc3339::parse(&time).ok()),
        status: number("status"),
        decision,
        code: text("posturio_code"),
        consumer: text("posturio_consumer"),
        model: text("posturio_model"),
        provider: text("posturio_provider"),
        api: text("posturio_api"),
        method: text("method"),
        path: text("path"),
        bytes_received: number("bytes_received"),
        rules: entries(&object, "posturio_rules"),
        response_rules: entries(&object, "posturio_response_rules"),
        guards: entries(&object, "posturio_guards"),
        input_tokens: number("posturio_input_tokens"),
        output_tokens: number("posturio_output_tokens"),
        cached_tokens: number("posturio_cached_tokens"),
        reasoning_tokens: number("posturio_reasoning_tokens"),
        tokens: number("posturio_tokens"),
        cost_microusd: number("posturio_cost_microusd"),
        charged_tokens: number("posturio_charged_tokens"),
        charged_microusd: number("posturio_charged_microusd"),
    })
}

/// A non-empty string field (Envoy writes an absent value as null; `-` is its empty value for
/// some operators).
fn string(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(text) if !text.is_empty() && text != "-" => Some(text.clone()),
        _ => None,
    }
}

/// A non-negative integer field, written as a JSON number or (filter state) a decimal string.
fn number(object: &Map<String, Value>, key: &str) -> Option<u64> {
    match object.get(key)? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// A list field, `id:value` separated by commas; an entry without `:` is kept with an empty
/// value.
fn entries(object: &Map<String, Value>, key: &str) -> Vec<Entry> {
    let Some(text) = string(object, key) else {
        return Vec::new();
    };
    text.split(',')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (id, value) = entry.rsplit_once(':').unwrap_or((entry, ""));
            Entry {
                id: id.to_owned(),
                value: value.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
