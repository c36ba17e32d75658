//! The official OpenAI and Anthropic Python SDKs as real clients of Posturio in Envoy, with
//! the shipped example policy (`envoy/policy.json`): what each SDK returns or raises, and
//! what the provider behind Envoy actually received.
//!
//! Each test starts its own mock provider and Envoy, then runs one client script from
//! `tests/sdk/` with several scenarios. Every request a scenario makes carries the header
//! `x-sdk-scenario: <name>`, so the mock's records are matched to scenarios by that header.

mod common;

use common::{sdk, Envoy, MockProvider, Recorded};
use serde_json::{json, Value};

const OPENAI_KEY: &str = "sk-posturio-sdk-test";
const ANTHROPIC_KEY: &str = "sk-ant-posturio-sdk-test";

#[test]
fn openai_sdk_as_the_default_consumer() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    let outcomes = sdk::run(
        "openai_client",
        &envoy,
        &[
            "chat",
            "chat_alias",
            "chat_stream",
            "chat_stream_naive",
            "denied_model",
            "unknown_model",
            "embeddings",
            "responses",
            "models_list",
        ],
    );
    let records = mock.requests();
    envoy.assert_no_wasm_failure();

    // 1. A plain chat completion goes to the openai cluster, byte for byte as the SDK sent it.
    let chat = outcomes.ok("chat");
    assert_eq!(chat["model"], "gpt-4o-mini", "{chat:#}");
    assert_eq!(chat["content"], "Hello from the mock openai provider.");
    assert_eq!(chat["usage"]["total_tokens"], 19, "{chat:#}");
    let upstream = sdk::single_upstream(&records, "chat");
    assert_forwarded(upstream, "openai", "POST", "/v1/chat/completions");
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    assert_eq!(upstream.text(), outcomes.sent_body("chat"));
    outcomes.assert_headers_reached("chat", upstream);
    let bearer = format!("Bearer {OPENAI_KEY}");
    assert_eq!(upstream.header("authorization"), Some(bearer.as_str()));

    // 2. An alias: the provider gets the upstream name, in place, with a matching length.
    let alias = outcomes.ok("chat_alias");
    assert_eq!(alias["content"], "Hello from the mock openai provider.");
    // The response passes through unchanged: the provider answered for its own model name.
    assert_eq!(alias["model"], "gpt-4o-mini", "{alias:#}");
    let upstream = sdk::single_upstream(&records, "chat_alias");
    assert_forwarded(upstream, "openai", "POST", "/v1/chat/completions");
    outcomes.assert_headers_reached("chat_alias", upstream);
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    assert_content_length(upstream);
    let sent = outcomes.sent_body("chat_alias");
    assert_eq!(
        upstream.text(),
        with_model(&sent, "fast", "gpt-4o-mini"),
        "only the model may change"
    );
    let sent: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(upstream.json()["messages"], sent["messages"]);

    // 3. Streaming: every chunk reaches the SDK, the last one with usage.
    let stream = outcomes.ok("chat_stream");
    assert_eq!(stream["content"], "Hello from the mock openai provider.");
    // The mock streams a role chunk, two content chunks, a finish chunk and a usage chunk.
    assert_eq!(stream["chunks"], 5, "{stream:#}");
    assert_eq!(stream["usage"]["prompt_tokens"], 12, "{stream:#}");
    assert_eq!(stream["usage"]["completion_tokens"], 7, "{stream:#}");
    let upstream = sdk::single_upstream(&records, "chat_stream");
    assert_forwarded(upstream, "openai", "POST", "/v1/chat/completions");
    outcomes.assert_headers_reached("chat_stream", upstream);
    assert_eq!(upstream.json()["stream"], true);
    assert_eq!(upstream.json()["stream_options"]["include_usage"], true);
    assert_eq!(upstream.text(), outcomes.sent_body("chat_stream"));

    // 3b. A stream that did not ask for usage: the gateway asks the provider for it (to count
    // the tokens) and takes the usage chunk back out, so the SDK gets exactly the stream it
    // asked for and a loop that indexes `choices[0]` on every chunk works.
    let naive = outcomes.ok("chat_stream_naive");
    assert_eq!(naive["content"], "Hello from the mock openai provider.");
    assert_eq!(naive["chunks"], 4, "{naive:#}");
    let upstream = sdk::single_upstream(&records, "chat_stream_naive");
    assert_eq!(upstream.json()["stream_options"]["include_usage"], true);
    assert_eq!(
        envoy.counter("wasmcustom.posturio_output_tokens_total.consumer=default;.model=gpt-4o-mini;.provider=openai;"),
        Some(4 * 7),
        "chat, chat_stream, chat_stream_naive and responses each reported 7 output tokens for gpt-4o-mini"
    );

    // 4. A catalogued model the consumer may not use: the SDK's own 403 error, one request.
    let denied = outcomes.refused("denied_model", "PermissionDeniedError", 403);
    assert_eq!(denied["code"], "model_not_approved", "{denied:#}");
    assert_eq!(denied["posturio_code"], "model_not_approved", "{denied:#}");
    assert_eq!(denied["body"]["code"], "model_not_approved", "{denied:#}");
    assert_eq!(denied["body"]["type"], "permission_error", "{denied:#}");
    assert_eq!(denied["body"]["param"], "model", "{denied:#}");
    let message = denied["body"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"gpt-4o\"") && message.contains("\"default\""),
        "the message must name the model and the consumer: {message}"
    );
    assert!(denied["message"].as_str().unwrap().contains(message));

    // 5. A model outside the catalogue.
    let unknown = outcomes.refused("unknown_model", "PermissionDeniedError", 403);
    assert_eq!(unknown["code"], "model_not_found", "{unknown:#}");
    assert_eq!(unknown["body"]["param"], "model", "{unknown:#}");
    assert!(
        unknown["body"]["message"]
            .as_str()
            .unwrap()
            .contains("\"gpt-5\""),
        "{unknown:#}"
    );

    // 7. Embeddings: the SDK asks for base64 and decodes the vector it gets back.
    let embeddings = outcomes.ok("embeddings");
    assert_eq!(embeddings["model"], "text-embedding-3-small");
    let vector: Vec<f64> = embeddings["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let expected = [0.1, 0.25, -0.5, 0.75];
    assert!(
        vector.len() == expected.len()
            && vector
                .iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() < 1e-6),
        "{embeddings:#}"
    );
    let upstream = sdk::single_upstream(&records, "embeddings");
    assert_forwarded(upstream, "openai", "POST", "/v1/embeddings");
    outcomes.assert_headers_reached("embeddings", upstream);
    assert_eq!(upstream.json()["model"], "text-embedding-3-small");
    assert_eq!(upstream.json()["encoding_format"], "base64");
    assert_eq!(upstream.text(), outcomes.sent_body("embeddings"));

    // 8. The Responses API.
    let responses = outcomes.ok("responses");
    assert_eq!(responses["model"], "gpt-4o-mini", "{responses:#}");
    assert_eq!(responses["content"], "Hello from the mock openai provider.");
    assert_eq!(responses["usage"]["total_tokens"], 19, "{responses:#}");
    let upstream = sdk::single_upstream(&records, "responses");
    assert_forwarded(upstream, "openai", "POST", "/v1/responses");
    outcomes.assert_headers_reached("responses", upstream);
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    assert_eq!(upstream.text(), outcomes.sent_body("responses"));

    // 9. GET /v1/models: the consumer's own OpenAI-family models, listed by the gateway
    // (tests/model_lists.rs has the rest).
    let models = outcomes.ok("models_list");
    assert_eq!(
        models["models"],
        json!(["fast", "gpt-4o-mini", "text-embedding-3-small"]),
        "{models:#}"
    );

    // The refused calls reached no provider; the others reached it once each.
    sdk::assert_only(
        &records,
        &[
            "chat",
            "chat_alias",
            "chat_stream",
            "chat_stream_naive",
            "embeddings",
            "responses",
        ],
    );
}

#[test]
fn openai_sdk_with_a_consumer_header_and_a_spoofed_route_header() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    let outcomes = sdk::run(
        "openai_client",
        &envoy,
        &["search_team_gemini", "spoofed_cluster"],
    );
    let records = mock.requests();
    envoy.assert_no_wasm_failure();

    // 6. default_headers name the consumer, which may use gemini-flash: it goes to the gemini
    // cluster under its base path, with the provider's model name.
    let gemini = outcomes.ok("search_team_gemini");
    assert_eq!(gemini["content"], "Hello from the mock gemini provider.");
    assert_eq!(gemini["model"], "gemini-2.5-flash", "{gemini:#}");
    let upstream = sdk::single_upstream(&records, "search_team_gemini");
    assert_forwarded(
        upstream,
        "gemini",
        "POST",
        "/v1beta/openai/chat/completions",
    );
    outcomes.assert_headers_reached("search_team_gemini", upstream);
    assert_eq!(upstream.json()["model"], "gemini-2.5-flash");
    assert_content_length(upstream);
    assert_eq!(
        upstream.text(),
        with_model(
            &outcomes.sent_body("search_team_gemini"),
            "gemini-flash",
            "gemini-2.5-flash"
        )
    );

    // 13. A client that names a cluster itself is ignored: the model decides the cluster.
    let spoofed = outcomes.ok("spoofed_cluster");
    let sent_headers = &outcomes.sent_request("spoofed_cluster")["headers"];
    assert!(
        sent_headers
            .as_array()
            .unwrap()
            .contains(&json!(["x-posturio-cluster", "anthropic"])),
        "the SDK did not send the spoofed route header: {sent_headers}"
    );
    assert_eq!(spoofed["content"], "Hello from the mock openai provider.");
    let upstream = sdk::single_upstream(&records, "spoofed_cluster");
    assert_forwarded(upstream, "openai", "POST", "/v1/chat/completions");
    outcomes.assert_headers_reached("spoofed_cluster", upstream);
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");

    sdk::assert_only(&records, &["search_team_gemini", "spoofed_cluster"]);
}

#[test]
fn anthropic_sdk_messages() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    let outcomes = sdk::run(
        "anthropic_client",
        &envoy,
        &[
            "messages",
            "messages_stream",
            "denied_model",
            "search_team_sonnet",
        ],
    );
    let records = mock.requests();
    envoy.assert_no_wasm_failure();

    // 10. An alias the default consumer may use: the anthropic cluster gets the provider's
    // model name, in place, with the SDK's key and version headers.
    let message = outcomes.ok("messages");
    assert_eq!(
        message["content"],
        "Hello from the mock anthropic provider."
    );
    assert_eq!(message["model"], "claude-haiku-4-5-20251001", "{message:#}");
    assert_eq!(message["usage"]["output_tokens"], 7, "{message:#}");
    let upstream = sdk::single_upstream(&records, "messages");
    assert_forwarded(upstream, "anthropic", "POST", "/v1/messages");
    assert_eq!(upstream.json()["model"], "claude-haiku-4-5-20251001");
    assert_content_length(upstream);
    assert_eq!(
        upstream.text(),
        with_model(
            &outcomes.sent_body("messages"),
            "claude-haiku-4",
            "claude-haiku-4-5-20251001"
        )
    );
    outcomes.assert_headers_reached("messages", upstream);
    // The SDK sends its key as `x-api-key` or, in newer versions, `authorization: Bearer`.
    assert!(
        upstream.header("x-api-key") == Some(ANTHROPIC_KEY)
            || upstream.header("authorization") == Some(&format!("Bearer {ANTHROPIC_KEY}")),
        "the API key did not reach the provider: {upstream:#?}"
    );
    assert!(
        upstream.header("anthropic-version").is_some(),
        "{upstream:#?}"
    );

    // 10, streamed with `messages.stream`: the SDK assembles the text and the final message.
    let stream = outcomes.ok("messages_stream");
    assert_eq!(stream["content"], "Hello from the mock anthropic provider.");
    assert_eq!(stream["model"], "claude-haiku-4-5-20251001", "{stream:#}");
    assert_eq!(stream["usage"]["output_tokens"], 7, "{stream:#}");
    assert!(stream["chunks"].as_u64().unwrap() > 3, "{stream:#}");
    let upstream = sdk::single_upstream(&records, "messages_stream");
    assert_forwarded(upstream, "anthropic", "POST", "/v1/messages");
    outcomes.assert_headers_reached("messages_stream", upstream);
    assert_eq!(upstream.json()["model"], "claude-haiku-4-5-20251001");
    assert_eq!(upstream.json()["stream"], true);
    assert_content_length(upstream);

    // 11. A model the default consumer may not use: Anthropic's error shape, so the SDK
    // raises its own 403 error.
    let denied = outcomes.refused("denied_model", "PermissionDeniedError", 403);
    assert_eq!(denied["body"]["type"], "error", "{denied:#}");
    assert_eq!(
        denied["body"]["error"]["type"], "permission_error",
        "{denied:#}"
    );
    assert_eq!(denied["type"], "permission_error", "{denied:#}");
    assert_eq!(denied["posturio_code"], "model_not_approved", "{denied:#}");
    let message = denied["body"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"claude-sonnet-4\"") && message.contains("\"default\""),
        "the message must name the model and the consumer: {message}"
    );

    // 12. The same model for a consumer that may use it.
    let sonnet = outcomes.ok("search_team_sonnet");
    assert_eq!(sonnet["content"], "Hello from the mock anthropic provider.");
    let upstream = sdk::single_upstream(&records, "search_team_sonnet");
    assert_forwarded(upstream, "anthropic", "POST", "/v1/messages");
    outcomes.assert_headers_reached("search_team_sonnet", upstream);
    assert_eq!(upstream.json()["model"], "claude-sonnet-4-20250514");
    assert_content_length(upstream);

    sdk::assert_only(
        &records,
        &["messages", "messages_stream", "search_team_sonnet"],
    );
}

/// `record` reached `listener` as `method path`, without the route header.
fn assert_forwarded(record: &Recorded, listener: &str, method: &str, path: &str) {
    assert_eq!(
        (
            record.listener.as_str(),
            record.method.as_str(),
            record.path.as_str()
        ),
        (listener, method, path),
        "{record:#?}"
    );
    assert!(
        record.header_values("x-posturio-cluster").is_empty(),
        "the route header reached the provider: {record:#?}"
    );
}

/// The body reached the provider with a `content-length` that matches it.
fn assert_content_length(record: &Recorded) {
    let length = record.body.len().to_string();
    assert_eq!(
        record.header_values("content-length"),
        [length.as_str()],
        "{record:#?}\nbody: {}",
        record.text()
    );
}

/// `body` with its one JSON string `"from"` replaced by `"to"`.
fn with_model(body: &str, from: &str, to: &str) -> String {
    let from = format!("\"{from}\"");
    assert_eq!(
        body.matches(&from).count(),
        1,
        "expected {from} once in {body}"
    );
    body.replacen(&from, &format!("\"{to}\""), 1)
}
