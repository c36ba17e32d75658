//! `check --diff` on identity: the sources a request must present, and the API keys (by a
//! short hash, never more) and principals each consumer gains or loses.

use std::collections::{BTreeMap, BTreeSet};

use super::{Changes, Sign};
use crate::policy::api_keys::short_hash;
use crate::policy::compiled::Identity;
use crate::policy::{rfc3339, Policy};

pub(super) fn identity_name(identity: &Identity) -> String {
    let metadata =
        |namespace: &str, path: &[String]| format!("metadata {namespace} [{}]", path.join(", "));
    match identity {
        Identity::Header(header) => format!("header {header}"),
        Identity::Metadata { namespace, path } => metadata(namespace, path),
        Identity::None => "none (every request is consumer default)".to_owned(),
        Identity::Verified(_) => {
            let mut sources = Vec::new();
            if identity.api_keys().is_some() {
                sources.push("api_keys".to_owned());
            }
            if identity.peer_certificate().is_some() {
                sources.push("peer_certificate".to_owned());
            }
            if let Some((namespace, path)) = identity.metadata() {
                sources.push(metadata(namespace, path));
            }
            format!("{} (required)", sources.join(" + "))
        }
    }
}

/// The sources a request must present to be identified: none for a header, or metadata, alone
/// (both fall back to `default`).
fn required_sources(identity: &Identity) -> BTreeSet<&'static str> {
    let mut required = BTreeSet::new();
    if identity.api_keys().is_some() {
        required.insert("api_keys");
    }
    if identity.peer_certificate().is_some() {
        required.insert("peer_certificate");
    }
    if matches!(identity, Identity::Verified(_)) && identity.metadata().is_some() {
        required.insert("metadata");
    }
    required
}

/// The sign of an identity change: a spoofable header widens, a source newly required
/// narrows, one no longer required widens.
pub(super) fn identity_sign(old: &Identity, new: &Identity) -> (Sign, &'static str) {
    let header = |identity: &Identity| matches!(identity, Identity::Header(_));
    let metadata = |identity: &Identity| matches!(identity, Identity::Metadata { .. });
    let (before, after) = (required_sources(old), required_sources(new));
    if header(new) && !header(old) {
        (
            Sign::Widen,
            " (clients can set a header: any consumer can be claimed)",
        )
    } else if metadata(new) && header(old) {
        (
            Sign::Narrow,
            " (clients can no longer choose their consumer)",
        )
    } else if before != after && before.is_subset(&after) {
        (Sign::Narrow, " (more identity sources are required)")
    } else if before != after && after.is_subset(&before) {
        (Sign::Widen, " (fewer identity sources are required)")
    } else {
        (Sign::Neutral, "")
    }
}

/// A policy's API keys: (consumer, short hash) to expiry.
fn key_list(policy: &Policy) -> BTreeMap<(&str, String), Option<i64>> {
    policy
        .identity
        .api_keys()
        .into_iter()
        .flat_map(|table| table.entries())
        .map(|(digest, entry)| ((entry.consumer.as_str(), short_hash(digest)), entry.expires))
        .collect()
}

/// A policy's principals: (consumer, pattern).
fn principal_list(policy: &Policy) -> BTreeSet<(&str, String)> {
    policy
        .identity
        .peer_certificate()
        .into_iter()
        .flat_map(|principals| &principals.patterns)
        .map(|principal| (principal.consumer.as_str(), principal.pattern()))
        .collect()
}

/// API keys (by a short hash, never more) and principals added or removed, per consumer. A
/// key that can name a consumer widens access; one that no longer can narrows it.
pub(super) fn credentials(changes: &mut Changes, old: &Policy, new: &Policy) {
    let (old_keys, new_keys) = (key_list(old), key_list(new));
    let expiry = |expires: Option<i64>| expires.map_or_else(|| "never".to_owned(), rfc3339::format);
    for ((consumer, hash), expires) in &new_keys {
        match old_keys.get(&(*consumer, hash.clone())) {
            None => changes.add(
                Sign::Widen,
                format!(
                    "consumer {consumer}: api key {hash} added (expires {})",
                    expiry(*expires)
                ),
            ),
            Some(before) if before != expires => {
                let later = match (before, expires) {
                    (_, None) => true,
                    (None, Some(_)) => false,
                    (Some(before), Some(after)) => after > before,
                };
                let sign = if later { Sign::Widen } else { Sign::Narrow };
                changes.add(
                    sign,
                    format!(
                        "consumer {consumer}: api key {hash} expires {} -> {}",
                        expiry(*before),
                        expiry(*expires)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (consumer, hash) in old_keys.keys() {
        if !new_keys.contains_key(&(*consumer, hash.clone())) {
            changes.add(
                Sign::Narrow,
                format!("consumer {consumer}: api key {hash} removed"),
            );
        }
    }
    let (old_principals, new_principals) = (principal_list(old), principal_list(new));
    for (consumer, pattern) in new_principals.difference(&old_principals) {
        changes.add(
            Sign::Widen,
            format!("consumer {consumer}: principal {pattern} added"),
        );
    }
    for (consumer, pattern) in old_principals.difference(&new_principals) {
        changes.add(
            Sign::Narrow,
            format!("consumer {consumer}: principal {pattern} removed"),
        );
    }
}
