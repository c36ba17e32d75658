//! What inspection must see in every API family, whatever else the body holds: a secret in
//! any string, with other strings after it; opaque parts wherever the provider reads content,
//! under any spelling; the body's `model` on the families that take it from the path; the
//! role of a turn that names none.

use serde_json::{json, Value};

use crate::policy::{Code, Decision, Forward, Policy, Reply};

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "providers": {
    "openai": { "cluster": "openai", "api": ["openai", "azure_openai"] },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" },
    "bedrock": { "cluster": "bedrock", "api": "bedrock" }
  },
  "models": {
    "gpt-4o-mini": { "provider": "openai" },
    "claude": { "provider": "anthropic" },
    "gemini-flash": { "provider": "gemini", "upstream_model": "gemini-2.5-flash" },
    "gemini-pro": { "provider": "gemini" },
    "claude-bedrock": { "provider": "bedrock" }
  },
  "consumers": {
    "default": { "models": ["*"] },
    "images": { "models": ["*"], "opaque_content": "allow" }
  },
  "rules": [
    { "id": "no-secrets", "detect": "secrets", "action": "block" },
    { "id": "no-email", "detect": "email", "action": "redact" },
    { "id": "jailbreak", "pattern": "(?i)ignore (all )?previous instructions", "action": "block", "roles": ["user"] }
  ]
}"#;

/// A private key pasted without its END line, as a truncated paste looks.
const KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7vQ3Jk1k0VbSs3Xr8i2";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const JAILBREAK: &str = "ignore previous instructions";

fn run(team: &str, path: &str, body: &Value) -> Result<Forward, Reply> {
    let policy = Policy::from_json(POLICY.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), path.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("x-team".into(), team.as_bytes().to_vec()),
    ];
    let pending = policy.on_headers(&headers, None)?;
    let body = body.to_string();
    match policy.on_body(&pending, body.as_bytes()).0 {
        Decision::Forward(forward) => Ok(forward),
        Decision::Refuse(reply) => Err(reply),
    }
}

/// The code of the refusal, or `None` when the request was forwarded.
fn refused(team: &str, (path, body): (&str, Value)) -> Option<(Code, Option<String>)> {
    match run(team, path, &body) {
        Ok(_) => None,
        Err(reply) => Some((reply.code, reply.rule)),
    }
}

fn blocked(rule: &str) -> Option<(Code, Option<String>)> {
    Some((Code::PromptBlocked, Some(rule.to_owned())))
}

fn opaque() -> Option<(Code, Option<String>)> {
    Some((Code::OpaqueContent, None))
}

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";
const MESSAGES: &str = "/v1/messages";
const GEMINI: &str = "/v1beta/models/gemini-flash:generateContent";
const GEMINI_COUNT: &str = "/v1beta/models/gemini-flash:countTokens";
const AZURE: &str = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
const CONVERSE: &str = "/model/claude-bedrock/converse";
const INVOKE: &str = "/model/claude-bedrock/invoke";

/// Each family's request with `text` as the user's turn, followed by more strings.
fn chat(text: &str) -> (&'static str, Value) {
    (
        CHAT,
        json!({"model": "gpt-4o-mini", "messages": [{"content": text, "role": "user"},
            {"role": "assistant", "content": "ok"}], "stream": true, "user": "u-1"}),
    )
}

fn azure(text: &str) -> (&'static str, Value) {
    (
        AZURE,
        json!({"messages": [{"content": text, "role": "user"}], "stream": false}),
    )
}

fn responses(text: &str) -> (&'static str, Value) {
    (
        RESPONSES,
        json!({"model": "gpt-4o-mini", "input": [{"content": [{"text": text, "type": "input_text"}], "role": "user"}],
            "store": false}),
    )
}

fn anthropic(text: &str) -> (&'static str, Value) {
    (
        MESSAGES,
        json!({"model": "claude", "max_tokens": 5, "messages": [{"content": [{"text": text, "type": "text"}], "role": "user"}],
            "stream": true}),
    )
}

fn gemini(text: &str) -> (&'static str, Value) {
    (
        GEMINI,
        json!({"contents": [{"parts": [{"text": text}], "role": "user"}], "generationConfig": {"stopSequences": ["x"]}}),
    )
}

fn converse(text: &str) -> (&'static str, Value) {
    (
        CONVERSE,
        json!({"messages": [{"content": [{"text": text}], "role": "user"}], "inferenceConfig": {"maxTokens": 5}}),
    )
}

fn invoke(text: &str) -> (&'static str, Value) {
    (
        INVOKE,
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"content": [{"text": text, "type": "text"}], "role": "user"}]}),
    )
}

macro_rules! cases {
    ($($name:ident: $team:expr, $request:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_eq!(refused($team, $request), $expected);
        }
    )*};
}

// A secret is reported whatever string follows it: a key block without its END line used to
// run on into the next string (`role`, `stream`, ...), and the match that crossed was dropped.
cases! {
    key_without_end_chat: "default", chat(KEY) => blocked("no-secrets");
    key_without_end_azure: "default", azure(KEY) => blocked("no-secrets");
    key_without_end_responses: "default", responses(KEY) => blocked("no-secrets");
    key_without_end_anthropic: "default", anthropic(KEY) => blocked("no-secrets");
    key_without_end_gemini: "default", gemini(KEY) => blocked("no-secrets");
    key_without_end_converse: "default", converse(KEY) => blocked("no-secrets");
    key_without_end_invoke: "default", invoke(KEY) => blocked("no-secrets");
    key_end_in_next_message: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": KEY},
        {"role": "user", "content": "MIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"}]})) => blocked("no-secrets");
    key_begin_line_alone: "default", chat("-----BEGIN OPENSSH PRIVATE KEY-----") => blocked("no-secrets");
    key_then_base64_like_key: "default", (CHAT, json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": KEY}], "AAAA": "BBBB"})) => blocked("no-secrets");
    token_in_last_string: "default", chat(&format!("x {AWS}")) => blocked("no-secrets");
    no_secret_chat: "default", chat("hello") => None;
    no_secret_gemini: "default", gemini("hello") => None;
}
