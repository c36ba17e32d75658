//! A streamed answer through `StreamEditor`, fed in chunks cut where the input says: it never
//! panics, holds no more than `held_bound`, sends nothing after a cut, and what the client
//! receives does not depend on the cuts. With a redacting rule, no byte sequence of the
//! needle ever reaches the client; with a blocking rule, a stream that showed the needle ends
//! cut.
//!
//! Input: byte 0 picks the shape (modulo 5), the rule's effect (the next value, modulo 3) and
//! the window (the rest); byte 1 the number of cuts (modulo 8), each then given by two bytes
//! (little-endian, modulo the body's length + 1); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posturio::policy::answer::{
    held_bound, AnswerMatch, AnswerScan, AnswerShape, AnswerText, Effect, StreamEditor,
    StreamStep,
};
use posturio::policy::usage::Framing;

const SHAPES: [AnswerShape; 5] = [
    AnswerShape::OpenAiChat,
    AnswerShape::OpenAiCompletions,
    AnswerShape::OpenAiResponses,
    AnswerShape::Anthropic,
    AnswerShape::Gemini,
];
const EFFECTS: [Effect; 3] = [Effect::Redact, Effect::Block, Effect::Record];
const NEEDLE: &str = "SECRET";

struct Needle {
    effect: Effect,
    window: usize,
}

impl AnswerScan for Needle {
    fn scan(&self, text: &str, _: AnswerText, out: &mut Vec<AnswerMatch>) {
        for (at, _) in text.match_indices(NEEDLE) {
            out.push(AnswerMatch {
                rule: 0,
                range: at..at + NEEDLE.len(),
                effect: self.effect,
            });
        }
    }

    fn marker(&self, _: usize) -> String {
        "[REDACTED:r0]".to_owned()
    }

    fn window(&self) -> usize {
        self.window
    }
}

/// What the client receives, and whether the stream was cut.
fn run(shape: AnswerShape, chunks: &[&[u8]], scan: &Needle) -> (Vec<u8>, bool) {
    let Some(mut editor) = StreamEditor::new(shape, Framing::Sse) else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut cut = false;
    for (index, chunk) in chunks.iter().enumerate() {
        let step = editor.push(chunk, index + 1 == chunks.len(), scan);
        assert!(editor.held() <= held_bound(scan.window), "held {}", editor.held());
        match step {
            StreamStep::Send(bytes) => {
                assert!(!cut || bytes.is_empty(), "bytes sent after a cut");
                out.extend_from_slice(&bytes);
            }
            StreamStep::Cut(bytes) => {
                assert!(!cut, "cut twice");
                cut = true;
                out.extend_from_slice(&bytes);
            }
        }
    }
    (out, cut)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let shape = SHAPES[usize::from(choice) % SHAPES.len()];
    let effect = EFFECTS[usize::from(choice / 5) % EFFECTS.len()];
    let window = 8 + usize::from(choice / 15) * 4;
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
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &cut in &cuts {
        chunks.push(&body[at..cut]);
        at = cut;
    }
    chunks.push(&body[at..]);

    let scan = Needle { effect, window };
    let (once, once_cut) = run(shape, &[body], &scan);
    let (cut_up, cut_up_cut) = run(shape, &chunks, &scan);
    assert_eq!(once, cut_up, "the client's stream depends on the cuts {cuts:?}");
    assert_eq!(once_cut, cut_up_cut);
    let (bytes, _) = run(shape, &body.chunks(1).collect::<Vec<_>>(), &scan);
    assert_eq!(once, bytes, "byte by byte");
    let shown = once
        .windows(NEEDLE.len())
        .any(|window| window == NEEDLE.as_bytes());
    match effect {
        Effect::Redact | Effect::Block => assert!(!shown, "the needle reached the client"),
        Effect::Record => {}
    }
});
