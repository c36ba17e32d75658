//! Decisions (classification, then the body), table by table: one named case a line.

use super::*;
use crate::pipeline::classification::{classify_request, IdentityInputs};
use crate::policy::config::Mode;
use crate::policy::ApiFamily;
use serde_json::Value;

const POLICY: &str = r#"{
  "identity": { "header": "x-team" },
  "max_body_bytes": 1000,
  "providers": {
    "openai": { "cluster": "openai-cluster", "api": "openai" },
    "anthropic": { "cluster": "anthropic-cluster", "api": "anthropic" },
    "compat": { "cluster": "compat-cluster", "api": ["openai", "anthropic"], "base_path": "/v1beta/openai" }
  },
  "models": {
    "gpt-4o": { "provider": "openai" },
    "gpt-4o-mini": { "provider": "openai" },
    "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
    "claude-sonnet-4": { "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514" },
    "gemini-flash": { "provider": "compat", "upstream_model": "gemini-2.5-flash" }
  },
  "consumers": {
    "default": { "models": ["gpt-4o-mini", "fast"] },
    "search": { "models": ["gpt-4o*", "claude-*", "gemini-*"] },
    "trial": { "models": ["gpt-4o-mini"], "mode": "audit" }
  },
  "passthrough": [
    { "method": "GET", "path_prefix": "/v1/models", "provider": "openai" },
    { "method": "GET", "path_prefix": "/v1/files", "provider": "openai" }
  ]
}"#;

fn policy_from(text: &str) -> Policy {
    Policy::from_json(text.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

fn policy() -> Policy {
    policy_from(POLICY)
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut headers = vec![
        (":method".to_string(), method.as_bytes().to_vec()),
        (":path".to_string(), path.as_bytes().to_vec()),
        ("content-type".to_string(), b"application/json".to_vec()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
    );
    headers
}

/// Runs a request through both steps: its decision, or the refusal at its headers.
fn decide(
    policy: &Policy,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Decision {
    match classify_request(
        policy,
        &headers(method, path, extra),
        &IdentityInputs::default(),
    ) {
        Ok(pending) => decide_body(policy, &pending, body.as_bytes()).0,
        Err(reply) => Decision::Refuse(reply),
    }
}

/// Runs a request through both steps; `Ok(forward)` when forwarded.
fn run(
    policy: &Policy,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Result<Forward, Reply> {
    match decide(policy, method, path, extra, body) {
        Decision::Forward(forward) => Ok(forward),
        Decision::Refuse(reply) => Err(reply),
        Decision::AnswerLocally(body) => {
            panic!("answered locally: {}", String::from_utf8_lossy(&body))
        }
    }
}

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// The code of a refusal, the cluster of a forward, or the local answer.
fn outcome(decision: Decision) -> String {
    match decision {
        Decision::Forward(forward) => format!("forward {}", forward.cluster),
        Decision::Refuse(reply) => format!("{} {}", reply.status(), reply.code.as_str()),
        Decision::AnswerLocally(_) => "answer 200".to_owned(),
    }
}

macro_rules! decisions {
    ($($name:ident: $method:expr, $path:expr, [$($header:expr),*], $body:expr => $expected:expr;)*) => {$(
        #[test]
        fn $name() {
            let body: String = $body.into();
            let decision = decide(&policy(), $method, $path, &[$($header),*], &body);
            assert_eq!(outcome(decision), $expected);
        }
    )*};
}

decisions! {
    default_approved: "POST", "/v1/chat/completions", [], chat("gpt-4o-mini") => "forward openai-cluster";
    comma_in_query: "POST", "/v1/chat/completions?fields=a,b", [], chat("gpt-4o-mini") => "forward openai-cluster";
    default_not_approved: "POST", "/v1/chat/completions", [], chat("gpt-4o") => "403 model_not_approved";
    not_in_catalogue: "POST", "/v1/chat/completions", [], chat("gpt-5") => "403 model_not_found";
    upstream_name_is_not_a_catalogue_name: "POST", "/v1/messages", [("x-team", "search")], chat("claude-sonnet-4-20250514") => "403 model_not_found";
    no_case_folding: "POST", "/v1/chat/completions", [], chat("GPT-4o-mini") => "403 model_not_found";
    glob_approves: "POST", "/v1/chat/completions", [("x-team", "search")], chat("gpt-4o") => "forward openai-cluster";
    glob_approves_other_family: "POST", "/v1/messages", [("x-team", "search")], chat("claude-sonnet-4") => "forward anthropic-cluster";
    unknown_consumer_is_default: "POST", "/v1/chat/completions", [("x-team", "nobody")], chat("gpt-4o") => "403 model_not_approved";
    empty_identity_is_default: "POST", "/v1/chat/completions", [("x-team", "")], chat("gpt-4o-mini") => "forward openai-cluster";
    identity_twice: "POST", "/v1/chat/completions", [("x-team", "default"), ("x-team", "search")], chat("gpt-4o") => "400 invalid_identity";
    identity_comma_list: "POST", "/v1/chat/completions", [("x-team", "default,search")], chat("gpt-4o") => "400 invalid_identity";
    identity_case_exact_refused: "POST", "/v1/chat/completions", [("x-team", "Search")], chat("gpt-4o") => "403 identity_unusable";
    identity_other_case_of_default_refused: "POST", "/v1/chat/completions", [("x-team", "DEFAULT")], chat("gpt-4o-mini") => "403 identity_unusable";
    family_mismatch: "POST", "/v1/chat/completions", [("x-team", "search")], chat("claude-sonnet-4") => "400 provider_api_mismatch";
    family_mismatch_other_way: "POST", "/v1/messages", [], chat("gpt-4o-mini") => "400 provider_api_mismatch";
    // A model the consumer may not use is refused alike through any API: the mismatch, which
    // names the provider, is only said of a model the consumer may use.
    unapproved_on_other_api_is_not_approved: "POST", "/v1/chat/completions", [], chat("claude-sonnet-4") => "403 model_not_approved";
    audit_consumer_forwards_unapproved: "POST", "/v1/chat/completions", [("x-team", "trial")], chat("gpt-4o") => "forward openai-cluster";
    audit_consumer_still_refuses_unknown_model: "POST", "/v1/chat/completions", [("x-team", "trial")], chat("gpt-5") => "403 model_not_found";
    audit_consumer_still_refuses_bad_json: "POST", "/v1/chat/completions", [("x-team", "trial")], "{" => "400 invalid_json";
    unsupported_path: "POST", "/v1/images/generations", [], chat("gpt-4o-mini") => "404 unsupported_endpoint";
    trailing_slash: "POST", "/v1/chat/completions/", [], chat("gpt-4o-mini") => "404 unsupported_endpoint";
    encoded_path: "POST", "/v1/chat%2Fcompletions", [], chat("gpt-4o-mini") => "404 unsupported_endpoint";
    get_on_endpoint: "GET", "/v1/chat/completions", [], "" => "404 unsupported_endpoint";
    upgrade_refused: "GET", "/v1/models", [("upgrade", "websocket")], "" => "404 unsupported_endpoint";
    passthrough_get: "GET", "/v1/files", [], "" => "forward openai-cluster";
    passthrough_below_prefix: "GET", "/v1/files/file-1?x=1", [], "" => "forward openai-cluster";
    passthrough_with_body: "GET", "/v1/files", [], "{}" => "400 invalid_request";
    passthrough_wrong_method: "DELETE", "/v1/files/file-1", [], "" => "404 unsupported_endpoint";
    passthrough_dot_dot: "GET", "/v1/files/../chat/completions", [], "" => "404 unsupported_endpoint";
    passthrough_sibling: "GET", "/v1/files2", [], "" => "404 unsupported_endpoint";
    model_list_before_passthrough: "GET", "/v1/models", [], "" => "answer 200";
    model_get_before_passthrough: "GET", "/v1/models/gpt-4o-mini?x=1", [], "" => "answer 200";
    model_get_of_another_consumer: "GET", "/v1/models/gpt-4o", [], "" => "404 model_not_found";
    model_get_of_the_consumer: "GET", "/v1/models/gpt-4o", [("x-team", "search")], "" => "answer 200";
    model_get_other_family: "GET", "/v1/models/claude-sonnet-4", [("x-team", "search")], "" => "404 model_not_found";
    model_get_anthropic: "GET", "/v1/models/claude-sonnet-4", [("x-team", "search"), ("anthropic-version", "2023-06-01")], "" => "answer 200";
    model_list_with_body_is_never_forwarded: "GET", "/v1/models", [], "{}" => "404 unsupported_endpoint";
    passthrough_never_forwards_a_model_path: "GET", "/v1/models/gpt-4o/permissions", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_models_in_another_case: "GET", "/v1/Models", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_models_with_a_suffix: "GET", "/v1/models.json", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_models_with_parameters: "GET", "/v1/models;x=1", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_models_with_a_method: "GET", "/v1/models:list", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_models_below_it: "GET", "/v1/files/models", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_a_segment_holding_model: "GET", "/v1/files/tunedModels", [], "" => "404 unsupported_endpoint";
    passthrough_never_forwards_deployments: "GET", "/v1/files/deployments", [], "" => "404 unsupported_endpoint";
    model_list_head_is_no_list: "HEAD", "/v1/models", [], "" => "404 unsupported_endpoint";
    model_list_post_is_no_list: "POST", "/v1/models", [], "" => "404 unsupported_endpoint";
    gemini_list_with_body_is_unsupported: "GET", "/v1beta/models", [], "{}" => "404 unsupported_endpoint";
    gemini_list: "GET", "/v1beta/models", [("x-team", "search")], "" => "answer 200";
    model_list_identity_twice: "GET", "/v1/models", [("x-team", "default"), ("x-team", "search")], "" => "400 invalid_identity";
    empty_body: "POST", "/v1/chat/completions", [], "" => "400 invalid_json";
    missing_model: "POST", "/v1/chat/completions", [], r#"{"messages":[]}"# => "400 invalid_model";
    duplicate_model: "POST", "/v1/chat/completions", [], r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"# => "400 duplicate_key";
    body_over_limit: "POST", "/v1/chat/completions", [], format!(r#"{{"model":"fast","x":"{}"}}"#, "a".repeat(1000)) => "413 body_too_large";
    declared_length_over_limit: "POST", "/v1/chat/completions", [("content-length", "1001")], chat("fast") => "413 body_too_large";
    text_plain: "POST", "/v1/chat/completions", [("content-type", "text/plain")], chat("fast") => "415 unsupported_media_type";
    gzip: "POST", "/v1/chat/completions", [("content-encoding", "gzip")], chat("fast") => "415 unsupported_media_type";
}

#[test]
fn missing_content_type_is_415() {
    let policy = policy();
    let mut request = headers("POST", "/v1/chat/completions", &[]);
    request.retain(|(name, _)| name != "content-type");
    let reply = classify_request(&policy, &request, &IdentityInputs::default()).unwrap_err();
    assert_eq!(reply.code, Code::UnsupportedMediaType);
}

#[test]
fn alias_rewrites_only_the_model() {
    let body = r#"{"messages":[{"role":"user","content":"fast"}], "model" : "fast","n":1}"#;
    let forward = run(&policy(), "POST", "/v1/chat/completions", &[], body).unwrap();
    let rewritten = String::from_utf8(forward.body.unwrap()).unwrap();
    assert_eq!(
        rewritten,
        r#"{"messages":[{"role":"user","content":"fast"}], "model" : "gpt-4o-mini","n":1}"#
    );
    assert_eq!(forward.path, None);
    assert_eq!(forward.audited, None);
}

/// serde_json with its `raw_value` feature reads an object whose key is its private RawValue
/// token as the JSON text inside the key's string. Posturio reads such a key as any other, and
/// so does every JSON parser a provider uses: the body is forwarded with only the model swapped.
#[test]
fn serde_json_private_token_is_an_ordinary_key() {
    let body = r#"{"model":"fast","$serde_json::private::RawValue":"{\"model\":\"gpt-4o\"}","messages":[{"$serde_json::private::RawValue":"user","content":"hi"}]}"#;
    let forward = run(&policy(), "POST", "/v1/chat/completions", &[], body).unwrap();
    assert_eq!(forward.cluster, "openai-cluster");
    let rewritten: Value = serde_json::from_slice(&forward.body.unwrap()).unwrap();
    let mut original: Value = serde_json::from_slice(body.as_bytes()).unwrap();
    original["model"] = Value::from("gpt-4o-mini");
    assert_eq!(rewritten, original);
}

#[test]
fn model_without_alias_is_not_rewritten() {
    let forward = run(
        &policy(),
        "POST",
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o-mini"),
    )
    .unwrap();
    assert_eq!(forward.body, None);
}

#[test]
fn base_path_replaces_v1_and_keeps_the_query() {
    let forward = run(
        &policy(),
        "POST",
        "/v1/chat/completions?a=1&b=2",
        &[("x-team", "search")],
        &chat("gemini-flash"),
    )
    .unwrap();
    assert_eq!(forward.cluster, "compat-cluster");
    assert_eq!(
        forward.path.as_deref(),
        Some("/v1beta/openai/chat/completions?a=1&b=2")
    );
    let body: Value = serde_json::from_slice(&forward.body.unwrap()).unwrap();
    assert_eq!(body["model"], "gemini-2.5-flash");
}

#[test]
fn audit_records_what_it_let_through() {
    let forward = run(
        &policy(),
        "POST",
        "/v1/chat/completions",
        &[("x-team", "trial")],
        &chat("gpt-4o"),
    )
    .unwrap();
    let audited = forward.audited.unwrap();
    assert_eq!(audited.code, Code::ModelNotApproved);
    assert!(audited.message.contains("\"trial\""), "{}", audited.message);
}

#[test]
fn no_default_consumer_denies_unidentified_requests() {
    let policy =
        policy_from(&POLICY.replace(r#""default": { "models": ["gpt-4o-mini", "fast"] },"#, ""));
    let reply = classify_request(
        &policy,
        &headers("POST", "/v1/chat/completions", &[]),
        &IdentityInputs::default(),
    )
    .unwrap_err();
    assert_eq!(
        (reply.status(), reply.code),
        (403, Code::ConsumerNotAllowed)
    );
    let reply = classify_request(
        &policy,
        &headers("GET", "/v1/models", &[("x-team", "nobody")]),
        &IdentityInputs::default(),
    )
    .unwrap_err();
    assert_eq!(reply.code, Code::ConsumerNotAllowed);
    assert!(run(
        &policy,
        "POST",
        "/v1/chat/completions",
        &[("x-team", "search")],
        &chat("gpt-4o")
    )
    .is_ok());
}

#[test]
fn global_audit_mode_forwards_unidentified_requests() {
    let text = POLICY
        .replace(r#""default": { "models": ["gpt-4o-mini", "fast"] },"#, "")
        .replacen('{', r#"{ "mode": "audit","#, 1);
    let policy = policy_from(&text);
    let forward = run(
        &policy,
        "POST",
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o"),
    )
    .unwrap();
    assert_eq!(
        forward.audited.map(|reply| reply.code),
        Some(Code::ConsumerNotAllowed)
    );
}

#[test]
fn replies_take_the_callers_shape() {
    let policy = policy();
    let reply = run(
        &policy,
        "POST",
        "/v1/messages",
        &[],
        &chat("claude-sonnet-4"),
    )
    .unwrap_err();
    assert_eq!(reply.shape, ApiFamily::Anthropic);
    let reply = run(
        &policy,
        "POST",
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o"),
    )
    .unwrap_err();
    assert_eq!(reply.shape, ApiFamily::OpenAi);
    let reply = classify_request(
        &policy,
        &headers("POST", "/v1/nope", &[("anthropic-version", "2023-06-01")]),
        &IdentityInputs::default(),
    )
    .unwrap_err();
    assert_eq!(reply.shape, ApiFamily::Anthropic);
}

#[test]
fn refusals_never_echo_more_than_a_short_model_name() {
    let long_model = "m".repeat(10_000);
    let reply = run(
        &policy(),
        "POST",
        "/v1/chat/completions",
        &[],
        &chat(&long_model),
    )
    .unwrap_err();
    assert!(reply.message.len() < 200, "{}", reply.message.len());
}

#[test]
fn passthrough_reports_no_usage() {
    let forward = run(&policy(), "GET", "/v1/files", &[], "").unwrap();
    assert_eq!(forward.usage, None);
    let forward = run(
        &policy(),
        "POST",
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o-mini"),
    )
    .unwrap();
    assert_eq!(
        forward.usage,
        Some(crate::policy::usage::UsageFormat::OpenAiChat)
    );
}

#[test]
fn budgets_caps_and_modes_are_compiled_per_consumer() {
    use crate::policy::budget::{Limit, Unit, Window};
    use crate::policy::compiled::OutputCap;
    use crate::policy::config::CapAction;
    let text = POLICY
        .replace(
            r#""search": { "models": ["gpt-4o*", "claude-*", "gemini-*"] },"#,
            r#""search": { "models": ["gpt-4o*", "claude-*", "gemini-*"],
                "budget": { "tokens_per_day": 900000, "tokens_per_minute": 1000 },
                "max_output_tokens": 512, "max_output_tokens_action": "refuse" },"#,
        )
        .replace(
            r#""trial": { "models": ["gpt-4o-mini"], "mode": "audit" }"#,
            r#""trial": { "models": ["gpt-4o-mini"], "mode": "audit",
                "budget": { "tokens_per_hour": 5 }, "max_output_tokens": 7 }"#,
        );
    let policy = policy_from(&text);
    assert_eq!(
        policy
            .budget_for("search")
            .map(|budget| budget.limits.clone()),
        Some(vec![
            Limit {
                window: Window::Minute,
                unit: Unit::Tokens,
                amount: 1000
            },
            Limit {
                window: Window::Day,
                unit: Unit::Tokens,
                amount: 900000
            },
        ])
    );
    assert_eq!(
        policy
            .budget_for("trial")
            .map(|budget| budget.limits.clone()),
        Some(vec![Limit {
            window: Window::Hour,
            unit: Unit::Tokens,
            amount: 5
        }])
    );
    assert_eq!(policy.budget_for("default"), None);
    assert_eq!(policy.budget_for("nobody"), None);
    assert_eq!(policy.consumer_mode("trial"), Some(Mode::Audit));
    assert_eq!(policy.consumer_mode("search"), Some(Mode::Enforce));
    assert_eq!(policy.consumer_mode("nobody"), None);
    assert_eq!(
        policy.consumers.get("search").and_then(|c| c.output_cap),
        Some(OutputCap {
            limit: 512,
            action: CapAction::Refuse
        })
    );
    assert_eq!(
        policy.consumers.get("trial").and_then(|c| c.output_cap),
        Some(OutputCap {
            limit: 7,
            action: CapAction::Clamp
        })
    );
    assert!(policy.inject_stream_usage);
    // The global mode is what a consumer without its own gets.
    let audit = policy_from(&POLICY.replacen('{', r#"{ "mode": "audit","#, 1));
    assert_eq!(audit.consumer_mode("search"), Some(Mode::Audit));
}

#[test]
fn limit_mistakes_name_their_path() {
    for (consumer, path) in [
        (
            r#""max_output_tokens_action": "clamp""#,
            "consumers.x.max_output_tokens_action",
        ),
        (r#""max_output_tokens": 0"#, "consumers.x.max_output_tokens"),
        (r#""budget": {}"#, "consumers.x.budget"),
        (
            r#""budget": { "tokens_per_hour": 0 }"#,
            "consumers.x.budget.tokens_per_hour",
        ),
        (
            r#""budget": { "tokens_per_week": 1 }"#,
            "consumers.x.budget.tokens_per_week",
        ),
        (
            r#""max_output_tokens": 1.5"#,
            "consumers.x.max_output_tokens",
        ),
        (
            r#""max_output_tokens": 10, "max_output_tokens_action": "truncate""#,
            "consumers.x.max_output_tokens_action",
        ),
    ] {
        let text = POLICY.replace(
            r#""trial": {"#,
            &format!(r#""x": {{ "models": ["gpt-4o"], {consumer} }}, "trial": {{"#),
        );
        let errors = Policy::from_json(text.as_bytes()).unwrap_err();
        assert!(
            errors.iter().any(|error| error.path == path),
            "{consumer}: {errors:?}"
        );
    }
    let text = POLICY.replacen('{', r#"{ "usage": { "inject_stream_usage": "yes" },"#, 1);
    let errors = Policy::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(errors[0].path, "usage.inject_stream_usage");
}

#[test]
fn a_passthrough_refusing_a_model_path_says_where_lists_are() {
    let reply = run(&policy(), "GET", "/v1/files/models?key=k", &[], "").unwrap_err();
    assert_eq!(reply.code, Code::UnsupportedEndpoint);
    assert_eq!(
        reply.message,
        "GET /v1/files/models is not forwarded: a passthrough never forwards a path that names \
         a model list, which would show the provider's own; model lists are answered by the \
         gateway at /v1/models and /v1beta/models"
    );
    // A path no passthrough covers keeps the usual message.
    let reply = run(&policy(), "GET", "/v2/models", &[], "").unwrap_err();
    assert_eq!(
        reply.message,
        "GET /v2/models is not an endpoint this gateway serves"
    );
}

#[test]
fn a_redaction_that_grows_the_body_past_the_limit_is_refused() {
    let policy = |limit: usize| {
        let mut policy: Value = serde_json::from_str(POLICY).unwrap();
        policy["max_body_bytes"] = limit.into();
        policy["rules"] =
            serde_json::json!([{ "id": "no-email", "detect": "email", "action": "redact" }]);
        policy_from(&policy.to_string())
    };
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a@b.co c@d.co"}]}"#;
    let forwarded = run(&policy(1000), "POST", "/v1/chat/completions", &[], body).unwrap();
    let grown = forwarded.body.unwrap().len();
    assert!(
        grown > body.len(),
        "the markers are longer than the addresses"
    );
    // Exactly the rewritten size fits; the client's body fits a byte less, its rewrite not.
    assert!(run(&policy(grown), "POST", "/v1/chat/completions", &[], body).is_ok());
    let reply = run(
        &policy(grown - 1),
        "POST",
        "/v1/chat/completions",
        &[],
        body,
    )
    .unwrap_err();
    assert_eq!(reply.code, Code::BodyTooLarge, "{reply:?}");
    assert_eq!(reply.status(), 413);
    assert!(reply.message.contains("once rewritten"), "{reply:?}");
}
