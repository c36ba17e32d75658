//! The reader against serde_json: the same documents accepted, the same strings handed over.

// Test arithmetic (lengths, seeds) cannot overflow with these small values.
#![allow(clippy::arithmetic_side_effects)]

use serde::Deserialize;
use serde_json::Value;

use super::*;

/// The whole document through the reader, as serde_json's `Value`.
fn read(input: &[u8]) -> Result<Value, Error> {
    let mut reader = Reader::new(input)?;
    let value = Value::deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

/// Accepted by both with equal values, or refused by both.
fn agrees(input: &[u8]) {
    let ours = read(input);
    let theirs = serde_json::from_slice::<Value>(input);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(input)),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "{:?}: reader {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn agrees_with_serde_json_on_valid_documents() {
    for doc in [
        r#"{}"#,
        r#"[]"#,
        r#" { "a" : [ 1 , -2 , 3.5 , 1e3 , -0.25E-2 , true , false , null ] } "#,
        r#""plain""#,
        r#""esc \" \\ \/ \b \f \n \r \t \u00e9 \u20ac \ud83d\ude00 end""#,
        r#"{"k\u0065y":"v","":""}"#,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"héllo wörld ✓ 😀"}]}"#,
        "\t\r\n[\n1\n]\n",
        r#"[0, -0, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]"#,
        r#"[1.7976931348623157e308, 5e-324, 1E+2, 0.0]"#,
        r#"{"a":{"b":{"c":[[[]]]}}}"#,
    ] {
        assert!(read(doc.as_bytes()).is_ok(), "{doc}");
        agrees(doc.as_bytes());
    }
}

#[test]
fn refuses_what_serde_json_refuses() {
    for doc in [
        "",
        " ",
        "[",
        "]",
        "{",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":1",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{,}",
        "{\"a\" 1}",
        "{1:2}",
        "[1 2]",
        "01",
        "-",
        "-a",
        "1.",
        "1.e3",
        "1e",
        "1e+",
        ".5",
        "+1",
        "1e400",
        "-1e400",
        "tru",
        "nul",
        "True",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\"tab\there\"",
        "\"nl\nhere\"",
        "{} {}",
        "[] x",
        "\u{feff}{}",
        "NaN",
        "Infinity",
        "'a'",
    ] {
        assert!(read(doc.as_bytes()).is_err(), "{doc:?}");
        agrees(doc.as_bytes());
    }
}

#[test]
fn refuses_invalid_utf8_inside_and_outside_strings() {
    for doc in [
        &b"\"\xff\""[..],
        b"\"\xc3\"",
        b"\"a\xc3\x28b\"",
        b"{\"k\xe2\x82\":1}",
        b"[1]\xff",
        b"\xef\xbb\xbf[1]",
        b"\"\xed\xa0\x80\"",
    ] {
        assert!(read(doc).is_err(), "{doc:?}");
        agrees(doc);
    }
}

#[test]
fn nesting_limit_is_serde_json_s() {
    for depth in [1, 64, 126, 127, 128, 129, 200] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        agrees(arrays.as_bytes());
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        agrees(objects.as_bytes());
    }
    let deep = "[".repeat(100_000);
    assert!(read(deep.as_bytes()).is_err());
}

#[test]
fn escapes_at_every_position_of_a_long_string() {
    // Long enough to cross the 8- and 16-byte scanning chunks at every offset.
    let plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_éü€😀".repeat(3);
    let chars: Vec<char> = plain.chars().collect();
    for cut in 0..=chars.len() {
        let head: String = chars[..cut].iter().collect();
        let tail: String = chars[cut..].iter().collect();
        for special in ["\\\"", "\\\\", "\\n", "\\u0041", "\\ud83d\\ude00"] {
            let doc = format!("[\"{head}{special}{tail}\",\"{head}\"]");
            agrees(doc.as_bytes());
        }
        for raw in ["\"", "\n", "\u{1}"] {
            let doc = format!("[\"{head}{raw}{tail}\"]");
            agrees(doc.as_bytes());
        }
    }
}

#[test]
fn plain_run_matches_a_byte_by_byte_search() {
    // A fixed pseudo-random sequence: every length and position of the special bytes.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = (next() % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| match next() % 50 {
                0 => b'"',
                1 => b'\\',
                2 => (next() % 0x20) as u8,
                3 => 0x7f,
                4..=9 => 0x80 | (next() % 0x80) as u8,
                _ => b' ' + (next() % 0x5e) as u8,
            })
            .collect();
        let expected = bytes
            .iter()
            .position(|b| matches!(b, b'"' | b'\\' | 0x00..=0x1f))
            .unwrap_or(bytes.len());
        assert_eq!(plain_run(&bytes), expected, "{bytes:?}");
    }
}

#[test]
fn raw_is_the_value_s_exact_text() {
    let body = br#"{"model" :  "gpt\u002d4o" , "n": [1, {"a": 2}] }"#;
    let mut reader = Reader::new(body).unwrap();
    let mut raws = Vec::new();
    let mut spans = Vec::new();
    assert!(matches!(reader.value().unwrap(), Token::Object));
    let mut first = true;
    while reader.next_key(&mut first).unwrap().is_some() {
        reader.colon().unwrap();
        let (raw, span) = reader.raw_value().unwrap();
        raws.push(raw);
        spans.push(span);
    }
    reader.end().unwrap();

    assert_eq!(raws, [r#""gpt\u002d4o""#, r#"[1, {"a": 2}]"#]);
    // Each borrowed from the body itself, at its span.
    let start = raws[1].as_ptr() as usize - body.as_ptr() as usize;
    assert_eq!(&body[start..start + raws[1].len()], raws[1].as_bytes());
    assert_eq!(spans[1].range(), start..start + raws[1].len());
    assert_eq!(&body[spans[0].range()], raws[0].as_bytes());
}

#[test]
fn errors_say_where() {
    let error = read(b"{\n  \"a\": 1,\n  }").unwrap_err();
    assert_eq!(error.to_string(), "trailing comma at line 3 column 3");
    let error = read(b"[1, 2\x01]").unwrap_err();
    assert!(error.to_string().ends_with("line 1 column 6"), "{error}");
    let error = read(b"\"ok\" \xff").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid unicode code point at line 1 column 6"
    );
}
