//! Compiling `identity` and the consumers' `api_keys` and `principals`: which sources a request
//! is identified by, the key table and the SPIFFE patterns, every mistake at its JSON path.
//!
//! The rule the sources follow: every source the policy configures is required, and all must
//! name the same consumer. Two exceptions keep older policies working: a header alone, or
//! metadata alone, falls back to `default` when absent. A header cannot be combined with any
//! other source: any client can set it.

use std::collections::{BTreeMap, HashMap};

use super::api_keys::{parse_hash, KeyEntry, KeyTable};
use super::compiled::{Identity, MetadataSource, Verified};
use super::config::{ApiKeyConfig, ConsumerConfig, Errors, IdentityConfig, MetadataIdentity};
use super::principals::{parse_pattern, Principal, Principals};
use super::rfc3339;

pub(super) fn compile_identity(
    errors: &mut Errors,
    identity: Option<IdentityConfig>,
    consumers: &BTreeMap<String, ConsumerConfig>,
    route_header: &str,
) -> Identity {
    let (keys_on, peer_on) = identity.as_ref().map_or((false, false), |identity| {
        (identity.api_keys, identity.peer_certificate)
    });
    let api_keys = compile_keys(errors, consumers, keys_on);
    let peer_certificate = compile_principals(errors, consumers, peer_on);
    let Some(identity) = identity else {
        return Identity::None;
    };
    let metadata = identity
        .metadata
        .map(|metadata| compile_metadata(errors, metadata));

    // The header's name is checked by `compile`, with the route header's.
    if let Some(header) = identity.header {
        if header == route_header {
            errors.add(
                "identity.header",
                "must differ from route_header: the route header is removed from every request",
            );
        }
        if metadata.is_some() || keys_on || peer_on {
            errors.add(
                "identity.header",
                "a header any client can set would weaken the stronger identity source beside \
                 it (metadata, api_keys or peer_certificate); remove identity.header",
            );
        }
        return Identity::Header(header);
    }
    if keys_on || peer_on {
        return Identity::Verified(Verified {
            metadata,
            api_keys,
            peer_certificate,
        });
    }
    match metadata {
        Some(MetadataSource { namespace, path }) => Identity::Metadata { namespace, path },
        None => {
            errors.add(
                "identity",
                "give at least one source: \"header\", \"metadata\", \"api_keys\" or \
                 \"peer_certificate\"",
            );
            Identity::None
        }
    }
}

fn compile_metadata(errors: &mut Errors, metadata: MetadataIdentity) -> MetadataSource {
    if metadata.namespace.is_empty() || metadata.namespace.chars().any(char::is_control) {
        errors.add(
            "identity.metadata.namespace",
            "must be a filter name such as envoy.filters.http.jwt_authn",
        );
    }
    if metadata.path.is_empty() {
        errors.add(
            "identity.metadata.path",
            "must name at least one key, such as [\"jwt_payload\", \"sub\"]",
        );
    }
    for (index, key) in metadata.path.iter().enumerate() {
        if key.is_empty() {
            errors.add(
                format!("identity.metadata.path[{index}]"),
                "must not be empty",
            );
        }
    }
    MetadataSource {
        namespace: metadata.namespace,
        path: metadata.path,
    }
}

/// The key table when `identity.api_keys` is on; keys listed while it is off are mistakes.
fn compile_keys(
    errors: &mut Errors,
    consumers: &BTreeMap<String, ConsumerConfig>,
    enabled: bool,
) -> Option<KeyTable> {
    let mut table = KeyTable::default();
    let mut listed_at: HashMap<[u8; 32], String> = HashMap::new();
    for (name, consumer) in consumers {
        let list = format!("consumers.{name}.api_keys");
        if !consumer.api_keys.is_empty() && !enabled {
            errors.add(
                &list,
                "keys are only read when identity.api_keys is true: set identity.api_keys to \
                 true or remove the keys",
            );
            continue;
        }
        for (index, key) in consumer.api_keys.iter().enumerate() {
            let entry = format!("{list}[{index}]");
            let hash_path = match key {
                ApiKeyConfig::Hash(_) => entry.clone(),
                ApiKeyConfig::Expiring(_) => format!("{entry}.hash"),
            };
            let digest = match parse_hash(key.hash()) {
                Ok(digest) => digest,
                Err(message) => {
                    errors.add(&hash_path, message);
                    continue;
                }
            };
            let expires = match key {
                ApiKeyConfig::Expiring(key) => match key.expires.as_deref().map(rfc3339::parse) {
                    Some(Ok(seconds)) => Some(seconds),
                    Some(Err(reason)) => {
                        errors.add(format!("{entry}.expires"), reason);
                        continue;
                    }
                    None => None,
                },
                ApiKeyConfig::Hash(_) => None,
            };
            if let Some(first) = listed_at.get(&digest) {
                errors.add(
                    &hash_path,
                    format!(
                        "the same key hash is listed at {first}; a key must name one consumer, \
                         once: remove one of them"
                    ),
                );
                continue;
            }
            listed_at.insert(digest, hash_path);
            table.insert(
                digest,
                KeyEntry {
                    consumer: name.clone(),
                    expires,
                },
            );
        }
    }
    if !enabled {
        return None;
    }
    if listed_at.is_empty() && !consumers.values().any(|c| !c.api_keys.is_empty()) {
        errors.add(
            "identity.api_keys",
            "no consumer lists an API key, so every request would be refused: add each key's \
             hash under consumers.<name>.api_keys (`posturio key new` makes one), or set \
             identity.api_keys to false",
        );
    }
    Some(table)
}

/// The SPIFFE patterns when `identity.peer_certificate` is on; patterns listed while it is off
/// are mistakes. Two patterns that one ID can match are refused, whoever lists them.
fn compile_principals(
    errors: &mut Errors,
    consumers: &BTreeMap<String, ConsumerConfig>,
    enabled: bool,
) -> Option<Principals> {
    let mut compiled: Vec<(Principal, String)> = Vec::new();
    for (name, consumer) in consumers {
        let list = format!("consumers.{name}.principals");
        if !consumer.principals.is_empty() && !enabled {
            errors.add(
                &list,
                "principals are only read when identity.peer_certificate is true: set \
                 identity.peer_certificate to true or remove the principals",
            );
            continue;
        }
        for (index, pattern) in consumer.principals.iter().enumerate() {
            let path = format!("{list}[{index}]");
            let (trust_domain, segments) = match parse_pattern(pattern) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    errors.add(&path, reason);
                    continue;
                }
            };
            let principal = Principal {
                trust_domain,
                segments,
                consumer: name.clone(),
            };
            if let Some((other, at)) = compiled
                .iter()
                .find(|(other, _)| other.overlaps(&principal))
            {
                errors.add(
                    &path,
                    format!(
                        "can match the same SPIFFE ID as \"{}\" at {at}; each SPIFFE ID must \
                         match at most one consumer: narrow or remove one of them",
                        other.pattern()
                    ),
                );
                continue;
            }
            compiled.push((principal, path));
        }
    }
    if !enabled {
        return None;
    }
    if compiled.is_empty() && !consumers.values().any(|c| !c.principals.is_empty()) {
        errors.add(
            "identity.peer_certificate",
            "no consumer lists a principal, so every request would be refused: add SPIFFE IDs \
             under consumers.<name>.principals, or set identity.peer_certificate to false",
        );
    }
    Some(Principals {
        patterns: compiled
            .into_iter()
            .map(|(principal, _)| principal)
            .collect(),
    })
}

#[cfg(test)]
#[path = "compile_identity_tests.rs"]
mod tests;
