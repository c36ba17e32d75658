//! The output a budgeted request asks for, read through the whole decision: per API family,
//! its fields and choices, and the values the reservation refuses. One named case a line.

use super::AskedOutput;
use crate::pipeline::classification::{classify_request, IdentityInputs};
use crate::pipeline::decision::decide_body;
use crate::pipeline::{Decision, Facts};
use crate::policy::{Code, Policy, Reply};

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" },
    "azure": { "cluster": "azure", "api": "azure_openai" },
    "bedrock": { "cluster": "bedrock", "api": "bedrock" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "claude": { "provider": "anthropic" },
    "gemini-flash": { "provider": "gemini" },
    "prod": { "provider": "azure" },
    "m": { "provider": "bedrock" }
  },
  "consumers": {
    "default": { "models": ["*"], "rules": [] },
    "budgeted": { "models": ["*"], "rules": [], "budget": { "tokens_per_day": 100000 } }
  }
}"#;

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";
const RESPONSES: &str = "/v1/responses";
const MESSAGES: &str = "/v1/messages";
const EMBEDDINGS: &str = "/v1/embeddings";
const AZURE_CHAT: &str = "/openai/deployments/prod/chat/completions?api-version=2024-10-21";
const GEMINI: &str = "/v1beta/models/gemini-flash:generateContent";
const CONVERSE: &str = "/model/m/converse";
const INVOKE: &str = "/model/m/invoke";

fn run(consumer: &str, path: &str, body: &str) -> (Result<(), Reply>, Facts) {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"));
    let headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("x-team".into(), consumer.as_bytes().to_vec()),
    ];
    let pending = classify_request(&policy, &headers, &IdentityInputs::default())
        .unwrap_or_else(|reply| panic!("{}", reply.message));
    let (decision, facts) = decide_body(&policy, &pending, body.as_bytes());
    match decision {
        Decision::Forward(_) => (Ok(()), facts),
        Decision::Refuse(reply) => (Err(reply), facts),
        Decision::AnswerLocally(_) => panic!("a POST is never answered locally"),
    }
}

/// The budgeted request is forwarded, having asked for `per_output` tokens for each of
/// `outputs`.
fn asked(path: &str, body: &str, per_output: Option<u64>, outputs: u64) {
    let (decision, facts) = run("budgeted", path, body);
    if let Err(reply) = decision {
        panic!("{path} {body}: refused: {}", reply.message);
    }
    let expected = AskedOutput {
        per_output,
        outputs,
    };
    assert_eq!(facts.asked_output, Some(expected), "{path} {body}");
}

/// The budgeted request is refused 400 `invalid_request`, naming `field`.
fn refused(path: &str, body: &str, field: &str) {
    let (decision, _) = run("budgeted", path, body);
    let Err(reply) = decision else {
        panic!("{path} {body}: forwarded");
    };
    assert_eq!(
        (reply.status(), reply.code),
        (400, Code::InvalidRequest),
        "{path} {body}: {}",
        reply.message
    );
    assert!(
        reply.message.contains(&format!("\"{field}\"")),
        "{path} {body}: {}",
        reply.message
    );
}

const ASKED: &[(&str, &str, &str, Option<u64>, u64)] = &[
    (
        "chat max_tokens",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":100000}"#,
        Some(100000),
        1,
    ),
    (
        "chat max_completion_tokens",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_completion_tokens":700}"#,
        Some(700),
        1,
    ),
    (
        "chat both: the larger",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":5,"max_completion_tokens":900}"#,
        Some(900),
        1,
    ),
    (
        "chat both, other order",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_completion_tokens":5,"max_tokens":900}"#,
        Some(900),
        1,
    ),
    (
        "chat none",
        CHAT,
        r#"{"model":"gpt-4o","messages":[]}"#,
        None,
        1,
    ),
    (
        "chat null: no limit",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":null}"#,
        None,
        1,
    ),
    (
        "chat 0: not given",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":0}"#,
        None,
        1,
    ),
    (
        "chat -0: not given",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":-0}"#,
        None,
        1,
    ),
    (
        "chat n",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":100,"n":4}"#,
        Some(100),
        4,
    ),
    (
        "chat n without tokens",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"n":3}"#,
        None,
        3,
    ),
    (
        "chat n null",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":100,"n":null}"#,
        Some(100),
        1,
    ),
    (
        "chat n 0",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":100,"n":0}"#,
        Some(100),
        1,
    ),
    (
        "chat best_of",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":10,"n":2,"best_of":5}"#,
        Some(10),
        5,
    ),
    (
        "chat u64 max",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":18446744073709551615}"#,
        Some(u64::MAX),
        1,
    ),
    (
        "azure chat",
        AZURE_CHAT,
        r#"{"messages":[],"max_completion_tokens":321,"n":2}"#,
        Some(321),
        2,
    ),
    (
        "completions prompts",
        COMPLETIONS,
        r#"{"model":"gpt-4o","prompt":["a","b","c"],"max_tokens":10,"n":2}"#,
        Some(10),
        6,
    ),
    (
        "completions one prompt",
        COMPLETIONS,
        r#"{"model":"gpt-4o","prompt":"a","max_tokens":16}"#,
        Some(16),
        1,
    ),
    (
        "responses",
        RESPONSES,
        r#"{"model":"gpt-4o","input":"hi","max_output_tokens":2048}"#,
        Some(2048),
        1,
    ),
    (
        "responses null",
        RESPONSES,
        r#"{"model":"gpt-4o","input":"hi","max_output_tokens":null}"#,
        None,
        1,
    ),
    (
        "anthropic",
        MESSAGES,
        r#"{"model":"claude","messages":[],"max_tokens":64000}"#,
        Some(64000),
        1,
    ),
    (
        "gemini",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":8192}}"#,
        Some(8192),
        1,
    ),
    (
        "gemini snake",
        GEMINI,
        r#"{"contents":[],"generation_config":{"max_output_tokens":512}}"#,
        Some(512),
        1,
    ),
    (
        "gemini both field spellings",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":5,"max_output_tokens":50}}"#,
        Some(50),
        1,
    ),
    (
        "gemini candidates",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":100,"candidateCount":3}}"#,
        Some(100),
        3,
    ),
    (
        "gemini candidates snake",
        GEMINI,
        r#"{"contents":[],"generation_config":{"candidate_count":2}}"#,
        None,
        2,
    ),
    (
        "gemini null config",
        GEMINI,
        r#"{"contents":[],"generationConfig":null}"#,
        None,
        1,
    ),
    ("gemini no config", GEMINI, r#"{"contents":[]}"#, None, 1),
    (
        "converse",
        CONVERSE,
        r#"{"messages":[],"inferenceConfig":{"maxTokens":4000}}"#,
        Some(4000),
        1,
    ),
    (
        "converse without",
        CONVERSE,
        r#"{"messages":[],"inferenceConfig":{"temperature":0.5}}"#,
        None,
        1,
    ),
    (
        "invoke: the model's own format is not read",
        INVOKE,
        r#"{"max_tokens":100000,"messages":[]}"#,
        None,
        1,
    ),
    (
        "embeddings generate nothing",
        EMBEDDINGS,
        r#"{"model":"gpt-4o","input":"hi"}"#,
        None,
        1,
    ),
];

#[test]
fn each_api_gives_its_output_fields_and_outputs() {
    for (name, path, body, per_output, outputs) in ASKED {
        println!("case: {name}");
        asked(path, body, *per_output, *outputs);
    }
}

const REFUSED: &[(&str, &str, &str, &str)] = &[
    (
        "chat string",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":"100000"}"#,
        "max_tokens",
    ),
    (
        "chat float",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":100.0}"#,
        "max_tokens",
    ),
    (
        "chat exponent",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":1e5}"#,
        "max_tokens",
    ),
    (
        "chat negative",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_completion_tokens":-1}"#,
        "max_completion_tokens",
    ),
    (
        "chat beyond u64",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":18446744073709551616}"#,
        "max_tokens",
    ),
    (
        "chat bool",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":true}"#,
        "max_tokens",
    ),
    (
        "chat object",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":{"a":1}}"#,
        "max_tokens",
    ),
    (
        "chat n string",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"n":"4"}"#,
        "n",
    ),
    (
        "chat n negative",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"n":-2}"#,
        "n",
    ),
    (
        "chat n float",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"n":2.5}"#,
        "n",
    ),
    (
        "chat n beyond u64",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"n":99999999999999999999}"#,
        "n",
    ),
    (
        "completions best_of negative",
        COMPLETIONS,
        r#"{"model":"gpt-4o","prompt":"a","best_of":-3}"#,
        "best_of",
    ),
    (
        "responses string",
        RESPONSES,
        r#"{"model":"gpt-4o","input":"hi","max_output_tokens":"9"}"#,
        "max_output_tokens",
    ),
    (
        "anthropic null",
        MESSAGES,
        r#"{"model":"claude","messages":[],"max_tokens":null}"#,
        "max_tokens",
    ),
    (
        "anthropic float",
        MESSAGES,
        r#"{"model":"claude","messages":[],"max_tokens":1.5}"#,
        "max_tokens",
    ),
    (
        "gemini string",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":"8192"}}"#,
        "generationConfig.maxOutputTokens",
    ),
    (
        "gemini negative",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":-1}}"#,
        "generationConfig.maxOutputTokens",
    ),
    (
        "gemini snake float",
        GEMINI,
        r#"{"contents":[],"generation_config":{"max_output_tokens":1.0}}"#,
        "generation_config.max_output_tokens",
    ),
    (
        "gemini candidates negative",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"candidateCount":-1}}"#,
        "candidateCount",
    ),
    (
        "gemini candidates both spellings",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"candidateCount":1,"candidate_count":8}}"#,
        "candidate_count",
    ),
    (
        "gemini both config spellings",
        GEMINI,
        r#"{"contents":[],"generationConfig":{"maxOutputTokens":5},"generation_config":{"maxOutputTokens":90000}}"#,
        "generation_config",
    ),
    (
        "gemini config not an object",
        GEMINI,
        r#"{"contents":[],"generationConfig":[]}"#,
        "generationConfig",
    ),
    (
        "converse string",
        CONVERSE,
        r#"{"messages":[],"inferenceConfig":{"maxTokens":"4000"}}"#,
        "inferenceConfig.maxTokens",
    ),
    (
        "converse negative",
        CONVERSE,
        r#"{"messages":[],"inferenceConfig":{"maxTokens":-4000}}"#,
        "inferenceConfig.maxTokens",
    ),
    (
        "converse config not an object",
        CONVERSE,
        r#"{"messages":[],"inferenceConfig":7}"#,
        "inferenceConfig",
    ),
];

#[test]
fn values_the_reservation_cannot_read_are_refused_naming_the_field() {
    for (name, path, body, field) in REFUSED {
        println!("case: {name}");
        refused(path, body, field);
    }
}

#[test]
fn a_consumer_without_a_budget_reads_nothing_and_refuses_nothing_new() {
    for (name, path, body, _) in REFUSED
        .iter()
        .filter(|(name, ..)| !name.contains("both") && !name.contains("not an object"))
    {
        let (_, facts) = run("default", path, body);
        assert_eq!(facts.asked_output, None, "{name}");
    }
    let (decision, facts) = run(
        "default",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":"100000"}"#,
    );
    assert!(
        decision.is_ok(),
        "no budget, no cap: the field is the provider's to judge"
    );
    assert_eq!(facts.asked_output, None);
}

#[test]
fn a_refusal_echoes_no_value() {
    let (decision, _) = run(
        "budgeted",
        CHAT,
        r#"{"model":"gpt-4o","messages":[],"max_tokens":"sk-secret-123"}"#,
    );
    let reply = decision.expect_err("refused");
    assert!(!reply.message.contains("sk-secret"), "{}", reply.message);
    assert!(
        reply.message.contains("consumer \"budgeted\""),
        "{}",
        reply.message
    );
}

#[test]
fn totals_saturate() {
    let asked = AskedOutput {
        per_output: Some(u64::MAX / 2),
        outputs: 3,
    };
    assert_eq!(asked.total(), Some(u64::MAX));
    assert_eq!(AskedOutput::NOT_READ.total(), None);
}
