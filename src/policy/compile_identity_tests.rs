use serde_json::{json, Value};

use crate::policy::compiled::Identity;
use crate::policy::{ConfigError, Policy};

/// `sha256:` of "test".
const HASH_A: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// `sha256:` of "other".
const HASH_B: &str = "sha256:d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa";

fn policy(identity: Value, consumers: Value) -> Result<Policy, Vec<ConfigError>> {
    let config = json!({
        "providers": {"openai": {"cluster": "openai", "api": "openai"}},
        "models": {"gpt-4o": {"provider": "openai"}},
        "identity": identity,
        "consumers": consumers,
    });
    Policy::from_json(config.to_string().as_bytes())
}

fn errors(identity: Value, consumers: Value) -> Vec<String> {
    match policy(identity, consumers) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts one error starts with `path: ` and holds `says`.
fn assert_error(found: &[String], path: &str, says: &str) {
    assert!(
        found
            .iter()
            .any(|line| line.starts_with(&format!("{path}: ")) && line.contains(says)),
        "expected {path}: ...{says}... in {found:#?}"
    );
}

fn keyed(keys: Value) -> Value {
    json!({"search": {"models": ["gpt-4o"], "api_keys": keys}})
}

#[test]
fn keys_and_principals_compile() {
    let compiled = policy(
        json!({"api_keys": true, "peer_certificate": true}),
        json!({
            "search": {"models": ["gpt-4o"],
                       "api_keys": [HASH_A.to_uppercase().replace("SHA256:", "sha256:")],
                       "principals": ["spiffe://cluster.local/ns/search/sa/*"]},
            "default": {"models": ["gpt-4o"],
                        "api_keys": [{"hash": HASH_B, "expires": "2027-01-31T00:00:00Z"}],
                        "principals": ["spiffe://cluster.local/ns/ops/sa/bot"]},
        }),
    )
    .unwrap();
    let keys = compiled.identity.api_keys().unwrap();
    assert_eq!(keys.consumer_for(b"test", None, None), Ok("search"));
    assert_eq!(keys.consumer_for(b"other", Some(0), None), Ok("default"));
    let principals = compiled.identity.peer_certificate().unwrap();
    assert_eq!(
        principals.consumer_for(b"spiffe://cluster.local/ns/ops/sa/bot"),
        Ok("default")
    );
    assert!(compiled.identity.metadata().is_none());
}

#[test]
fn older_identities_keep_their_shape() {
    let consumers = json!({"default": {"models": ["gpt-4o"]}});
    let header = policy(json!({"header": "x-team"}), consumers.clone()).unwrap();
    assert_eq!(header.identity, Identity::Header("x-team".to_owned()));
    let metadata = json!({"metadata": {"namespace": "jwt", "path": ["team"]}});
    let compiled = policy(metadata, consumers.clone()).unwrap();
    assert!(matches!(compiled.identity, Identity::Metadata { .. }));
    let with_keys = json!({"metadata": {"namespace": "jwt", "path": ["team"]}, "api_keys": true});
    let compiled = policy(with_keys, keyed(json!([HASH_A]))).unwrap();
    assert!(matches!(compiled.identity, Identity::Verified(_)));
    assert_eq!(compiled.identity.metadata().map(|(ns, _)| ns), Some("jwt"));
    let off = json!({"header": "x-team", "api_keys": false, "peer_certificate": false});
    assert!(policy(off, consumers).is_ok());
}

#[test]
fn identity_errors() {
    let consumers = || keyed(json!([HASH_A]));
    let header_too = "a header any client can set would weaken the stronger identity source";
    for (case, identity, consumers, path, says) in [
        (
            "header with api_keys",
            json!({"header": "x-team", "api_keys": true}),
            consumers(),
            "identity.header",
            header_too,
        ),
        (
            "header with peer_certificate",
            json!({"header": "x-team", "peer_certificate": true}),
            json!({"a": {"models": ["gpt-4o"], "principals": ["spiffe://td/a"]}}),
            "identity.header",
            "remove identity.header",
        ),
        (
            "header with metadata",
            json!({"header": "x-team", "metadata": {"namespace": "jwt", "path": ["t"]}}),
            json!({}),
            "identity.header",
            header_too,
        ),
        (
            "no source",
            json!({"api_keys": false}),
            json!({}),
            "identity",
            "give at least one source",
        ),
        (
            "api_keys with no key",
            json!({"api_keys": true}),
            json!({"search": {"models": ["gpt-4o"]}}),
            "identity.api_keys",
            "no consumer lists an API key",
        ),
        (
            "peer_certificate with no principal",
            json!({"peer_certificate": true}),
            json!({"search": {"models": ["gpt-4o"]}}),
            "identity.peer_certificate",
            "no consumer lists a principal",
        ),
        (
            "keys without api_keys",
            json!({"header": "x-team"}),
            consumers(),
            "consumers.search.api_keys",
            "set identity.api_keys to true or remove the keys",
        ),
        (
            "keys without identity",
            Value::Null,
            consumers(),
            "consumers.search.api_keys",
            "set identity.api_keys to true or remove the keys",
        ),
        (
            "principals without peer_certificate",
            json!({"api_keys": true}),
            json!({"search": {"models": ["gpt-4o"], "api_keys": [HASH_A],
                              "principals": ["spiffe://td/a"]}}),
            "consumers.search.principals",
            "set identity.peer_certificate to true or remove the principals",
        ),
    ] {
        let identity = if identity.is_null() {
            // No identity at all: the key is omitted.
            let config = json!({
                "providers": {"openai": {"cluster": "openai", "api": "openai"}},
                "models": {"gpt-4o": {"provider": "openai"}},
                "consumers": consumers,
            });
            let found: Vec<String> = Policy::from_json(config.to_string().as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{case}: accepted"))
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_error(&found, path, says);
            continue;
        } else {
            identity
        };
        assert_error(&errors(identity, consumers), path, says);
    }
}

#[test]
fn key_errors() {
    let on = || json!({"api_keys": true});
    let hash_says = "put the SHA-256 of the key here, as `posturio key hash` prints it";
    for (case, keys, path, says) in [
        (
            "raw key",
            json!(["pst_3q2abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"]),
            "consumers.search.api_keys[0]",
            hash_says,
        ),
        (
            "short hash",
            json!([HASH_A, "sha256:abc"]),
            "consumers.search.api_keys[1]",
            hash_says,
        ),
        (
            "object hash",
            json!([{"hash": "nope", "expires": "2027-01-31T00:00:00Z"}]),
            "consumers.search.api_keys[0].hash",
            hash_says,
        ),
        (
            "bad expiry",
            json!([{"hash": HASH_A, "expires": "2027-01-31"}]),
            "consumers.search.api_keys[0].expires",
            "must be an RFC 3339 date-time",
        ),
        (
            "no such day",
            json!([{"hash": HASH_A, "expires": "2027-02-30T00:00:00Z"}]),
            "consumers.search.api_keys[0].expires",
            "no such day",
        ),
        (
            "same hash twice",
            json!([HASH_A, HASH_A.to_uppercase().replace("SHA256", "sha256")]),
            "consumers.search.api_keys[1]",
            "the same key hash is listed at consumers.search.api_keys[0]",
        ),
        (
            "unknown field",
            json!([{"hash": HASH_A, "expire": "2027-01-31T00:00:00Z"}]),
            "consumers.search.api_keys[0].expire",
            "unknown field `expire`",
        ),
        (
            "not a string",
            json!([42]),
            "consumers.search.api_keys[0]",
            "\"sha256:<64 hex digits>\" or {\"hash\"",
        ),
    ] {
        let found = errors(on(), keyed(keys));
        assert_error(&found, path, says);
        assert!(
            !found.iter().any(|line| line.contains("pst_3q2")),
            "{case}: a raw key is never repeated: {found:?}"
        );
    }
    // Across consumers: both paths named.
    let found = errors(
        on(),
        json!({
            "a": {"models": ["gpt-4o"], "api_keys": [HASH_A]},
            "b": {"models": ["gpt-4o"], "api_keys": [{"hash": HASH_A}]},
        }),
    );
    assert_error(
        &found,
        "consumers.b.api_keys[0].hash",
        "the same key hash is listed at consumers.a.api_keys[0]",
    );
}

#[test]
fn principal_errors() {
    let on = || json!({"peer_certificate": true});
    let listing = |a: Value, b: Value| {
        json!({"a": {"models": ["gpt-4o"], "principals": a},
               "b": {"models": ["gpt-4o"], "principals": b}})
    };
    for (principals, path, says) in [
        (
            listing(json!(["spiffe://td/ns/sa-*"]), json!([])),
            "consumers.a.principals[0]",
            "mixes '*'",
        ),
        (
            listing(json!(["spiffe://*.td/ns"]), json!([])),
            "consumers.a.principals[0]",
            "trust domain cannot hold '*'",
        ),
        (
            listing(json!(["spiffe://td/ns/a", "https://td/x"]), json!([])),
            "consumers.a.principals[1]",
            "must be a SPIFFE ID",
        ),
        (
            listing(json!(["spiffe://td/ns/a/sa/*"]), json!(["spiffe://td/ns/a/sa/bot"])),
            "consumers.b.principals[0]",
            "can match the same SPIFFE ID as \"spiffe://td/ns/a/sa/*\" at consumers.a.principals[0]",
        ),
        (
            listing(json!(["spiffe://td/ns/*/sa/x", "spiffe://td/ns/y/sa/*"]), json!([])),
            "consumers.a.principals[1]",
            "at consumers.a.principals[0]",
        ),
    ] {
        assert_error(&errors(on(), principals), path, says);
    }
    // Different lengths, domains or segments do not overlap.
    let fine = listing(
        json!(["spiffe://td/ns/a/sa/*", "spiffe://other/ns/b/sa/x"]),
        json!(["spiffe://td/ns/b/sa/*", "spiffe://td/ns/a/sa"]),
    );
    assert!(policy(on(), fine).is_ok());
}
