//! A model served through a pool cluster, against the same model served by each of its
//! targets alone. From the fuzz input: the targets (families, `base_path`, upstream names), the
//! endpoint, and the body (where the model sits, text to redact, output-token fields). For
//! every target, the upstream filter's splice of what the request filter forwarded must equal,
//! byte for byte, what the single-provider policy forwards for that target, with the same
//! path: the filter never shows one thing and sends the provider another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use posturio::pipeline::classification::{classify_request, IdentityInputs};
use posturio::pipeline::decision::decide_body;
use posturio::pipeline::{Decision, Forward};
use posturio::policy::Policy;
use serde_json::{json, Value};

/// Upstream names, some needing JSON escapes or percent-encoding.
const NAMES: [&str; 6] = ["m", "gpt-4o-prod", "a\"b", "ünï", "x/y", "models-7"];

/// `(method path with {model}, family, body carries the model)`.
const ENDPOINTS: [(&str, &str, bool); 4] = [
    ("/v1/chat/completions", "openai", true),
    ("/v1beta/models/{model}:countTokens", "gemini", false),
    ("/openai/deployments/{model}/chat/completions", "azure_openai", false),
    ("/model/{model}/converse", "bedrock", false),
];

fn byte(data: &[u8], at: usize) -> usize {
    usize::from(data.get(at).copied().unwrap_or(0))
}

/// `(path, body)` for the endpoint, with the model at the place the input picks.
fn request(data: &[u8], endpoint: usize, model: &str) -> (String, String) {
    let (path, _, in_body) = ENDPOINTS[endpoint];
    let text = String::from_utf8_lossy(data.get(8..).unwrap_or_default()).into_owned();
    let mut fields: Vec<(String, Value)> = Vec::new();
    let content = json!([{ "role": "user", "content": format!("{text} mail jane@example.com") }]);
    match endpoint {
        0 => {
            fields.push(("messages".into(), content));
            if byte(data, 5) % 2 == 1 {
                fields.push(("max_tokens".into(), json!(byte(data, 6) * 1000)));
            }
            if byte(data, 5) % 4 >= 2 {
                fields.push(("stream".into(), json!(true)));
            }
        }
        1 => {
            let inner = json!({
                "model": format!("models/{model}"),
                "contents": [{ "parts": [{ "text": text }] }],
            });
            fields.push(("generateContentRequest".into(), inner));
        }
        2 => fields.push(("messages".into(), content)),
        _ => fields.push((
            "messages".into(),
            json!([{ "role": "user", "content": [{ "text": text }] }]),
        )),
    }
    if in_body {
        let at = byte(data, 7) % (fields.len() + 1);
        fields.insert(at, ("model".into(), json!(model)));
    }
    let body = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", json!(key)))
        .collect::<Vec<_>>()
        .join(",");
    (path.replace("{model}", model), format!("{{{body}}}"))
}

fn policy(providers: &Value, model: Value, cap: bool) -> Policy {
    let mut consumer = json!({ "models": ["*"] });
    if cap {
        consumer["max_output_tokens"] = json!(500);
    }
    let config = json!({
        "providers": providers,
        "models": { "gpt-4o": model },
        "consumers": { "default": consumer },
        "rules": [{ "id": "no-email", "detect": "email", "action": "redact" }],
    });
    Policy::from_json(config.to_string().as_bytes()).unwrap()
}

fn decide(policy: &Policy, path: &str, body: &str) -> Option<Forward> {
    let headers = vec![
        (":method".to_string(), b"POST".to_vec()),
        (":path".to_string(), path.as_bytes().to_vec()),
        ("content-type".to_string(), b"application/json".to_vec()),
    ];
    let pending = classify_request(policy, &headers, &IdentityInputs::default()).ok()?;
    match decide_body(policy, &pending, body.as_bytes()).0 {
        Decision::Forward(forward) => Some(forward),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let endpoint = byte(data, 0) % ENDPOINTS.len();
    let family = ENDPOINTS[endpoint].1;
    let count = 1 + byte(data, 1) % 3;
    let mut providers = serde_json::Map::new();
    let mut targets = Vec::new();
    for index in 0..count {
        let name = format!("p{index}");
        let mut provider = json!({ "cluster": name, "api": [family] });
        if family == "openai" && byte(data, 2) >> index & 1 == 1 {
            provider["base_path"] = json!("/openai/v1");
        }
        providers.insert(name.clone(), provider);
        let choice = byte(data, 3 + index);
        let mut target = json!({ "provider": name });
        if family == "bedrock" {
            // A Bedrock pool names one vendor's models (an invoke body is in its format).
            let name = NAMES.get(choice % 7).copied().unwrap_or("gpt-4o");
            target["upstream_model"] = json!(format!("anthropic.{name}"));
        } else if choice % 7 < NAMES.len() {
            target["upstream_model"] = json!(NAMES[choice % 7]);
        }
        targets.push(target);
    }
    let providers = Value::Object(providers);
    let cap = byte(data, 5) % 8 >= 4;
    let pool = policy(
        &providers,
        json!({ "cluster": "pool", "targets": targets }),
        cap,
    );
    let (path, body) = request(data, endpoint, "gpt-4o");
    let Some(pooled) = decide(&pool, &path, &body) else {
        return;
    };
    assert_eq!(pooled.cluster, "pool");
    let plan = pooled.plan.as_ref().expect("a pooled forward has a plan");
    let plan = posturio::policy::plan::Plan::from_json(&plan.to_json().unwrap()).unwrap();
    let forwarded = pooled.body.clone().unwrap_or_else(|| body.clone().into_bytes());
    for target in &targets {
        let alone = policy(&providers, target.clone(), cap);
        let single = decide(&alone, &path, &body).expect("the single-provider policy forwards");
        let name = target["provider"].as_str().unwrap();
        let planned = plan.target(name).expect("every target is in the plan");
        let sent = plan
            .splice(&forwarded, planned)
            .unwrap_or_else(|error| panic!("{name}: {error}"))
            .unwrap_or_else(|| forwarded.clone());
        let expected = single.body.clone().unwrap_or_else(|| body.clone().into_bytes());
        assert_eq!(
            String::from_utf8_lossy(&sent),
            String::from_utf8_lossy(&expected),
            "the body {name} gets"
        );
        assert_eq!(Some(sent.len()), planned.body_length, "{name}'s length");
        assert_eq!(
            planned.path,
            single.path.clone().unwrap_or_else(|| path.clone()),
            "the path {name} gets"
        );
    }
});
