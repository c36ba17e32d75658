//! Loading a policy: the plugin configuration's bytes compiled into a `Policy`, logged, and
//! its budget counters created. Adapters hand the bytes over and keep what comes back.

use super::budget;
use super::host::Host;
use crate::policy::Policy;

/// What a filter is configured as.
#[derive(Debug)]
pub enum Configured {
    /// The filter that decides (`"role": "request"`, the default), with its policy.
    Request(Box<Policy>),
    /// The per-attempt filter of a pool cluster: `{"role": "upstream"}`, no policy.
    Upstream,
}

/// The filter's role and, for the request filter, its compiled policy; `None` when the
/// configuration is invalid (each mistake logged).
pub fn configure_role<H: Host>(host: &H, bytes: &[u8]) -> Option<Configured> {
    match upstream_role(bytes) {
        Ok(true) => {
            log::info!("configured as the upstream filter of a pool cluster");
            Some(Configured::Upstream)
        }
        Ok(false) => configure(host, bytes).map(|policy| Configured::Request(Box::new(policy))),
        Err(error) => {
            log::error!("invalid configuration: {error}");
            None
        }
    }
}

/// Whether the configuration is the upstream role's, `{"role": "upstream"}`; any other key
/// beside that role is an error naming it. Anything else is read as a policy.
pub fn upstream_role(bytes: &[u8]) -> Result<bool, String> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(bytes) else {
        return Ok(false);
    };
    if object.get("role").and_then(|role| role.as_str()) != Some("upstream") {
        return Ok(false);
    }
    match object.keys().find(|key| *key != "role") {
        Some(key) => Err(format!(
            "{key}: the upstream filter's configuration is exactly {{\"role\": \"upstream\"}}; \
             it takes no policy (the request filter's plan says what each attempt gets)"
        )),
        None => Ok(true),
    }
}

/// The compiled policy, or `None` when the configuration is invalid: each mistake is logged
/// with the JSON path of the bad value, and the adapter rejects the configuration.
pub fn configure<H: Host>(host: &H, bytes: &[u8]) -> Option<Policy> {
    match Policy::from_json(bytes) {
        Ok(policy) => {
            log::info!(
                "policy loaded: {} providers, {} models, {} consumers, mode {}",
                policy.provider_count(),
                policy.model_count(),
                policy.consumer_count(),
                policy.mode.as_str()
            );
            budget::create_counters(host, &policy);
            Some(policy)
        }
        Err(errors) => {
            for error in &errors {
                log::error!("invalid configuration: {error}");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_role_is_that_object_alone() {
        assert_eq!(upstream_role(br#"{"role":"upstream"}"#), Ok(true));
        assert_eq!(
            upstream_role(br#"{"role":"request","models":{}}"#),
            Ok(false)
        );
        assert_eq!(upstream_role(br#"{"models":{}}"#), Ok(false));
        assert_eq!(upstream_role(b"not json"), Ok(false));
        let error = upstream_role(br#"{"role":"upstream","providers":{}}"#).unwrap_err();
        assert!(
            error.starts_with("providers: the upstream filter's configuration is exactly"),
            "{error}"
        );
    }

    #[test]
    fn a_policy_takes_no_other_role() {
        let error =
            Policy::from_json(br#"{"role":"both","providers":{},"models":{}}"#).unwrap_err();
        assert_eq!(error[0].path, "role", "{error:?}");
    }
}
