//! The request body as the policy reads it: one strict pass (`walk`) over the JSON
//! (`json_reader`, `strict_json`), handing every string to a sink with its place and its span
//! (`text`, `places`, `span`), taking out the `model`, and locating the values the request
//! limits edit (`watch`). Inspection, the limits and redaction use this module; it uses none
//! of them.

use std::fmt;
use std::ops::Range;

pub mod json_reader;
mod json_serde;
mod places;
mod plain_run;
mod read_keys;
pub mod span;
pub mod strict_json;
pub mod text;
mod turns;
mod walk;
pub mod watch;

pub use span::Span;
pub use strict_json::{JsonError, Violation};
pub use text::{read_offset, NoText, Offsets, TextAt, TextField, TextSink};
pub use walk::{walk, walk_watching, Walked};
pub use watch::{Located, LocatedValue, ObjectEnd, Watch, Watched};

/// The top-level `model` of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelField {
    pub name: String,
    /// Where the value, quotes included, sits in the body.
    pub span: Range<usize>,
}

/// Why a body was refused. Each becomes a 400 with its own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Empty,
    Json(JsonError),
    NotAnObject,
    ModelMissing,
    ModelNotString,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BodyError::Empty => f.write_str("the request body is empty; a JSON object is required"),
            BodyError::Json(error) => write!(f, "the request body is not acceptable: {error}"),
            BodyError::NotAnObject => f.write_str("the request body must be a JSON object"),
            BodyError::ModelMissing => f.write_str("the request body has no \"model\""),
            BodyError::ModelNotString => f.write_str("\"model\" must be a string"),
        }
    }
}

impl From<JsonError> for BodyError {
    fn from(error: JsonError) -> Self {
        BodyError::Json(error)
    }
}

impl From<Violation> for BodyError {
    fn from(violation: Violation) -> Self {
        BodyError::Json(JsonError::Violation(violation))
    }
}

impl From<json_reader::Error> for BodyError {
    fn from(error: json_reader::Error) -> Self {
        BodyError::Json(error.into())
    }
}
