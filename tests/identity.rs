//! Identity from a verified token: the shipped `envoy/envoy-jwt.yaml` run as it is, with
//! Envoy's own `jwt_authn` in front of Posturio and the consumer taken from the token's `team`
//! claim (dynamic metadata). Tokens are signed here with the example's HS256 key; forged,
//! expired and missing tokens must never reach Posturio or a provider.
//!
//! The identity header given twice (`identity.header`) is covered in `gateway.rs`.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{http, Envoy, EnvoyOptions, MockProvider, Response};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const CONFIG: &str = "envoy/envoy-jwt.yaml";
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "posturio";
const JSON: (&str, &str) = ("content-type", "application/json");
/// Approved for `search-team` only, in the example's policy.
const TEAM_MODEL: &str = "gpt-4o";

/// Envoy running `envoy/envoy-jwt.yaml` with its own inline policy, in front of the mock.
fn gateway() -> (MockProvider, Envoy) {
    let mock = MockProvider::start();
    let policy = common::embedded_policy(&common::read_repo_file(CONFIG));
    let envoy = Envoy::start_with(EnvoyOptions::new(&policy).template(CONFIG).mock(&mock));
    (mock, envoy)
}

/// The HS256 key of the example's inline JWKS (`"k"`, base64url), so that the tokens below
/// are signed with whatever key the shipped file has.
fn example_key() -> Vec<u8> {
    let yaml = common::read_repo_file(CONFIG);
    let jwks_line = yaml
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("inline_string:"))
        .unwrap_or_else(|| panic!("{CONFIG}: no inline JWKS"));
    let jwks = jwks_line.trim().trim_matches('\'');
    let jwks: Value = serde_json::from_str(jwks).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!((&key["kty"], &key["alg"]), (&json!("oct"), &json!("HS256")));
    URL_SAFE_NO_PAD.decode(key["k"].as_str().unwrap()).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for the example provider, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut claims =
        json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now().saturating_add(600), "sub": "tester"});
    for (key, value) in extra.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

/// A compact JWS: base64url(header).base64url(claims).base64url(HMAC-SHA256).
fn sign_with(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

fn sign(claims: &Value) -> String {
    sign_with(
        &example_key(),
        &json!({"alg": "HS256", "typ": "JWT"}),
        claims,
    )
}

fn team_token(team: &str) -> String {
    sign(&claims(json!({ "team": team })))
}

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
        .to_string()
        .into_bytes()
}

fn post_with_token(envoy: &Envoy, token: &str, model: &str) -> Response {
    post_to(envoy, "/v1/chat/completions", token, model)
}

fn post_to(envoy: &Envoy, path: &str, token: &str, model: &str) -> Response {
    let bearer = format!("Bearer {token}");
    http::post(
        envoy.port(),
        path,
        &[JSON, ("authorization", &bearer)],
        &chat(model),
    )
}

fn assert_not_approved_for(response: &Response, consumer: &str) {
    assert_eq!(response.status, 403, "{response:?}");
    let body = response.json();
    assert_eq!(body["error"]["code"], "model_not_approved", "{response:?}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("consumer \"{consumer}\"")),
        "{message}"
    );
}

#[test]
fn team_claim_picks_the_consumer() {
    let (mock, envoy) = gateway();

    // The team's token reaches a model only the team may use.
    let team = team_token("search-team");
    let body = chat(TEAM_MODEL);
    let response = http::post(
        envoy.port(),
        "/v1/chat/completions",
        &[JSON, ("authorization", &format!("Bearer {team}"))],
        &body,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["model"], TEAM_MODEL);
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "openai");
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(upstream.body, body, "forwarded byte for byte");
    assert_eq!(
        upstream.header("authorization"),
        None,
        "forward: false keeps the gateway's token from the provider"
    );

    // The same token where Anthropic's SDK puts its key; the alias is rewritten as usual.
    mock.reset();
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = http::post(
        envoy.port(),
        "/v1/messages",
        &[
            JSON,
            ("x-api-key", &team),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = mock.single_request();
    assert_eq!(upstream.listener, "anthropic");
    assert_eq!(upstream.json()["model"], "claude-sonnet-4-20250514");
    assert_eq!(upstream.header("x-api-key"), None);

    // A token for `default`, for a team with no entry, with an empty claim (Envoy hands it to
    // the module as no value) or without the claim: `default`.
    mock.reset();
    for token in [
        team_token("default"),
        team_token("marketing"),
        team_token(""),
        sign(&claims(json!({}))),
    ] {
        let response = post_with_token(&envoy, &token, TEAM_MODEL);
        assert_not_approved_for(&response, "default");
    }
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    // `default` still gets what `default` may use (claims that are there but unusable are
    // refused: `a_claim_posturio_cannot_use_is_refused_never_default`).
    let response = post_with_token(&envoy, &team_token("marketing"), "gpt-4o-mini");
    assert_eq!(response.status, 200, "{response:?}");
    let upstream = mock.single_request();
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    envoy.assert_no_wasm_failure();
}

#[test]
fn spoofed_consumer_header_is_ignored() {
    let (mock, envoy) = gateway();
    let port = envoy.port();
    let spoof = ("x-posturio-consumer", "search-team");

    // A `default` token with the team's name in the header the header identity would read.
    let bearer = format!("Bearer {}", team_token("default"));
    let response = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, ("authorization", &bearer), spoof],
        &chat(TEAM_MODEL),
    );
    assert_not_approved_for(&response, "default");
    // Given twice, it is still not read: no `invalid_identity`, the token decides.
    let response = http::post(
        port,
        "/v1/chat/completions",
        &[JSON, ("authorization", &bearer), spoof, spoof],
        &chat(TEAM_MODEL),
    );
    assert_not_approved_for(&response, "default");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    // And it takes nothing away from the team's own token.
    let bearer = format!("Bearer {}", team_token("search-team"));
    let response = http::post(
        port,
        "/v1/chat/completions",
        &[
            JSON,
            ("authorization", &bearer),
            ("x-posturio-consumer", "default"),
        ],
        &chat(TEAM_MODEL),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(mock.requests().len(), 1);
    envoy.assert_no_wasm_failure();
}

#[test]
fn bad_tokens_never_reach_posturio_or_a_provider() {
    let (mock, envoy) = gateway();
    let key = example_key();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let team = claims(json!({"team": "search-team"}));

    let mut wrong_key = key.clone();
    wrong_key[0] ^= 1;
    let valid = sign(&team);
    let (signed, _) = valid.rsplit_once('.').unwrap();
    let (header, _) = signed.split_once('.').unwrap();
    let tampered_claims = claims(json!({"team": "search-team", "sub": "mallory"}));
    let tampered = format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        valid.rsplit_once('.').unwrap().1
    );
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(team.to_string())
    );
    // Envoy answers 401 for a token it cannot verify, 403 for a verified one that is not
    // meant for this gateway.
    let expired = claims(json!({"team": "search-team", "exp": now().saturating_sub(3600)}));
    let other_issuer = claims(json!({"team": "search-team", "iss": "https://evil.example"}));
    let other_audience = claims(json!({"team": "search-team", "aud": "billing"}));
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        (
            "signed with another key",
            Some(sign_with(&wrong_key, &hs256, &team)),
            401,
        ),
        ("claims changed after signing", Some(tampered), 401),
        ("alg none", Some(unsigned), 401),
        ("expired an hour ago", Some(sign(&expired)), 401),
        ("another issuer", Some(sign(&other_issuer)), 401),
        ("another audience", Some(sign(&other_audience)), 403),
        ("not a JWT", Some("search-team".to_owned()), 401),
        ("missing", None, 401),
    ];
    for (name, token, status) in &cases {
        let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![JSON, ("x-posturio-consumer", "search-team")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer));
        }
        let response = http::post(
            envoy.port(),
            "/v1/chat/completions",
            &headers,
            &chat("gpt-4o-mini"),
        );
        assert_eq!(response.status, *status, "{name}: {response:?}");
        assert!(
            response.text().contains("Jwt"),
            "{name}: Envoy's jwt_authn answers, not Posturio: {response:?}"
        );
        assert_eq!(response.header("x-posturio-code"), None, "{name}");
    }
    // A valid token somewhere the example does not read tokens from (jwt_authn's default
    // `access_token` query parameter is off once `from_headers` is given).
    let response = http::post(
        envoy.port(),
        &format!("/v1/chat/completions?access_token={valid}"),
        &[JSON],
        &chat("gpt-4o-mini"),
    );
    assert_eq!(response.status, 401, "{response:?}");

    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    // Posturio never saw them: no decision was logged.
    std::thread::sleep(Duration::from_millis(300));
    let decisions: Vec<String> = envoy
        .log()
        .lines()
        .filter(|line| line.contains("\"decision\":"))
        .map(str::to_owned)
        .collect();
    assert!(decisions.is_empty(), "{decisions:#?}");
    envoy.assert_no_wasm_failure();
}

/// The example's JSON access log carries Posturio's filter state
/// (`%FILTER_STATE(wasm.posturio.<key>:PLAIN)%`) next to the token's subject.
#[test]
fn access_log_records_the_decision() {
    let (mock, envoy) = gateway();
    let alice = sign(&claims(json!({"team": "search-team", "sub": "alice"})));
    let bob = sign(&claims(json!({"team": "default", "sub": "bob"})));

    let response = post_to(&envoy, "/v1/messages", &alice, "claude-sonnet-4");
    assert_eq!(response.status, 200, "{response:?}");
    let response = post_with_token(&envoy, &bob, TEAM_MODEL);
    assert_not_approved_for(&response, "default");
    let response = post_with_token(&envoy, "not-a-token", "gpt-4o-mini");
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(mock.requests().len(), 1);

    let wait = Duration::from_secs(10);
    let line = |needle: &str| -> Value {
        let line = envoy
            .wait_for_access_log(needle, wait)
            .unwrap_or_else(|| panic!("no access log line with {needle}:\n{}", envoy.access_log()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };

    let allowed = line("\"subject\":\"alice\"");
    assert_eq!(allowed["status"], 200, "{allowed:#}");
    assert_eq!(allowed["method"], "POST");
    assert_eq!(allowed["path"], "/v1/messages");
    assert_eq!(allowed["upstream_cluster"], "anthropic");
    assert_eq!(allowed["posturio_decision"], "allow");
    assert_eq!(allowed["posturio_code"], Value::Null, "no code: left unset");
    assert_eq!(allowed["posturio_consumer"], "search-team");
    assert_eq!(allowed["posturio_model"], "claude-sonnet-4");
    assert_eq!(
        allowed["posturio_upstream_model"],
        "claude-sonnet-4-20250514"
    );
    assert_eq!(allowed["posturio_provider"], "anthropic");
    assert_eq!(allowed["posturio_api"], "anthropic");
    assert_eq!(
        allowed["posturio_rules"],
        Value::Null,
        "no rule fired: left unset"
    );

    let denied = line("\"subject\":\"bob\"");
    assert_eq!(denied["status"], 403, "{denied:#}");
    assert_eq!(denied["posturio_decision"], "deny");
    assert_eq!(denied["posturio_code"], "model_not_approved");
    assert_eq!(denied["posturio_consumer"], "default");
    assert_eq!(denied["posturio_model"], TEAM_MODEL);
    assert_eq!(denied["upstream_cluster"], Value::Null);

    // jwt_authn refused it before Posturio ran: Posturio's fields are absent.
    let refused = line("\"status\":401");
    assert_eq!(refused["posturio_decision"], Value::Null, "{refused:#}");
    assert_eq!(refused["subject"], Value::Null);
    envoy.assert_no_wasm_failure();
}

/// A claim that is there but is no usable name is refused in the caller's shape, before the
/// body is read: never evaluated as `default`, which would hand a team `default`'s rights
/// instead of its own.
#[test]
fn a_claim_posturio_cannot_use_is_refused_never_default() {
    let (mock, envoy) = gateway();
    let cases = [
        ("a list", json!(["search-team"]), "not text"),
        ("an empty list", json!([]), "not text"),
        ("an object", json!({"name": "search-team"}), "not text"),
        ("a number", json!(7), "not text"),
        ("a boolean", json!(true), "not text"),
        ("false", json!(false), "not text"),
        (
            "other case",
            json!("Search-Team"),
            "differs from consumer \"search-team\" only in case",
        ),
        ("other case of default", json!("DEFAULT"), "only in case"),
        (
            "spaces around",
            json!(" search-team "),
            "white space around consumer \"search-team\"",
        ),
        ("a newline", json!("search-team\n"), "not text"),
        // Values that render as "search-team" without being it.
        (
            "a zero-width space",
            json!("search-team\u{200b}"),
            "a character no consumer name may hold",
        ),
        (
            "a combining mark",
            json!("search-te\u{301}am"),
            "a character no consumer name may hold",
        ),
        (
            "a full-width letter",
            json!("\u{ff53}earch-team"),
            "a character no consumer name may hold",
        ),
        (
            "a Cyrillic look-alike",
            json!("search-te\u{430}m"),
            "a character no consumer name may hold",
        ),
        // Envoy cannot hand a null claim to the module at all (get_property fails with
        // SerializationFailure): it is there, and names nobody.
        ("null", Value::Null, "not text"),
    ];
    for (name, team, reason) in cases {
        let token = sign(&claims(json!({ "team": team })));
        // Even a model `default` may use: the request is not evaluated as anyone.
        let response = post_with_token(&envoy, &token, "gpt-4o-mini");
        assert_eq!(response.status, 403, "{name}: {response:?}");
        assert_eq!(
            response.header("x-posturio-code"),
            Some("identity_unusable"),
            "{name}"
        );
        let error = &response.json()["error"];
        assert_eq!(error["code"], "identity_unusable", "{name}");
        assert_eq!(error["type"], "permission_error", "{name}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("the identity at metadata \"envoy.filters.http.jwt_authn\""),
            "{name}: {message}"
        );
        assert!(message.contains(reason), "{name}: {message}");
    }
    // In Anthropic's shape on its endpoint.
    let token = sign(&claims(json!({"team": ["search-team"]})));
    let body = json!({"model": "claude-sonnet-4", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = http::post(
        envoy.port(),
        "/v1/messages",
        &[
            JSON,
            ("x-api-key", &token),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(response.json()["type"], "error");
    assert_eq!(response.json()["error"]["type"], "permission_error");
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    // Recorded as a refusal with no consumer.
    let line = envoy
        .wait_for_log("\"code\":\"identity_unusable\"", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no decision logged:\n{}", envoy.log()));
    assert!(line.contains("\"decision\":\"deny\""), "{line}");

    // The exact name still works.
    let response = post_with_token(&envoy, &team_token("search-team"), TEAM_MODEL);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(mock.requests().len(), 1);
    envoy.assert_no_wasm_failure();
}
