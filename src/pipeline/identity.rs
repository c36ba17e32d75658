//! The identity step: the consumer a request is evaluated as.
//!
//! A header alone, or metadata alone, names a consumer when present, else the request is
//! `default` (else it has none). With API keys or the peer certificate configured, every
//! source the policy configures is required, and all of them must name the same consumer; a
//! request missing one, or whose sources name different consumers, is refused, and nothing
//! falls back to `default`.

use crate::policy::api_keys::{self, KeyRefused};
use crate::policy::compiled::{
    Consumer, Identity, MetadataSource, Policy, Verified, DEFAULT_CONSUMER,
};
use crate::policy::identity;
use crate::policy::principals::{PeerRefused, Principals};
use crate::policy::request::{self, Headers};
use crate::policy::shorten;
use crate::policy::{rfc3339, ApiFamily, Code, Reply};

/// What the host gives the identity step besides the headers. All `None` (the default) is a
/// request with no metadata, no client certificate and no clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityInputs<'a> {
    /// The request's time, Unix seconds, for API key expiry.
    pub now_seconds: Option<i64>,
    /// The value at the identity's metadata path, when the identity reads metadata.
    pub metadata: Option<&'a [u8]>,
    /// The first URI SAN of the client certificate Envoy verified, when the identity reads
    /// the peer certificate.
    pub peer_uri_san: Option<&'a [u8]>,
}

/// The consumer the identity names, else `default`, else none.
pub(super) fn consumer_for<'p>(
    policy: &'p Policy,
    headers: &Headers,
    target: &str,
    inputs: &IdentityInputs,
    shape: ApiFamily,
) -> Result<Option<&'p Consumer>, Reply> {
    let (named, source) = match &policy.identity {
        Identity::None => (None, String::new()),
        Identity::Header(header) => (
            request::single(headers, header)
                .map_err(|error| {
                    Reply::new(
                        Code::InvalidIdentity,
                        shape,
                        format!("the identity header \"{header}\" {error}; send exactly one value"),
                    )
                })?
                .map(str::as_bytes),
            format!("the identity header \"{header}\""),
        ),
        Identity::Metadata { namespace, path } => {
            (inputs.metadata, metadata_source(namespace, path))
        }
        Identity::Verified(verified) => {
            return verified_consumer(policy, verified, headers, target, inputs, shape).map(Some)
        }
    };
    // An empty value is no identity: Envoy hands an empty claim to the module as none.
    let named = match named.filter(|value| !value.is_empty()) {
        None => None,
        Some(value) => resolve(policy, value, &source, shape)?,
    };
    Ok(named.or_else(|| policy.consumers.get(DEFAULT_CONSUMER)))
}

/// The one consumer every configured source names.
fn verified_consumer<'p>(
    policy: &'p Policy,
    verified: &Verified,
    headers: &Headers,
    target: &str,
    inputs: &IdentityInputs,
    shape: ApiFamily,
) -> Result<&'p Consumer, Reply> {
    // Each source's name for the consumer, with the source's name for a conflict's message.
    // The key is judged last, and only as a key of the consumer the certificate or the claim
    // names: a client without them learns nothing of the key it sent, and one with them cannot
    // tell another consumer's live key from a guess.
    let mut named: Vec<(&'static str, &str)> = Vec::with_capacity(2);
    if let Some(principals) = &verified.peer_certificate {
        named.push((
            "the client certificate",
            peer_consumer(principals, inputs, shape)?,
        ));
    }
    if let Some(metadata) = &verified.metadata {
        named.push((
            "the verified claim",
            claim_consumer(policy, metadata, inputs, shape)?,
        ));
    }
    let first = named.first().copied();
    if let Some((first_source, first_name)) = first {
        if let Some(&(other_source, _)) = named.iter().find(|(_, other)| *other != first_name) {
            return Err(Reply::new(
                Code::IdentityConflict,
                shape,
                format!("{first_source} and {other_source} name different consumers"),
            ));
        }
    }
    let name = match &verified.api_keys {
        Some(keys) => key_consumer(keys, headers, target, inputs, first, shape)?,
        None => first
            .map(|(_, name)| name)
            .ok_or_else(|| inconsistent(shape))?,
    };
    policy
        .consumers
        .get(name)
        .ok_or_else(|| inconsistent(shape))
}

/// The consumer the request's API key names.
/// `named` is what a stronger source already named (its name, and the consumer): then only
/// that consumer's keys count, and any other key is refused alike.
fn key_consumer<'t>(
    keys: &'t api_keys::KeyTable,
    headers: &Headers,
    target: &str,
    inputs: &IdentityInputs,
    named: Option<(&'static str, &str)>,
    shape: ApiFamily,
) -> Result<&'t str, Reply> {
    let invalid = |message: String| Reply::new(Code::InvalidApiKey, shape, message);
    let key = api_keys::find_key(headers, target)
        .map_err(|error| invalid(error.reason()))?
        .ok_or_else(|| {
            Reply::new(
                Code::MissingApiKey,
                shape,
                format!(
                    "the request carries no API key; send one in {}",
                    api_keys::places_read()
                ),
            )
        })?;
    keys.consumer_for(
        &key,
        inputs.now_seconds,
        named.map(|(_, consumer)| consumer),
    )
    .map_err(|refused| match (refused, named) {
        (KeyRefused::Unknown, None) => invalid(
            "the API key is not known; ask the platform team for a key, or check that it \
                 has not been revoked"
                .to_owned(),
        ),
        (KeyRefused::Unknown, Some((source, _))) => invalid(format!(
            "the API key is not known for the consumer {source} names; send that \
                 consumer's key"
        )),
        (KeyRefused::Expired(at), _) => invalid(format!(
            "the API key expired at {}; ask the platform team for a new key",
            rfc3339::format(at)
        )),
        (KeyRefused::NoClock, _) => Reply::new(
            Code::InternalError,
            shape,
            "the gateway could not read the time to check the API key's expiry",
        ),
    })
}

/// The consumer the client certificate's SPIFFE ID names.
fn peer_consumer<'t>(
    principals: &'t Principals,
    inputs: &IdentityInputs,
    shape: ApiFamily,
) -> Result<&'t str, Reply> {
    let uri = inputs
        .peer_uri_san
        .filter(|uri| !uri.is_empty())
        .ok_or_else(|| {
            Reply::new(
                Code::MissingPeerIdentity,
                shape,
                "the request came without a client certificate that names a workload (a \
                 verified certificate with a URI SAN); connect with mutual TLS",
            )
        })?;
    principals.consumer_for(uri).map_err(|refused| {
        let why = match refused {
            PeerRefused::Malformed => "is not a well-formed SPIFFE ID",
            PeerRefused::Unknown => "matches no consumer's principals",
        };
        // The ID is no secret (Envoy verified it), and the operator needs it to add it.
        log::warn!("client certificate URI SAN \"{}\" {why}", loggable(uri));
        Reply::new(
            Code::UnknownPeerIdentity,
            shape,
            "the client certificate's identity is not a consumer of this gateway",
        )
    })
}

/// The name the verified claim gives: a consumer's, or a well-formed name with no entry, which
/// can only conflict with the other sources.
fn claim_consumer<'i>(
    policy: &Policy,
    metadata: &MetadataSource,
    inputs: &IdentityInputs<'i>,
    shape: ApiFamily,
) -> Result<&'i str, Reply> {
    let source = metadata_source(&metadata.namespace, &metadata.path);
    let value = inputs
        .metadata
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            Reply::new(
                Code::IdentityUnusable,
                shape,
                format!(
                    "{source} is missing; every identity source this gateway configures is \
                     required"
                ),
            )
        })?;
    // `resolve` refuses what is no name (not text, spaces, another case, look-alikes).
    resolve(policy, value, &source, shape)?;
    std::str::from_utf8(value).map_err(|_| inconsistent(shape))
}

/// The consumer a present name resolves to; `Ok(None)` for a well-formed name with no entry.
fn resolve<'p>(
    policy: &'p Policy,
    value: &[u8],
    source: &str,
    shape: ApiFamily,
) -> Result<Option<&'p Consumer>, Reply> {
    identity::resolve(&policy.consumers, value).map_err(|unusable| {
        Reply::new(
            Code::IdentityUnusable,
            shape,
            format!("{source} {}", unusable.reason()),
        )
    })
}

fn metadata_source(namespace: &str, path: &[String]) -> String {
    format!(
        "the identity at metadata \"{namespace}\" / \"{}\"",
        path.join("/")
    )
}

/// A certificate's URI SAN as one log line can hold it: its bytes are whatever the CA signed.
fn loggable(uri: &[u8]) -> String {
    shorten::loggable(&String::from_utf8_lossy(uri))
}

/// Keys and principals name consumers of the policy by construction.
fn inconsistent(shape: ApiFamily) -> Reply {
    Reply::new(Code::InternalError, shape, "the policy is inconsistent")
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
