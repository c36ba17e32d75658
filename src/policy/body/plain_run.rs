//! Finding the end of plain string content: the reader's inner loop. A prompt body is mostly
//! long strings, so their bytes are scanned a chunk at a time for `"`, `\\` and control
//! characters: sixteen bytes with Wasm SIMD in the module, eight with word arithmetic elsewhere.

/// How many leading bytes of `bytes` are plain string content: not `"`, `\` or a control
/// character. A chunk at a time: sixteen bytes with Wasm SIMD in the module, eight with word
/// arithmetic elsewhere.
#[inline]
pub(super) fn plain_run(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(CHUNK);
    let mut offset = 0usize;
    for chunk in &mut chunks {
        if let Some(at) = first_special(chunk) {
            return offset.saturating_add(at);
        }
        offset = offset.saturating_add(CHUNK);
    }
    let tail = chunks.remainder();
    let plain = tail
        .iter()
        .position(|byte| is_special(*byte))
        .unwrap_or(tail.len());
    offset.saturating_add(plain)
}

/// The lanes of a 16-byte chunk that are `"`, `\` or a control character, all ones.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn special_lanes(chunk: &[u8]) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::{u8x16, u8x16_eq, u8x16_lt, u8x16_splat, v128_or};
    let Ok([b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15]) =
        <[u8; 16]>::try_from(chunk)
    else {
        return u8x16_splat(0xff);
    };
    // Sixteen consecutive byte loads: the compiler makes them one vector load.
    let bytes = u8x16(
        b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
    );
    v128_or(
        v128_or(
            u8x16_eq(bytes, u8x16_splat(b'"')),
            u8x16_eq(bytes, u8x16_splat(b'\\')),
        ),
        u8x16_lt(bytes, u8x16_splat(0x20)),
    )
}

fn is_special(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | 0x00..=0x1f)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const CHUNK: usize = 16;

/// The index of the first `"`, `\` or control character in a 16-byte chunk.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn first_special(chunk: &[u8]) -> Option<usize> {
    match core::arch::wasm32::u8x16_bitmask(special_lanes(chunk)) {
        0 => None,
        mask => Some(mask.trailing_zeros() as usize),
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const CHUNK: usize = 8;

/// The same for an 8-byte chunk on other targets (the host tools, tests and fuzzing), with
/// word arithmetic: a byte's high bit is set in `found` when it is special.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn first_special(chunk: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES << 7;
    let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
    // A byte b has its high bit set by (b - k) & !b when b < k (for b below 0x80), the usual
    // zero-byte test shifted: below 0x20 for control characters, equal for `"` and `\`.
    let below_space = word.wrapping_sub(ONES.wrapping_mul(0x20)) & !word;
    let quote = word ^ ONES.wrapping_mul(u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = word ^ ONES.wrapping_mul(u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    let found = (below_space | quote | backslash) & HIGHS;
    match found {
        0 => None,
        // Borrows only run towards higher bytes, so the lowest flagged byte is a true one.
        found => Some((found.trailing_zeros() / 8) as usize),
    }
}
