//! Recorded facts judged under a policy: one named case a line.

use super::*;
use crate::cli::access_log::parse_line;

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" },
                 "anthropic": { "cluster": "anthropic", "api": "anthropic" } },
  "models": { "gpt-4o": { "provider": "openai" }, "gpt-4o-mini": { "provider": "openai" },
              "claude": { "provider": "anthropic" } },
  "consumers": {
    "default": { "models": ["gpt-4o-mini"] },
    "team": { "models": ["*"], "rules": ["no-secrets", "no-email"] },
    "trial": { "models": ["gpt-4o-mini"], "mode": "audit" },
    "capped": { "models": ["*"], "max_output_tokens": 10, "max_output_tokens_action": "refuse" }
  },
  "rules": [
    { "id": "no-secrets", "detect": "secrets", "action": "block" },
    { "id": "no-email", "detect": "email", "action": "redact" },
    { "id": "jailbreak", "pattern": "ignore previous", "action": "block", "mode": "audit" }
  ]
}"#;

fn policy(json: &str) -> Policy {
    Policy::from_json(json.as_bytes()).unwrap()
}

fn fate(policy: &Policy, line: &str) -> Fate {
    judge(policy, policy, &parse_line(line.as_bytes()).unwrap())
}

fn refused(code: &str) -> Fate {
    Fate::Refused(code.to_owned())
}

#[test]
fn recorded_facts_are_judged_with_the_policys_tables() {
    let policy = policy(POLICY);
    for (name, line, expected) in [
        (
            "approved",
            r#"{"posturio_decision":"allow","posturio_consumer":"default","posturio_model":"gpt-4o-mini","posturio_api":"openai"}"#,
            Fate::Forwarded,
        ),
        (
            "not approved",
            r#"{"posturio_decision":"allow","posturio_consumer":"default","posturio_model":"gpt-4o","posturio_api":"openai"}"#,
            refused("model_not_approved"),
        ),
        (
            "audit mode records it",
            r#"{"posturio_decision":"allow","posturio_consumer":"trial","posturio_model":"gpt-4o","posturio_api":"openai"}"#,
            Fate::Forwarded,
        ),
        (
            "outside the catalogue",
            r#"{"posturio_decision":"deny","posturio_code":"model_not_found","posturio_consumer":"team","posturio_model":"gpt-5","posturio_api":"openai"}"#,
            refused("model_not_found"),
        ),
        (
            "wrong api",
            r#"{"posturio_decision":"allow","posturio_consumer":"team","posturio_model":"claude","posturio_api":"openai"}"#,
            refused("provider_api_mismatch"),
        ),
        (
            "block rule",
            r#"{"posturio_decision":"deny","posturio_code":"prompt_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_rules":"no-secrets:block"}"#,
            refused("prompt_blocked"),
        ),
        (
            "rule not in the consumer's list",
            r#"{"posturio_decision":"deny","posturio_code":"prompt_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_rules":"jailbreak:block"}"#,
            Fate::Forwarded,
        ),
        (
            "rule in audit mode",
            r#"{"posturio_decision":"audit","posturio_consumer":"default","posturio_model":"gpt-4o-mini","posturio_rules":"jailbreak:block"}"#,
            Fate::Forwarded,
        ),
        (
            "redaction",
            r#"{"posturio_decision":"allow","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_rules":"no-email:redact"}"#,
            Fate::Forwarded,
        ),
        (
            "redaction in a key",
            r#"{"posturio_decision":"deny","posturio_code":"prompt_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_rules":"no-email:block"}"#,
            refused("prompt_blocked"),
        ),
        (
            "removed consumer falls back to default",
            r#"{"posturio_decision":"allow","posturio_consumer":"gone","posturio_model":"gpt-4o","posturio_api":"openai"}"#,
            refused("model_not_approved"),
        ),
        (
            "output cap that refuses",
            r#"{"posturio_decision":"deny","posturio_code":"max_output_tokens_exceeded","posturio_consumer":"capped","posturio_model":"gpt-4o"}"#,
            refused("max_output_tokens_exceeded"),
        ),
        (
            "output cap gone",
            r#"{"posturio_decision":"deny","posturio_code":"max_output_tokens_exceeded","posturio_consumer":"team","posturio_model":"gpt-4o"}"#,
            Fate::Forwarded,
        ),
        (
            "guard outcome of a guard not configured",
            r#"{"posturio_decision":"deny","posturio_code":"guard_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_guards":"mod:flagged"}"#,
            Fate::Forwarded,
        ),
        (
            "answer rule not configured",
            r#"{"posturio_decision":"deny","posturio_code":"response_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_response_rules":"x:block"}"#,
            Fate::Forwarded,
        ),
    ] {
        assert_eq!(fate(&policy, line), expected, "{name}");
    }
}

#[test]
fn guards_and_answer_rules_follow_their_actions() {
    let with_guard = policy(
        &POLICY
            .replace(
                "\"rules\": [\n",
                r#""guards": [{ "id": "mod", "cluster": "moderation", "api": "webhook", "path": "/check" },
                              { "id": "soft", "cluster": "moderation", "api": "webhook", "path": "/check", "on_error": "allow" }],
                   "rules": [
"#,
            )
            .replace(
                r#"{ "id": "no-email", "detect": "email", "action": "redact" }"#,
                r#"{ "id": "no-email", "detect": "email", "action": "block", "direction": "both" }"#,
            ),
    );
    for (name, line, expected) in [
        (
            "flagged",
            r#"{"posturio_decision":"deny","posturio_code":"guard_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_guards":"mod:flagged"}"#,
            refused("guard_blocked"),
        ),
        (
            "error blocks",
            r#"{"posturio_decision":"deny","posturio_code":"guard_unavailable","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_guards":"mod:timeout"}"#,
            refused("guard_unavailable"),
        ),
        (
            "error allowed",
            r#"{"posturio_decision":"allow","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_guards":"soft:error"}"#,
            Fate::Forwarded,
        ),
        (
            "flag outranks error",
            r#"{"posturio_decision":"deny","posturio_code":"guard_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_guards":"mod:error,soft:flagged"}"#,
            refused("guard_blocked"),
        ),
        (
            "trial consumer",
            r#"{"posturio_decision":"audit","posturio_code":"guard_blocked","posturio_consumer":"trial","posturio_model":"gpt-4o-mini","posturio_guards":"mod:flagged"}"#,
            Fate::Forwarded,
        ),
        (
            "answer blocked",
            r#"{"posturio_decision":"deny","posturio_code":"response_blocked","posturio_consumer":"team","posturio_model":"gpt-4o","posturio_response_rules":"no-email:block"}"#,
            refused("response_blocked"),
        ),
    ] {
        assert_eq!(fate(&with_guard, line), expected, "{name}");
    }
}

#[test]
fn records_refused_for_the_request_itself_are_kept() {
    for (line, code) in [
        (
            r#"{"posturio_decision":"deny","posturio_code":"invalid_json"}"#,
            "invalid_json",
        ),
        (
            r#"{"posturio_decision":"deny","posturio_code":"invalid_api_key"}"#,
            "invalid_api_key",
        ),
        (
            r#"{"posturio_decision":"deny","posturio_code":"body_too_large","posturio_consumer":"a"}"#,
            "body_too_large",
        ),
        (
            r#"{"posturio_decision":"deny","posturio_code":"consumer_not_allowed"}"#,
            "consumer_not_allowed",
        ),
        (r#"{"posturio_decision":null}"#, "not_decided_by_posturio"),
    ] {
        assert_eq!(
            recorded_fate(&parse_line(line.as_bytes()).unwrap()),
            Recorded::Kept(code.to_owned()),
            "{line}"
        );
    }
    let failed_after = parse_line(br#"{"posturio_decision":"deny","posturio_code":"upstream_unavailable","posturio_consumer":"a"}"#).unwrap();
    assert_eq!(
        recorded_fate(&failed_after),
        Recorded::Judged(Fate::Forwarded)
    );
}

#[test]
fn what_needs_the_prompt_is_listed() {
    let old = policy(POLICY);
    let new = policy(
        &POLICY
            .replace(
                r#""rules": ["no-secrets", "no-email"]"#,
                r#""rules": ["no-secrets", "no-email", "jailbreak"]"#,
            )
            .replace(
                r#""pattern": "ignore previous""#,
                r#""pattern": "ignore (all )?previous""#,
            )
            .replace(r#""max_output_tokens": 10,"#, r#""max_output_tokens": 5,"#),
    );
    let team = unreplayable(&old, &new, "team");
    assert_eq!(team.len(), 1, "{team:?}");
    assert!(
        team[0].contains("rule \"jailbreak\" applies under NEW"),
        "{team:?}"
    );
    let default = unreplayable(&old, &new, "default");
    assert!(
        default[0].contains("rule \"jailbreak\" looks for something else"),
        "{default:?}"
    );
    let capped = unreplayable(&old, &new, "capped");
    assert!(
        capped.iter().any(|note| note.contains("output-token cap")),
        "{capped:?}"
    );
    assert!(unreplayable(&old, &old, "team").is_empty());
}

#[test]
fn a_passthrough_is_judged_with_the_policys_own_lookup() {
    let with = policy(&POLICY.replace(
        r#""rules": [
    {"#,
        r#""passthrough": [ { "method": "GET", "path_prefix": "/v1/files", "provider": "openai" } ],
  "rules": [
    {"#,
    ));
    let without = policy(POLICY);
    let line = r#"{"posturio_decision":"allow","posturio_consumer":"team","posturio_provider":"openai","method":"GET","path":"/v1/files/file-1"}"#;
    assert_eq!(fate(&with, line), Fate::Forwarded);
    assert_eq!(fate(&without, line), refused("unsupported_endpoint"));
    assert!(unreplayable(&with, &without, "team")
        .iter()
        .any(|note| note.contains("passthrough entries changed")));
}

#[test]
fn a_new_consumer_clients_may_already_name_is_said_of_default() {
    let old = policy(POLICY);
    let new = policy(&POLICY.replace(
        r#""default": {"#,
        r#""nobody": { "models": ["claude"] }, "default": {"#,
    ));
    let notes = unreplayable(&old, &new, "default");
    assert!(
        notes
            .iter()
            .any(|note| note.contains("consumer \"nobody\" is new")),
        "{notes:?}"
    );
    assert!(unreplayable(&old, &new, "team").is_empty());
}

#[test]
fn an_answer_withheld_is_recorded_as_refused_and_judged_so_again() {
    let policy = policy(POLICY);
    let line = r#"{"posturio_decision":"allow","posturio_code":"response_unreadable","posturio_consumer":"team","posturio_model":"gpt-4o"}"#;
    let record = parse_line(line.as_bytes()).unwrap();
    assert_eq!(
        recorded_fate(&record),
        Recorded::Judged(refused("response_unreadable"))
    );
    assert_eq!(fate(&policy, line), refused("response_unreadable"));
}
