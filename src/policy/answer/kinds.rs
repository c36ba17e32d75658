//! What each string of a whole answer is, by where it sits in the answer of its shape.

use super::json_strings::{path_is, Seg};
use super::{AnswerShape, AnswerText};

const CHAT_OUTPUT: &[&[&str]] = &[
    &["choices", "#", "message", "content"],
    &["choices", "#", "message", "content", "#", "text"],
    &["choices", "#", "message", "content", "#", "refusal"],
    &["choices", "#", "message", "refusal"],
    &["choices", "#", "message", "reasoning_content"],
    &["choices", "#", "message", "reasoning"],
    &["choices", "#", "message", "audio", "transcript"],
];
const CHAT_TOOLS: &[&[&str]] = &[
    &[
        "choices",
        "#",
        "message",
        "tool_calls",
        "#",
        "function",
        "arguments",
    ],
    &["choices", "#", "message", "function_call", "arguments"],
];
const COMPLETIONS_OUTPUT: &[&[&str]] = &[&["choices", "#", "text"]];
const RESPONSES_OUTPUT: &[&[&str]] = &[
    &["output", "#", "content", "#", "text"],
    &["output", "#", "content", "#", "refusal"],
    &["output", "#", "summary", "#", "text"],
    &["output_text"],
];
const RESPONSES_TOOLS: &[&[&str]] = &[&["output", "#", "arguments"], &["output", "#", "input"]];
const ANTHROPIC_OUTPUT: &[&[&str]] = &[&["content", "#", "text"], &["content", "#", "thinking"]];
const ANTHROPIC_TOOLS: &[&[&str]] = &[&["content", "#", "input", "**"]];
const GEMINI_OUTPUT: &[&[&str]] = &[&["candidates", "#", "content", "parts", "#", "text"]];
const GEMINI_TOOLS: &[&[&str]] = &[&[
    "candidates",
    "#",
    "content",
    "parts",
    "#",
    "functionCall",
    "args",
    "**",
]];
const CONVERSE_OUTPUT: &[&[&str]] = &[
    &["output", "message", "content", "#", "text"],
    &[
        "output",
        "message",
        "content",
        "#",
        "reasoningContent",
        "reasoningText",
        "text",
    ],
];
const CONVERSE_TOOLS: &[&[&str]] = &[&[
    "output", "message", "content", "#", "toolUse", "input", "**",
]];

/// The kind of the string value at `path` in a whole answer of `shape`.
pub(super) fn kind(shape: AnswerShape, path: &[Seg]) -> AnswerText {
    let (output, tools): (&[&[&str]], &[&[&str]]) = match shape {
        AnswerShape::OpenAiChat => (CHAT_OUTPUT, CHAT_TOOLS),
        AnswerShape::OpenAiCompletions => (COMPLETIONS_OUTPUT, &[]),
        AnswerShape::OpenAiResponses => (RESPONSES_OUTPUT, RESPONSES_TOOLS),
        AnswerShape::Anthropic => (ANTHROPIC_OUTPUT, ANTHROPIC_TOOLS),
        AnswerShape::Gemini => (GEMINI_OUTPUT, GEMINI_TOOLS),
        AnswerShape::BedrockConverse => (CONVERSE_OUTPUT, CONVERSE_TOOLS),
        AnswerShape::BedrockInvoke => return AnswerText::Output,
    };
    // A Gemini stream read whole is an array of answers.
    let path = match (shape, path.first()) {
        (AnswerShape::Gemini, Some(Seg::Index(_))) => path.get(1..).unwrap_or_default(),
        _ => path,
    };
    if output.iter().any(|pattern| path_is(path, pattern)) {
        AnswerText::Output
    } else if tools.iter().any(|pattern| path_is(path, pattern)) {
        AnswerText::ToolArguments
    } else {
        AnswerText::Other
    }
}
