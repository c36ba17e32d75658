//! Reading access-log lines: fields as Envoy writes them (numbers, decimal strings, null,
//! missing), lists of `id:value`, and lines that are not ours.

use std::io::Write;

use super::*;

#[test]
fn a_line_of_the_shipped_format_is_read() {
    let line = br#"{"start_time":"2026-12-07T00:00:01.123Z","status":200,"posturio_decision":"audit","posturio_code":"prompt_blocked","posturio_consumer":"team-a","posturio_model":"gpt-4o","posturio_provider":"openai","posturio_api":"openai","posturio_rules":"no-secrets:block,no-email:redact","posturio_guards":"mod:flagged","posturio_input_tokens":"12","posturio_output_tokens":"7","posturio_cached_tokens":"0","posturio_tokens":"19","posturio_cost_microusd":"42","posturio_charged_tokens":"19","posturio_charged_microusd":null}"#;
    let record = parse_line(line).unwrap();
    assert_eq!(record.start, Some(1_796_601_601));
    assert_eq!(record.status, Some(200));
    assert_eq!(record.decision, Some(Decision::Audit));
    assert_eq!(record.code.as_deref(), Some("prompt_blocked"));
    assert_eq!(record.rules.len(), 2);
    assert_eq!(record.rules[1].id, "no-email");
    assert_eq!(record.rules[1].value, "redact");
    assert_eq!(record.guards[0].value, "flagged");
    assert_eq!(record.tokens, Some(19));
    assert_eq!(record.cost_microusd, Some(42));
    assert_eq!(record.charged_microusd, None);
    assert_eq!(record.reasoning_tokens, None, "missing in older logs");
    assert!(record.forwarded());
}

#[test]
fn lines_that_are_not_ours_are_not_records() {
    for (name, line) in [
        (
            "envoy's own log",
            &b"[2026-12-07 00:00:01.000][1][info] starting"[..],
        ),
        ("json array", b"[1,2]"),
        ("object without posturio fields", br#"{"status":200}"#),
        ("unknown decision", br#"{"posturio_decision":"maybe"}"#),
        ("decision not a string", br#"{"posturio_decision":1}"#),
        ("truncated", br#"{"posturio_decision":"allow""#),
    ] {
        assert!(parse_line(line).is_none(), "{name}");
    }
    let undecided = parse_line(br#"{"posturio_decision":null,"status":401}"#).unwrap();
    assert_eq!(undecided.decision, None, "a request Posturio never decided");
}

#[test]
fn charged_tokens_fall_back_to_the_usage() {
    let record = |line: &[u8]| parse_line(line).unwrap().charged_or_used_tokens();
    let base = r#""posturio_decision":"allow""#;
    assert_eq!(
        record(
            format!(r#"{{{base},"posturio_charged_tokens":"30","posturio_tokens":"19"}}"#)
                .as_bytes()
        ),
        Some(30)
    );
    assert_eq!(
        record(format!(r#"{{{base},"posturio_tokens":"19"}}"#).as_bytes()),
        Some(19)
    );
    assert_eq!(
        record(
            format!(r#"{{{base},"posturio_input_tokens":"5","posturio_output_tokens":"6"}}"#)
                .as_bytes()
        ),
        Some(11)
    );
    assert_eq!(record(format!(r#"{{{base}}}"#).as_bytes()), None);
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn gzip_plain_junk_and_overlong_lines_are_read_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let line = br#"{"posturio_decision":"allow","posturio_consumer":"a"}"#;
    let mut plain = Vec::new();
    for _ in 0..3 {
        plain.extend_from_slice(line);
        plain.push(b'\n');
    }
    plain.extend_from_slice(b"junk\n\n");
    plain.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES + 10]);
    plain.push(b'\n');
    plain.extend_from_slice(line); // no final newline
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&plain).unwrap();
    let files = [
        write(dir.path(), "access.log", &plain),
        write(dir.path(), "access.log.1.gz", &gzip.finish().unwrap()),
    ];
    let mut seen = 0;
    let stats = read_all(&files, |record| {
        assert_eq!(record.consumer.as_deref(), Some("a"));
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, 8);
    assert_eq!(
        stats,
        Stats {
            files: 2,
            lines: 12,
            records: 8,
            skipped: 4,
            unreadable: Vec::new(),
        }
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = read_all(&["/nonexistent/access.log".to_owned()], |_| {}).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/access.log: cannot read"),
        "{error}"
    );
}

#[test]
fn a_copytruncated_file_keeps_its_first_record_and_a_truncated_gzip_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let line = br#"{"posturio_decision":"allow","posturio_consumer":"a"}"#;
    // After `copytruncate`, Envoy writes at its old offset: NULs, then the next record.
    let mut holed = vec![0u8; 4096];
    holed.extend_from_slice(line);
    holed.push(b'\n');
    let mut lines = Vec::new();
    for _ in 0..2000 {
        lines.extend_from_slice(line);
        lines.push(b'\n');
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&lines).unwrap();
    let whole = gzip.finish().unwrap();
    let truncated = whole.get(..whole.len() / 2).unwrap();
    let files = [
        write(dir.path(), "access.log", &holed),
        write(dir.path(), "access.log.1.gz", truncated),
        write(dir.path(), "access.log.2", line),
    ];
    let mut seen = 0;
    let stats = read_all(&files, |_| seen += 1).unwrap();
    assert_eq!(stats.skipped, 0);
    assert_eq!(stats.files, 3);
    assert_eq!(stats.unreadable.len(), 1, "{:?}", stats.unreadable);
    assert!(stats.unreadable[0].contains("access.log.1.gz"));
    assert!((2..2002).contains(&seen), "{seen}");
    assert!(unreadable_note(&stats).unwrap().contains("access.log.1.gz"));
}
