//! The text parts of one answer message, read as the client reads them: SDKs join them
//! (`output_text`, `get_final_text()`, Gemini's `.text`), so a match split across parts is
//! found in their joined text and redacted in each part it touches.

use std::ops::Range;

use super::json_strings::{index_at, path_is, JsonString, Seg};
use super::AnswerShape;

/// Where the text parts of a message sit, per shape; the part's place in the pattern's first
/// `#` names the message (a choice, a candidate) when `message_at` says so.
struct Parts {
    pattern: &'static [&'static str],
    /// The step of the path that names the message, if the shape has several.
    message_at: Option<usize>,
}

fn parts_of(shape: AnswerShape) -> &'static [Parts] {
    match shape {
        AnswerShape::OpenAiChat => &[Parts {
            pattern: &["choices", "#", "message", "content", "#", "text"],
            message_at: Some(1),
        }],
        // The SDK's `output_text` joins the text parts of every message item.
        AnswerShape::OpenAiResponses => &[Parts {
            pattern: &["output", "#", "content", "#", "text"],
            message_at: None,
        }],
        AnswerShape::Anthropic => &[Parts {
            pattern: &["content", "#", "text"],
            message_at: None,
        }],
        AnswerShape::Gemini => &[Parts {
            pattern: &["candidates", "#", "content", "parts", "#", "text"],
            message_at: Some(1),
        }],
        AnswerShape::BedrockConverse => &[Parts {
            pattern: &["output", "message", "content", "#", "text"],
            message_at: None,
        }],
        AnswerShape::OpenAiCompletions | AnswerShape::BedrockInvoke => &[],
    }
}

/// The runs of text parts a client joins, each as the indexes of its strings in document
/// order (only runs of two or more). A Gemini stream read whole (an array of answers) joins
/// a candidate's parts across its answers, as a client streaming it does.
pub(super) fn runs(shape: AnswerShape, strings: &[JsonString]) -> Vec<Vec<usize>> {
    let mut runs: Vec<((usize, usize), Vec<usize>)> = Vec::new();
    for (index, string) in strings.iter().enumerate() {
        if string.is_key {
            continue;
        }
        let path = match (shape, string.path.first()) {
            (AnswerShape::Gemini, Some(Seg::Index(_))) => string.path.get(1..).unwrap_or_default(),
            _ => string.path.as_slice(),
        };
        for (which, parts) in parts_of(shape).iter().enumerate() {
            if !path_is(path, parts.pattern) {
                continue;
            }
            let message = parts
                .message_at
                .and_then(|at| index_at(path, at))
                .unwrap_or(0);
            let key = (which, message);
            match runs.iter_mut().find(|(each, _)| *each == key) {
                Some((_, run)) => run.push(index),
                None => runs.push((key, vec![index])),
            }
        }
    }
    runs.into_iter()
        .map(|(_, run)| run)
        .filter(|run| run.len() > 1)
        .collect()
}

/// The joined text of `run`, and where each part starts in it.
pub(super) fn joined(strings: &[JsonString], run: &[usize]) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(run.len());
    for index in run {
        starts.push(text.len());
        text.push_str(
            strings
                .get(*index)
                .map_or("", |string| string.text.as_str()),
        );
    }
    (text, starts)
}

/// The portion of `range` (in the joined text) that falls in each part: (the part's place in
/// the run, the range in the part's own text), for every part it touches.
pub(super) fn portions(
    range: &Range<usize>,
    starts: &[usize],
    total: usize,
) -> Vec<(usize, Range<usize>)> {
    let mut out = Vec::new();
    for (at, start) in starts.iter().enumerate() {
        let end = starts.get(at.saturating_add(1)).copied().unwrap_or(total);
        let from = range.start.max(*start);
        let to = range.end.min(end);
        if from < to {
            out.push((at, from.saturating_sub(*start)..to.saturating_sub(*start)));
        }
    }
    out
}
