//! A model served through a pool cluster, end to end over the fake host: the request filter
//! forwards with the first target's model and writes the plan; the upstream filter of each
//! attempt turns that into exactly what the same policy with that target as the model's only
//! provider would have forwarded — path and body, byte for byte.

// Test arithmetic (small lengths) cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use std::rc::Rc;

use serde_json::{json, Value};

use super::*;
use crate::pipeline::attempt::{Attempt, TARGET_METADATA};
use crate::pipeline::FakeHost;
use crate::policy::plan::Plan;

/// A provider: name, API families, `base_path`.
type ProviderSpec<'a> = (&'a str, &'a [&'a str], Option<&'a str>);

fn policy_json(
    providers: &[ProviderSpec],
    model: &str,
    serving: Value,
    consumer: Value,
    rules: Value,
) -> Vec<u8> {
    let providers: serde_json::Map<String, Value> = providers
        .iter()
        .map(|(name, api, base_path)| {
            let mut provider = json!({ "cluster": name, "api": api });
            if let Some(base_path) = base_path {
                provider["base_path"] = json!(base_path);
            }
            ((*name).to_owned(), provider)
        })
        .collect();
    serde_json::to_vec(&json!({
        "providers": providers,
        "models": { model: serving },
        "consumers": { "default": consumer },
        "rules": rules,
    }))
    .unwrap()
}

/// What the request filter sent on: its headers and body (the client's when unchanged).
struct Sent {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    plan: Option<Vec<u8>>,
}

fn send(policy: &[u8], path: &str, body: &str) -> Sent {
    let policy = Rc::new(Policy::from_json(policy).unwrap());
    let host = FakeHost::request("POST", path, &[], body);
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(body.is_empty());
    if !body.is_empty() {
        filter.on_request_body(body.len(), true);
    }
    assert!(
        host.replies.borrow().is_empty(),
        "{:?}",
        host.replies.borrow()
    );
    let body = host.new_body.borrow().clone().unwrap_or(host.body.clone());
    let headers = host.headers.borrow().clone();
    let plan = host.property_value("posturio_plan").map(String::into_bytes);
    Sent {
        headers,
        body,
        plan,
    }
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

/// One attempt's upstream filter over what the request filter sent: its headers and body.
fn attempt(sent: &Sent, provider: &str) -> FakeHost {
    let host = FakeHost::new(sent.headers.clone(), sent.body.clone());
    if let Some(plan) = &sent.plan {
        host.properties
            .borrow_mut()
            .push(("posturio_plan".into(), plan.clone()));
    }
    host.properties
        .borrow_mut()
        .push((TARGET_METADATA.join("."), provider.as_bytes().to_vec()));
    let mut attempt = Attempt::new(&host, Rc::default());
    let flow = attempt.on_request_headers(sent.body.is_empty());
    if flow == Flow::Pause {
        attempt.on_request_body(sent.body.len(), true);
    }
    assert!(
        host.replies.borrow().is_empty(),
        "{:?}",
        host.replies.borrow()
    );
    host
}

/// For each target: the attempt's path, length and body equal what the single-provider
/// policy forwards. Returns the plan.
fn assert_each_target_gets_its_own(
    providers: &[ProviderSpec],
    targets: &[(&str, Option<&str>)],
    (consumer, rules): (Value, Value),
    (path, body): (&str, &str),
) -> Plan {
    let model = "m-1";
    let pool = json!({
        "cluster": "pool",
        "targets": targets
            .iter()
            .map(|(provider, upstream)| match upstream {
                Some(upstream) => json!({ "provider": provider, "upstream_model": upstream }),
                None => json!({ "provider": provider }),
            })
            .collect::<Vec<_>>(),
    });
    let path = path.replace("{model}", model);
    let body = body.replace("{model}", model);
    let pooled = policy_json(providers, model, pool, consumer.clone(), rules.clone());
    let sent = send(&pooled, &path, &body);
    assert_eq!(
        header(&sent.headers, "x-posturio-cluster"),
        Some(&b"pool"[..])
    );
    let plan = Plan::from_json(sent.plan.as_deref().expect("a plan")).expect("a readable plan");
    assert_eq!(plan.model, model);
    for (provider, upstream) in targets {
        let mut single = json!({ "provider": provider });
        if let Some(upstream) = upstream {
            single["upstream_model"] = json!(upstream);
        }
        let alone = policy_json(providers, model, single, consumer.clone(), rules.clone());
        let expected = send(&alone, &path, &body);
        let host = attempt(&sent, provider);
        let got_body = host.new_body.borrow().clone().unwrap_or(sent.body.clone());
        assert_eq!(
            String::from_utf8_lossy(&got_body),
            String::from_utf8_lossy(&expected.body),
            "body for {provider}"
        );
        let headers = host.headers.borrow();
        assert_eq!(
            header(&headers, ":path"),
            header(&expected.headers, ":path"),
            "path for {provider}"
        );
        assert_eq!(
            header(&headers, "x-posturio-target"),
            Some(provider.as_bytes())
        );
        if !body.is_empty() {
            assert_eq!(
                header(&headers, "content-length"),
                Some(expected.body.len().to_string().as_bytes()),
                "length for {provider}"
            );
        }
    }
    plan
}

fn anyone() -> (Value, Value) {
    (json!({ "models": ["*"] }), json!([]))
}

#[test]
fn openai_body_model_with_base_path() {
    let plan = assert_each_target_gets_its_own(
        &[
            ("openai", &["openai"], None),
            ("azure", &["openai", "azure_openai"], Some("/openai/v1")),
        ],
        &[
            ("openai", Some("gpt-4o-2024-08-06")),
            ("azure", Some("gpt-4o-prod")),
        ],
        anyone(),
        (
            "/v1/chat/completions",
            r#"{"model":"{model}","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    );
    assert_eq!(plan.spans, vec![[9, 28]]);
    let azure = plan.target("azure").unwrap();
    assert_eq!(azure.path, "/openai/v1/chat/completions");
    assert_eq!(azure.texts, vec!["\"gpt-4o-prod\"".to_owned()]);
    assert_eq!(plan.first().unwrap().path, "/v1/chat/completions");
}

#[test]
fn gemini_path_model_and_its_inner_copies() {
    let plan = assert_each_target_gets_its_own(
        &[
            ("vertex-a", &["gemini"], None),
            ("vertex-b", &["gemini"], None),
        ],
        &[("vertex-a", None), ("vertex-b", Some("gemini-2.5-pro"))],
        anyone(),
        (
            "/v1beta/models/{model}:countTokens",
            r#"{"generateContentRequest":{"model":"models/{model}","contents":[{"parts":[{"text":"hi"}]}]}}"#,
        ),
    );
    assert_eq!(plan.spans.len(), 1);
    assert_eq!(
        plan.target("vertex-b").unwrap().texts,
        vec!["\"models/gemini-2.5-pro\"".to_owned()]
    );
    assert_eq!(
        plan.target("vertex-b").unwrap().path,
        "/v1beta/models/gemini-2.5-pro:countTokens"
    );
}

#[test]
fn azure_deployment_path() {
    let plan = assert_each_target_gets_its_own(
        &[
            ("azure-east", &["azure_openai"], None),
            ("azure-west", &["azure_openai"], None),
        ],
        &[
            ("azure-east", Some("gpt4o-east")),
            ("azure-west", Some("gpt4o-west")),
        ],
        anyone(),
        (
            "/openai/deployments/{model}/chat/completions?api-version=2024-10-21",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    );
    assert!(plan.spans.is_empty());
    assert_eq!(
        plan.target("azure-west").unwrap().path,
        "/openai/deployments/gpt4o-west/chat/completions?api-version=2024-10-21"
    );
}

#[test]
fn bedrock_path_model() {
    assert_each_target_gets_its_own(
        &[
            ("bedrock-us", &["bedrock"], None),
            ("bedrock-eu", &["bedrock"], None),
        ],
        &[
            ("bedrock-us", Some("us.anthropic.claude-sonnet-4:0")),
            ("bedrock-eu", Some("eu.anthropic.claude-sonnet-4:0")),
        ],
        anyone(),
        (
            "/model/{model}/converse",
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
        ),
    );
}

#[test]
fn redactions_and_output_caps_before_and_after_the_model() {
    let rules = json!([{ "id": "no-email", "detect": "email", "action": "redact" }]);
    let consumer = json!({ "models": ["*"], "max_output_tokens": 100 });
    let targets = [("openai", Some("gpt-4o-2024-08-06")), ("azure", Some("a"))];
    let providers: [ProviderSpec; 2] = [
        ("openai", &["openai"], None),
        ("azure", &["openai"], Some("/openai/v1")),
    ];
    for body in [
        // The email (made longer) before the model, the cap (made shorter) after it.
        r#"{"messages":[{"role":"user","content":"mail jane@example.com"}],"model":"{model}","max_tokens":100000}"#,
        // Both after it; the cap added at the end.
        r#"{"model":"{model}","messages":[{"role":"user","content":"to jane@example.com"}]}"#,
        // Both before it.
        r#"{"max_tokens":5000,"messages":[{"role":"user","content":"a@b.example"}],"model":"{model}"}"#,
    ] {
        let plan = assert_each_target_gets_its_own(
            &providers,
            &targets,
            (consumer.clone(), rules.clone()),
            ("/v1/chat/completions", body),
        );
        assert_eq!(plan.spans.len(), 1, "{body}");
    }
}

#[test]
fn the_same_name_everywhere_sends_the_body_untouched_upstream() {
    let sent = {
        let pool =
            json!({ "cluster": "pool", "targets": [{ "provider": "a" }, { "provider": "b" }] });
        let (consumer, rules) = anyone();
        let policy = policy_json(
            &[("a", &["openai"], None), ("b", &["openai"], None)],
            "m",
            pool,
            consumer,
            rules,
        );
        send(
            &policy,
            "/v1/chat/completions",
            r#"{"model":"m","messages":[]}"#,
        )
    };
    let host = attempt(&sent, "b");
    assert!(host.new_body.borrow().is_none());
    assert!(!host.calls.borrow().contains(&"replace_request_body"));
}

#[test]
fn a_request_of_a_family_one_target_lacks_is_refused_like_a_single_provider() {
    let pool = json!({ "cluster": "pool", "targets": [{ "provider": "a" }, { "provider": "b" }] });
    let (consumer, rules) = anyone();
    let policy = policy_json(
        &[
            ("a", &["openai", "anthropic"], None),
            ("b", &["openai"], None),
        ],
        "m",
        pool,
        consumer,
        rules,
    );
    let policy = Rc::new(Policy::from_json(&policy).unwrap());
    let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let host = FakeHost::request("POST", "/v1/messages", &[], body);
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(body.len(), true);
    let replies = host.replies.borrow();
    assert_eq!(replies[0].code, crate::policy::Code::ProviderApiMismatch);
    assert_eq!(replies[0].status(), 400);
    assert!(host.property_value("posturio_plan").is_none());
}

#[test]
fn a_model_without_targets_writes_no_plan() {
    let (consumer, rules) = anyone();
    let policy = policy_json(
        &[("a", &["openai"], None)],
        "m",
        json!({ "provider": "a", "upstream_model": "n" }),
        consumer,
        rules,
    );
    let sent = send(
        &policy,
        "/v1/chat/completions",
        r#"{"model":"m","messages":[]}"#,
    );
    assert!(sent.plan.is_none());
}

const POOL_POLICY: &str = r#"{
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "azure": { "cluster": "azure", "api": ["openai", "azure_openai"], "base_path": "/openai/v1" }
  },
  "models": {
    "gpt-4o": {
      "cluster": "gpt-4o-pool",
      "targets": [
        { "provider": "openai", "upstream_model": "gpt-4o-2024-08-06" },
        { "provider": "azure", "upstream_model": "gpt-4o-prod" }
      ]
    },
    "solo": { "provider": "openai" }
  },
  "consumers": { "team": { "models": ["*"], "budget": { "tokens_per_day": 1000, "default_output_tokens": 1 } } },
  "identity": { "header": "x-posturio-consumer" }
}"#;

const USAGE: &str = r#"{"usage":{"prompt_tokens":6,"completion_tokens":4}}"#;

/// A request for `model` answered with `status` and `USAGE`; `state` is the filter state
/// the upstream side left (and `response.code_details`).
fn exchange(model: &str, status: &str, state: &[(&str, &str)]) -> FakeHost {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let mut host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", "team")],
        &body,
    );
    host.upstream_headers = vec![
        (":status".into(), status.as_bytes().to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    *host.upstream_chunks.borrow_mut() = vec![USAGE.as_bytes().to_vec()];
    let policy = Rc::new(Policy::from_json(POOL_POLICY.as_bytes()).unwrap());
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(body.len(), true);
    for (key, value) in state {
        host.properties
            .borrow_mut()
            .push(((*key).to_owned(), value.as_bytes().to_vec()));
    }
    if filter.on_response_headers(false) == Flow::Continue {
        filter.on_response_body(USAGE.len(), true);
    }
    filter.on_log();
    host
}

#[test]
fn the_serving_provider_names_the_labels_the_access_log_and_the_charge() {
    let host = exchange(
        "gpt-4o",
        "200",
        &[
            ("response.code_details", "via_upstream"),
            ("posturio_served", "azure"),
            ("posturio_attempts", "2"),
        ],
    );
    assert!(host.answers.borrow().is_empty());
    assert_eq!(
        host.header("x-posturio-cluster").as_deref(),
        Some("gpt-4o-pool")
    );
    assert_eq!(
        host.property_value("posturio.provider").as_deref(),
        Some("azure")
    );
    assert_eq!(
        host.property_value("posturio.upstream_model").as_deref(),
        Some("gpt-4o-prod")
    );
    assert_eq!(
        host.property_value("posturio.attempts").as_deref(),
        Some("2")
    );
    let by = ".consumer=team;.model=gpt-4o;.provider=azure;";
    assert_eq!(host.counter(&format!("posturio_input_tokens_total{by}")), 6);
    assert_eq!(
        host.counter(&format!("posturio_upstream_responses_total{by}.class=2xx;")),
        1
    );
    assert_eq!(
        host.budget_used("team", crate::policy::budget::Window::Day),
        10,
        "charged once"
    );
}

#[test]
fn a_pool_answer_without_its_upstream_filter_never_reaches_the_client() {
    let host = exchange(
        "gpt-4o",
        "200",
        &[("response.code_details", "via_upstream")],
    );
    let answers = host.answers.borrow();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].status, 502);
    let body = String::from_utf8_lossy(&answers[0].body);
    assert!(body.contains("internal_error"), "{body}");
    // What failed, for whom, and what to quote; never the cluster's name.
    assert!(
        body.contains("the gateway's routing for model gpt-4o is misconfigured"),
        "{body}"
    );
    assert!(body.contains("not a fault in your request"), "{body}");
    assert!(!body.contains("gpt-4o-pool"), "{body}");
    assert!(!body.contains("upstream filter"), "{body}");
    assert!(host.delivered.borrow().is_empty());
    assert_eq!(
        host.property_value("posturio.code").as_deref(),
        Some("internal_error")
    );
    assert_eq!(
        host.counter("posturio_replaced_responses_total.model=gpt-4o;.code=internal_error;"),
        1
    );
}

#[test]
fn envoys_own_answer_becomes_upstream_unavailable_with_its_status() {
    for model in ["gpt-4o", "solo"] {
        let host = exchange(
            model,
            "503",
            &[(
                "response.code_details",
                "upstream_reset_before_response_started{connection_failure}",
            )],
        );
        let answers = host.answers.borrow();
        assert_eq!(answers.len(), 1, "{model}");
        assert_eq!(answers[0].status, 503);
        let body: Value = serde_json::from_slice(&answers[0].body).unwrap();
        assert_eq!(body["error"]["code"], "upstream_unavailable");
        assert_eq!(
            body["error"]["message"],
            format!("no provider could answer for model {model}: connection failure")
        );
        assert!(answers[0].headers.contains(&(
            "x-posturio-code".to_owned(),
            "upstream_unavailable".to_owned()
        )));
    }
}

#[test]
fn a_provider_error_passes_as_it_is() {
    let host = exchange(
        "gpt-4o",
        "429",
        &[
            ("response.code_details", "via_upstream"),
            ("posturio_served", "azure"),
            ("posturio_attempts", "2"),
        ],
    );
    assert!(host.answers.borrow().is_empty());
    assert_eq!(
        host.counter(
            "posturio_upstream_responses_total.consumer=team;.model=gpt-4o;.provider=azure;.class=4xx;"
        ),
        1
    );
}

#[test]
fn another_filters_own_answer_passes_as_it_is() {
    for details in ["request_rate_limited", "ext_authz_denied"] {
        let host = exchange("solo", "429", &[("response.code_details", details)]);
        assert!(host.answers.borrow().is_empty(), "{details}");
    }
    for details in [
        "no_healthy_upstream",
        "upstream_response_timeout",
        "overflow",
    ] {
        let host = exchange("gpt-4o", "503", &[("response.code_details", details)]);
        assert_eq!(host.answers.borrow().len(), 1, "{details}");
    }
}

/// The request filter's refusal of `body` for a pool whose second target's model name is
/// longer than the first's, under `max_body_bytes`; `None` when it forwarded.
fn refusal_under_limit(limit: usize, body: &str) -> Option<crate::policy::Reply> {
    let pool = json!({ "cluster": "pool", "targets": [
        { "provider": "a", "upstream_model": "m" },
        { "provider": "b", "upstream_model": "a-much-longer-model-name" },
    ] });
    let (consumer, rules) = anyone();
    let mut policy: Value = serde_json::from_slice(&policy_json(
        &[("a", &["openai"], None), ("b", &["openai"], None)],
        "pooled",
        pool,
        consumer,
        rules,
    ))
    .unwrap();
    policy["max_body_bytes"] = json!(limit);
    let policy = Rc::new(Policy::from_json(&serde_json::to_vec(&policy).unwrap()).unwrap());
    let host = FakeHost::request("POST", "/v1/chat/completions", &[], body);
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(body.len(), true);
    let reply = host.replies.borrow().first().cloned();
    reply
}

#[test]
fn no_target_is_sent_a_body_over_the_limit() {
    let body = r#"{"model":"pooled","messages":[]}"#;
    // The second target's body is the longest: its model name is the longest.
    let longest = body.len() + "a-much-longer-model-name".len() - "pooled".len();
    assert_eq!(refusal_under_limit(longest, body), None);
    let reply = refusal_under_limit(longest - 1, body).unwrap();
    assert_eq!(reply.code, crate::policy::Code::BodyTooLarge, "{reply:?}");
    assert_eq!(reply.status(), 413, "{reply:?}");
    assert!(reply.message.contains("once rewritten"), "{reply:?}");
}

#[test]
fn upstream_unavailable_gives_a_plain_reason_never_envoys_details() {
    for (details, reason) in [
        (
            "upstream_reset_before_response_started{remote_connection_failure|TLS_error:_CERTIFICATE_VERIFY_FAILED}",
            "connection failure",
        ),
        (
            "upstream_reset_before_response_started{connection_termination}",
            "connection reset",
        ),
        ("upstream_per_try_idle_timeout", "timeout"),
        ("upstream_response_timeout", "timeout"),
        ("no_healthy_upstream", "no healthy provider"),
        ("upstream_overflow", "too many requests in flight"),
        ("overflow", "too many requests in flight"),
    ] {
        let host = exchange("gpt-4o", "503", &[("response.code_details", details)]);
        let answers = host.answers.borrow();
        let body: Value = serde_json::from_slice(&answers[0].body).unwrap();
        assert_eq!(
            body["error"]["message"],
            format!("no provider could answer for model gpt-4o: {reason}"),
            "{details}"
        );
    }
}

#[test]
fn a_request_the_upstream_filter_refused_is_recorded_as_refused_and_charged_nothing() {
    for (model, status) in [("gpt-4o", "502"), ("solo", "500")] {
        let host = exchange(
            model,
            status,
            // Envoy gives no code details for the upstream filter's own answer.
            &[
                ("upstream.address", "127.0.0.1:9"),
                ("posturio_refused", "internal_error"),
            ],
        );
        let answers = host.answers.borrow();
        assert_eq!(answers.len(), 1, "{model}");
        assert_eq!(answers[0].status.to_string(), status);
        let body: Value = serde_json::from_slice(&answers[0].body).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is misconfigured"),
            "{body}"
        );
        assert_eq!(
            host.budget_used("team", crate::policy::budget::Window::Day),
            0,
            "{model}: nothing reached a provider"
        );
        assert_eq!(
            host.counter(&format!(
                "posturio_usage_unknown_total.consumer=team;.model={model};.provider=openai;"
            )),
            0
        );
        assert_eq!(
            host.property_value("posturio.code").as_deref(),
            Some("internal_error")
        );
        assert_eq!(
            host.property_value("posturio.decision").as_deref(),
            Some("deny")
        );
        assert_eq!(
            host.counter(&format!(
                "posturio_replaced_responses_total.model={model};.code=internal_error;"
            )),
            1
        );
    }
}

#[test]
fn a_refusal_on_a_retry_is_charged_as_an_answer_of_unknown_usage() {
    // The first attempt reached a provider (a 5xx, retried); the retry was refused.
    let host = exchange(
        "gpt-4o",
        "502",
        &[
            ("upstream.address", "127.0.0.1:9"),
            ("posturio_refused", "internal_error"),
            ("posturio_attempts", "2"),
        ],
    );
    assert_eq!(host.answers.borrow().len(), 1);
    assert!(host.budget_used("team", crate::policy::budget::Window::Day) > 0);
}

#[test]
fn a_local_answer_without_a_refusal_costs_the_estimate_as_before() {
    let host = exchange(
        "solo",
        "504",
        &[
            ("response.code_details", "wasm_local_reply"),
            ("upstream.address", "127.0.0.1:9"),
        ],
    );
    assert!(host.answers.borrow().is_empty());
    assert!(host.budget_used("team", crate::policy::budget::Window::Day) > 0);
}

#[test]
fn no_target_of_a_pool_gets_the_clients_credential_parameters() {
    // The policy reads no keys (`identity.header`): a pool strips them anyway.
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions?key=QKEY&alt=json&api-key=K2&X-Amz-Signature=S&access_token=T",
        &[("x-posturio-consumer", "team")],
        body,
    );
    let policy = Rc::new(Policy::from_json(POOL_POLICY.as_bytes()).unwrap());
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(body.len(), true);
    assert!(host.replies.borrow().is_empty());
    let plan = Plan::from_json(host.property_value("posturio_plan").unwrap().as_bytes()).unwrap();
    assert_eq!(
        plan.target("openai").unwrap().path,
        "/v1/chat/completions?alt=json"
    );
    assert_eq!(
        plan.target("azure").unwrap().path,
        "/openai/v1/chat/completions?alt=json"
    );
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1/chat/completions?alt=json"),
        "the forwarded path too"
    );

    // A single-provider model keeps today's behaviour: only `identity.api_keys` strips them.
    let solo = r#"{"model":"solo","messages":[{"role":"user","content":"hi"}]}"#;
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions?key=QKEY",
        &[("x-posturio-consumer", "team")],
        solo,
    );
    let policy = Rc::new(Policy::from_json(POOL_POLICY.as_bytes()).unwrap());
    let mut filter = Request::new(&host, Some(policy), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(solo.len(), true);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1/chat/completions?key=QKEY")
    );
}
