//! The answer scanner of one consumer: which rules it reads, their fields and modes, the
//! marker, the window; and the config errors of `direction`.

use serde_json::json;

use super::AnswerRules;
use crate::policy::answer::{AnswerMatch, AnswerScan, AnswerText, Effect};
use crate::policy::compile::compile;
use crate::policy::config::{parse, Mode};
use crate::policy::Policy;

fn policy_of(rules: serde_json::Value) -> Policy {
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api": "openai"}},
        "models": {"gpt-4o": {"provider": "openai"}},
        "consumers": {"default": {"models": ["gpt-4o"]}},
        "rules": rules,
    });
    compile(parse(config.to_string().as_bytes()).unwrap()).unwrap()
}

fn errors(rules: serde_json::Value) -> Vec<String> {
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api": "openai"}},
        "models": {"gpt-4o": {"provider": "openai"}},
        "rules": rules,
    });
    match compile(parse(config.to_string().as_bytes()).unwrap()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn scan(policy: &Policy, mode: Mode, text: &str, kind: AnswerText) -> Vec<AnswerMatch> {
    let rules = policy.answer_rules(None);
    let scan = AnswerRules::new(policy, &rules, mode);
    let mut out = Vec::new();
    scan.scan(text, kind, &mut out);
    out
}

#[test]
fn only_rules_that_read_answers_apply() {
    let policy = policy_of(json!([
        {"id": "req", "pattern": "secret", "action": "block"},
        {"id": "resp", "pattern": "secret", "action": "redact", "direction": "response"},
        {"id": "both", "pattern": "sec", "action": "block", "direction": "both"},
        {"id": "users", "pattern": "secret", "action": "block", "direction": "both", "roles": ["user"]},
    ]));
    assert_eq!(policy.answer_rules(None), vec![1, 2]);
    let found = scan(&policy, Mode::Enforce, "a secret", AnswerText::Output);
    let rules: Vec<(usize, Effect)> = found.iter().map(|m| (m.rule, m.effect)).collect();
    // In the order of the text.
    assert_eq!(rules, vec![(2, Effect::Block), (1, Effect::Redact)]);
    assert_eq!(found.get(1).map(|m| m.range.clone()), Some(2..8));
}

#[test]
fn fields_choose_the_kinds_of_answer_text() {
    let policy = policy_of(json!([
        {"id": "out", "pattern": "x", "action": "block", "direction": "response", "fields": ["output"]},
        {"id": "tools", "pattern": "x", "action": "block", "direction": "response", "fields": ["tool_arguments"]},
    ]));
    let rules_of = |kind| {
        scan(&policy, Mode::Enforce, "x", kind)
            .iter()
            .map(|m| m.rule)
            .collect::<Vec<_>>()
    };
    assert_eq!(rules_of(AnswerText::Output), vec![0]);
    assert_eq!(rules_of(AnswerText::ToolArguments), vec![1]);
    assert_eq!(rules_of(AnswerText::Other), Vec::<usize>::new());
}

#[test]
fn audit_anywhere_records() {
    let policy = policy_of(json!([
        {"id": "a", "pattern": "x", "action": "block", "direction": "response", "mode": "audit"},
        {"id": "b", "pattern": "x", "action": "redact", "direction": "response"},
        {"id": "c", "pattern": "x", "action": "audit", "direction": "response"},
    ]));
    let effects = |mode| {
        scan(&policy, mode, "x", AnswerText::Output)
            .iter()
            .map(|m| m.effect)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        effects(Mode::Enforce),
        vec![Effect::Record, Effect::Redact, Effect::Record]
    );
    assert_eq!(
        effects(Mode::Audit),
        vec![Effect::Record, Effect::Record, Effect::Record]
    );
    let rules = policy.answer_rules(None);
    assert!(AnswerRules::new(&policy, &rules, Mode::Enforce).enforces());
    assert!(!AnswerRules::new(&policy, &rules, Mode::Audit).enforces());
}

#[test]
fn marker_and_window() {
    let policy = policy_of(json!([
        {"id": "short", "pattern": "ab?c", "action": "redact", "direction": "response"},
    ]));
    let rules = policy.answer_rules(None);
    let scan = AnswerRules::new(&policy, &rules, Mode::Enforce);
    assert_eq!(scan.marker(0), "[REDACTED:short]");
    assert_eq!(scan.window(), 256, "at least 256");
    for (rules, window) in [
        (
            json!([{"id": "k", "detect": "secrets", "action": "block", "direction": "both"}]),
            4096,
        ),
        (
            json!([{"id": "l", "pattern": "a{5000}", "action": "block", "direction": "both"}]),
            5000,
        ),
        (
            json!([{"id": "u", "pattern": "a+", "action": "block", "direction": "both"}]),
            8192,
        ),
        (
            json!([{"id": "e", "detect": "email", "action": "block", "direction": "both"}]),
            256,
        ),
    ] {
        let policy = policy_of(rules.clone());
        let indexes = policy.answer_rules(None);
        let scan = AnswerRules::new(&policy, &indexes, Mode::Enforce);
        assert_eq!(scan.window(), window, "{rules}");
    }
}

#[test]
fn direction_config_errors_name_the_path() {
    for (rules, expected) in [
        (
            json!([{"id": "r", "pattern": "x", "action": "block", "direction": "response", "roles": ["user"]}]),
            Some("rules[0].roles"),
        ),
        (
            json!([{"id": "r", "pattern": "x", "action": "block", "direction": "response", "roles": ["model"]}]),
            None,
        ),
        (
            json!([{"id": "r", "pattern": "x", "action": "block", "fields": ["output"]}]),
            Some("rules[0].fields"),
        ),
        (
            json!([{"id": "r", "pattern": "x", "action": "block", "direction": "both", "fields": ["output"]}]),
            None,
        ),
        (
            json!([{"id": "r", "pattern": "x", "action": "block", "direction": "sideways"}]),
            Some("rules[0].direction"),
        ),
    ] {
        let found = if rules[0]["direction"] == "sideways" {
            let config = json!({"providers": {}, "models": {}, "rules": rules});
            parse(config.to_string().as_bytes())
                .err()
                .map(|error| vec![error.to_string()])
                .unwrap_or_default()
        } else {
            errors(rules.clone())
        };
        match expected {
            Some(path) => assert!(
                found.iter().any(|error| error.starts_with(path)),
                "{rules}: {found:?}"
            ),
            None => assert!(found.is_empty(), "{rules}: {found:?}"),
        }
    }
}

#[test]
fn request_inspection_ignores_response_rules() {
    let policy = policy_of(json!([
        {"id": "resp", "pattern": "x", "action": "block", "direction": "response"},
    ]));
    assert!(!policy.inspects_requests(None));
    let policy = policy_with_both();
    assert!(policy.inspects_requests(None));
}

fn policy_with_both() -> Policy {
    policy_of(json!([{"id": "b", "pattern": "x", "action": "block", "direction": "both"}]))
}

#[test]
fn a_jwt_or_private_key_longer_than_the_window_is_held_from_its_start() {
    use crate::policy::answer::{StreamEditor, StreamStep};
    use crate::policy::usage::Framing;
    let policy = policy_of(json!([
        {"id": "keys", "detect": "secrets", "action": "redact", "direction": "response"}
    ]));
    let rules = policy.answer_rules(None);
    let scanner = AnswerRules::new(&policy, &rules, Mode::Enforce);
    let payload = "eyJzdWIiOiAiMSIsICJjbGFpbXMiOiAi".to_owned() + &"QUFB".repeat(2300) + "In0";
    let jwt = format!("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{payload}.c2lnbmF0dXJlX3NpZw");
    let key = format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA".repeat(900)
    );
    for secret in [jwt, key] {
        assert!(secret.len() > 9000);
        let text = format!("tok {secret} end");
        let mut body = String::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(200) {
            let piece: String = piece.iter().collect();
            let chunk =
                json!({"choices":[{"index":0,"delta":{"content":piece},"finish_reason":null}]});
            body += &format!("data: {chunk}\n\n");
        }
        body += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let mut editor =
            StreamEditor::new(crate::policy::answer::AnswerShape::OpenAiChat, Framing::Sse)
                .unwrap();
        let mut out = Vec::new();
        for chunk in body.as_bytes().chunks(300) {
            match editor.push(chunk, false, &scanner) {
                StreamStep::Send(bytes) | StreamStep::Cut(bytes) => out.extend(bytes),
            }
        }
        let (StreamStep::Send(bytes) | StreamStep::Cut(bytes)) = editor.push(b"", true, &scanner);
        out.extend(bytes);
        let mut sent = String::new();
        for line in String::from_utf8(out).unwrap().lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            sent += value["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default();
        }
        assert_eq!(sent, "tok [REDACTED:keys] end");
    }
}

#[test]
fn text_that_folds_past_the_budget_is_blocked_whole_not_folded() {
    // U+FDFA folds to eighteen characters: five MiB of it would take about 75 MiB folded,
    // past the 64 MiB ceiling of the inspection budget.
    let policy = policy_of(json!([
        {"id": "keys", "detect": "secrets", "action": "redact", "direction": "response"},
        {"id": "seen", "pattern": "secret", "action": "audit", "direction": "response"},
    ]));
    let text = "\u{FDFA}".repeat(5 * 1024 * 1024 / 3);
    let found = scan(&policy, Mode::Enforce, &text, AnswerText::Output);
    assert_eq!(
        found,
        vec![AnswerMatch {
            rule: 0,
            range: 0..text.len(),
            effect: Effect::Block
        }]
    );
    // Audit only: recorded, not blocked.
    let found = scan(&policy, Mode::Audit, &text, AnswerText::Output);
    assert_eq!(found.first().map(|m| m.effect), Some(Effect::Record));
}
