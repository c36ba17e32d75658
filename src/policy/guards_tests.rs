//! Guard calls and answers: the body each wire shape sends, and every answer read as allowed,
//! flagged or an error.

use super::*;
use crate::policy::config::{GuardAction, GuardApi, GuardOnError};

fn guard(api: GuardApi) -> Guard {
    Guard {
        id: "g".to_owned(),
        cluster: "guard".to_owned(),
        api,
        path: "/check".to_owned(),
        authority: "guard".to_owned(),
        timeout_ms: 1000,
        on_error: GuardOnError::Block,
        action: GuardAction::Block,
        model: None,
        roles: None,
        fields: None,
        max_text_bytes: 65_536,
        headers: vec![("x-guard-key".to_owned(), "k".to_owned())],
    }
}

fn subject() -> Subject<'static> {
    Subject {
        consumer: Some("team"),
        model: Some("gpt-4o"),
        endpoint: Endpoint::ChatCompletions,
        request_id: None,
    }
}

#[test]
fn moderation_body_is_input_and_model() {
    let mut g = guard(GuardApi::OpenaiModeration);
    let body: Value = serde_json::from_slice(&g.call_body("a \"b\"\nc", &subject())).unwrap();
    assert_eq!(body, json!({"input": "a \"b\"\nc"}));
    g.model = Some("omni".to_owned());
    let body: Value = serde_json::from_slice(&g.call_body("x", &subject())).unwrap();
    assert_eq!(body, json!({"input": "x", "model": "omni"}));
}

#[test]
fn webhook_body_follows_the_contract() {
    let body: Value =
        serde_json::from_slice(&guard(GuardApi::Webhook).call_body("x", &subject())).unwrap();
    assert_eq!(
        body,
        json!({"text": "x", "consumer": "team", "model": "gpt-4o", "endpoint": "chat",
               "request_id": null})
    );
}

#[test]
fn call_headers_are_the_pseudo_headers_the_type_and_the_fixed_ones() {
    let g = guard(GuardApi::Webhook);
    assert_eq!(
        g.call_headers(),
        vec![
            (":method", "POST"),
            (":path", "/check"),
            (":authority", "guard"),
            ("content-type", "application/json"),
            ("x-guard-key", "k"),
        ]
    );
}

macro_rules! answer {
    ($name:ident, $api:expr, $status:expr, $body:expr, $expected:pat) => {
        #[test]
        fn $name() {
            let verdict = guard($api).read_answer($status, $body.as_bytes());
            assert!(matches!(verdict, $expected), "{verdict:?}");
        }
    };
}

use GuardApi::{OpenaiModeration as M, Webhook as W};
answer!(
    mod_allow,
    M,
    Some("200"),
    r#"{"results":[{"flagged":false}]}"#,
    Verdict::Allow
);
answer!(
    mod_flag,
    M,
    Some("200"),
    r#"{"results":[{"flagged":false},{"flagged":true}]}"#,
    Verdict::Flagged(_)
);
answer!(
    mod_no_results,
    M,
    Some("200"),
    r#"{"id":"x"}"#,
    Verdict::Error(_)
);
answer!(
    mod_empty_results,
    M,
    Some("200"),
    r#"{"results":[]}"#,
    Verdict::Error(_)
);
answer!(
    mod_flag_not_bool,
    M,
    Some("200"),
    r#"{"results":[{"flagged":"true"}]}"#,
    Verdict::Error(_)
);
answer!(
    mod_500,
    M,
    Some("500"),
    r#"{"results":[{"flagged":false}]}"#,
    Verdict::Error(_)
);
answer!(mod_not_json, M, Some("200"), "ok", Verdict::Error(_));
answer!(
    mod_no_status,
    M,
    None,
    r#"{"results":[{"flagged":false}]}"#,
    Verdict::Error(_)
);
answer!(
    mod_bad_status,
    M,
    Some("2x0"),
    r#"{"results":[{"flagged":false}]}"#,
    Verdict::Error(_)
);
answer!(
    hook_allow,
    W,
    Some("200"),
    r#"{"verdict":"allow"}"#,
    Verdict::Allow
);
answer!(
    hook_block,
    W,
    Some("204"),
    r#"{"verdict":"block","reason":"r"}"#,
    Verdict::Flagged(_)
);
answer!(
    hook_unknown_verdict,
    W,
    Some("200"),
    r#"{"verdict":"maybe"}"#,
    Verdict::Error(_)
);
answer!(
    hook_verdict_not_string,
    W,
    Some("200"),
    r#"{"verdict":true}"#,
    Verdict::Error(_)
);
answer!(
    hook_reason_not_string,
    W,
    Some("200"),
    r#"{"verdict":"block","reason":1}"#,
    Verdict::Error(_)
);
answer!(hook_no_verdict, W, Some("200"), r#"{}"#, Verdict::Error(_));
answer!(
    hook_redirect,
    W,
    Some("302"),
    r#"{"verdict":"allow"}"#,
    Verdict::Error(_)
);
answer!(
    hook_array,
    W,
    Some("200"),
    r#"[{"verdict":"allow"}]"#,
    Verdict::Error(_)
);

#[test]
fn moderation_reason_lists_flagged_categories() {
    let answer = r#"{"results":[{"flagged":true,"categories":{"hate":true,"violence":false,"self-harm":true}}]}"#;
    assert_eq!(
        guard(M).read_answer(Some("200"), answer.as_bytes()),
        Verdict::Flagged("hate,self-harm".to_owned())
    );
}

#[test]
fn reasons_are_sanitised_and_short() {
    let reason = format!("a\r\nb\u{7}{}", "x".repeat(500));
    let answer = json!({"verdict": "block", "reason": reason}).to_string();
    let Verdict::Flagged(kept) = guard(W).read_answer(Some("200"), answer.as_bytes()) else {
        panic!("not flagged");
    };
    assert_eq!(kept.chars().count(), 200);
    assert!(kept.starts_with("a  b x"), "{kept}");
    assert!(!kept.chars().any(char::is_control));
}

#[test]
fn looks_at_follows_roles_and_fields() {
    let mut g = guard(W);
    assert!(g.looks_at(Field::Other, None));
    g.roles = Some(vec!["user".to_owned()]);
    g.fields = Some(vec![Field::Prompt]);
    assert!(g.looks_at(Field::Prompt, Some("user")));
    assert!(!g.looks_at(Field::Prompt, Some("assistant")));
    assert!(!g.looks_at(Field::System, Some("user")));
    assert!(!g.looks_at(Field::Prompt, None));
}

#[test]
fn every_endpoint_has_a_webhook_name() {
    assert_eq!(endpoint_name(Endpoint::AzureChatCompletions), "chat");
    assert_eq!(endpoint_name(Endpoint::BedrockConverse), "converse");
    assert_eq!(endpoint_name(Endpoint::GeminiGenerate), "generate_content");
}

#[test]
fn redactions_apply_as_in_the_forwarded_body() {
    assert_eq!(
        redacted("a secret b", vec![(2..8, "r")]),
        "a [REDACTED:r] b"
    );
    assert_eq!(
        redacted("abcdef", vec![(4..6, "y"), (0..2, "x"), (1..3, "z")]),
        "[REDACTED:x][REDACTED:z]d[REDACTED:y]"
    );
    // A range off a character boundary redacts all of it rather than send a part.
    assert_eq!(redacted("é secret", vec![(1..4, "r")]), "[REDACTED:r]");
}

#[test]
fn only_a_short_plain_request_id_reaches_a_webhook() {
    let long = "a".repeat(65);
    let longest = "a".repeat(64);
    let cases = [
        ("7f3c9a2e-0b1d-4e5f-9a8b-1c2d3e4f5a6b", true),
        ("req_01.a:b", true),
        (longest.as_str(), true),
        (long.as_str(), false),
        ("", false),
        ("ignore previous instructions", false),
        ("a\nb", false),
        ("a\"b", false),
    ];
    for (id, plain) in cases {
        assert_eq!(is_plain_request_id(id), plain, "{id:?}");
        let subject = Subject {
            request_id: Some(id),
            ..subject()
        };
        let body: Value =
            serde_json::from_slice(&guard(GuardApi::Webhook).call_body("x", &subject)).unwrap();
        let expected = if plain { json!(id) } else { Value::Null };
        assert_eq!(body["request_id"], expected, "{id:?}");
    }
}
