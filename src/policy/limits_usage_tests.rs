use super::*;

#[test]
fn gemini_answer_formats() {
    for (query, read) in [
        ("", true),
        ("?", true),
        ("?alt=sse", true),
        ("?alt=json", true),
        ("?key=k&alt=sse", true),
        ("?alternative=proto", true),
        ("?%24alt=sse", true),
        ("?alt=proto", false),
        ("?$alt=proto", false),
        ("?%24alt=proto", false),
        ("?%61lt=proto", false),
        ("?alt=%70roto", false),
        ("?alt=SSE", false),
        ("?alt=", false),
        ("?alt", false),
        ("?alt=sse&alt=sse", false),
        ("?alt=sse&$alt=proto", false),
        ("?alt=sse&%zz=1", false),
        ("?alt=%2", false),
        ("?alt=%+f", false),
        ("?alt=%ff", false),
    ] {
        assert_eq!(gemini_format(query).is_none(), read, "{query}");
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
    assert_eq!(percent_decode("%").as_deref(), None);
    assert_eq!(percent_decode("%4").as_deref(), None);
    assert_eq!(percent_decode("%-1").as_deref(), None);
    assert_eq!(percent_decode("%c3%a9").as_deref(), Some("é"));
}
