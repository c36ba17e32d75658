//! Where a piece of the body sits: the byte range of a JSON token in it. A string's span is
//! how inspection names it and how redaction finds it again, without a second read.

use std::ops::Range;

/// The bytes `start..end` of the body: a string token's span includes its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    pub fn range(self) -> Range<usize> {
        self.start..self.end
    }
}
