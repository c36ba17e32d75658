//! Request limits that edit the body: a consumer's cap on output tokens (`output_cap`), and
//! usage reporting for OpenAI-style streams (`stream_usage`); and the output a request asks
//! for, which a budget reserves (`asked_output`). Pure functions of the walked
//! body; `decide_body` merges the changes they ask for with the model rewrite and the
//! redactions, into one copy of the body (`into_edits`).
//!
//! The walk locates the values these read (`body::watch`); nothing here parses the body
//! again, but for the few fields read whole (`keys`).

use std::collections::BTreeMap;
use std::ops::Range;

use super::body::{LocatedValue, ObjectEnd};
use super::classify::{Classified, Endpoint};
use super::redact::Edit;
use super::usage::UsageFormat;

mod asked_output;
mod choices;
mod keys;
mod output_cap;
mod service_tier;
pub mod stream_usage;

pub use super::body::watch::{has_stream_flag, reports_stream_usage};
pub use asked_output::{asked_output, AskedOutput};
pub use output_cap::{has_cap_fields, output_cap, CapOutcome, CapRequest, Enforcement};
pub use service_tier::premium_service_tier;
pub use stream_usage::include_usage;

/// The format the response's usage comes in; `None` when the response reports none.
pub fn usage_format(classified: &Classified) -> Option<UsageFormat> {
    use Endpoint::*;
    match classified.endpoint {
        ChatCompletions | Completions | Embeddings | AzureChatCompletions | AzureCompletions
        | AzureEmbeddings => Some(UsageFormat::OpenAiChat),
        Responses => Some(UsageFormat::OpenAiResponses),
        Messages => Some(UsageFormat::Anthropic),
        CountTokens => None,
        GeminiGenerate if classified.counts_tokens => None,
        GeminiGenerate => Some(UsageFormat::Gemini),
        BedrockConverse | BedrockInvoke => Some(UsageFormat::BedrockConverse),
    }
}

/// A change the limits ask of the body, before the changes are merged into edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The value at `span` becomes `text`.
    Replace { span: Range<usize>, text: String },
    /// `member` (`"key":value`) is added to the object that closes at `object`.
    Insert { object: ObjectEnd, member: String },
}

/// The edits for a set of changes. Members added to one object become one insertion before
/// its brace, with a comma only where one is needed.
pub fn into_edits(changes: Vec<Change>) -> Vec<Edit> {
    let mut edits = Vec::with_capacity(changes.len());
    let mut inserts: BTreeMap<usize, (bool, String)> = BTreeMap::new();
    for change in changes {
        match change {
            Change::Replace { span, text } => edits.push(Edit { span, text }),
            Change::Insert { object, member } => {
                let (empty, text) = inserts
                    .entry(object.close)
                    .or_insert_with(|| (object.empty, String::new()));
                if !(*empty && text.is_empty()) {
                    text.push(',');
                }
                text.push_str(&member);
            }
        }
    }
    edits.extend(inserts.into_iter().map(|(close, (_, text))| Edit {
        span: close..close,
        text,
    }));
    edits
}

/// The raw JSON text of a located value.
fn raw<'b>(body: &'b [u8], found: &LocatedValue) -> &'b [u8] {
    body.get(found.span.range()).unwrap_or_default()
}

/// The refusal of a body that gives two spellings of one field.
fn both_spellings(one: &str, other: &str) -> String {
    format!(
        "the body gives both \"{one}\" and \"{other}\", which the provider reads as one field; \
         send one of them"
    )
}

#[cfg(test)]
mod tests;
