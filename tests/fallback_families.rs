//! Provider fallback beyond OpenAI's API, in real Envoy with the built module: an Anthropic
//! pool (the model in the body, read by the official Anthropic SDK, whole and streamed) and a
//! native Gemini pool (the model in the path, with the body's own `models/` copy), each falling
//! back from a provider that answers 429 to one with another model name. The shipped
//! `envoy/envoy.yaml` is extended with the two pools, built the way its `resilient-pool` is:
//! one endpoint per target with `filter_metadata.posturio.provider`, Posturio's upstream filter,
//! a credential injector per target, and a route of their own with the retry policy.
// Test code: failing loudly is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use common::{http, sdk, Envoy, EnvoyOptions, MockProvider, Recorded};
use serde_json::{json, Value};

/// The Anthropic pool: `anthropic` first, `anthropic-backup` (the mock's `azure` listener)
/// second.
const CLAUDE: &str = "claude-resilient";
const CLAUDE_PRIMARY: &str = "claude-haiku-4-20250514";
const CLAUDE_BACKUP: &str = "claude-haiku-4-backup";
/// The Gemini pool: `gemini-native` first (the mock's `gemini` listener), `gemini-backup` (its
/// `azure` listener) second.
const GEMINI: &str = "gemini-resilient";
const GEMINI_PRIMARY: &str = "gemini-2.0-flash";
const GEMINI_BACKUP: &str = "gemini-2.0-flash-backup";

/// Each target's key and the header its injector writes it to.
const KEYS: [(&str, &str, &str); 4] = [
    ("anthropic", "x-api-key", "sk-ant-primary"),
    ("anthropic-backup", "x-api-key", "sk-ant-backup"),
    ("gemini-native", "x-goog-api-key", "gemini-primary"),
    ("gemini-backup", "x-goog-api-key", "gemini-backup"),
];

fn policy() -> String {
    let mut policy: Value = serde_json::from_str(&common::example_policy()).unwrap();
    policy["providers"]["anthropic-backup"] =
        json!({ "cluster": "anthropic-backup", "api": "anthropic" });
    policy["providers"]["gemini-native"] = json!({ "cluster": "gemini-native", "api": "gemini" });
    policy["providers"]["gemini-backup"] = json!({ "cluster": "gemini-backup", "api": "gemini" });
    // Priced: the example's `search-team` has a dollar budget and reaches them by its globs.
    policy["models"][CLAUDE] = json!({
        "cluster": "claude-pool",
        "price": { "input": "3.00", "output": "15.00" },
        "targets": [
            { "provider": "anthropic", "upstream_model": CLAUDE_PRIMARY },
            { "provider": "anthropic-backup", "upstream_model": CLAUDE_BACKUP },
        ],
    });
    policy["models"][GEMINI] = json!({
        "cluster": "gemini-pool",
        "price": { "input": "0.30", "output": "2.50" },
        "targets": [
            { "provider": "gemini-native", "upstream_model": GEMINI_PRIMARY },
            { "provider": "gemini-backup", "upstream_model": GEMINI_BACKUP },
        ],
    });
    let default = policy["consumers"]["default"]["models"]
        .as_array_mut()
        .unwrap();
    default.push(json!(CLAUDE));
    default.push(json!(GEMINI));
    policy.to_string()
}

/// The port of the rendered configuration's cluster `name` (its first endpoint).
fn cluster_port(config: &str, name: &str) -> String {
    let start = config
        .find(&format!("\n  - name: {name}\n"))
        .unwrap_or_else(|| panic!("no cluster {name}"));
    let rest = &config[start..];
    let at = rest.find("port_value: ").unwrap() + "port_value: ".len();
    rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

/// A pool cluster: `(provider, port)` per priority, each attempt's key injected by target.
fn pool_cluster(name: &str, module: &str, targets: &[(&str, &str)]) -> String {
    let mut out = format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 5s\n    load_assignment:\n      \
         cluster_name: {name}\n      endpoints:\n"
    );
    for (priority, (provider, port)) in targets.iter().enumerate() {
        out.push_str(&format!(
            "      - priority: {priority}\n        lb_endpoints:\n        - endpoint: {{ address: \
             {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n          \
             metadata: {{ filter_metadata: {{ posturio: {{ provider: {provider} }} }} }}\n"
        ));
    }
    let mut injectors = String::new();
    for (provider, _) in targets {
        let (_, header, _) = KEYS.iter().find(|(p, _, _)| p == provider).unwrap();
        injectors.push_str(&format!(
            r#"                    {provider}:
                      action:
                        name: {provider}-key
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction
                          typed_config:
                            name: envoy.filters.http.credential_injector
                            typed_config:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
                              overwrite: true
                              credential:
                                name: envoy.http.injected_credentials.generic
                                typed_config:
                                  "@type": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic
                                  credential: {{ name: {provider}-key }}
                                  header: {header}
"#
        ));
    }
    out.push_str(&format!(
        r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http_protocol_options: {{}} }}
        http_filters:
        - name: envoy.filters.http.wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: posturio
              root_id: posturio
              allow_on_headers_stop_iteration: true
              failure_policy: FAIL_CLOSED
              vm_config:
                runtime: envoy.wasm.runtime.v8
                code:
                  local:
                    filename: {module}
              configuration:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '{{"role": "upstream"}}'
        - name: envoy.filters.http.match_delegate
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher
            extension_config:
              name: envoy.filters.http.composite
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite
            xds_matcher:
              matcher_tree:
                input:
                  name: target
                  typed_config:
                    "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                    header_name: x-posturio-target
                exact_match_map:
                  map:
{injectors}        - name: envoy.filters.http.header_mutation
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
            mutations:
              request_mutations:
              - remove: x-posturio-target
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#
    ));
    out
}

/// The shipped configuration with the two pools, their routes (the `resilient-pool` route,
/// renamed) and their keys.
fn with_pools(config: String) -> String {
    let module = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("filename: "))
        .filter(|name| name.contains("posturio"))
        .unwrap()
        .to_owned();
    let (anthropic, gemini, azure) = (
        cluster_port(&config, "anthropic"),
        cluster_port(&config, "gemini"),
        cluster_port(&config, "azure"),
    );
    // The route: a copy of the resilient pool's, one per new pool.
    let route_start = config
        .find("              - match:\n                  prefix: \"/\"\n                  headers:")
        .expect("the pool route");
    let route_end = route_start
        + config[route_start..]
            .find("              - match: { prefix: \"/\" }")
            .unwrap();
    let route = &config[route_start..route_end];
    assert!(route.contains("resilient-pool"), "{route}");
    let routes = format!(
        "{}{}",
        route.replace("resilient-pool", "claude-pool"),
        route.replace("resilient-pool", "gemini-pool")
    );
    let mut config = format!(
        "{}{routes}{}",
        &config[..route_start],
        &config[route_start..]
    );
    let clusters = format!(
        "{}{}",
        pool_cluster(
            "claude-pool",
            &module,
            &[("anthropic", &anthropic), ("anthropic-backup", &azure)]
        ),
        pool_cluster(
            "gemini-pool",
            &module,
            &[("gemini-native", &gemini), ("gemini-backup", &azure)]
        ),
    );
    let secrets_at = config.find("  secrets:\n").expect("the secrets");
    config.insert_str(secrets_at, &clusters);
    for (provider, _, key) in KEYS {
        config.push_str(&format!(
            "  - name: {provider}-key\n    generic_secret: {{ secret: {{ inline_string: \"{key}\" }} }}\n"
        ));
    }
    config
}

fn start(mock: &MockProvider) -> Envoy {
    Envoy::start_with(
        EnvoyOptions::new(&policy())
            .mock(mock)
            .edit_config(with_pools),
    )
}

/// Exactly `provider`'s key, and no other credential, reached the listener.
fn assert_only_key(record: &Recorded, provider: &str) {
    for (name, header, key) in KEYS {
        let expected: Vec<&str> = if name == provider { vec![key] } else { vec![] };
        let got: Vec<&str> = record
            .header_values(header)
            .into_iter()
            .filter(|value| *value == key || name == provider)
            .collect();
        assert_eq!(got, expected, "{provider}: {header}: {record:#?}");
    }
    for header in ["authorization", "api-key"] {
        assert_eq!(
            record.header_values(header),
            Vec::<&str>::new(),
            "{record:#?}"
        );
    }
    assert_eq!(record.header("x-posturio-target"), None, "{record:#?}");
}

#[test]
fn the_anthropic_sdk_gets_its_answer_from_the_backup_whole_and_streamed() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("anthropic", json!({ "status": 429 }));
    let outcomes = sdk::run(
        "anthropic_client",
        &envoy,
        &["resilient", "resilient_stream"],
    );
    let whole = outcomes.ok("resilient");
    assert_eq!(
        whole["content"], "Hello from the mock azure provider.",
        "{whole:#}"
    );
    let streamed = outcomes.ok("resilient_stream");
    assert_eq!(
        streamed["content"], "Hello from the mock azure provider.",
        "{streamed:#}"
    );
    assert!(streamed["chunks"].as_u64().unwrap() > 2, "{streamed:#}");

    let records = mock.requests();
    assert_eq!(records.len(), 4, "{records:#?}");
    for (pair, record) in records.chunks(2).zip(0..) {
        let [first, second] = pair else {
            panic!("{records:#?}")
        };
        assert_eq!(first.listener, "anthropic", "request {record}");
        assert_eq!(second.listener, "azure", "request {record}");
        for (sent, provider, model) in [
            (first, "anthropic", CLAUDE_PRIMARY),
            (second, "anthropic-backup", CLAUDE_BACKUP),
        ] {
            assert_eq!(sent.path, "/v1/messages", "{sent:#?}");
            assert_eq!(sent.json()["model"], model, "{sent:#?}");
            assert_only_key(sent, provider);
        }
    }
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_gemini_stream_falls_back_with_the_model_renamed_in_its_path_and_body() {
    let mock = MockProvider::start();
    let envoy = start(&mock);
    mock.behave("gemini", json!({ "status": 503 }));
    let body = json!({
        "model": format!("models/{GEMINI}"),
        "contents": [{ "role": "user", "parts": [{ "text": "Hello" }] }],
    })
    .to_string();
    let answer = http::request(
        envoy.port(),
        "POST",
        &format!("/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse"),
        &[
            ("content-type", "application/json"),
            ("x-goog-api-key", "client-own-key"),
        ],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let text = String::from_utf8_lossy(&answer.body);
    assert!(text.starts_with("data: "), "{text}");
    // The backup's stream, whole: its last event says who answered.
    assert!(text.contains("azure provider."), "{text}");
    assert!(text.contains(GEMINI_BACKUP), "{text}");

    let records = mock.requests();
    assert_eq!(records.len(), 2, "{records:#?}");
    for (sent, listener, provider, model) in [
        (&records[0], "gemini", "gemini-native", GEMINI_PRIMARY),
        (&records[1], "azure", "gemini-backup", GEMINI_BACKUP),
    ] {
        assert_eq!(sent.listener, listener, "{sent:#?}");
        assert_eq!(
            sent.path,
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
            "{sent:#?}"
        );
        // The body's own copy of the model follows the path's, `models/` kept.
        assert_eq!(sent.json()["model"], format!("models/{model}"), "{sent:#?}");
        let length: usize = sent.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, sent.body.len(), "{sent:#?}");
        assert_only_key(sent, provider);
    }
    envoy.assert_no_wasm_failure();
}
