//! Helpers shared by the fuzz targets: the raw request format, an independent reading of a
//! policy's catalogue (to check decisions against), and the checks every decision must pass.
// Fuzz support code reports a broken invariant by panicking: that is how libFuzzer sees it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::collections::BTreeMap;

use posturio::pipeline::classification::{classify_request, IdentityInputs};
use posturio::pipeline::decision::decide_body;
use posturio::pipeline::{Decision, Facts};
use posturio::policy::{Code, Policy};
use serde_json::Value;

/// A request as the filter sees it: headers (pseudo-headers included) and the whole body.
pub struct RawRequest {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Reads the fuzz input format, a loose HTTP/1 request:
///
/// ```text
/// POST /v1/chat/completions
/// content-type: application/json
///
/// {"model":"gpt-4o-mini"}
/// ```
///
/// The first line is the method and the path; then `name: value` lines up to an empty line;
/// the rest is the body. Anything goes: bytes that are not UTF-8, lines without a colon, no
/// blank line at all. `:authority` and `:scheme` are added as Envoy adds them.
pub fn parse_request(data: &[u8]) -> RawRequest {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], data[at + 2..].to_vec()),
        None => (data, Vec::new()),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let (method, path) = match first.iter().position(|&b| b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b"/"[..]),
    };
    let mut headers = vec![
        (":method".to_string(), method.to_vec()),
        (":path".to_string(), path.to_vec()),
        (":authority".to_string(), b"llm.internal".to_vec()),
        (":scheme".to_string(), b"http".to_vec()),
    ];
    for line in lines {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            // A leading colon is a pseudo-header name (":path: /x"), as a client cannot send
            // but a fuzzer may: keep the name whole.
            Some(0) => match line[1..].iter().position(|&b| b == b':') {
                Some(at) => (&line[..at + 1], &line[at + 2..]),
                None => (line, &b""[..]),
            },
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        // Envoy hands header names over lower-cased.
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        headers.push((name, value.to_vec()));
    }
    RawRequest { headers, body }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the checks need to know of a policy, read from its JSON independently of the crate.
pub struct Catalogue {
    pub enforce: bool,
    /// Model name → (provider's cluster, upstream model if any).
    pub models: BTreeMap<String, (String, Option<String>)>,
    /// Consumer name → its model patterns.
    pub consumers: BTreeMap<String, Vec<String>>,
    /// Whether any consumer mode is audit (then forwarding an unapproved model is allowed).
    pub any_audit: bool,
    pub has_rules: bool,
    /// Whether the policy has an enforced rule blocking every secret, applying to every
    /// consumer (none lists its own rules).
    pub blocks_secrets: bool,
    /// Consumer name → its `max_output_tokens`, for those that have one.
    pub output_caps: BTreeMap<String, u64>,
}

impl Catalogue {
    pub fn from_json(text: &str) -> Catalogue {
        let policy: Value = serde_json::from_str(text).unwrap();
        let cluster_of = |provider: &str| {
            policy["providers"][provider]["cluster"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let models = policy["models"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, model)| {
                // A pooled model: routed to its pool, forwarded with its first target's name.
                if let Some(cluster) = model["cluster"].as_str() {
                    let upstream = model["targets"][0]["upstream_model"]
                        .as_str()
                        .map(str::to_string);
                    return (name.clone(), (cluster.to_string(), upstream));
                }
                let cluster = cluster_of(model["provider"].as_str().unwrap());
                let upstream = model["upstream_model"].as_str().map(str::to_string);
                (name.clone(), (cluster, upstream))
            })
            .collect();
        let consumers: BTreeMap<String, Vec<String>> = policy["consumers"]
            .as_object()
            .map(|consumers| {
                consumers
                    .iter()
                    .map(|(name, consumer)| {
                        let patterns = consumer["models"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p.as_str().unwrap().to_string())
                            .collect();
                        (name.clone(), patterns)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let output_caps = policy["consumers"]
            .as_object()
            .map(|consumers| {
                consumers
                    .iter()
                    .filter_map(|(name, c)| Some((name.clone(), c["max_output_tokens"].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let any_audit = policy["consumers"]
            .as_object()
            .is_some_and(|c| c.values().any(|c| c["mode"] == "audit"));
        let blocks_secrets = policy["rules"].as_array().is_some_and(|rules| {
            rules.iter().any(|rule| {
                rule["detect"] == "secrets" && rule["action"] == "block" && rule["mode"].is_null()
            })
        }) && policy["consumers"].as_object().is_some_and(|c| {
            c.values()
                .all(|c| c["rules"].is_null() && c["mode"].is_null())
        });
        Catalogue {
            enforce: policy["mode"].as_str().unwrap_or("enforce") == "enforce",
            blocks_secrets,
            models,
            consumers,
            any_audit,
            has_rules: policy["rules"].as_array().is_some_and(|r| !r.is_empty()),
            output_caps,
        }
    }

    /// Whether `consumer` may use `model`, by its patterns (exact names or `*` globs).
    pub fn approved(&self, consumer: &str, model: &str) -> bool {
        self.consumers
            .get(consumer)
            .is_some_and(|patterns| patterns.iter().any(|p| glob_matches(p, model)))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Runs of 16 or more ASCII letters and digits, holding both: what keys and tokens look like,
/// and what no message template contains.
pub fn secret_like_tokens(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|run| {
            run.len() >= 16
                && run.iter().any(u8::is_ascii_digit)
                && run.iter().any(u8::is_ascii_alphabetic)
        })
        .collect()
}

/// The model names a model list (or one listed model) shows, in any of its shapes.
fn listed_names(listed: &Value) -> Vec<String> {
    let models = match (listed.get("data"), listed.get("models")) {
        (Some(Value::Array(models)), _) | (_, Some(Value::Array(models))) => models.clone(),
        _ => vec![listed.clone()],
    };
    models
        .iter()
        .filter_map(|model| {
            let id = model.get("id").and_then(Value::as_str);
            let name = model
                .get("name")
                .and_then(Value::as_str)
                .map(|name| name.trim_start_matches("models/"));
            id.or(name).map(str::to_owned)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Evaluates `request` against `policy` as the filter does and checks what every decision
/// must satisfy. `catalogue` is the same policy read independently.
pub fn evaluate_and_check(policy: &Policy, catalogue: &Catalogue, request: &RawRequest) {
    let (decision, facts) = match classify_request(policy, &request.headers, &IdentityInputs::default()) {
        Ok(pending) => decide_body(policy, &pending, &request.body),
        Err(reply) => (Decision::Refuse(reply), Facts::default()),
    };
    match decision {
        Decision::Refuse(reply) => {
            assert_ne!(
                reply.code,
                Code::InternalError,
                "the filter answered 500: {}",
                reply.message
            );
            let rendered = reply.body();
            let rendered: Value = serde_json::from_slice(&rendered)
                .unwrap_or_else(|e| panic!("the reply body is not JSON ({e})"));
            assert!(rendered.is_object());
            check_no_echo(request, &facts, reply.code, reply.message.as_bytes());
        }
        Decision::AnswerLocally(body) => {
            // A model list: JSON, naming only models the consumer may use.
            let listed: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("the model list is not JSON ({e})"));
            let consumer = facts.consumer.as_deref();
            for name in listed_names(&listed) {
                assert!(
                    consumer.is_some_and(|c| catalogue.approved(c, &name)),
                    "listed {name:?} for consumer {consumer:?}, which is not approved for it"
                );
            }
        }
        Decision::Forward(forward) => {
            let Some(model) = facts.model.as_deref() else {
                // A bodiless passthrough: nothing was read, nothing is rewritten.
                assert!(forward.body.is_none(), "a passthrough body was rewritten");
                return;
            };
            let (cluster, upstream) = catalogue
                .models
                .get(model)
                .unwrap_or_else(|| panic!("forwarded a model outside the catalogue: {model:?}"));
            assert_eq!(
                &forward.cluster, cluster,
                "routed {model:?} to the wrong cluster"
            );
            if forward.audited.is_none() {
                let consumer = facts.consumer.as_deref();
                assert!(
                    consumer.is_some_and(|c| catalogue.approved(c, model)),
                    "forwarded {model:?} for consumer {consumer:?}, which is not approved for it"
                );
            } else {
                assert!(
                    !catalogue.enforce || catalogue.any_audit || catalogue.has_rules,
                    "an audited forward under an enforce-only policy"
                );
            }
            // The body as the client sent it passes the strict reading: never forwarded unread.
            if !request.body.is_empty() {
                posturio::policy::body::strict_json::validate(&request.body)
                    .unwrap_or_else(|e| panic!("forwarded a body that is not strict JSON: {e}"));
            }
            let wanted = upstream.as_deref().unwrap_or(model);
            match &forward.body {
                Some(body) => {
                    posturio::policy::body::strict_json::validate(body)
                        .unwrap_or_else(|e| panic!("the rewritten body is not strict JSON: {e}"));
                    let mut rewritten: Value = serde_json::from_slice(body).unwrap();
                    if rewritten.get("model").is_some() {
                        assert_eq!(
                            rewritten["model"], wanted,
                            "the rewritten body's model is not the upstream model"
                        );
                    }
                    if !catalogue.has_rules {
                        // Without redaction the only changes are the model, and the edits
                        // the facts report: the output-token cap and the stream usage asked
                        // for. Those are checked, then set aside.
                        let mut original: Value = serde_json::from_slice(&request.body).unwrap();
                        if original.get("model").is_some() {
                            original["model"] = Value::from(wanted);
                        }
                        rewritten["model"] = original["model"].clone();
                        if facts.output_cap_clamped || facts.output_cap_added {
                            let consumer = facts
                                .consumer
                                .as_deref()
                                .expect("a cap applied without a consumer");
                            let cap = catalogue.output_caps.get(consumer).unwrap_or_else(|| {
                                panic!("an output cap applied to {consumer:?}, which has none")
                            });
                            // With several choices, each gets its share of the cap.
                            let share = cap.checked_div(choices(&rewritten)).unwrap_or(0);
                            assert!(
                                cap_values(&rewritten).contains(&share),
                                "the cap {cap} ({share} a choice) is not in the rewritten body: \
                                 {rewritten}"
                            );
                            set_aside_cap_fields(&mut original, &mut rewritten);
                        }
                        if facts.stream_usage_added {
                            assert_eq!(
                                rewritten["stream_options"]["include_usage"],
                                Value::Bool(true),
                                "stream usage was asked for, but not in the body"
                            );
                            set_aside(
                                &mut original,
                                &mut rewritten,
                                &["stream_options"],
                                "include_usage",
                            );
                        }
                        assert_eq!(
                            original, rewritten,
                            "the rewrite changed more than the model"
                        );
                    }
                }
                None => {
                    let body_model = serde_json::from_slice::<Value>(&request.body)
                        .ok()
                        .and_then(|body| body.get("model").cloned());
                    if let Some(body_model) = body_model {
                        assert_eq!(
                            body_model, wanted,
                            "forwarded unchanged, but the body names another model"
                        );
                    }
                }
            }
        }
    }
}

/// Where a body's output-token limit can sit, on the APIs the cap applies to: the object that
/// holds it (empty: top level) and the field.
const CAP_FIELDS: &[(&[&str], &str)] = &[
    (&[], "max_tokens"),
    (&[], "max_completion_tokens"),
    (&[], "max_output_tokens"),
    (&["generationConfig"], "maxOutputTokens"),
    (&["generationConfig"], "max_output_tokens"),
    (&["generation_config"], "maxOutputTokens"),
    (&["generation_config"], "max_output_tokens"),
    (&["inferenceConfig"], "maxTokens"),
];

/// The output-token limits a body gives, wherever the cap may have put them.
fn cap_values(body: &Value) -> Vec<u64> {
    CAP_FIELDS
        .iter()
        .filter_map(|(container, field)| {
            let holder = container
                .iter()
                .try_fold(body, |value, key| value.get(key))?;
            holder.get(field)?.as_u64()
        })
        .collect()
}

/// How many choices a body asks for: the largest of `n`, `best_of` and Gemini's
/// `candidateCount` (either spelling), at least 1.
fn choices(body: &Value) -> u64 {
    let config = |key: &str| body.get(key);
    [
        body.get("n"),
        body.get("best_of"),
        config("generationConfig").and_then(|c| c.get("candidateCount")),
        config("generationConfig").and_then(|c| c.get("candidate_count")),
        config("generation_config").and_then(|c| c.get("candidateCount")),
        config("generation_config").and_then(|c| c.get("candidate_count")),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_u64)
    .fold(1, u64::max)
}

fn set_aside_cap_fields(original: &mut Value, rewritten: &mut Value) {
    for (container, field) in CAP_FIELDS {
        set_aside(original, rewritten, container, field);
    }
}

/// Removes `field` from the object at `container` in both documents; a container the rewrite
/// created for it, and left empty now, goes back to what the client sent.
fn set_aside(original: &mut Value, rewritten: &mut Value, container: &[&str], field: &str) {
    fn holder<'a>(doc: &'a mut Value, container: &[&str]) -> Option<&'a mut Value> {
        container
            .iter()
            .try_fold(doc, |value, key| value.get_mut(key))
    }
    for doc in [&mut *original, &mut *rewritten] {
        if let Some(Value::Object(object)) = holder(doc, container) {
            object.remove(field);
        }
    }
    let Some((last, parents)) = container.split_last() else {
        return;
    };
    let emptied = matches!(holder(rewritten, container), Some(Value::Object(o)) if o.is_empty());
    let sent = holder(original, container).cloned();
    if emptied && !matches!(sent, Some(Value::Object(_))) {
        if let Some(Value::Object(parent)) = holder(rewritten, parents) {
            match sent {
                Some(value) => parent.insert(last.to_string(), value),
                None => parent.remove(*last),
            };
        }
    }
}

/// A refusal never repeats a secret-looking token of the body, unless the model name, the
/// path or a header value holds it too (those are the caller's own words, echoed on purpose).
/// A duplicate-key refusal names the key, by design, and is left out.
fn check_no_echo(request: &RawRequest, facts: &Facts, code: Code, message: &[u8]) {
    if code == Code::DuplicateKey {
        return;
    }
    for token in secret_like_tokens(&request.body) {
        let echoed_on_purpose = facts
            .model
            .as_deref()
            .is_some_and(|m| contains(m.as_bytes(), token))
            || request.headers.iter().any(|(_, v)| contains(v, token));
        if !echoed_on_purpose {
            assert!(
                !contains(message, token),
                "the refusal repeats body text {:?}: {}",
                String::from_utf8_lossy(token),
                String::from_utf8_lossy(message)
            );
        }
    }
}

/// Secrets the planted-secret check puts at the end of a body's string: a private key
/// without its END line (it must not run on into the next string and be lost), one with it,
/// and an access key id.
const PLANTED: [&str; 3] = [
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7vQ3Jk1k0VbSs3Xr8i2",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkgZ2qQ\n-----END EC PRIVATE KEY-----",
    "AKIAIOSFODNN7EXAMPLE",
];

/// A secret placed in any string of a valid JSON body is always found: with a policy whose
/// every consumer blocks secrets in enforce mode, the request is never forwarded after its
/// body was read, whatever follows the string and wherever it sits. `choice` picks the string
/// and the secret.
pub fn check_planted_secret(
    policy: &Policy,
    catalogue: &Catalogue,
    request: &RawRequest,
    choice: usize,
) {
    if !catalogue.enforce || catalogue.any_audit || !catalogue.blocks_secrets {
        return;
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
        return;
    };
    let count = count_strings(&body);
    if !body.is_object() || count == 0 {
        return;
    }
    let target = choice % count;
    let secret = PLANTED[(choice / count) % PLANTED.len()];
    plant(&mut body, &mut 0, target, secret);
    let planted = RawRequest {
        headers: request
            .headers
            .iter()
            .filter(|(name, _)| name != "content-length")
            .cloned()
            .collect(),
        body: serde_json::to_vec(&body).unwrap(),
    };
    let (decision, facts) = match classify_request(policy, &planted.headers, &IdentityInputs::default()) {
        Ok(pending) => decide_body(policy, &pending, &planted.body),
        Err(reply) => (Decision::Refuse(reply), Facts::default()),
    };
    if let Decision::Forward(_) = decision {
        assert!(
            facts.model.is_none(),
            "a secret at the end of string {target} was forwarded: {}",
            String::from_utf8_lossy(&planted.body)
        );
    }
}

fn count_strings(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(count_strings).sum(),
        Value::Object(members) => members.values().map(count_strings).sum(),
        _ => 0,
    }
}

/// Appends `secret`, on a line of its own, to the `target`th string value (document order).
fn plant(value: &mut Value, seen: &mut usize, target: usize, secret: &str) -> bool {
    match value {
        Value::String(text) => {
            if *seen == target {
                text.push('\n');
                text.push_str(secret);
                return true;
            }
            *seen += 1;
            false
        }
        Value::Array(items) => items
            .iter_mut()
            .any(|item| plant(item, seen, target, secret)),
        Value::Object(members) => members
            .values_mut()
            .any(|member| plant(member, seen, target, secret)),
        _ => false,
    }
}
