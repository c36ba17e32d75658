//! Caps and budgets that a client cannot dodge, in real Envoy: choices that would multiply the
//! output cap, requests whose usage the filter could not read (so a budget would never be
//! charged), and flags of a type the filter and a lenient provider could read differently.
//! Every refusal is checked for its status, its code and shape, and for never reaching the
//! provider; every forward for what the provider actually received.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": {
    "openai": { "cluster": "openai", "api": "openai" },
    "anthropic": { "cluster": "anthropic", "api": "anthropic" },
    "gemini": { "cluster": "gemini", "api": "gemini" },
    "bedrock": { "cluster": "openai", "api": "bedrock" },
    "azure": { "cluster": "openai", "api": "azure_openai" }
  },
  "models": {
    "gpt-4.1": { "provider": "openai" },
    "claude-sonnet-4": { "provider": "anthropic" },
    "gemini-2.5-flash": { "provider": "gemini" },
    "nova": { "provider": "bedrock", "upstream_model": "amazon.nova-pro-v1:0" },
    "azdep": { "provider": "azure" }
  },
  "consumers": {
    "default": { "models": ["*"] },
    "capped": { "models": ["*"], "max_output_tokens": 100 },
    "strict": { "models": ["*"], "max_output_tokens": 100, "max_output_tokens_action": "refuse" },
    "metered": { "models": ["*"], "budget": { "tokens_per_day": 1000000 } },
    "tight": { "models": ["*"], "budget": { "tokens_per_day": 40, "default_output_tokens": 1 } },
    "tight-claude": { "models": ["*"],
                      "budget": { "tokens_per_day": 40, "default_output_tokens": 1 } },
    "cached-converse": { "models": ["*"],
                         "budget": { "tokens_per_day": 1000, "default_output_tokens": 100 } },
    "cached-invoke": { "models": ["*"],
                       "budget": { "tokens_per_day": 1000, "default_output_tokens": 100 } }
  }
}"#;

struct Gateway {
    mock: MockProvider,
    envoy: Envoy,
}

impl Gateway {
    fn start() -> Gateway {
        let mock = MockProvider::start();
        let envoy = Envoy::start_with(EnvoyOptions::new(POLICY).mock(&mock));
        Gateway { mock, envoy }
    }

    fn post(&self, consumer: &str, path: &str, body: &Value) -> Response {
        self.post_raw(consumer, path, body.to_string().as_bytes())
    }

    fn post_raw(&self, consumer: &str, path: &str, body: &[u8]) -> Response {
        http::post(
            self.envoy.port(),
            path,
            &[JSON, ("x-posturio-consumer", consumer)],
            body,
        )
    }

    /// The one request the mock received since the last reset, as JSON; resets the mock.
    fn forwarded(&self) -> Value {
        let body = self.mock.single_request().json();
        self.mock.reset();
        body
    }

    /// Refused with `status` and `code`, in the OpenAI shape unless `shape` says otherwise,
    /// without reaching the provider. Returns the message.
    fn refused(&self, response: &Response, status: u16, code: &str) -> String {
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(
            response.header("x-posturio-code"),
            Some(code),
            "{response:?}"
        );
        assert!(
            self.mock.requests().is_empty(),
            "reached the provider: {:?}",
            self.mock.requests()
        );
        let body = response.json();
        let message = body["error"]["message"]
            .as_str()
            .or(body["message"].as_str())
            .unwrap_or_else(|| panic!("no message: {body}"));
        message.to_owned()
    }

    fn usage_unknown(&self) -> f64 {
        self.envoy
            .posturio_samples()
            .iter()
            .filter(|((name, _), _)| name == "posturio_usage_unknown_total")
            .map(|(_, value)| *value)
            .sum()
    }

    fn input_tokens(&self, consumer: &str) -> f64 {
        let mut labels = BTreeMap::new();
        labels.insert("consumer".to_owned(), consumer.to_owned());
        self.envoy
            .posturio_samples()
            .iter()
            .filter(|((name, sample), _)| {
                name == "posturio_input_tokens_total"
                    && sample.get("consumer") == labels.get("consumer")
            })
            .map(|(_, value)| *value)
            .sum()
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[test]
fn choices_share_the_output_cap() {
    let gateway = Gateway::start();

    // Eight choices of 100 tokens would be 800: each gets 12 of the cap's 100.
    let response = gateway.post(
        "capped",
        "/v1/chat/completions",
        &chat(json!({"n": 8, "max_tokens": 100})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.forwarded();
    assert_eq!(
        (upstream["n"].clone(), upstream["max_tokens"].clone()),
        (json!(8), json!(12))
    );

    // None asked: the share is added.
    let response = gateway.post("capped", "/v1/chat/completions", &chat(json!({"n": 4})));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["max_completion_tokens"], 25);

    // Completions generate best_of and return n: best_of counts.
    let completion =
        json!({"model": "gpt-4.1", "prompt": "hi", "n": 2, "best_of": 20, "max_tokens": 100});
    let response = gateway.post("capped", "/v1/completions", &completion);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["max_tokens"], 5);

    // Gemini's candidateCount, in the snake spelling Google also reads.
    let gemini = json!({"contents": [{"parts": [{"text": "hi"}]}],
                        "generation_config": {"candidate_count": 5, "max_output_tokens": 100}});
    let response = gateway.post(
        "capped",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &gemini,
    );
    assert_eq!(response.status, 200, "{response:?}");
    let config = gateway.forwarded()["generation_config"].clone();
    assert_eq!(
        config,
        json!({"candidate_count": 5, "max_output_tokens": 20})
    );

    // Refuse action: a per-choice limit over the share is refused, naming both numbers.
    let response = gateway.post(
        "strict",
        "/v1/chat/completions",
        &chat(json!({"n": 2, "max_tokens": 100})),
    );
    let message = gateway.refused(&response, 403, "max_output_tokens_exceeded");
    assert!(
        message.contains("each of 2 choices") && message.contains("50 per choice"),
        "{message}"
    );
    assert_eq!(response.json()["error"]["type"], "permission_error");

    // More choices than the cap has tokens: refused whatever the action, in Gemini's shape.
    let gemini = json!({"contents": [], "generationConfig": {"candidateCount": 101}});
    let response = gateway.post(
        "capped",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &gemini,
    );
    gateway.refused(&response, 403, "max_output_tokens_exceeded");
    assert_eq!(response.json()["error"]["status"], "PERMISSION_DENIED");

    // A choice count the provider might read otherwise is not guessed at.
    let response = gateway.post("capped", "/v1/chat/completions", &chat(json!({"n": "8"})));
    gateway.refused(&response, 400, "invalid_request");

    // A consumer without a cap is not read for choices.
    let response = gateway.post("default", "/v1/chat/completions", &chat(json!({"n": 8})));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded(), chat(json!({"n": 8})));
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn model_fields_at_any_depth_cannot_lift_the_cap() {
    let gateway = Gateway::start();
    let converse = |fields: Value| {
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "additionalModelRequestFields": fields})
    };
    // Amazon Nova's own spelling, one level down.
    let nova = converse(json!({"inferenceConfig": {"max_new_tokens": 5000}}));
    let response = gateway.post("capped", "/model/nova/converse", &nova);
    let message = gateway.refused(&response, 400, "invalid_request");
    assert!(message.contains("\"max_new_tokens\""), "{message}");
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("ValidationException")
    );

    // Other model fields pass, and the cap goes where Converse reads it.
    let fields = json!({"inferenceConfig": {"topK": 20}});
    let response = gateway.post("capped", "/model/nova/converse", &converse(fields.clone()));
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.forwarded();
    assert_eq!(upstream["additionalModelRequestFields"], fields);
    assert_eq!(upstream["inferenceConfig"], json!({"maxTokens": 100}));
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_budget_is_never_left_uncharged() {
    let gateway = Gateway::start();
    let gemini = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let converse = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let background = json!({"model": "gpt-4.1", "input": "hi", "background": true});

    // Each of these answers in a way the filter cannot read usage from: refused for a consumer
    // with a budget, in the caller's shape.
    for (path, body, shape) in [
        (
            "/v1beta/models/gemini-2.5-flash:generateContent?alt=proto",
            &gemini,
            "gemini",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?%24alt=proto",
            &gemini,
            "gemini",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&alt=proto",
            &gemini,
            "gemini",
        ),
        ("/v1/responses", &background, "openai"),
    ] {
        let response = gateway.post("metered", path, body);
        let message = gateway.refused(&response, 403, "usage_unreadable");
        assert!(
            message.contains("consumer \"metered\" has a token budget"),
            "{path}: {message}"
        );
        match shape {
            "gemini" => assert_eq!(
                response.json()["error"]["status"],
                "PERMISSION_DENIED",
                "{path}"
            ),
            _ => assert_eq!(
                response.json()["error"]["code"],
                "usage_unreadable",
                "{path}"
            ),
        }
    }

    // Without a budget they are forwarded: nothing is charged, so nothing is missed.
    let response = gateway.post("default", "/v1/responses", &background);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["background"], true);

    // What the filter reads is forwarded and charged: a Gemini stream, a chat stream (usage is
    // asked for on the client's behalf), a Converse call, Bedrock's two event streams.
    let before = gateway.input_tokens("metered");
    let paths = [
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            gemini.clone(),
        ),
        ("/v1/chat/completions", chat(json!({"stream": true}))),
        ("/model/nova/converse", converse.clone()),
        ("/model/nova/converse-stream", converse.clone()),
        (
            "/model/nova/invoke-with-response-stream",
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    for (path, body) in &paths {
        let response = gateway.post("metered", path, body);
        assert_eq!(response.status, 200, "{path}: {response:?}");
    }
    let requests = gateway.mock.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(
        requests[1].json()["stream_options"],
        json!({"include_usage": true})
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gateway.input_tokens("metered") < before + 60.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        gateway.input_tokens("metered"),
        before + 60.0,
        "12 input tokens each"
    );
    assert_eq!(gateway.usage_unknown(), 0.0);
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn stream_flags_of_another_type_are_refused() {
    let gateway = Gateway::start();
    // Lenient OpenAI-compatible servers stream for these; the filter would not have asked for
    // the stream's usage, nor expected it.
    for (consumer, body) in [
        ("metered", r#"{"model":"gpt-4.1","messages":[],"stream":1}"#),
        (
            "metered",
            r#"{"model":"gpt-4.1","messages":[],"stream":"true"}"#,
        ),
        (
            "default",
            r#"{"model":"gpt-4.1","messages":[],"stream":true,"stream_options":{"include_usage":"false"}}"#,
        ),
        (
            "default",
            r#"{"model":"gpt-4.1","messages":[],"stream":true,"stream_options":{"include_usage":0}}"#,
        ),
        (
            "capped",
            r#"{"model":"gpt-4.1","messages":[],"stream":true,"stream_options":"yes"}"#,
        ),
    ] {
        let response = gateway.post_raw(consumer, "/v1/chat/completions", body.as_bytes());
        let message = gateway.refused(&response, 400, "invalid_request");
        assert!(message.contains("must be"), "{body}: {message}");
        assert_eq!(
            response.json()["error"]["type"],
            "invalid_request_error",
            "{body}"
        );
    }
    // Anthropic's and Responses' flags too, each in its own shape.
    let response = http::post(
        gateway.envoy.port(),
        "/v1/messages",
        &[
            JSON,
            ("x-posturio-consumer", "metered"),
            ("anthropic-version", "2023-06-01"),
        ],
        br#"{"model":"claude-sonnet-4","max_tokens":5,"messages":[],"stream":"true"}"#,
    );
    gateway.refused(&response, 400, "invalid_request");
    assert_eq!(response.json()["type"], "error");
    let response = gateway.post_raw(
        "metered",
        "/v1/responses",
        br#"{"model":"gpt-4.1","input":"hi","background":"true"}"#,
    );
    gateway.refused(&response, 400, "invalid_request");

    // The same flags as booleans pass, and the stream's usage is read.
    let response = gateway.post(
        "metered",
        "/v1/chat/completions",
        &chat(json!({"stream": true})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let chunks = response.events();
    assert_eq!(chunks.len(), 4, "{}", response.text());
    assert!(
        chunks.iter().all(|chunk| chunk["usage"].is_null()),
        "the usage chunk the client did not ask for is taken out: {}",
        response.text()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gateway.input_tokens("metered") < 12.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(gateway.input_tokens("metered"), 12.0, "but it was read");
    assert_eq!(gateway.usage_unknown(), 0.0);
    gateway.envoy.assert_no_wasm_failure();
}

/// Usage spread over two chunks, the output count written as a float, is charged in full; the
/// usage the gateway asked for is taken out in every form: a bare usage chunk whole, and only
/// the `usage` member of an Azure-style chunk with `prompt_filter_results` or of a chunk that
/// also carries the choice.
#[test]
fn usage_is_merged_and_taken_out_in_every_form() {
    let gateway = Gateway::start();
    let stream = |style: &str| {
        http::post(
            gateway.envoy.port(),
            "/v1/chat/completions",
            &[
                JSON,
                ("x-posturio-consumer", "metered"),
                ("x-mock-usage-style", style),
            ],
            chat(json!({"stream": true})).to_string().as_bytes(),
        )
    };
    let output_tokens = || -> f64 {
        gateway
            .envoy
            .posturio_samples()
            .iter()
            .filter(|((name, labels), _)| {
                name == "posturio_output_tokens_total"
                    && labels.get("consumer").map(String::as_str) == Some("metered")
            })
            .map(|(_, value)| *value)
            .sum()
    };
    let wait_for = |tokens: f64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while output_tokens() < tokens && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(output_tokens(), tokens);
    };

    // Two usage chunks, both taken out: the client did not ask for usage.
    let response = stream("split");
    assert_eq!(response.status, 200, "{response:?}");
    let chunks = response.events();
    assert_eq!(chunks.len(), 4, "{}", response.text());
    assert!(
        chunks.iter().all(|chunk| chunk["usage"].is_null()),
        "{}",
        response.text()
    );
    assert!(response.text().ends_with("data: [DONE]\n\n"));
    wait_for(7.0);
    assert_eq!(gateway.input_tokens("metered"), 12.0);

    // The provider's content-filter verdict stays; only its usage is taken out (a client that
    // did not ask for usage never sees it), and the usage is still counted.
    let response = stream("azure");
    assert_eq!(response.status, 200, "{response:?}");
    let chunks = response.events();
    assert_eq!(chunks.len(), 5, "{}", response.text());
    let last = &chunks[4];
    assert_eq!(last["choices"], json!([]), "{last}");
    assert!(last.get("usage").is_none(), "{last}");
    assert_eq!(
        last["prompt_filter_results"][0]["content_filter_results"]["hate"]["severity"], "safe",
        "{last}"
    );
    wait_for(14.0);

    // Usage on the chunk that also ends the choice: the usage goes, the choice stays.
    let response = stream("content");
    assert_eq!(response.status, 200, "{response:?}");
    let chunks = response.events();
    assert_eq!(chunks.len(), 4, "{}", response.text());
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk.get("usage").is_none_or(Value::is_null)),
        "{}",
        response.text()
    );
    assert_eq!(
        chunks[3]["choices"][0]["finish_reason"],
        "stop",
        "{}",
        response.text()
    );
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from the mock openai provider.");
    wait_for(21.0);
    assert_eq!(gateway.usage_unknown(), 0.0);
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn prompts_of_a_completion_share_the_output_cap() {
    let gateway = Gateway::start();
    let prompts = json!(["a", "b", "c", "d", "e", "f", "g", "h"]);

    // Eight prompts, two choices each: sixteen outputs share the cap of 100.
    let body = json!({"model": "gpt-4.1", "prompt": prompts, "n": 2});
    let response = gateway.post("capped", "/v1/completions", &body);
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.forwarded();
    assert_eq!(upstream["prompt"], prompts);
    assert_eq!(upstream["max_tokens"], 6);

    // Token-array prompts, three of them, best_of 2: each output gets 16.
    let body = json!({"model": "gpt-4.1", "prompt": [[1, 2], [3, 4], [5, 6]], "best_of": 2,
                      "max_tokens": 100});
    let response = gateway.post("capped", "/v1/completions", &body);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["max_tokens"], 16);

    // Azure with the refuse action: 8 × 100 is over the cap, refused before the provider.
    let body = json!({"prompt": prompts, "max_tokens": 100});
    let response = gateway.post(
        "strict",
        "/openai/deployments/azdep/completions?api-version=2024-10-21",
        &body,
    );
    let message = gateway.refused(&response, 403, "max_output_tokens_exceeded");
    assert!(
        message.contains("8 outputs (one per prompt)") && message.contains("12 per output"),
        "{message}"
    );

    // More outputs than the cap has tokens: refused whatever the action.
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let body = json!({"model": "gpt-4.1", "prompt": many});
    let response = gateway.post("capped", "/v1/completions", &body);
    gateway.refused(&response, 403, "max_output_tokens_exceeded");

    // Chat best_of counts as choices.
    let response = gateway.post(
        "capped",
        "/v1/chat/completions",
        &chat(json!({"best_of": 8, "max_completion_tokens": 100})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["max_completion_tokens"], 12);
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn a_zero_limit_is_no_limit_and_gets_the_cap() {
    let gateway = Gateway::start();
    let gemini = json!({"contents": [{"parts": [{"text": "hi"}]}],
                        "generationConfig": {"maxOutputTokens": 0}});
    let response = gateway.post(
        "capped",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &gemini,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        gateway.forwarded()["generationConfig"],
        json!({"maxOutputTokens": 100})
    );

    // -0 is written by hand: serde_json would write 0.
    let body =
        br#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],"max_tokens":-0}"#;
    let response = gateway.post_raw("strict", "/v1/chat/completions", body);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["max_tokens"], 100);

    let converse = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                          "inferenceConfig": {"maxTokens": 0}});
    let response = gateway.post("capped", "/model/nova/converse", &converse);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        gateway.forwarded()["inferenceConfig"],
        json!({"maxTokens": 100})
    );
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn bedrock_model_fields_give_no_number_but_sampling() {
    let gateway = Gateway::start();
    let converse = |fields: Value| {
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "additionalModelRequestFields": fields})
    };
    for fields in [
        json!({"max_length": 5000}),
        json!({"maxLength": 5000}),
        json!({"options": {"num_predict": 5000}}),
        json!({"length": "5000"}),
        json!({"output_length": [5000]}),
        json!({"max_len": "5_000"}),
        json!({"length": "\u{665}\u{660}\u{660}\u{660}"}),
        json!({"length": "\u{ff15}\u{ff10}\u{ff10}\u{ff10}"}),
        json!({"length": "0x1388"}),
    ] {
        let response = gateway.post("capped", "/model/nova/converse", &converse(fields.clone()));
        let message = gateway.refused(&response, 400, "invalid_request");
        assert!(
            message.contains("additionalModelRequestFields"),
            "{fields}: {message}"
        );
        assert!(!message.contains("5000"), "{fields}: {message}");
    }
    let sampling = json!({"temperature": 0.2, "top_k": 40, "seed": 7, "mode": "fast",
                          "anthropic_beta": ["interleaved-thinking-2025-05-14"]});
    let response = gateway.post(
        "capped",
        "/model/nova/converse",
        &converse(sampling.clone()),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.forwarded();
    assert_eq!(upstream["additionalModelRequestFields"], sampling);
    assert_eq!(upstream["inferenceConfig"], json!({"maxTokens": 100}));

    // A consumer without a cap is not read for them.
    let response = gateway.post(
        "default",
        "/model/nova/converse",
        &converse(json!({"max_length": 5000})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn gemini_parameters_and_headers_that_hide_usage_are_refused_for_a_budget() {
    let gateway = Gateway::start();
    let gemini = json!({"contents": [{"parts": [{"text": "hi"}]}]});
    let body = gemini.to_string();
    let base = "/v1beta/models/gemini-2.5-flash";
    let post = |consumer: &str, path: &str, header: Option<(&str, &str)>| {
        let mut headers = vec![JSON, ("x-posturio-consumer", consumer)];
        headers.extend(header);
        http::post(gateway.envoy.port(), path, &headers, body.as_bytes())
    };
    for (query, header) in [
        (":generateContent?fields=candidates", None),
        (":streamGenerateContent?%24fields=candidates", None),
        (
            ":generateContent?%24callback=cb&%24ct=application%2Fjson%2Bprotobuf",
            None,
        ),
        (":generateContent?callback=cb", None),
        (":streamGenerateContent?x=1;alt=proto", None),
        (":streamGenerateContent?ALT=proto", None),
        (":streamGenerateContent?alt[]=proto", None),
        (":generateContent", Some(("X-Goog-FieldMask", "candidates"))),
        (":generateContent", Some(("X-HTTP-Method-Override", "GET"))),
        (
            ":generateContent",
            Some(("accept", "application/x-protobuf")),
        ),
    ] {
        let response = post("metered", &format!("{base}{query}"), header);
        let message = gateway.refused(&response, 403, "usage_unreadable");
        assert!(
            message.contains("consumer \"metered\""),
            "{query} {header:?}: {message}"
        );
        assert_eq!(
            response.json()["error"]["status"],
            "PERMISSION_DENIED",
            "{query} {header:?}"
        );
    }

    // Parameters and headers known to keep the answer: forwarded and charged.
    let before = gateway.input_tokens("metered");
    let path = format!("{base}:streamGenerateContent?key=k&alt=sse&prettyPrint=false");
    let response = post(
        "metered",
        &path,
        Some(("x-goog-api-client", "genai-py/1.0")),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(gateway
        .mock
        .single_request()
        .path
        .ends_with("prettyPrint=false"));
    gateway.mock.reset();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gateway.input_tokens("metered") == before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gateway.input_tokens("metered") > before);

    // Without a budget nothing is charged, so nothing is refused: forwarded as sent.
    let response = post(
        "default",
        &format!("{base}:generateContent?fields=candidates"),
        None,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert!(gateway
        .mock
        .single_request()
        .path
        .ends_with("?fields=candidates"));
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn gemini_tool_use_prompt_tokens_are_charged() {
    let gateway = Gateway::start();
    let body = json!({"contents": [{"parts": [{"text": "Summarise https://example.com"}]}],
                      "tools": [{"url_context": {}}]})
    .to_string();
    let response = http::post(
        gateway.envoy.port(),
        "/v1beta/models/gemini-2.5-flash:generateContent",
        &[
            JSON,
            ("x-posturio-consumer", "metered"),
            ("x-mock-gemini-tool-use", "90000"),
        ],
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json()["usageMetadata"]["toolUsePromptTokenCount"],
        90000
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gateway.input_tokens("metered") == 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The mock's 12 prompt tokens and the 90,000 its tool read into the prompt.
    assert_eq!(gateway.input_tokens("metered"), 90012.0);
    gateway.envoy.assert_no_wasm_failure();
}

/// Sends a streamed request and leaves once the first event has arrived, while the mock is
/// still waiting to send the rest.
fn leave_after_first_event(gateway: &Gateway, consumer: &str, path: &str, body: &Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-posturio-consumer: {consumer}\r\nx-mock-event-delay-ms: 400\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gateway.envoy.port())).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data:") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first event: {received:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_stream_left_before_its_usage_is_charged_an_estimate() {
    let gateway = Gateway::start();
    // OpenAI reports usage only at the end; Anthropic reports its input and a placeholder
    // output count at the start (12 and 1 from the mock, 13 in all, under the budget of 40).
    leave_after_first_event(
        &gateway,
        "tight",
        "/v1/chat/completions",
        &chat(json!({"stream": true})),
    );
    // The budget reserves the output the request asks for: one token, so that it fits.
    let claude = json!({"model": "claude-sonnet-4", "max_tokens": 1, "stream": true,
                        "messages": [{"role": "user", "content": "hi"}]});
    leave_after_first_event(&gateway, "tight-claude", "/v1/messages", &claude);

    // The usage never came in full: counted as unknown, and each budget of 40 tokens is
    // charged an estimate from the request and the events relayed, which uses it up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gateway.usage_unknown() < 2.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(gateway.usage_unknown(), 2.0);
    gateway.mock.reset();
    for consumer in ["tight", "tight-claude"] {
        let response = gateway.post(consumer, "/v1/chat/completions", &chat(json!({})));
        assert_eq!(response.status, 429, "{consumer}: {response:?}");
        assert_eq!(
            response.header("x-posturio-code"),
            Some("budget_exceeded"),
            "{consumer}"
        );
    }
    assert!(gateway.mock.requests().is_empty());
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn bedrock_cache_tokens_are_charged_whether_in_headers_or_body() {
    let gateway = Gateway::start();
    let converse = json!({ "messages": [{ "role": "user", "content": [{ "text": "hi" }] }] });
    let invoke = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{ "role": "user", "content": "hi" }]
    });
    for (consumer, path, body) in [
        // The count headers give 12 and 7; the body adds 90,000 cached tokens.
        ("cached-converse", "/model/nova/converse", &converse),
        // The cache-read header and the body both give them.
        ("cached-invoke", "/model/nova/invoke", &invoke),
    ] {
        let send = || {
            http::post(
                gateway.envoy.port(),
                path,
                &[
                    JSON,
                    ("x-posturio-consumer", consumer),
                    ("x-mock-bedrock-cache", "90000"),
                ],
                body.to_string().as_bytes(),
            )
        };
        let response = send();
        assert_eq!(response.status, 200, "{consumer}: {response:?}");
        assert_eq!(gateway.input_tokens(consumer), 90_012.0, "{consumer}");
        let response = send();
        assert_eq!(response.status, 429, "{consumer}: {response:?}");
        assert_eq!(
            response.header("x-posturio-code"),
            Some("budget_exceeded"),
            "{consumer}"
        );
    }
    assert_eq!(gateway.mock.requests().len(), 2);
    gateway.envoy.assert_no_wasm_failure();
}

#[test]
fn openai_compatible_limit_names_are_refused_for_a_capped_consumer() {
    let gateway = Gateway::start();
    for (path, body, key) in [
        (
            "/v1/chat/completions",
            chat(json!({"n_predict": 100000})),
            "n_predict",
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-4.1", "prompt": "hi", "n_predict": 100000, "max_tokens": 100}),
            "n_predict",
        ),
        (
            "/openai/deployments/azdep/chat/completions?api-version=2024-10-21",
            json!({"messages": [{"role": "user", "content": "hi"}], "n_predict": -1}),
            "n_predict",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_new_tokens": "5000"})),
            "max_new_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"max_output_tokens": 5000})),
            "max_output_tokens",
        ),
        (
            "/v1/chat/completions",
            chat(json!({"ignore_eos": true})),
            "ignore_eos",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4.1", "input": "hi", "min_tokens": 900}),
            "min_tokens",
        ),
    ] {
        let response = gateway.post("capped", path, &body);
        let message = gateway.refused(&response, 400, "invalid_request");
        assert!(message.contains(key), "{path} {body}: {message}");
        assert!(!message.contains("100000"), "{message}");
    }

    // Documented parameters and sampling settings pass, with the cap added.
    let body = chat(
        json!({"temperature": 0.5, "top_p": 0.9, "seed": 1, "user": "12345",
                           "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1}),
    );
    let response = gateway.post("capped", "/v1/chat/completions", &body);
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = gateway.forwarded();
    assert_eq!(upstream["top_k"], 40);
    assert_eq!(upstream["user"], "12345");
    assert_eq!(upstream["max_completion_tokens"], 100);

    // A consumer without a cap is not read for them.
    let response = gateway.post(
        "default",
        "/v1/chat/completions",
        &chat(json!({"n_predict": 100000})),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(gateway.forwarded()["n_predict"], 100000);
    gateway.envoy.assert_no_wasm_failure();
}
