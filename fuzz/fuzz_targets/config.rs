//! Bytes through `Policy::from_json`, as the filter loads its configuration. Besides not
//! panicking: a refusal names at least one mistake, and a policy that compiles decides
//! requests for its own models and consumers without ever answering 500 (an internal
//! inconsistency of the compiled policy).
#![no_main]

use libfuzzer_sys::fuzz_target;
use posturio::policy::Policy;
use posturio_fuzz::{evaluate_and_check, RawRequest};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let policy = match Policy::from_json(data) {
        Ok(policy) => policy,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without saying why");
            for error in &errors {
                assert!(!error.to_string().is_empty());
            }
            return;
        }
    };
    // It compiled, so it is a JSON object with the keys the checks read.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = serde_json::from_str::<Value>(text) else {
        return;
    };
    // Names resolved by the compiler: reading them back cannot fail.
    let catalogue = posturio_fuzz::Catalogue::from_json(text);
    let identity = config["identity"]["header"].as_str();
    let models: Vec<&String> = catalogue.models.keys().take(4).collect();
    let mut consumers: Vec<Option<&str>> = vec![None];
    consumers.extend(catalogue.consumers.keys().take(3).map(|c| Some(c.as_str())));
    for model in models {
        for consumer in &consumers {
            for path in ["/v1/chat/completions", "/v1/messages"] {
                let mut headers = vec![
                    (":method".to_string(), b"POST".to_vec()),
                    (":path".to_string(), path.as_bytes().to_vec()),
                    ("content-type".to_string(), b"application/json".to_vec()),
                ];
                if let (Some(header), Some(consumer)) = (identity, consumer) {
                    headers.push((header.to_string(), consumer.as_bytes().to_vec()));
                }
                let body = json!({
                    "model": model,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "Say hi to dev@example.com"}]
                });
                let request = RawRequest {
                    headers,
                    body: body.to_string().into_bytes(),
                };
                evaluate_and_check(&policy, &catalogue, &request);
            }
        }
    }
});
