//! Refusals as data, and their rendering in the caller's API shape, so the caller's SDK raises
//! its usual error with our message.

use serde_json::json;

use super::classify::ApiFamily;

/// A stable reason code. Clients and dashboards may match on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    ModelNotApproved,
    ModelNotFound,
    /// A model-list request asked for a model outside the consumer's list (404, so SDKs raise
    /// their not-found error); on the wire it is `model_not_found` too.
    ModelNotInList,
    ConsumerNotAllowed,
    InvalidIdentity,
    IdentityUnusable,
    /// No API key in any place keys are read.
    MissingApiKey,
    /// An API key that is malformed, repeated, unknown or expired.
    InvalidApiKey,
    /// No verified client certificate with a URI SAN.
    MissingPeerIdentity,
    /// A client certificate whose SPIFFE ID is malformed or names no consumer.
    UnknownPeerIdentity,
    /// Identity sources that name different consumers.
    IdentityConflict,
    InvalidRequest,
    InvalidJson,
    DuplicateKey,
    InvalidModel,
    UnsupportedEndpoint,
    UnsupportedMediaType,
    BodyTooLarge,
    ProviderApiMismatch,
    PromptBlocked,
    OpaqueContent,
    MaxOutputTokensExceeded,
    BudgetExceeded,
    UsageUnreadable,
    InternalError,
    /// No provider could answer: Envoy answered itself (every target failed to connect, no
    /// healthy upstream, a timeout); sent with Envoy's status.
    UpstreamUnavailable,
    /// The provider's answer matched a rule that blocks answers: it was not sent.
    ResponseBlocked,
    /// The provider's answer could not be inspected (compressed, not of its API's format,
    /// too large): it was not sent.
    ResponseUnreadable,
    /// An external guard service flagged the request's text (403).
    GuardBlocked,
    /// An external guard service could not judge the request and its `on_error` blocks (503).
    GuardUnavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ModelNotApproved => "model_not_approved",
            Code::ModelNotFound | Code::ModelNotInList => "model_not_found",
            Code::ConsumerNotAllowed => "consumer_not_allowed",
            Code::InvalidIdentity => "invalid_identity",
            Code::IdentityUnusable => "identity_unusable",
            Code::MissingApiKey => "missing_api_key",
            Code::InvalidApiKey => "invalid_api_key",
            Code::MissingPeerIdentity => "missing_peer_identity",
            Code::UnknownPeerIdentity => "unknown_peer_identity",
            Code::IdentityConflict => "identity_conflict",
            Code::InvalidRequest => "invalid_request",
            Code::InvalidJson => "invalid_json",
            Code::DuplicateKey => "duplicate_key",
            Code::InvalidModel => "invalid_model",
            Code::UnsupportedEndpoint => "unsupported_endpoint",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::BodyTooLarge => "body_too_large",
            Code::ProviderApiMismatch => "provider_api_mismatch",
            Code::PromptBlocked => "prompt_blocked",
            Code::OpaqueContent => "opaque_content",
            Code::MaxOutputTokensExceeded => "max_output_tokens_exceeded",
            Code::BudgetExceeded => "budget_exceeded",
            Code::UsageUnreadable => "usage_unreadable",
            Code::InternalError => "internal_error",
            Code::UpstreamUnavailable => "upstream_unavailable",
            Code::ResponseBlocked => "response_blocked",
            Code::ResponseUnreadable => "response_unreadable",
            Code::GuardBlocked => "guard_blocked",
            Code::GuardUnavailable => "guard_unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Code::ModelNotApproved
            | Code::ModelNotFound
            | Code::ConsumerNotAllowed
            | Code::PromptBlocked
            | Code::OpaqueContent
            | Code::MaxOutputTokensExceeded
            | Code::UsageUnreadable
            | Code::IdentityUnusable
            | Code::UnknownPeerIdentity
            | Code::IdentityConflict
            | Code::ResponseBlocked
            | Code::GuardBlocked => 403,
            Code::MissingApiKey | Code::InvalidApiKey | Code::MissingPeerIdentity => 401,
            Code::InvalidIdentity
            | Code::InvalidRequest
            | Code::InvalidJson
            | Code::DuplicateKey
            | Code::InvalidModel
            | Code::ProviderApiMismatch => 400,
            Code::UnsupportedEndpoint | Code::ModelNotInList => 404,
            Code::BodyTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::BudgetExceeded => 429,
            Code::InternalError => 500,
            Code::UpstreamUnavailable | Code::GuardUnavailable => 503,
            Code::ResponseUnreadable => 502,
        }
    }

    /// The request field the error is about, as OpenAI's `param`.
    fn param(self) -> Option<&'static str> {
        match self {
            Code::ModelNotApproved
            | Code::ModelNotFound
            | Code::InvalidModel
            | Code::ProviderApiMismatch => Some("model"),
            _ => None,
        }
    }

    /// True for a refusal that audit mode records instead of enforcing. Everything else means
    /// the request cannot be routed or read, and is refused in every mode.
    pub fn is_policy_denial(self) -> bool {
        matches!(
            self,
            Code::ModelNotApproved
                | Code::ConsumerNotAllowed
                | Code::PromptBlocked
                | Code::OpaqueContent
                | Code::MaxOutputTokensExceeded
                | Code::BudgetExceeded
                | Code::UsageUnreadable
                | Code::GuardBlocked
                | Code::GuardUnavailable
        )
    }
}

/// A local reply to send instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: Code,
    pub message: String,
    /// The API shape the caller's SDK expects.
    pub shape: ApiFamily,
    /// The inspection rule that caused the refusal, if one did.
    pub rule: Option<String>,
    /// Seconds until the request may succeed, sent as `Retry-After` (budgets).
    pub retry_after: Option<u64>,
    /// A status other than the code's: Envoy's own for `upstream_unavailable`, 502 for a
    /// pool cluster that does not match its plan.
    pub status_override: Option<u16>,
}

impl Reply {
    pub fn new(code: Code, shape: ApiFamily, message: impl Into<String>) -> Self {
        Reply {
            code,
            message: message.into(),
            shape,
            rule: None,
            retry_after: None,
            status_override: None,
        }
    }

    /// The reply sent with `status` rather than its code's.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status_override = Some(status);
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_rule(mut self, rule: &str) -> Self {
        self.rule = Some(rule.to_owned());
        self
    }

    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or(self.code.status())
    }

    /// The JSON body, in the shape of the caller's API.
    pub fn body(&self) -> Vec<u8> {
        let code = self.code.as_str();
        let mut value = match self.shape {
            ApiFamily::OpenAi | ApiFamily::AzureOpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": openai_type(self.code),
                    "param": self.code.param(),
                    "code": code,
                }
            }),
            ApiFamily::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": anthropic_type(self.code),
                    "message": self.message,
                    "code": code,
                }
            }),
            ApiFamily::Gemini => json!({
                "error": {
                    "code": self.status(),
                    "message": self.message,
                    "status": google_status(self.code),
                    "reason": code,
                }
            }),
            ApiFamily::Bedrock => json!({
                "message": self.message,
                "code": code,
            }),
        };
        if let (Some(rule), Some(object)) = (&self.rule, value.as_object_mut()) {
            let target = match object
                .get_mut("error")
                .and_then(|error| error.as_object_mut())
            {
                Some(error) => error,
                None => object,
            };
            target.insert("rule".to_owned(), json!(rule));
        }
        value.to_string().into_bytes()
    }

    /// Headers sent with the reply.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-posturio-code", self.code.as_str().to_owned()),
        ];
        if self.shape == ApiFamily::Bedrock {
            headers.push(("x-amzn-errortype", bedrock_type(self.code).to_owned()));
        }
        if let Some(seconds) = self.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        if self.status() == 401 {
            // HTTP requires a challenge with every 401.
            headers.push(("www-authenticate", "Bearer realm=\"posturio\"".to_owned()));
        }
        headers
    }
}

fn google_status(code: Code) -> &'static str {
    match code.status() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        429 => "RESOURCE_EXHAUSTED",
        404 => "NOT_FOUND",
        500 | 502 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INVALID_ARGUMENT",
    }
}

fn bedrock_type(code: Code) -> &'static str {
    match code.status() {
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        429 => "ThrottlingException",
        404 => "ResourceNotFoundException",
        500 | 502 => "InternalServerException",
        503 | 504 => "ServiceUnavailableException",
        _ => "ValidationException",
    }
}

fn openai_type(code: Code) -> &'static str {
    match code.status() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        404 => "not_found_error",
        500 | 502..=504 => "server_error",
        _ => "invalid_request_error",
    }
}

fn anthropic_type(code: Code) -> &'static str {
    match code.status() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        500 | 502 | 504 => "api_error",
        503 => "overloaded_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn guard_codes() {
        let blocked = Reply::new(Code::GuardBlocked, ApiFamily::Anthropic, "m");
        let body: Value = serde_json::from_slice(&blocked.body()).unwrap();
        assert_eq!(blocked.status(), 403);
        assert_eq!(body["error"]["type"], "permission_error");
        assert_eq!(body["error"]["code"], "guard_blocked");
        let unavailable = Reply::new(Code::GuardUnavailable, ApiFamily::Gemini, "m");
        let body: Value = serde_json::from_slice(&unavailable.body()).unwrap();
        assert_eq!(unavailable.status(), 503);
        assert_eq!(body["error"]["status"], "UNAVAILABLE");
        assert_eq!(body["error"]["reason"], "guard_unavailable");
        // Audit mode records both, as guards.rs does for the consumer's mode.
        assert!(Code::GuardBlocked.is_policy_denial());
        assert!(Code::GuardUnavailable.is_policy_denial());
    }

    #[test]
    fn openai_shape() {
        let reply = Reply::new(Code::ModelNotApproved, ApiFamily::OpenAi, "no \"x\"");
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        assert_eq!(reply.status(), 403);
        assert_eq!(
            body,
            json!({"error": {"message": "no \"x\"", "type": "permission_error",
                             "param": "model", "code": "model_not_approved"}})
        );
    }

    #[test]
    fn anthropic_shape() {
        let reply = Reply::new(Code::BodyTooLarge, ApiFamily::Anthropic, "too big");
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        assert_eq!(reply.status(), 413);
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "request_too_large",
                   "message": "too big", "code": "body_too_large"}})
        );
    }

    #[test]
    fn gemini_shape() {
        let reply =
            Reply::new(Code::PromptBlocked, ApiFamily::Gemini, "blocked").with_rule("no-secrets");
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": 403, "message": "blocked", "status": "PERMISSION_DENIED",
                             "reason": "prompt_blocked", "rule": "no-secrets"}})
        );
    }

    #[test]
    fn bedrock_shape() {
        let reply = Reply::new(Code::ModelNotApproved, ApiFamily::Bedrock, "no");
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        assert_eq!(body, json!({"message": "no", "code": "model_not_approved"}));
        assert!(reply
            .headers()
            .contains(&("x-amzn-errortype", "AccessDeniedException".to_owned())));
    }

    #[test]
    fn budget_reply_says_when_to_retry() {
        let reply =
            Reply::new(Code::BudgetExceeded, ApiFamily::Anthropic, "over").with_retry_after(42);
        let body: Value = serde_json::from_slice(&reply.body()).unwrap();
        assert_eq!(reply.status(), 429);
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(reply.headers().contains(&("retry-after", "42".to_owned())));
        let gemini = Reply::new(Code::BudgetExceeded, ApiFamily::Gemini, "over");
        let body: Value = serde_json::from_slice(&gemini.body()).unwrap();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        assert!(!gemini
            .headers()
            .iter()
            .any(|(name, _)| *name == "retry-after"));
    }

    #[test]
    fn identity_refusals_in_every_shape() {
        for (code, status, openai, google, bedrock) in [
            (
                Code::MissingApiKey,
                401,
                "authentication_error",
                "UNAUTHENTICATED",
                "UnrecognizedClientException",
            ),
            (
                Code::InvalidApiKey,
                401,
                "authentication_error",
                "UNAUTHENTICATED",
                "UnrecognizedClientException",
            ),
            (
                Code::MissingPeerIdentity,
                401,
                "authentication_error",
                "UNAUTHENTICATED",
                "UnrecognizedClientException",
            ),
            (
                Code::UnknownPeerIdentity,
                403,
                "permission_error",
                "PERMISSION_DENIED",
                "AccessDeniedException",
            ),
            (
                Code::IdentityConflict,
                403,
                "permission_error",
                "PERMISSION_DENIED",
                "AccessDeniedException",
            ),
        ] {
            let name = code.as_str();
            assert_eq!(code.status(), status, "{name}");
            assert!(
                !code.is_policy_denial(),
                "{name} is refused in audit mode too"
            );
            let body = |family| -> Value {
                serde_json::from_slice(&Reply::new(code, family, "m").body()).unwrap()
            };
            assert_eq!(body(ApiFamily::OpenAi)["error"]["type"], openai, "{name}");
            assert_eq!(body(ApiFamily::OpenAi)["error"]["code"], name);
            assert_eq!(
                body(ApiFamily::AzureOpenAi)["error"]["type"],
                openai,
                "{name}"
            );
            assert_eq!(
                body(ApiFamily::Anthropic)["error"]["type"],
                openai,
                "{name}"
            );
            assert_eq!(body(ApiFamily::Gemini)["error"]["status"], google, "{name}");
            assert_eq!(body(ApiFamily::Gemini)["error"]["code"], status, "{name}");
            let bedrock_reply = Reply::new(code, ApiFamily::Bedrock, "m");
            assert!(bedrock_reply
                .headers()
                .contains(&("x-amzn-errortype", bedrock.to_owned())));
            let challenge = ("www-authenticate", "Bearer realm=\"posturio\"".to_owned());
            for family in [
                ApiFamily::OpenAi,
                ApiFamily::Anthropic,
                ApiFamily::Gemini,
                ApiFamily::Bedrock,
            ] {
                let headers = Reply::new(code, family, "m").headers();
                assert_eq!(headers.contains(&challenge), status == 401, "{name}");
            }
        }
    }

    #[test]
    fn statuses() {
        for (code, status) in [
            (Code::ModelNotFound, 403),
            (Code::ConsumerNotAllowed, 403),
            (Code::InvalidIdentity, 400),
            (Code::DuplicateKey, 400),
            (Code::UnsupportedEndpoint, 404),
            (Code::ModelNotInList, 404),
            (Code::UnsupportedMediaType, 415),
            (Code::InternalError, 500),
            (Code::BudgetExceeded, 429),
            (Code::MaxOutputTokensExceeded, 403),
        ] {
            assert_eq!(code.status(), status, "{}", code.as_str());
        }
    }
}
