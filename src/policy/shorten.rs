//! Untrusted text in replies and logs: a model name, a path, a key the client sent is shown,
//! never in full.

use std::borrow::Cow;

/// At most 64 characters of untrusted text, for messages.
pub fn shorten(text: &str) -> Cow<'_, str> {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => Cow::Owned(format!("{}...", text.get(..end).unwrap_or_default())),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_char_boundaries() {
        assert_eq!(shorten("abc"), "abc");
        let long = "é".repeat(100);
        let short = shorten(&long);
        assert!(short.ends_with("..."));
        assert_eq!(short.chars().count(), 67);
    }
}
