//! Virtual API keys: the places a client may carry one, the one key a request carries, and the
//! consumer its SHA-256 names.
//!
//! The policy holds digests only, never keys, so a leaked configuration grants nothing. A key
//! is looked up by its digest in a hash map: the attacker chooses keys, not digests, so the
//! lookup's timing tells nothing about any stored key.

use std::borrow::Cow;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::classify::split_query;
use super::request::{values, Headers};

/// The request headers a key may arrive in, every API family alike.
pub const KEY_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The request headers removed from every forwarded request when the policy reads keys,
/// whatever they hold: the places keys are read, then the other headers a supported provider
/// (or a gateway usual in front of it) reads as a credential — a proxy's credentials, an AWS
/// session token, Google's IAM token, Azure API Management's subscription key, the keys of
/// Kong, Apigee, LiteLLM, Helicone, Portkey and Cloudflare's AI Gateway, Cloud Run's bearer,
/// Azure Functions' key. A provider only ever sees the credential Envoy injects for its
/// cluster. Names are matched with `_` read as `-`
/// (see `credential_headers_sent`).
pub const CREDENTIAL_HEADERS: [&str; 17] = [
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "proxy-authorization",
    "x-amz-security-token",
    "ocp-apim-subscription-key",
    "x-goog-iam-authorization-token",
    "apikey",
    "x-apikey",
    "x-litellm-api-key",
    "cf-aig-authorization",
    "x-serverless-authorization",
    "x-forwarded-authorization",
    "helicone-auth",
    "x-portkey-api-key",
    "x-functions-key",
];

/// The names, as sent, of the request's headers that are credential headers: each of
/// `CREDENTIAL_HEADERS`, also spelt with `_` for `-` (`x_api_key`), which Envoy passes on by
/// default and which CGI-style servers read as the same header. Each name once.
pub fn credential_headers_sent(headers: &Headers) -> Vec<&str> {
    let mut sent: Vec<&str> = Vec::new();
    for (name, _) in headers {
        let credential = CREDENTIAL_HEADERS.iter().any(|credential| {
            name.len() == credential.len()
                && name.bytes().zip(credential.bytes()).all(|(sent, known)| {
                    let sent = if sent == b'_' { b'-' } else { sent };
                    sent.eq_ignore_ascii_case(&known)
                })
        });
        if credential && !sent.contains(&name.as_str()) {
            sent.push(name);
        }
    }
    sent
}

/// The query parameter a key may arrive in (Gemini's `?key=`, also read as `$key`: Google
/// takes each system parameter with or without `$`).
pub const KEY_PARAMETER: &str = "key";

/// The query parameters removed from every forwarded request when the policy reads keys,
/// compared after percent-decoding and ASCII case-folding, with or without Google's `$`:
/// Google's key and OAuth tokens (`access_token`, its aliases `oauth_token` and
/// `bearer_token`), the spellings other APIs and API Management read. Every `x-amz-` parameter
/// goes too (a SigV4 presigned request's credential, session token and signature).
const CREDENTIAL_PARAMETERS: [&str; 12] = [
    "key",
    "access_token",
    "oauth_token",
    "bearer_token",
    "api_key",
    "api-key",
    "apikey",
    "x-api-key",
    "subscription-key",
    // Azure Functions' key, Azure's signed-URL signature, an OAuth client's secret. (`token`
    // and `auth` stay: too generic to remove from every request that carries them.)
    "code",
    "sig",
    "client_secret",
];

/// The prefix of AWS's query parameters (`X-Amz-Credential`, `X-Amz-Signature`, ...).
const AWS_PARAMETER_PREFIX: &[u8] = b"x-amz-";

/// What a policy says of `sha256:<hex>`: the form keys are listed in.
pub const HASH_PREFIX: &str = "sha256:";

/// The compiled key table: digest to the consumer it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    keys: HashMap<[u8; 32], KeyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub consumer: String,
    /// Unix seconds at which the key stops working; `None` for a key that does not expire.
    pub expires: Option<i64>,
}

/// Why a key names no consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    Unknown,
    /// Expired at these Unix seconds.
    Expired(i64),
    /// The key expires, and the request's time could not be read to tell whether it has.
    NoClock,
}

impl KeyTable {
    /// Adds a digest; returns the entry it was already listed with, if any.
    pub(crate) fn insert(&mut self, digest: [u8; 32], entry: KeyEntry) -> Option<KeyEntry> {
        self.keys.insert(digest, entry)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every listed digest with its entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8; 32], &KeyEntry)> {
        self.keys.iter()
    }

    /// The consumer `key` names at `now` (Unix seconds; `None` when the clock is unreadable).
    /// A key whose expiry is at or before `now` is expired. With `only`, a key of another
    /// consumer is unknown, expired or not: nothing tells it from a guess.
    pub fn consumer_for(
        &self,
        key: &[u8],
        now: Option<i64>,
        only: Option<&str>,
    ) -> Result<&str, KeyRefused> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let entry = self
            .keys
            .get(&digest)
            .filter(|entry| only.is_none_or(|consumer| entry.consumer == consumer))
            .ok_or(KeyRefused::Unknown)?;
        match (entry.expires, now) {
            (None, _) => Ok(&entry.consumer),
            (Some(_), None) => Err(KeyRefused::NoClock),
            (Some(expires), Some(now)) if expires <= now => Err(KeyRefused::Expired(expires)),
            (Some(_), Some(_)) => Ok(&entry.consumer),
        }
    }
}

/// A digest written `sha256:<64 hex digits>` (either case), or why it is not one.
pub fn parse_hash(text: &str) -> Result<[u8; 32], &'static str> {
    const WHAT: &str = "put the SHA-256 of the key here, as `posturio key hash` prints it \
                        (sha256: then 64 hex digits); never the key itself";
    let hex = text.strip_prefix(HASH_PREFIX).ok_or(WHAT)?;
    // `from_str_radix` would take a sign: only hex digits pass.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WHAT);
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| WHAT)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| WHAT)?;
    }
    Ok(digest)
}

/// A key's digest as the policy lists it: `sha256:` and 64 lowercase hex digits.
pub fn written_hash(key: &[u8]) -> String {
    let hex: String = Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{HASH_PREFIX}{hex}")
}

/// `sha256:` and the digest's first 12 hex digits, then `…`: enough to tell keys apart in a
/// review, too little to look one up.
pub fn short_hash(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{HASH_PREFIX}{hex}…")
}

/// Where a key was found, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header(&'static str),
    Parameter,
}

impl Place {
    pub fn describe(self) -> String {
        match self {
            Place::Header(name) => format!("the {name} header"),
            Place::Parameter => {
                format!("the \"{KEY_PARAMETER}\" (or \"${KEY_PARAMETER}\") query parameter")
            }
        }
    }
}

/// Why the places a request carries keys in cannot give one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A key header or the `key` parameter given more than once.
    Repeated(Place),
    /// Two places carry different keys.
    Different(Place, Place),
    /// A place holds an empty key (`Bearer` with nothing after it, `key=`).
    Empty(Place),
    /// A `Bearer` value that is not one key (white space inside it).
    Malformed(Place),
    /// The `key` parameter's value is not correctly percent-encoded.
    BadEncoding,
}

impl KeyError {
    /// In words for the reply; never holds the key.
    pub fn reason(&self) -> String {
        match self {
            KeyError::Repeated(place) => {
                format!("{} is sent twice; send one key", place.describe())
            }
            KeyError::Different(first, second) => format!(
                "{} and {} carry different keys; send one",
                first.describe(),
                second.describe()
            ),
            KeyError::Empty(place) => format!("{} holds an empty API key", place.describe()),
            KeyError::Malformed(place) => format!(
                "{} is not \"Bearer\" followed by one API key without spaces",
                place.describe()
            ),
            KeyError::BadEncoding => {
                format!("the \"{KEY_PARAMETER}\" query parameter is not correctly percent-encoded")
            }
        }
    }
}

/// Where keys are read, for the message that says none was found.
pub fn places_read() -> String {
    format!(
        "\"authorization: Bearer <key>\", x-api-key, api-key, x-goog-api-key or the \
         \"{KEY_PARAMETER}\" query parameter"
    )
}

/// The one key a request carries, from every place keys are read; `Ok(None)` when none
/// carries one. The same key in several places is one key.
pub fn find_key<'h>(
    headers: &'h Headers,
    target: &'h str,
) -> Result<Option<Cow<'h, [u8]>>, KeyError> {
    let mut found: Option<(Place, Cow<'h, [u8]>)> = None;
    let mut offer = |place: Place, key: Cow<'h, [u8]>| -> Result<(), KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty(place));
        }
        match &found {
            Some((first, seen)) if *seen != key => Err(KeyError::Different(*first, place)),
            Some(_) => Ok(()),
            None => {
                found = Some((place, key));
                Ok(())
            }
        }
    };
    for name in KEY_HEADERS {
        let place = Place::Header(name);
        let mut sent = values(headers, name);
        let Some(value) = sent.next() else {
            continue;
        };
        if sent.next().is_some() {
            return Err(KeyError::Repeated(place));
        }
        let value = trim_spaces(value);
        let key = if name == "authorization" {
            match bearer_token(value) {
                Bearer::Token(token) => token,
                Bearer::OtherScheme => continue,
                Bearer::Malformed => return Err(KeyError::Malformed(place)),
            }
        } else {
            value
        };
        offer(place, Cow::Borrowed(key))?;
    }
    let mut parameter_seen = false;
    for (name, value) in parameters(target) {
        if !is_key_name(name) {
            continue;
        }
        if std::mem::replace(&mut parameter_seen, true) {
            return Err(KeyError::Repeated(Place::Parameter));
        }
        let key = percent_decode(value.unwrap_or_default()).ok_or(KeyError::BadEncoding)?;
        offer(Place::Parameter, key)?;
    }
    Ok(found.map(|(_, key)| key))
}

/// The request target without its credential parameters (`CREDENTIAL_PARAMETERS`, `x-amz-*`),
/// every other parameter kept byte for byte and in order; `None` when it has none. The query
/// is scanned once. A parameter is also dropped when a `;`-separated piece of it names a
/// credential (`alt=json;key=...`): some servers split parameters on `;` as well as `&`.
pub fn without_credential_parameters(target: &str) -> Option<String> {
    let (path, query) = split_query(target);
    let query = query.strip_prefix('?')?;
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for parameter in query.split('&') {
        if parameter
            .split(';')
            .any(|piece| is_credential_name(parameter_name(piece)))
        {
            removed = true;
        } else {
            kept.push(parameter);
        }
    }
    if !removed {
        return None;
    }
    if kept.is_empty() {
        return Some(path.to_owned());
    }
    Some(format!("{path}?{}", kept.join("&")))
}

enum Bearer<'v> {
    Token(&'v [u8]),
    OtherScheme,
    Malformed,
}

/// The token of `Bearer <token>` (scheme in any case, one or more spaces).
fn bearer_token(value: &[u8]) -> Bearer<'_> {
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Bearer::OtherScheme;
    }
    let token = trim_spaces(rest);
    if token.iter().any(|&b| b == b' ' || b == b'\t') {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}

fn trim_spaces(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |last| last.saturating_add(1));
    value.get(start..end).unwrap_or_default()
}

/// The query's parameters as (raw name, raw value); `None` for a parameter without `=`.
fn parameters(target: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let (_, query) = split_query(target);
    query
        .strip_prefix('?')
        .unwrap_or_default()
        .split('&')
        .filter(|parameter| !parameter.is_empty())
        .map(|parameter| match parameter.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (parameter, None),
        })
}

fn parameter_name(parameter: &str) -> &str {
    parameter
        .split_once('=')
        .map_or(parameter, |(name, _)| name)
}

/// Whether a raw parameter name is read as the key: `key` or `$key` once percent-decoded
/// (`k%65y` and `%24key` are), in exactly that case.
fn is_key_name(name: &str) -> bool {
    percent_decode(name).is_some_and(|decoded| {
        let decoded = decoded.strip_prefix(b"$").unwrap_or(&decoded);
        *decoded == *KEY_PARAMETER.as_bytes()
    })
}

/// Whether a raw parameter name is a credential's, once percent-decoded, in any case, with or
/// without `$`. A name that does not decode is compared as sent.
fn is_credential_name(name: &str) -> bool {
    let decoded = percent_decode(name).unwrap_or(Cow::Borrowed(name.as_bytes()));
    let decoded = decoded.strip_prefix(b"$").unwrap_or(&decoded);
    CREDENTIAL_PARAMETERS
        .iter()
        .any(|credential| decoded.eq_ignore_ascii_case(credential.as_bytes()))
        || decoded
            .get(..AWS_PARAMETER_PREFIX.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(AWS_PARAMETER_PREFIX))
}

/// `%XX` escapes decoded (`+` stays `+`: keys are compared as sent); `None` for a bad escape.
fn percent_decode(text: &str) -> Option<Cow<'_, [u8]>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = after
                .get(..2)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = after.get(2..)?;
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    Some(Cow::Owned(bytes))
}

#[cfg(test)]
#[path = "api_keys_tests.rs"]
mod tests;
