//! A response body through `UsageReader`, fed in chunks cut where the input says: the usage it
//! reads must not depend on the cuts. For one JSON document in OpenAI's format, it must also
//! agree with serde_json on the document's `usage`, its reasoning part included. In SSE framing the same cuts go through
//! `UsageChunkRemover`: what the client receives must not depend on them either, and only
//! whole events may go missing.
//!
//! Input: byte 0 picks the format (modulo 5) and the framing (the next bit of byte 0 / 5);
//! byte 1 the number of cuts (modulo 8), each then given by two bytes (little-endian, modulo
//! the body's length + 1); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posturio::policy::body::strict_json::validate;
use posturio::policy::usage::{Framing, Usage, UsageFormat, UsageReader, MAX_COUNT};
use posturio::policy::usage_chunk::UsageChunkRemover;
use serde_json::Value;

const FORMATS: [UsageFormat; 5] = [
    UsageFormat::OpenAiChat,
    UsageFormat::OpenAiResponses,
    UsageFormat::Anthropic,
    UsageFormat::Gemini,
    UsageFormat::BedrockConverse,
];

/// The reader copies out usage objects up to this size (`usage.rs`); a body no longer than
/// it cannot hold a longer one.
const CAPTURE_LIMIT: usize = 4096;

fn read<'a>(
    format: UsageFormat,
    framing: Framing,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Usage> {
    let mut reader = UsageReader::new(format, framing);
    for chunk in chunks {
        reader.feed(chunk);
    }
    reader.usage()
}

/// What the reader must find in a single OpenAI JSON document, where serde_json can say.
fn openai_oracle(body: &[u8]) -> Option<Option<Usage>> {
    // serde_json keeps the last of repeated keys; the reader charges the largest usage any
    // copy gave. Only a body with a single `usage` key, unescaped, is judged here.
    let spelled = body.windows(7).filter(|window| window == b"\"usage\"").count();
    if spelled > 1 || body.contains(&b'\\') {
        return None;
    }
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let Some(usage) = document.get("usage") else {
        // No key decodes to `usage`, under any spelling.
        return Some(None);
    };
    let usage = usage.as_object()?;
    // A key repeated (or differing only in case) inside the usage object leaves the usage
    // unknown, where serde_json keeps the last copy: no verdict on such a body.
    if repeated_inside(body) {
        return None;
    }
    let input = usage.get("prompt_tokens")?.as_u64()?;
    let output = match usage.get("completion_tokens") {
        None | Some(Value::Null) => 0,
        Some(count) => count.as_u64()?,
    };
    if !matches!(usage.get("prompt_tokens_details"), None | Some(Value::Null)) {
        return None;
    }
    // Reasoning is part of the output; a reasoning count that cannot be read counts as none,
    // and never the rest of the usage.
    let reasoning = match usage.get("completion_tokens_details") {
        Some(Value::Object(details)) => match details.get("reasoning_tokens") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(count)) if count.as_f64().is_some_and(|c| c < 0.0) => 0,
            Some(Value::Number(count)) => count.as_u64()?,
            Some(_) => 0,
        },
        _ => 0,
    };
    // A total above input plus output is charged, the excess as input.
    let total = match usage.get("total_tokens") {
        None | Some(Value::Null) => 0,
        Some(count) => count.as_u64()?,
    };
    // Counts above MAX_COUNT leave the usage unknown; a reasoning count there is not read.
    if [input, output, total].into_iter().any(|count| count > MAX_COUNT) {
        return Some(None);
    }
    let reasoning = if reasoning > MAX_COUNT { 0 } else { reasoning };
    let input = input.max(total.saturating_sub(output));
    Some(Some(Usage {
        input,
        output,
        cached: 0,
        reasoning: reasoning.min(output),
        cache_write: 0,
    }))
}

/// Whether the body repeats a key anywhere (serde_json keeps only the last copy, so the
/// oracle cannot judge it).
fn repeated_inside(body: &[u8]) -> bool {
    validate(body).is_err()
}

/// What the client receives when the body is cut into `chunks`.
fn delivered(chunks: &[&[u8]]) -> Vec<u8> {
    let mut remover = UsageChunkRemover::new();
    let mut out = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        match remover.edit(chunk, index + 1 == chunks.len()) {
            Some(edited) => out.extend_from_slice(&edited),
            None => out.extend_from_slice(chunk),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(choice) % FORMATS.len()];
    let framing = if (choice / 5) % 2 == 0 {
        Framing::Json
    } else {
        Framing::Sse
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 8);
    if rest.len() < 2 * count {
        return;
    }
    let (offsets, body) = rest.split_at(2 * count);
    let mut cuts: Vec<usize> = offsets
        .chunks(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = read(format, framing, [body]);
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &cut in &cuts {
        chunks.push(&body[at..cut]);
        at = cut;
    }
    chunks.push(&body[at..]);
    assert_eq!(
        read(format, framing, chunks.iter().copied()),
        whole,
        "cut at {cuts:?}"
    );
    assert_eq!(read(format, framing, body.chunks(1)), whole, "byte by byte");

    if framing == Framing::Sse {
        let once = delivered(&[body]);
        assert_eq!(
            delivered(&chunks),
            once,
            "the client's stream depends on the cuts {cuts:?}"
        );
        // Removal takes out whole events only: what is left is a subsequence of the body.
        let mut rest = body.iter();
        assert!(
            once.iter().all(|byte| rest.any(|b| b == byte)),
            "bytes were changed"
        );
    }

    if format == UsageFormat::OpenAiChat && framing == Framing::Json && body.len() <= CAPTURE_LIMIT
    {
        if let Some(expected) = openai_oracle(body) {
            assert_eq!(
                whole, expected,
                "serde_json reads the document's usage otherwise"
            );
        }
    }
});
