//! Workload identity from the peer certificate (`identity.peer_certificate`), through real
//! Envoy running the shipped `envoy/envoy-mtls.yaml`: mutual TLS on the listener, verified by
//! Envoy's SPIFFE validator with one CA per trust domain, with CAs, server and client
//! certificates made for the test (tests/peer_tls.py), and the consumer named by the SPIFFE ID
//! in the verified client certificate.
//!
//! The SPIFFE validator (`envoy.tls.cert_validator.spiffe`) is what ties a trust domain to its
//! CA. Envoy's docs for `SPIFFECertValidatorConfig`: "All the trust bundles are isolated from
//! each other, so no trust domain can mint a SVID belonging to another trust domain"; its code,
//! `source/extensions/transport_sockets/tls/cert_validator/spiffe/spiffe_validator.cc`: the
//! trust domain of the FIRST URI SAN picks the bundle (`getTrustBundleStore`, which assumes
//! "valid SVID has only one URI san" and does not refuse a second), a leaf that is a CA or may
//! sign certificates or CRLs is refused (`certificatePrecheck`), and a certificate without a
//! URI SAN, or whose trust domain is not configured, has no bundle and fails. The tests below
//! confirm each of these in Envoy 1.40.
//!
//! Posturio reads Envoy's attribute `connection.uri_san_peer_certificate`. Envoy defines it in
//! `source/extensions/filters/common/expr/context.cc` (`SslExtractorsValues`, the
//! `URISanPeerCertificate` extractor): the FIRST URI SAN of the downstream peer certificate,
//! and no value at all when the certificate has none or there is no TLS connection. These
//! tests passing is what confirms the name in Envoy 1.40.
// Test code: failing loudly (unwrap/panic) is how a test reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::envoy::{module_path, render_config, ConfigParams, ProviderPorts};
use common::mock::python;
use common::{Envoy, MockProvider};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TEMPLATE: &str = "envoy/envoy-mtls.yaml";
const POLICY: &str = "envoy/policy-mtls.json";
/// Where the shipped example reads its certificates.
const SHIPPED_TLS_DIR: &str = "/etc/posturio/tls";
const REQUIRED: &str = "require_client_certificate: true";
/// Where the shipped listener's SPIFFE validator starts.
const SPIFFE_VALIDATOR: &str = "              custom_validator_config:\n";
/// The shipped listener's one trust domain, after which the test adds `partner.example`.
const CLUSTER_TRUST_DOMAIN: &str = "                  - name: cluster.local
                    trust_bundle: { filename: /etc/posturio/tls/ca.pem }
";
const PARTNER_TRUST_DOMAIN: &str = "                  - name: partner.example
                    trust_bundle: { filename: /etc/posturio/tls/partner-ca.pem }
";
const SEARCH_ID: &str = "spiffe://cluster.local/ns/search/sa/api";
const SEARCH_KEY: &str = "pst_search-team-7Qx2k9VbLmZ4nR8tYw3uPa6sDf1gHj5KcXe0oIqN";
const OPS_KEY: &str = "pst_ops-bot-Zk3mW8qR2tYv6uXa9bLc4nDe7fGh1jKp5sTo0iQw";

/// The test's certificates (tests/peer_tls.py), made once per test.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn make() -> Certificates {
        let dir = tempfile::Builder::new()
            .prefix("posturio-tls-")
            .tempdir()
            .unwrap();
        let output = Command::new(python())
            .arg(common::repo_path("tests/peer_tls.py"))
            .arg("certs")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tests/peer_tls.py certs: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Certificates { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// How the test's listener verifies client certificates.
#[derive(Clone, Copy)]
enum Verification {
    /// As shipped (Envoy's SPIFFE validator, a certificate required), plus a second trust
    /// domain, `partner.example`, with its own CA.
    Spiffe,
    /// A certificate optional, so that Posturio's own refusal of a connection without one
    /// can be seen. The SPIFFE validator cannot do that: it always asks the TLS library to
    /// fail a handshake without a peer certificate (`SPIFFEValidator::initializeSslContexts`
    /// returns `SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT`, whatever
    /// `require_client_certificate` says), so this listener verifies with a plain
    /// `trusted_ca` holding cluster.local's CA alone: safe with one CA for one trust domain.
    OptionalOneCa,
    /// The mistake the shipped example avoids: one `trusted_ca` bundle with both trust
    /// domains' CAs.
    MixedBundle,
}

/// The shipped mTLS example with the test's ports, certificates and `policy`, its client
/// certificates verified as `verification` says.
fn start(
    certs: &Certificates,
    mock: &MockProvider,
    policy: &str,
    verification: Verification,
) -> Envoy {
    let shipped = common::read_repo_file(TEMPLATE);
    // The listener's setting, not the header comment that mentions it.
    let setting = format!("\n          {REQUIRED}\n");
    assert_eq!(shipped.matches(&setting).count(), 1, "{TEMPLATE}");
    assert_eq!(
        shipped.matches(CLUSTER_TRUST_DOMAIN).count(),
        1,
        "{TEMPLATE}: the SPIFFE validator's trust domain cluster.local"
    );
    let with_trusted_ca = |bundle: &str| {
        let validator = shipped.find(SPIFFE_VALIDATOR).expect(SPIFFE_VALIDATOR);
        let domains = shipped.find(CLUSTER_TRUST_DOMAIN).unwrap() + CLUSTER_TRUST_DOMAIN.len();
        let trusted_ca =
            format!("              trusted_ca: {{ filename: {SHIPPED_TLS_DIR}/{bundle} }}\n");
        format!(
            "{}{trusted_ca}{}",
            &shipped[..validator],
            &shipped[domains..]
        )
    };
    let template = match verification {
        Verification::Spiffe => shipped.replace(
            CLUSTER_TRUST_DOMAIN,
            &format!("{CLUSTER_TRUST_DOMAIN}{PARTNER_TRUST_DOMAIN}"),
        ),
        Verification::OptionalOneCa => with_trusted_ca("ca.pem")
            .replace(&setting, "\n          require_client_certificate: false\n"),
        Verification::MixedBundle => {
            let bundle = [certs.path("ca.pem"), certs.path("partner-ca.pem")]
                .iter()
                .map(|path| std::fs::read_to_string(path).unwrap())
                .collect::<String>();
            std::fs::write(certs.path("bundle.pem"), bundle).unwrap();
            with_trusted_ca("bundle.pem")
        }
    };
    let build = |listener_port: u16, admin_port: u16, dir: &Path| {
        let params = ConfigParams {
            listener_port,
            admin_port,
            providers: ProviderPorts::of(mock),
            module: module_path(),
            policy: policy.to_owned(),
        };
        let config = render_config(&template, &params)
            .replace(SHIPPED_TLS_DIR, &certs.dir.path().display().to_string());
        let path = dir.join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        (path, Vec::new())
    };
    Envoy::start_generated(&build)
}

/// Credentials a client may send beside its certificate; the shipped route removes each, and
/// its listener drops every header spelt with `_` (which CGI-style servers read as `-`).
const CLIENT_CREDENTIALS: [(&str, &str); 10] = [
    ("authorization", "Bearer sk-client"),
    ("x-api-key", "sk-client"),
    ("api-key", "sk-client"),
    ("x-goog-api-key", "sk-client"),
    ("proxy-authorization", "Basic Y2xpZW50"),
    ("x-amz-security-token", "client-sts"),
    ("ocp-apim-subscription-key", "client-apim"),
    ("helicone-auth", "Bearer sk-client"),
    ("x_api_key", "sk-client-u"),
    ("x_goog_api_key", "sk-client-u"),
];

fn shipped_policy() -> Value {
    serde_json::from_str(&common::read_repo_file(POLICY)).unwrap()
}

/// The shipped policy with a consumer for the partner's trust domain.
fn policy_with_partner() -> String {
    let mut policy = shipped_policy();
    policy["consumers"]["partner"] = json!({
        "models": ["gpt-4o-mini"],
        "principals": ["spiffe://partner.example/ns/app/sa/*"],
    });
    policy.to_string()
}

fn sha256(key: &str) -> String {
    let hex: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The shipped policy with API keys required too: `search-team` and `ops-bot` each with one.
fn policy_with_keys() -> String {
    let mut policy = shipped_policy();
    policy["identity"] = json!({ "api_keys": true, "peer_certificate": true });
    policy["consumers"]["search-team"]["api_keys"] = json!([sha256(SEARCH_KEY)]);
    policy["consumers"]["ops-bot"]["api_keys"] = json!([sha256(OPS_KEY)]);
    policy.to_string()
}

/// A chat request for `model`, with further `headers`.
fn chat(model: &str, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![json!(["content-type", "application/json"])];
    all.extend(headers.iter().map(|(k, v)| json!([k, v])));
    json!({
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": all,
        "body": json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    })
}

/// Sends `requests`, each on its own TLS connection presenting `client`'s certificate (none
/// for `None`); one outcome each: `{status, headers, body}` or `{error}`.
fn send(
    envoy: &Envoy,
    certs: &Certificates,
    client: Option<&str>,
    requests: &[Value],
) -> Vec<Value> {
    let (cert, key) = match client {
        Some(name) => (
            certs.path(&format!("{name}.pem")).display().to_string(),
            certs.path(&format!("{name}-key.pem")).display().to_string(),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    let args = [
        common::repo_path("tests/peer_tls.py").into_os_string(),
        "request".into(),
        envoy.port().to_string().into(),
        certs.path("ca.pem").into(),
        cert.into(),
        key.into(),
        Value::from(requests.to_vec()).to_string().into(),
    ];
    let (outcomes, report) = common::sdk::python_json_lines("peer_tls.py", &args);
    assert_eq!(outcomes.len(), requests.len(), "{report}");
    outcomes
}

fn header<'a>(outcome: &'a Value, name: &str) -> Option<&'a str> {
    outcome["headers"]
        .as_array()?
        .iter()
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].as_str())
}

fn body(outcome: &Value) -> Value {
    serde_json::from_str(outcome["body"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {outcome:#}"))
}

/// Panics unless the mock answered (the request was forwarded) for `model`.
fn assert_forwarded(outcome: &Value, model: &str) {
    assert_eq!(outcome["status"], 200, "{outcome:#}");
    assert_eq!(header(outcome, "x-posturio-code"), None, "{outcome:#}");
    assert_eq!(body(outcome)["model"], model, "{outcome:#}");
}

/// Panics unless Posturio refused with `status` and `code` (OpenAI's shape), without naming
/// a SPIFFE ID; returns the message.
fn assert_refused(outcome: &Value, status: u16, code: &str) -> String {
    assert_eq!(outcome["status"], status, "{outcome:#}");
    assert_eq!(
        header(outcome, "x-posturio-code"),
        Some(code),
        "{outcome:#}"
    );
    let text = outcome["body"].as_str().unwrap();
    assert!(
        !text.contains("spiffe://"),
        "the reply echoes a SPIFFE ID: {text}"
    );
    let error = &body(outcome)["error"];
    assert_eq!(error["code"], code, "{outcome:#}");
    let kind = if status == 401 {
        "authentication_error"
    } else {
        "permission_error"
    };
    assert_eq!(error["type"], kind, "{outcome:#}");
    if status == 401 {
        assert_eq!(
            header(outcome, "www-authenticate"),
            Some("Bearer realm=\"posturio\""),
            "{outcome:#}"
        );
    }
    error["message"].as_str().unwrap().to_owned()
}

/// Panics unless the connection failed: Envoy refused the handshake.
fn assert_handshake_refused(outcome: &Value) {
    assert!(outcome["error"].is_string(), "Envoy answered: {outcome:#}");
}

/// Client certificates Envoy's listener refused, summed over its listeners.
fn failed_verifications(envoy: &Envoy) -> u64 {
    envoy
        .stat_values(r"^listener\..*\.ssl\.fail_verify_error$")
        .iter()
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn each_certificate_gets_its_consumer_and_unknown_ones_are_refused() {
    let certs = Certificates::make();
    let mock = MockProvider::start();
    let policy = common::read_repo_file(POLICY);
    let envoy = start(&certs, &mock, &policy, Verification::Spiffe);
    let spoofs: [(&str, &str); 3] = [
        (
            "x-forwarded-client-cert",
            "By=spiffe://cluster.local/ns/llm/sa/gateway;URI=spiffe://cluster.local/ns/search/sa/api",
        ),
        ("x-posturio-consumer", "search-team"),
        ("x-spiffe-id", SEARCH_ID),
    ];

    // `search-team` by the namespace's `*` pattern: a model only it may use is forwarded,
    // without any credential the client sent beside its certificate.
    let search = send(
        &envoy,
        &certs,
        Some("search"),
        &[
            chat("gpt-4o", &CLIENT_CREDENTIALS),
            chat("gemini-flash", &[]),
        ],
    );
    assert_forwarded(&search[0], "gpt-4o");
    assert_eq!(search[1]["status"], 200, "{:#}", search[1]);
    // `ops-bot` by its exact ID: that model is not approved for it, its own is.
    let ops = send(
        &envoy,
        &certs,
        Some("ops"),
        &[
            chat("gpt-4o", &[]),
            chat("gpt-4o-mini", &[]),
            chat("gpt-4o", &spoofs),
        ],
    );
    let message = assert_refused(&ops[0], 403, "model_not_approved");
    assert!(message.contains("\"ops-bot\""), "{message}");
    assert_forwarded(&ops[1], "gpt-4o-mini");
    // Headers naming another identity change nothing: only the verified certificate counts.
    let message = assert_refused(&ops[2], 403, "model_not_approved");
    assert!(message.contains("\"ops-bot\""), "{message}");

    // A certificate of the trust domain's CA whose SPIFFE ID no consumer lists, with or
    // without headers that name a listed one; a URI SAN of the trust domain that is not a
    // well-formed SPIFFE ID (Envoy's validator only reads its trust domain).
    for client in ["stranger", "malformed"] {
        let outcomes = send(
            &envoy,
            &certs,
            Some(client),
            &[chat("gpt-4o-mini", &[]), chat("gpt-4o-mini", &spoofs)],
        );
        for outcome in &outcomes {
            let message = assert_refused(outcome, 403, "unknown_peer_identity");
            assert!(
                message.contains(
                    "the client certificate's identity is not a consumer of this gateway"
                ),
                "{client}: {message}"
            );
        }
    }
    // The listener verifies: no certificate, one from a CA no trust domain lists (with
    // search-team's ID), one without a URI SAN or whose URI SAN is not a SPIFFE ID (no trust
    // domain, so no CA to verify it against) never gets to send a request.
    let refused_before = failed_verifications(&envoy);
    for client in [None, Some("rogue"), Some("nouri"), Some("web")] {
        let outcomes = send(&envoy, &certs, client, &[chat("gpt-4o-mini", &spoofs)]);
        assert_handshake_refused(&outcomes[0]);
    }
    assert_eq!(failed_verifications(&envoy) - refused_before, 3);

    // The operator learns which identity to add to `principals`: Envoy verified it, it is no
    // secret, and the log (never the reply) names it.
    let logged = envoy.wait_for_log(
        "client certificate URI SAN \"spiffe://cluster.local/ns/other/sa/x\" matches no",
        std::time::Duration::from_secs(5),
    );
    assert!(logged.is_some(), "the refused SPIFFE ID is not in the log");

    let forwarded = mock.requests();
    assert_eq!(forwarded.len(), 3, "{forwarded:#?}");
    for upstream in &forwarded {
        assert_eq!(
            upstream.header("x-forwarded-client-cert"),
            None,
            "{upstream:#?}"
        );
        for (name, _) in CLIENT_CREDENTIALS {
            assert_eq!(upstream.header(name), None, "{name}: {upstream:#?}");
        }
    }
    envoy.assert_no_wasm_failure();
}

#[test]
fn each_trust_domain_is_vouched_for_by_its_own_ca_only() {
    let certs = Certificates::make();
    let mock = MockProvider::start();
    let envoy = start(&certs, &mock, &policy_with_partner(), Verification::Spiffe);
    let requests = [chat("gpt-4o-mini", &[]), chat("gpt-4o", &[])];

    // The partner CA's certificate for its own trust domain: the partner consumer, with its
    // own models only.
    let outcomes = send(&envoy, &certs, Some("partner"), &requests);
    assert_forwarded(&outcomes[0], "gpt-4o-mini");
    let message = assert_refused(&outcomes[1], 403, "model_not_approved");
    assert!(message.contains("\"partner\""), "{message}");

    // The partner CA's certificate claiming search-team's ID in cluster.local: Envoy verifies
    // it against cluster.local's CA, which did not sign it, and refuses the handshake. A
    // single trusted_ca bundle holding both CAs would have served it as search-team.
    let refused_before = failed_verifications(&envoy);
    let outcomes = send(&envoy, &certs, Some("forged"), &requests);
    for outcome in &outcomes {
        assert_handshake_refused(outcome);
    }
    assert_eq!(failed_verifications(&envoy) - refused_before, 2);

    // Several URI SANs: Envoy's validator does not refuse them, and picks the CA by the first
    // one, the one Posturio reads. So the partner CA cannot get a cluster.local identity read
    // by putting it first (refused) or second (served as the partner) ...
    let refused_before = failed_verifications(&envoy);
    let outcomes = send(&envoy, &certs, Some("twice-forged"), &requests[..1]);
    assert_handshake_refused(&outcomes[0]);
    assert_eq!(failed_verifications(&envoy) - refused_before, 1);
    let outcomes = send(&envoy, &certs, Some("twice-partner"), &requests);
    assert_forwarded(&outcomes[0], "gpt-4o-mini");
    let message = assert_refused(&outcomes[1], 403, "model_not_approved");
    assert!(message.contains("\"partner\""), "{message}");
    // ... but within one trust domain only the first counts: a CA that issues a second URI
    // SAN lets the first name whom it likes (X.509-SVID allows one; docs/security.md).
    let outcomes = send(&envoy, &certs, Some("twice"), &requests);
    assert_forwarded(&outcomes[0], "gpt-4o-mini");
    let message = assert_refused(&outcomes[1], 403, "model_not_approved");
    assert!(message.contains("\"ops-bot\""), "{message}");

    // What the handshake refused never reached Posturio nor the provider: 6 requests decided
    // (3 served), one access log line each.
    let forwarded = mock.requests();
    assert_eq!(forwarded.len(), 3, "{forwarded:#?}");
    // The access log is flushed on a timer: wait for it.
    let decided = |envoy: &Envoy| {
        envoy
            .access_log()
            .lines()
            .filter(|line| line.contains("\"posturio_decision\""))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while decided(&envoy) < 6 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(decided(&envoy), 6, "{}", envoy.access_log());
    envoy.assert_no_wasm_failure();
}

/// Why the shipped example uses the SPIFFE validator: with one `trusted_ca` bundle holding
/// both trust domains' CAs, the partner CA's certificate for search-team's ID is served as
/// search-team. (This also shows the certificate refused above is well-formed: only its
/// trust domain's CA is wrong.)
#[test]
fn one_bundle_for_two_trust_domains_lets_either_ca_name_any_consumer() {
    let certs = Certificates::make();
    let mock = MockProvider::start();
    let envoy = start(
        &certs,
        &mock,
        &policy_with_partner(),
        Verification::MixedBundle,
    );
    let outcomes = send(&envoy, &certs, Some("forged"), &[chat("gpt-4o", &[])]);
    assert_forwarded(&outcomes[0], "gpt-4o");
    assert!(
        envoy
            .wait_for_access_log(
                "\"posturio_consumer\":\"search-team\"",
                std::time::Duration::from_secs(5)
            )
            .is_some(),
        "{}",
        envoy.access_log()
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn without_a_client_certificate_the_request_is_refused_401() {
    let certs = Certificates::make();
    let mock = MockProvider::start();
    let policy = common::read_repo_file(POLICY);
    let envoy = start(&certs, &mock, &policy, Verification::OptionalOneCa);
    let xfcc = (
        "x-forwarded-client-cert",
        "URI=spiffe://cluster.local/ns/search/sa/api",
    );

    let outcomes = send(
        &envoy,
        &certs,
        None,
        &[chat("gpt-4o-mini", &[]), chat("gpt-4o-mini", &[xfcc])],
    );
    for outcome in &outcomes {
        assert_refused(outcome, 401, "missing_peer_identity");
    }
    // The same listener with a certificate: identified as usual.
    let outcomes = send(&envoy, &certs, Some("search"), &[chat("gpt-4o", &[])]);
    assert_forwarded(&outcomes[0], "gpt-4o");
    // A certificate from an untrusted CA still fails the handshake, optional or not.
    let outcomes = send(&envoy, &certs, Some("rogue"), &[chat("gpt-4o-mini", &[])]);
    assert_handshake_refused(&outcomes[0]);
    assert_eq!(mock.requests().len(), 1);
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_key_and_a_certificate_must_name_the_same_consumer() {
    let certs = Certificates::make();
    let mock = MockProvider::start();
    let envoy = start(
        &certs,
        &mock,
        &policy_with_keys(),
        Verification::OptionalOneCa,
    );
    let bearer = |key: &str| format!("Bearer {key}");
    let (search_bearer, ops_bearer) = (bearer(SEARCH_KEY), bearer(OPS_KEY));

    let outcomes = send(
        &envoy,
        &certs,
        Some("search"),
        &[
            chat("gpt-4o", &[("authorization", &search_bearer)]),
            chat("gpt-4o", &[("authorization", &ops_bearer)]),
            chat("gpt-4o", &[]),
        ],
    );
    assert_forwarded(&outcomes[0], "gpt-4o");
    // Another consumer's live key is refused as a guess is: the certificate's holder learns
    // nothing of keys that are not its own consumer's.
    let message = assert_refused(&outcomes[1], 401, "invalid_api_key");
    assert!(
        message.contains("the API key is not known for the consumer the client certificate names"),
        "{message}"
    );
    for consumer in ["search-team", "ops-bot"] {
        assert!(
            !outcomes[1]["body"].as_str().unwrap().contains(consumer),
            "{message}"
        );
    }
    assert_refused(&outcomes[2], 401, "missing_api_key");

    // A key without a certificate: the certificate is required too.
    let outcomes = send(
        &envoy,
        &certs,
        None,
        &[chat("gpt-4o-mini", &[("authorization", &search_bearer)])],
    );
    assert_refused(&outcomes[0], 401, "missing_peer_identity");

    let forwarded = mock.requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:#?}");
    assert_eq!(
        forwarded[0].header("authorization"),
        None,
        "the key reached the provider"
    );
    envoy.assert_no_wasm_failure();
}
