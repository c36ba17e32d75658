//! The identity step through the driver, over the fake host: the consumer a key, a client
//! certificate or both name, each refusal in each family's shape, and what is forwarded.

use std::rc::Rc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::pipeline::{FakeHost, Flow, Request};
use crate::policy::{ApiFamily, Code, Policy, Reply};

/// A key's entry in a policy: `"sha256:<hex>"`.
fn hash(key: &str) -> String {
    let hex: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// 2026-01-01T00:00:00Z, when `old-key` expires.
const EXPIRY: u64 = 1_767_225_600;

/// Three consumers, each with keys and principals; those the identity does not read are left
/// out (listing them would be a configuration error).
fn policy(identity: &str, mode: &str) -> Rc<Policy> {
    let identity: Value = serde_json::from_str(identity).unwrap();
    let keys = |list: Value| identity.get("api_keys").map(|_| list);
    let principals = |list: Value| identity.get("peer_certificate").map(|_| list);
    let consumer = |models: Value, api_keys: Value, spiffe: Value| {
        let mut entry = json!({ "models": models });
        if let Some(api_keys) = keys(api_keys) {
            entry["api_keys"] = api_keys;
        }
        if let Some(spiffe) = principals(spiffe) {
            entry["principals"] = spiffe;
        }
        entry
    };
    let config = json!({
        "mode": mode,
        "identity": identity,
        "providers": {
            "openai": { "cluster": "openai", "api": "openai" },
            "anthropic": { "cluster": "anthropic", "api": "anthropic" },
            "gemini": { "cluster": "gemini", "api": "gemini" },
            "bedrock": { "cluster": "bedrock", "api": "bedrock" }
        },
        "models": {
            "gpt-4o": { "provider": "openai" },
            "fast": { "provider": "openai", "upstream_model": "gpt-4o-mini" },
            "claude": { "provider": "anthropic" },
            "gemini-pro": { "provider": "gemini" },
            "titan": { "provider": "bedrock" }
        },
        "consumers": {
            "search": consumer(
                json!(["*"]),
                json!([hash("search-key"),
                       { "hash": hash("old-key"), "expires": "2026-01-01T00:00:00Z" }]),
                json!(["spiffe://cluster.local/ns/search/sa/*"]),
            ),
            "ops": consumer(
                json!(["gpt-4o"]),
                json!([hash("ops-key")]),
                json!(["spiffe://cluster.local/ns/ops/sa/bot"]),
            ),
            "default": { "models": ["*"] }
        },
        "passthrough": [ { "method": "GET", "path_prefix": "/v1/files", "provider": "openai" } ]
    });
    Rc::new(Policy::from_json(config.to_string().as_bytes()).unwrap())
}

const KEYS: &str = r#"{ "api_keys": true }"#;
const PEER: &str = r#"{ "peer_certificate": true }"#;
const BOTH: &str = r#"{ "api_keys": true, "peer_certificate": true }"#;
const KEYS_AND_CLAIM: &str =
    r#"{ "api_keys": true, "metadata": { "namespace": "jwt", "path": ["team"] } }"#;

const PEER_PROPERTY: &str = "connection.uri_san_peer_certificate";

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Runs the request through headers and body; the reply, if it was refused.
fn run(host: &FakeHost, policy: Rc<Policy>) -> (Option<Reply>, Option<String>) {
    let mut filter = Request::new(host, Some(policy), Rc::default());
    let flow = filter.on_request_headers(host.body.is_empty());
    if flow == Flow::Pause && host.replies.borrow().is_empty() {
        filter.on_request_body(host.body.len(), true);
    }
    let consumer = filter
        .outcome()
        .and_then(|outcome| outcome.facts.consumer.clone());
    (host.replies.borrow().first().cloned(), consumer)
}

fn openai(extra: &[(&str, &str)]) -> FakeHost {
    FakeHost::request("POST", "/v1/chat/completions", extra, &chat("gpt-4o"))
}

fn with_peer(host: FakeHost, uri: &str) -> FakeHost {
    host.properties
        .borrow_mut()
        .push((PEER_PROPERTY.to_owned(), uri.as_bytes().to_vec()));
    host
}

/// Asserts the request was refused with `code`, and the reply shows no key or hash.
fn assert_refused(host: &FakeHost, policy: Rc<Policy>, code: Code, says: &str) -> Reply {
    let (reply, _) = run(host, policy);
    let reply = reply.unwrap_or_else(|| panic!("forwarded, expected {}", code.as_str()));
    assert_eq!(reply.code, code, "{}", reply.message);
    assert!(reply.message.contains(says), "{}", reply.message);
    let body = String::from_utf8(reply.body()).unwrap();
    for secret in [
        "search-key",
        "ops-key",
        "old-key",
        "sha256",
        "search\"",
        "ops\"",
    ] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }
    assert_eq!(host.header("x-posturio-cluster"), None);
    reply
}

#[test]
fn a_key_names_its_consumer_from_every_place() {
    let gemini = "/v1beta/models/gemini-pro:generateContent";
    for (place, method, path, extra) in [
        (
            "bearer",
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer search-key")][..],
        ),
        (
            "bearer lowercase",
            "POST",
            "/v1/messages",
            &[("authorization", "bearer  search-key")],
        ),
        (
            "x-api-key",
            "POST",
            "/v1/messages",
            &[("x-api-key", "search-key")],
        ),
        (
            "api-key",
            "POST",
            "/v1/chat/completions",
            &[("api-key", "search-key")],
        ),
        (
            "x-goog-api-key",
            "POST",
            gemini,
            &[("x-goog-api-key", "search-key")],
        ),
        ("query", "POST", &format!("{gemini}?key=search-key"), &[]),
        (
            "bedrock bearer",
            "POST",
            "/model/titan/converse",
            &[("authorization", "Bearer search-key")],
        ),
        (
            "same key twice",
            "POST",
            &format!("{gemini}?key=search-key"),
            &[
                ("authorization", "Bearer search-key"),
                ("x-goog-api-key", "search-key"),
            ],
        ),
    ] {
        let model = match path {
            p if p.starts_with("/v1/messages") => "claude",
            p if p.starts_with("/v1beta") => "gemini-pro",
            p if p.starts_with("/model/") => "titan",
            _ => "gpt-4o",
        };
        let host = FakeHost::request(method, path, extra, &chat(model));
        let (reply, consumer) = run(&host, policy(KEYS, "enforce"));
        assert_eq!(reply, None, "{place}");
        assert_eq!(consumer.as_deref(), Some("search"), "{place}");
        for header in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
            assert_eq!(host.header(header), None, "{place}: {header} forwarded");
        }
        let forwarded = host.header(":path").unwrap();
        assert!(!forwarded.contains("key="), "{place}: {forwarded}");
    }
    let host = openai(&[("authorization", "Bearer ops-key")]);
    assert_eq!(
        run(&host, policy(KEYS, "enforce")).1.as_deref(),
        Some("ops")
    );
}

#[test]
fn key_refusals() {
    let keys = || policy(KEYS, "enforce");
    let missing = assert_refused(&openai(&[]), keys(), Code::MissingApiKey, "x-goog-api-key");
    assert_eq!(missing.status(), 401);
    let basic = openai(&[("authorization", "Basic dXNlcjpwYXNz")]);
    assert_refused(&basic, keys(), Code::MissingApiKey, "carries no API key");
    let unknown = openai(&[("x-api-key", "nobody-key")]);
    let reply = assert_refused(&unknown, keys(), Code::InvalidApiKey, "is not known");
    assert_eq!(reply.status(), 401);
    let empty = openai(&[("authorization", "Bearer ")]);
    assert_refused(&empty, keys(), Code::InvalidApiKey, "empty API key");
    let twice = openai(&[("x-api-key", "search-key"), ("x-api-key", "search-key")]);
    assert_refused(
        &twice,
        keys(),
        Code::InvalidApiKey,
        "sent twice; send one key",
    );
    let different = openai(&[
        ("authorization", "Bearer search-key"),
        ("api-key", "ops-key"),
    ]);
    assert_refused(
        &different,
        keys(),
        Code::InvalidApiKey,
        "carry different keys",
    );
    let query_twice = FakeHost::request(
        "POST",
        "/v1/chat/completions?key=search-key&key=search-key",
        &[],
        &chat("gpt-4o"),
    );
    assert_refused(&query_twice, keys(), Code::InvalidApiKey, "sent twice");
    // Identity refusals hold in audit mode too: the consumer is unknown.
    assert_refused(&openai(&[]), policy(KEYS, "audit"), Code::MissingApiKey, "");
    // No fallback to `default` for lack of a key, although the policy has one.
    let (_, consumer) = run(&openai(&[]), keys());
    assert_eq!(consumer, None);
}

#[test]
fn a_key_expires_at_its_expiry() {
    let at = |seconds: u64| {
        let host = openai(&[("authorization", "Bearer old-key")]);
        host.now.set(seconds * 1_000_000_000 + 999_999_999);
        host
    };
    let (reply, consumer) = run(&at(EXPIRY - 1), policy(KEYS, "enforce"));
    assert_eq!((reply, consumer.as_deref()), (None, Some("search")));
    let reply = assert_refused(
        &at(EXPIRY),
        policy(KEYS, "enforce"),
        Code::InvalidApiKey,
        "the API key expired at 2026-01-01T00:00:00Z",
    );
    assert_eq!(reply.status(), 401);
    assert_refused(
        &at(EXPIRY + 86_400),
        policy(KEYS, "enforce"),
        Code::InvalidApiKey,
        "expired",
    );
}

#[test]
fn refusals_take_the_callers_shape() {
    for (path, model, shape) in [
        ("/v1/chat/completions", "gpt-4o", ApiFamily::OpenAi),
        ("/v1/messages", "claude", ApiFamily::Anthropic),
        (
            "/v1beta/models/gemini-pro:generateContent",
            "gemini-pro",
            ApiFamily::Gemini,
        ),
        ("/model/titan/converse", "titan", ApiFamily::Bedrock),
    ] {
        let host = FakeHost::request("POST", path, &[], &chat(model));
        let reply = assert_refused(&host, policy(KEYS, "enforce"), Code::MissingApiKey, "");
        assert_eq!(reply.shape, shape, "{path}");
        let host = with_peer(
            FakeHost::request("POST", path, &[], &chat(model)),
            "spiffe://cluster.local/ns/x/sa/y",
        );
        let reply = assert_refused(
            &host,
            policy(PEER, "enforce"),
            Code::UnknownPeerIdentity,
            "",
        );
        assert_eq!((reply.shape, reply.status()), (shape, 403), "{path}");
    }
}

#[test]
fn the_key_never_reaches_the_provider() {
    // The path keeps every other parameter byte for byte and in order.
    let path = "/v1beta/models/gemini-pro:generateContent?alt=sse&key=search-key&x=%2F+1";
    let host = FakeHost::request(
        "POST",
        path,
        &[("authorization", "Basic abc")],
        &chat("gemini-pro"),
    );
    let (reply, _) = run(&host, policy(KEYS, "enforce"));
    assert_eq!(reply, None);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1beta/models/gemini-pro:generateContent?alt=sse&x=%2F+1")
    );
    assert_eq!(host.header("authorization"), None, "whatever its scheme");
    // With the model renamed in the path as well.
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions?key=search-key",
        &[("x-goog-api-key", "search-key")],
        &chat("fast"),
    );
    assert_eq!(run(&host, policy(KEYS, "enforce")).0, None);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(host.header("x-goog-api-key"), None);
    // A passthrough call too.
    let host = FakeHost::request(
        "GET",
        "/v1/files?limit=2&k%65y=search-key",
        &[("authorization", "Bearer search-key")],
        "",
    );
    assert_eq!(run(&host, policy(KEYS, "enforce")).0, None);
    assert_eq!(host.header(":path").as_deref(), Some("/v1/files?limit=2"));
    assert_eq!(host.header("x-posturio-cluster").as_deref(), Some("openai"));
    assert_eq!(host.header("authorization"), None);
}

#[test]
fn every_credential_a_provider_reads_is_removed() {
    let path = "/v1beta/models/gemini-pro:generateContent?$key=search-key&alt=sse\
                &access_token=ya29&X-Amz-Signature=ab&x=%2F+1";
    let host = FakeHost::request(
        "POST",
        path,
        &[
            ("proxy-authorization", "Basic abc"),
            ("x-amz-security-token", "sts"),
            ("ocp-apim-subscription-key", "apim"),
        ],
        &chat("gemini-pro"),
    );
    let (reply, _) = run(&host, policy(KEYS, "enforce"));
    assert_eq!(reply, None);
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1beta/models/gemini-pro:generateContent?alt=sse&x=%2F+1")
    );
    for name in [
        "proxy-authorization",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
    ] {
        assert_eq!(host.header(name), None, "{name}");
    }
    // Without keys configured they are the client's business, and left alone.
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions?access_token=t",
        &[("x-team", "search"), ("x-amz-security-token", "sts")],
        &chat("gpt-4o"),
    );
    assert_eq!(
        run(&host, policy(r#"{ "header": "x-team" }"#, "enforce")).0,
        None
    );
    assert_eq!(host.header("x-amz-security-token").as_deref(), Some("sts"));
    assert_eq!(
        host.header(":path").as_deref(),
        Some("/v1/chat/completions?access_token=t")
    );
}

#[test]
fn without_api_keys_credentials_are_left_alone() {
    let path = "/v1/chat/completions?key=abc";
    let host = FakeHost::request(
        "POST",
        path,
        &[("authorization", "Bearer sk-1")],
        &chat("gpt-4o"),
    );
    assert_eq!(
        run(&host, policy(PEER, "enforce")).0.map(|r| r.code),
        Some(Code::MissingPeerIdentity)
    );
    let host = FakeHost::request(
        "POST",
        path,
        &[("authorization", "Bearer sk-1")],
        &chat("gpt-4o"),
    );
    let header = r#"{ "header": "x-team" }"#;
    assert_eq!(run(&host, policy(header, "enforce")).0, None);
    assert_eq!(host.header("authorization").as_deref(), Some("Bearer sk-1"));
    assert_eq!(host.header(":path").as_deref(), Some(path));
}

#[test]
fn a_peer_certificate_names_its_consumer() {
    let peer = || policy(PEER, "enforce");
    for (uri, consumer) in [
        ("spiffe://cluster.local/ns/search/sa/api", "search"),
        ("spiffe://cluster.local/ns/ops/sa/bot", "ops"),
    ] {
        let host = with_peer(openai(&[]), uri);
        assert_eq!(
            run(&host, peer()),
            (None, Some(consumer.to_owned())),
            "{uri}"
        );
    }
    let reply = assert_refused(
        &openai(&[]),
        peer(),
        Code::MissingPeerIdentity,
        "mutual TLS",
    );
    assert_eq!(reply.status(), 401);
    let empty = with_peer(openai(&[]), "");
    assert_refused(&empty, peer(), Code::MissingPeerIdentity, "");
    // A header claiming a certificate is never read.
    let spoofed = openai(&[(
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/ops/sa/bot",
    )]);
    assert_refused(&spoofed, peer(), Code::MissingPeerIdentity, "");
    let says = "the client certificate's identity is not a consumer of this gateway";
    for uri in [
        "spiffe://cluster.local/ns/other/sa/x",
        "spiffe://cluster.local/ns/search/sa/../x",
        "https://cluster.local/ns/ops/sa/bot",
    ] {
        let reply = assert_refused(
            &with_peer(openai(&[]), uri),
            peer(),
            Code::UnknownPeerIdentity,
            says,
        );
        assert!(!reply.message.contains("spiffe"), "{}", reply.message);
    }
}

#[test]
fn every_source_is_required_and_all_name_the_same_consumer() {
    let both = || policy(BOTH, "enforce");
    let agree = with_peer(
        openai(&[("authorization", "Bearer ops-key")]),
        "spiffe://cluster.local/ns/ops/sa/bot",
    );
    assert_eq!(run(&agree, both()), (None, Some("ops".to_owned())));
    let disagree = with_peer(
        openai(&[("authorization", "Bearer ops-key")]),
        "spiffe://cluster.local/ns/search/sa/api",
    );
    // Another consumer's live key gets the refusal a guess gets: the certificate's holder
    // learns nothing of keys that are not its consumer's.
    let says = "the API key is not known for the consumer the client certificate names";
    let reply = assert_refused(&disagree, both(), Code::InvalidApiKey, says);
    assert_eq!(reply.status(), 401);
    let guess = with_peer(
        openai(&[("authorization", "Bearer guess")]),
        "spiffe://cluster.local/ns/search/sa/api",
    );
    assert_eq!(
        assert_refused(&guess, both(), Code::InvalidApiKey, says).body(),
        reply.body()
    );
    let no_key = with_peer(openai(&[]), "spiffe://cluster.local/ns/ops/sa/bot");
    assert_refused(&no_key, both(), Code::MissingApiKey, "");
    let no_peer = openai(&[("authorization", "Bearer ops-key")]);
    assert_refused(&no_peer, both(), Code::MissingPeerIdentity, "");
    assert_refused(&disagree, policy(BOTH, "audit"), Code::InvalidApiKey, "");
}

/// The key is judged after the certificate: without the certificate the policy also requires,
/// a known key, an expired one and a guess get the same refusal.
#[test]
fn without_the_certificate_nothing_is_learnt_of_the_key() {
    let both = || policy(BOTH, "enforce");
    for key in ["Bearer ops-key", "Bearer search-key", "Bearer guess"] {
        let no_peer = openai(&[("authorization", key)]);
        let reply = assert_refused(&no_peer, both(), Code::MissingPeerIdentity, "");
        let unknown = with_peer(
            openai(&[("authorization", key)]),
            "spiffe://cluster.local/ns/nobody/sa/x",
        );
        let other = assert_refused(&unknown, both(), Code::UnknownPeerIdentity, "");
        assert_eq!(reply.message, missing_peer_message(), "{key}");
        assert!(!other.message.contains("key"), "{}", other.message);
    }
}

fn missing_peer_message() -> String {
    let (reply, _) = run(&openai(&[]), policy(BOTH, "enforce"));
    reply.map(|reply| reply.message).unwrap_or_default()
}

#[test]
fn a_verified_claim_beside_a_key_is_required_too() {
    let claimed = |team: Option<&str>| {
        let host = openai(&[("authorization", "Bearer search-key")]);
        if let Some(team) = team {
            host.properties.borrow_mut().push((
                "metadata.filter_metadata.jwt.team".to_owned(),
                team.as_bytes().to_vec(),
            ));
        }
        host
    };
    let keyed = || policy(KEYS_AND_CLAIM, "enforce");
    assert_eq!(
        run(&claimed(Some("search")), keyed()),
        (None, Some("search".to_owned()))
    );
    // A key is only judged as a key of the consumer the claim names.
    let says = "the API key is not known for the consumer the verified claim names";
    assert_refused(&claimed(Some("ops")), keyed(), Code::InvalidApiKey, says);
    assert_refused(&claimed(Some("nobody")), keyed(), Code::InvalidApiKey, says);
    assert_refused(
        &claimed(None),
        keyed(),
        Code::IdentityUnusable,
        "is missing",
    );
}

/// As `a_forwarded_request_costs_these_host_calls` in `driver_tests.rs`, for a policy that
/// reads API keys: the key header's removal is the one call added, and only when it was sent.
#[test]
fn a_request_with_a_key_costs_these_host_calls() {
    let calls = |host: &FakeHost| {
        let mut filter = Request::new(host, Some(policy(KEYS, "enforce")), Rc::default());
        filter.on_request_headers(false);
        host.calls.take()
    };
    let host = openai(&[("authorization", "Bearer search-key")]);
    assert_eq!(
        calls(&host),
        vec!["now_nanos", "request_headers", "set_request_header"]
    );
    let host = FakeHost::request("POST", "/v1/chat/completions?key=search-key", &[], "{}");
    assert_eq!(calls(&host), vec!["now_nanos", "request_headers"]);
    let host = with_peer(
        openai(&[("x-api-key", "ops-key")]),
        "spiffe://cluster.local/ns/ops/sa/bot",
    );
    let mut filter = Request::new(&host, Some(policy(BOTH, "enforce")), Rc::default());
    filter.on_request_headers(false);
    assert_eq!(
        host.calls.take(),
        vec![
            "now_nanos",
            "request_headers",
            "set_request_header",
            "property"
        ]
    );
}

#[test]
fn a_logged_san_stays_one_line() {
    let logged = super::loggable(b"spiffe://cluster.local/ns/x\n[warn] forged \x1b[31m\"q\"");
    assert!(
        !logged.contains('\n') && !logged.contains('\u{1b}'),
        "{logged}"
    );
    assert!(
        logged.starts_with("spiffe://cluster.local/ns/x\\n"),
        "{logged}"
    );
    assert!(logged.contains("\\\""), "{logged}");
}

/// The certificate and the verified claim are judged together: naming different consumers,
/// they conflict, whatever key comes with them.
#[test]
fn a_certificate_and_a_claim_naming_different_consumers_conflict() {
    let identity =
        r#"{ "peer_certificate": true, "metadata": { "namespace": "jwt", "path": ["team"] } }"#;
    let claimed = |team: &str| {
        let host = with_peer(openai(&[]), "spiffe://cluster.local/ns/search/sa/api");
        host.properties.borrow_mut().push((
            "metadata.filter_metadata.jwt.team".to_owned(),
            team.as_bytes().to_vec(),
        ));
        host
    };
    assert_eq!(
        run(&claimed("search"), policy(identity, "enforce")),
        (None, Some("search".to_owned()))
    );
    let reply = assert_refused(
        &claimed("ops"),
        policy(identity, "enforce"),
        Code::IdentityConflict,
        "the client certificate and the verified claim name different consumers",
    );
    assert_eq!(reply.status(), 403);
}
