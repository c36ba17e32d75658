//! Evaluation of a request against the policy: plain data in, a decision out.
//!
//! A request is decided in two steps because Envoy delivers it in two: `on_headers` refuses
//! what the headers alone condemn and otherwise says to read the body; `on_body` decides with
//! the whole body (see `decide_body`). A request without a body goes through both, with an
//! empty body.

use super::classify::{
    classify, is_canonical_path, is_under, split_query, ApiFamily, Classified, API_ROOT,
};
use super::compile::{Consumer, Identity, Policy, DEFAULT_CONSUMER};
use super::config::Mode;
use super::extract::display_model;
use super::identity;
use super::inspect::Fired;
use super::limits::stream_usage as limits_usage;
use super::reply::{Code, Reply};
use super::request::{self, check_json_body, Headers};
use super::usage::UsageFormat;

/// What a request is, once its headers are read. Kept until the body arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub(crate) target: Target,
    /// The consumer the request is evaluated as; `None` when it has no identity (or an unknown
    /// one) and the policy has no `default` consumer.
    pub(crate) consumer: Option<String>,
    /// The request path, query included, as the client sent it.
    pub(crate) path: String,
    pub(crate) shape: ApiFamily,
    /// Why the request's headers make its answer's usage unreadable, if they do; refused for
    /// a consumer with a budget once the body is read (audit mode records it instead).
    pub(crate) unread_headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Endpoint(Classified),
    Passthrough(usize),
}

/// The decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Refuse(Reply),
    Forward(Forward),
}

/// How to forward an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub cluster: String,
    /// The new `:path`, when the model is in the path or the provider's `base_path` applies.
    pub path: Option<String>,
    /// The new body, when the model is rewritten, text redacted, the output-token cap applied
    /// or stream usage asked for. Every other byte is the client's.
    pub body: Option<Vec<u8>>,
    /// Set when the policy would have refused the request but audit mode let it through.
    pub audited: Option<Reply>,
    /// The format the response reports its token usage in; `None` when it reports none
    /// (token counts, passthrough calls).
    pub usage: Option<UsageFormat>,
}

/// What a decision was about, for the log and the access log. Never prompt text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub consumer: Option<String>,
    pub family: Option<&'static str>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub provider: Option<String>,
    pub rules: Vec<Fired>,
    pub redactions: usize,
    /// An output-token value over the consumer's cap was lowered to it.
    pub output_cap_clamped: bool,
    /// The request asked for no output-token limit and was given the consumer's cap.
    pub output_cap_added: bool,
    /// `stream_options.include_usage: true` was set so the stream reports its usage.
    pub stream_usage_added: bool,
}

impl Pending {
    /// The API shape replies to this request take.
    pub fn shape(&self) -> ApiFamily {
        self.shape
    }
}

impl Policy {
    /// Decides what the headers alone can decide. `metadata_identity` is the value found at
    /// the identity's metadata path, when the identity comes from metadata.
    pub fn on_headers(
        &self,
        headers: &Headers,
        metadata_identity: Option<&[u8]>,
    ) -> Result<Pending, Reply> {
        let shape = reply_shape(headers);
        let method = request::only(headers, ":method")
            .ok()
            .flatten()
            .unwrap_or_default();
        let Ok(Some(path)) = request::only(headers, ":path") else {
            return Err(Reply::new(
                Code::InvalidRequest,
                shape,
                "the request has no readable path",
            ));
        };
        if request::values(headers, "upgrade").next().is_some()
            || request::values(headers, ":protocol").next().is_some()
        {
            return Err(Reply::new(
                Code::UnsupportedEndpoint,
                shape,
                "protocol upgrades (WebSocket and the like) are not forwarded",
            ));
        }

        let target = match classify(method, path) {
            Some(classified) => Target::Endpoint(classified),
            None => match self.passthrough_for(method, path) {
                Some(index) => Target::Passthrough(index),
                None => {
                    return Err(Reply::new(
                        Code::UnsupportedEndpoint,
                        shape,
                        format!(
                            "{} {} is not an endpoint this gateway serves",
                            display_model(method),
                            display_model(split_query(path).0)
                        ),
                    ))
                }
            },
        };
        let shape = match &target {
            Target::Endpoint(classified) => classified.endpoint.family(),
            Target::Passthrough(_) => shape,
        };

        let consumer = self.consumer_for(headers, metadata_identity, shape)?;
        if consumer.is_none() && self.mode == Mode::Enforce {
            return Err(no_consumer(shape));
        }

        if let Target::Endpoint(_) = target {
            if let Err(error) = check_json_body(headers) {
                return Err(Reply::new(
                    Code::UnsupportedMediaType,
                    shape,
                    error.to_string(),
                ));
            }
            if request::content_length(headers)
                .is_some_and(|length| length > self.max_body_bytes as u64)
            {
                return Err(self.too_large(shape));
            }
        }
        let unread_headers = match &target {
            Target::Endpoint(classified) => limits_usage::unread_headers(classified, headers),
            Target::Passthrough(_) => None,
        };
        Ok(Pending {
            target,
            consumer: consumer.map(|consumer| consumer.name.clone()),
            path: path.to_owned(),
            shape,
            unread_headers,
        })
    }

    /// Decides with the whole body (empty for a request that ended with its headers).
    pub fn on_body(&self, pending: &Pending, body: &[u8]) -> (Decision, Facts) {
        let mut facts = Facts {
            consumer: pending.consumer.clone(),
            ..Facts::default()
        };
        let decision = match &pending.target {
            Target::Endpoint(classified) => {
                self.decide_endpoint(pending, classified, body, &mut facts)
            }
            Target::Passthrough(index) => {
                self.decide_passthrough(pending, *index, body, &mut facts)
            }
        };
        (decision.unwrap_or_else(Decision::Refuse), facts)
    }

    /// The reply for a body over `max_body_bytes`.
    /// What is known of a request before its body is read, for a refusal made then: the
    /// consumer, the API family, and the model and its provider when the path names the model.
    pub fn facts_before_body(&self, pending: &Pending) -> Facts {
        let mut facts = Facts {
            consumer: pending.consumer.clone(),
            ..Facts::default()
        };
        let Target::Endpoint(classified) = &pending.target else {
            return facts;
        };
        facts.family = Some(classified.endpoint.family().as_str());
        let Some(path_model) = &classified.path_model else {
            return facts;
        };
        let name = path_model.name.as_str();
        facts.model = Some(name.to_owned());
        if let Some(model) = self.models.get(name) {
            if let Some(provider) = self.providers.get(model.provider) {
                facts.provider = Some(provider.name.clone());
                facts.upstream_model =
                    Some(model.upstream_model.as_deref().unwrap_or(name).to_owned());
            }
        }
        facts
    }

    pub fn too_large(&self, shape: ApiFamily) -> Reply {
        Reply::new(
            Code::BodyTooLarge,
            shape,
            format!(
                "the request body is larger than the gateway's limit of {} bytes",
                self.max_body_bytes
            ),
        )
    }

    fn decide_passthrough(
        &self,
        pending: &Pending,
        index: usize,
        body: &[u8],
        facts: &mut Facts,
    ) -> Result<Decision, Reply> {
        if !body.is_empty() {
            return Err(Reply::new(
                Code::InvalidRequest,
                pending.shape,
                "this endpoint is forwarded uninspected and so must have no body",
            ));
        }
        let provider = self
            .passthrough
            .get(index)
            .and_then(|entry| self.providers.get(entry.provider))
            .ok_or_else(|| {
                Reply::new(
                    Code::InternalError,
                    pending.shape,
                    "the policy is inconsistent",
                )
            })?;
        facts.provider = Some(provider.name.clone());
        let audited = match pending.consumer {
            None => audit_or_refuse(self.mode, no_consumer(pending.shape))?,
            Some(_) => None,
        };
        Ok(Decision::Forward(Forward {
            cluster: provider.cluster.clone(),
            path: rebase(&pending.path, provider.base_path.as_deref()),
            body: None,
            audited,
            usage: None,
        }))
    }

    fn passthrough_for(&self, method: &str, target: &str) -> Option<usize> {
        let (path, _) = split_query(target);
        if !is_canonical_path(path) {
            return None;
        }
        self.passthrough
            .iter()
            .position(|entry| entry.method == method && is_under(path, &entry.path_prefix))
    }

    /// The consumer the identity names, else `default`, else none.
    fn consumer_for(
        &self,
        headers: &Headers,
        metadata_identity: Option<&[u8]>,
        shape: ApiFamily,
    ) -> Result<Option<&Consumer>, Reply> {
        let (named, source) = match &self.identity {
            Identity::None => (None, String::new()),
            Identity::Header(header) => (
                request::single(headers, header)
                    .map_err(|error| {
                        Reply::new(
                            Code::InvalidIdentity,
                            shape,
                            format!(
                                "the identity header \"{header}\" {error}; send exactly one value"
                            ),
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
            Some(value) => identity::resolve(&self.consumers, value).map_err(|unusable| {
                Reply::new(
                    Code::IdentityUnusable,
                    shape,
                    format!("{source} {}", unusable.reason()),
                )
            })?,
        };
        Ok(named.or_else(|| self.consumers.get(DEFAULT_CONSUMER)))
    }
}

/// In audit mode a policy denial is recorded and the request goes on; in enforce mode it is
/// the reply.
pub(crate) fn audit_or_refuse(mode: Mode, reply: Reply) -> Result<Option<Reply>, Reply> {
    match mode {
        Mode::Audit => Ok(Some(reply)),
        Mode::Enforce => Err(reply),
    }
}

/// The reply shape when the endpoint is not known: Anthropic's SDK always sends
/// `anthropic-version`; everyone else gets OpenAI's shape.
fn reply_shape(headers: &Headers) -> ApiFamily {
    if request::values(headers, "anthropic-version")
        .next()
        .is_some()
    {
        ApiFamily::Anthropic
    } else {
        ApiFamily::OpenAi
    }
}

/// The path with its leading `/v1` replaced by `base_path`, or `None` when unchanged.
pub(crate) fn rebase(path: &str, base_path: Option<&str>) -> Option<String> {
    let base_path = base_path?;
    let rest = path.strip_prefix(API_ROOT)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    Some(format!("{base_path}{rest}"))
}

pub(crate) fn no_consumer(shape: ApiFamily) -> Reply {
    Reply::new(
        Code::ConsumerNotAllowed,
        shape,
        "the request names no known consumer and the policy has no \"default\" consumer",
    )
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
