//! Where each piece of scanned text came from, and the way back: a match in text made from the
//! strings as read (escapes decoded, folded, text parts joined) is judged against the matches
//! in what it was made from, and led back to the strings it covers.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{in_json_key, json_quotes};
use crate::policy::body::{read_offset, Offsets, Span, TextAt};
use crate::policy::fold::Folded;

/// What a piece of scanned text is. Each piece is made only from pieces before it.
#[derive(Debug)]
pub(super) enum Origin {
    /// A string (or key) as read.
    Read,
    /// The JSON escapes inside piece `from` decoded; `layers` lead back (`read_offset`).
    Decoded { from: usize, layers: Vec<Offsets> },
    /// Piece `from` as a reader sees it.
    Folded { from: usize, folded: Folded },
    /// The text of consecutive text parts, joined with nothing between them: each part's
    /// piece, and where its text starts in this one.
    Joined { parts: Vec<(usize, usize)> },
}

impl Origin {
    /// The piece this one was made from, and where `range` falls in it: exactly where it
    /// can be, else the smallest range that holds it. `None` for a string as read, and for a
    /// joined match that spans parts (no one part holds it).
    fn parent(
        &self,
        range: &Range<usize>,
        pieces: &[Range<usize>],
    ) -> Option<(usize, Range<usize>)> {
        match self {
            Origin::Read => None,
            Origin::Decoded { from, layers } => Some((
                *from,
                read_offset(layers, range.start)?..read_offset(layers, range.end)?,
            )),
            Origin::Folded { from, folded } => Some((*from, folded.source_cover(range.clone())?)),
            Origin::Joined { parts } => parts.iter().find_map(|&(part, start)| {
                let length = pieces.get(part)?.len();
                let local = range.start.checked_sub(start)?..range.end.checked_sub(start)?;
                (local.end <= length).then_some((part, local))
            }),
        }
    }
}

/// The matches of one scan, each with its piece and its range relative to the piece.
pub(super) struct Located {
    /// `(rule, piece, range)`, in the scanner's order.
    matches: Vec<(usize, usize, Range<usize>)>,
    /// By piece and rule, the matches' starts in order, each with the furthest end of the
    /// matches up to it: whether one covers a range is then one search, however many there
    /// are (a body may hold thousands).
    by_piece: BTreeMap<(usize, usize), Vec<(usize, usize)>>,
}

impl Located {
    /// Places the scanner's matches (ranges of the whole buffer) in their pieces.
    pub(super) fn new(found: Vec<(usize, Range<usize>)>, pieces: &[Range<usize>]) -> Self {
        let matches: Vec<(usize, usize, Range<usize>)> = found
            .into_iter()
            .filter_map(|(rule, range)| {
                let index = pieces
                    .partition_point(|piece| piece.start <= range.start)
                    .checked_sub(1)?;
                let piece = pieces.get(index)?;
                (range.end <= piece.end).then_some((
                    rule,
                    index,
                    range.start.checked_sub(piece.start)?..range.end.checked_sub(piece.start)?,
                ))
            })
            .collect();
        let mut by_piece: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
        for (rule, index, range) in &matches {
            by_piece
                .entry((*index, *rule))
                .or_default()
                .push((range.start, range.end));
        }
        for ranges in by_piece.values_mut() {
            ranges.sort_unstable();
            let mut furthest = 0;
            for (_, end) in ranges.iter_mut() {
                furthest = furthest.max(*end);
                *end = furthest;
            }
        }
        Located { matches, by_piece }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, usize, &Range<usize>)> {
        self.matches
            .iter()
            .map(|(rule, index, range)| (*rule, *index, range))
    }

    /// Whether a match of `rule` at `range` of piece `index` is already found in what the
    /// piece was made from: a match of the same rule there covers the place it came from.
    pub(super) fn covered(
        &self,
        (origins, pieces): (&[Origin], &[Range<usize>]),
        rule: usize,
        index: usize,
        range: &Range<usize>,
    ) -> bool {
        let mut index = index;
        let mut range = range.clone();
        // Each piece is made from earlier ones, so this ends.
        while let Some((parent, mapped)) = origins
            .get(index)
            .and_then(|origin| origin.parent(&range, pieces))
        {
            // The matches that start at or before the range: the furthest of their ends.
            let seen = self.by_piece.get(&(parent, rule)).is_some_and(|ranges| {
                let before = ranges.partition_point(|(start, _)| *start <= mapped.start);
                before
                    .checked_sub(1)
                    .and_then(|last| ranges.get(last))
                    .is_some_and(|(_, furthest)| mapped.end <= *furthest)
            });
            if seen {
                return true;
            }
            index = parent;
            range = mapped;
        }
        false
    }
}

/// The strings as read that a match at `range` of piece `index` lies in, each with the range
/// it covers there, or `None` where the match cannot be led back exactly: inside what one
/// character folded to, or in a decoded form (then the piece is the decoded one, which has no
/// span). A match across joined parts has a portion in each part it reaches.
pub(super) fn roots(
    (origins, pieces): (&[Origin], &[Range<usize>]),
    index: usize,
    range: Option<Range<usize>>,
) -> Vec<(usize, Option<Range<usize>>)> {
    let mut out = Vec::new();
    let mut pending = vec![(index, range)];
    // Each step goes to earlier pieces, so this ends.
    while let Some((index, range)) = pending.pop() {
        match (origins.get(index), range) {
            (None, _) => {}
            (Some(Origin::Read | Origin::Decoded { .. }), range) => out.push((index, range)),
            (Some(Origin::Folded { from, folded }), range) => {
                pending.push((*from, range.and_then(|range| folded.source_range(range))));
            }
            (Some(Origin::Joined { parts }), Some(range)) => {
                let mut portions = Vec::new();
                for &(part, start) in parts {
                    let Some(end) = pieces
                        .get(part)
                        .and_then(|piece| start.checked_add(piece.len()))
                    else {
                        continue;
                    };
                    let (low, high) = (range.start.max(start), range.end.min(end));
                    if low < high || (range.is_empty() && (start..end).contains(&range.start)) {
                        let local = low.saturating_sub(start)..high.saturating_sub(start);
                        portions.push((part, Some(local)));
                    }
                }
                pending.extend(portions.into_iter().rev());
            }
            (Some(Origin::Joined { parts }), None) => {
                if let Some((part, _)) = parts.first() {
                    pending.push((*part, None));
                }
            }
        }
    }
    out
}

/// The joined text of the text parts whose strings have `spans` (see `TextSink::text_parts`):
/// the pieces as read, each with where it starts in the joined text, and the text. `None`
/// when fewer than two of them hold text.
pub(super) fn join(
    (text, pieces, at, origins): (&str, &[Range<usize>], &[TextAt], &[Origin]),
    spans: &[Span],
) -> Option<(Vec<(usize, usize)>, String)> {
    // The parts were handed out last, in order: search back from the end. An empty string
    // was never made a piece, and is passed over.
    let mut wanted = spans.iter().rev().peekable();
    let mut found = Vec::with_capacity(spans.len());
    for index in (0..pieces.len()).rev() {
        let (Some(Origin::Read), Some(Some(span))) =
            (origins.get(index), at.get(index).map(|at| at.span))
        else {
            continue;
        };
        while wanted.next_if(|want| want.start > span.start).is_some() {}
        match wanted.peek() {
            None => break,
            Some(want) if **want == span => {
                found.push(index);
                wanted.next();
            }
            Some(_) => {}
        }
    }
    if found.len() < 2 {
        return None;
    }
    found.reverse();
    let mut joined = String::new();
    let mut parts = Vec::with_capacity(found.len());
    for index in found {
        let piece = text.get(pieces.get(index)?.clone())?;
        parts.push((index, joined.len()));
        joined.push_str(piece);
    }
    Some((parts, joined))
}

/// The quotes of JSON text in each piece a match was found in, found once per piece.
#[derive(Default)]
pub(super) struct Quotes(BTreeMap<usize, Vec<(usize, bool)>>);

impl Quotes {
    /// Whether `range` of piece `index` lies in, or reaches into, a key of JSON text.
    pub(super) fn in_key(
        &mut self,
        (text, pieces): (&str, &[Range<usize>]),
        index: usize,
        range: &Range<usize>,
    ) -> bool {
        let quotes = self.0.entry(index).or_insert_with(|| {
            let piece = pieces.get(index).cloned().unwrap_or_default();
            json_quotes(text.get(piece).unwrap_or_default())
        });
        in_json_key(quotes, range)
    }
}
