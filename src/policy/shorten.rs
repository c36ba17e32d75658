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

/// Untrusted text as one line of a log or an access-log field can hold it: shortened, and
/// escaped (a line break would forge a log line, an escape sequence would reach a terminal).
pub fn loggable(text: &str) -> String {
    shorten(text).escape_debug().to_string()
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

    #[test]
    fn loggable_is_one_short_line() {
        let logged = loggable("gpt\n[warn] forged \u{1b}[2J \"q\"");
        assert_eq!(logged, "gpt\\n[warn] forged \\u{1b}[2J \\\"q\\\"");
        assert!(loggable(&"m".repeat(60_000)).len() < 80);
    }
}
