//! The identity step: the consumer a request is evaluated as — the one its identity (a
//! header, or metadata another filter wrote) names, else `default`, else none.

use crate::policy::compiled::{Consumer, Identity, Policy, DEFAULT_CONSUMER};
use crate::policy::identity;
use crate::policy::request::{self, Headers};
use crate::policy::{ApiFamily, Code, Reply};

/// The consumer the identity names, else `default`, else none.
pub(super) fn consumer_for<'p>(
    policy: &'p Policy,
    headers: &Headers,
    metadata_identity: Option<&[u8]>,
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
        Identity::Metadata { namespace, path } => (
            metadata_identity,
            format!(
                "the identity at metadata \"{namespace}\" / \"{}\"",
                path.join("/")
            ),
        ),
    };
    // An empty value is no identity: Envoy hands an empty claim to the module as none.
    let named = match named.filter(|value| !value.is_empty()) {
        None => None,
        Some(value) => identity::resolve(&policy.consumers, value).map_err(|unusable| {
            Reply::new(
                Code::IdentityUnusable,
                shape,
                format!("{source} {}", unusable.reason()),
            )
        })?,
    };
    Ok(named.or_else(|| policy.consumers.get(DEFAULT_CONSUMER)))
}
