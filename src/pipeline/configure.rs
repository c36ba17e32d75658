//! Loading a policy: the plugin configuration's bytes compiled into a `Policy`, logged, and
//! its budget counters created. Adapters hand the bytes over and keep what comes back.

use super::budget;
use super::host::Host;
use crate::policy::Policy;

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
