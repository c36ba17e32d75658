//! `posturio schema`: the JSON Schema derived from the config types accepts every example
//! policy in the repository and rejects the mistakes a schema can express.
// Test code: failing loudly is how a broken fixture is reported.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The schema as the command prints it.
fn printed_schema() -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_posturio"))
        .arg("schema")
        .output()
        .expect("run posturio schema");
    assert_eq!(output.status.code(), Some(0));
    serde_json::from_slice(&output.stdout).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&printed_schema()).expect("the schema compiles")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect()
}

/// The inline policy of an Envoy config: the block under its one `value: |` line.
fn embedded_policy(yaml: &str) -> Option<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let head = lines
        .iter()
        .position(|line| line.trim_end().ends_with("value: |"))?;
    let indent = |line: &str| line.len() - line.trim_start().len();
    let head_indent = indent(lines[head]);
    let block: Vec<&str> = lines[head + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indent(line) > head_indent)
        .copied()
        .collect();
    let inner = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| indent(line))
        .min()?;
    Some(
        block
            .iter()
            .map(|line| line.get(inner..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Every policy shipped in the repository: the `.json` policies, and the one embedded in each
/// Envoy example.
fn example_policies() -> Vec<(String, String)> {
    let mut policies = Vec::new();
    for dir in ["envoy", "docs", "docs/examples", "benches"] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(repo()).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path);
            match path.extension().and_then(|ext| ext.to_str()) {
                Some("json") if !name.contains("dashboard") => policies.push((name, text.unwrap())),
                Some("yaml") => {
                    if let Some(policy) = embedded_policy(&text.unwrap()) {
                        policies.push((name, policy));
                    }
                }
                _ => {}
            }
        }
    }
    policies.sort();
    policies
}

#[test]
fn every_example_policy_validates_against_the_schema() {
    let validator = validator();
    let policies = example_policies();
    let names: Vec<&str> = policies.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "envoy/policy.json",
        "envoy/envoy.yaml",
        "envoy/envoy-jwt.yaml",
        "benches/policy-detectors.json",
    ] {
        assert!(names.contains(&expected), "{expected} not among {names:?}");
    }
    for (name, text) in &policies {
        let instance: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        let found = errors(&validator, &instance);
        assert!(found.is_empty(), "{name}: {found:?}");
        // And the filter's loader agrees.
        posturio::policy::Policy::from_json(text.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: refused by the loader: {e:?}"));
    }
}

#[test]
fn the_schema_is_identified_and_closed() {
    let schema = printed_schema();
    assert_eq!(schema["$id"], "urn:posturio:policy");
    assert_eq!(schema["title"], "Posturio policy");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    for name in [
        "IdentityConfig",
        "MetadataIdentity",
        "ProviderConfig",
        "ModelConfig",
        "ConsumerConfig",
        "RuleConfig",
        "PassthroughConfig",
        "BudgetConfig",
        "UsageConfig",
    ] {
        assert_eq!(
            schema["$defs"][name]["additionalProperties"], false,
            "{name} must deny unknown keys"
        );
    }
    // Defaults and doc comments come from the config types.
    assert_eq!(schema["properties"]["mode"]["default"], "enforce");
    assert_eq!(schema["properties"]["max_body_bytes"]["default"], 4194304);
    assert_eq!(
        schema["properties"]["route_header"]["default"],
        "x-posturio-cluster"
    );
    assert!(
        schema["$defs"]["ProviderConfig"]["properties"]["cluster"]["description"]
            .as_str()
            .unwrap()
            .contains("Envoy cluster")
    );
    assert_eq!(schema["required"], json!(["providers", "models"]));
    assert_eq!(
        schema["properties"]["usage"]["default"],
        json!({"inject_stream_usage": true})
    );
    assert_eq!(
        schema["$defs"]["ConsumerConfig"]["dependentRequired"],
        json!({"max_output_tokens_action": ["max_output_tokens"]})
    );
}

/// The fixtures whose mistake only the loader can see: it needs the whole document (names
/// resolved, globs expanded, regexes compiled), a rule a schema cannot state (JSON Schema
/// counts `1e6` as an integer; the loader wants an integer literal), or the duplicate keys that
/// JSON parsers drop before a schema sees them.
const SEMANTIC_ONLY: [&str; 46] = [
    // Needs the catalogue: whether each model the consumer may use has a price.
    "usd_budget_unpriced_model",
    // "0.000" is a well-formed amount; that a limit must be more than it is the loader's.
    "usd_budget_zero",
    "base_path_dot_dot",
    "base_path_trailing_slash",
    "bedrock_pool_opaque_arn",
    "bedrock_pool_two_vendors",
    "cluster_with_space",
    "consumer_budget_float",
    "consumer_empty_pattern",
    "consumer_exact_not_in_catalogue",
    "consumer_glob_matches_nothing",
    "consumer_glob_not_upstream_name",
    "consumer_unknown_rule",
    "consumer_with_comma",
    "duplicate_consumer",
    "duplicate_field",
    "duplicate_model",
    "empty_catalogue",
    "identity_header_and_metadata",
    "identity_metadata_empty_path",
    "identity_same_as_route",
    "model_name_with_star",
    "model_unknown_provider",
    "passthrough_bad_prefix",
    "passthrough_post",
    "passthrough_unknown_provider",
    "pool_cluster_is_a_providers",
    "pool_shared_with_other_targets",
    "provider_cluster_is_a_pool",
    "route_header_pseudo",
    "route_header_reserved",
    "route_header_uppercase",
    "rule_bad_id",
    "rule_bad_pattern",
    "rule_detect_and_pattern",
    "rule_duplicate_id",
    "rule_huge_pattern",
    "rule_neither_detect_nor_pattern",
    "rule_request_output",
    "rule_response_roles",
    "rule_unknown_detector",
    "targets_empty_cluster",
    "targets_empty_upstream_model",
    "targets_no_shared_api",
    "targets_provider_twice",
    "targets_unknown_provider",
];

/// Not for the schema either: not one JSON document.
const NOT_JSON: [&str; 2] = ["not_json", "trailing_data"];

#[test]
fn bad_configs_a_schema_can_express_are_rejected_by_it() {
    let validator = validator();
    let dir = repo().join("tests/fixtures/bad_configs");
    let mut rejected = Vec::new();
    let mut skipped = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if NOT_JSON.contains(&name.as_str()) {
            skipped.push(name);
            continue;
        }
        let instance: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if SEMANTIC_ONLY.contains(&name.as_str()) {
            skipped.push(name);
            continue;
        }
        let found = errors(&validator, &instance);
        assert!(!found.is_empty(), "{name}: accepted by the schema");
        rejected.push(name);
    }
    // Every fixture is accounted for: a new one must be added to a list above or be rejected.
    let mut expected_skips: Vec<&str> = SEMANTIC_ONLY.iter().chain(&NOT_JSON).copied().collect();
    expected_skips.sort();
    skipped.sort();
    assert_eq!(skipped, expected_skips);
    assert!(rejected.len() >= 15, "only {rejected:?} rejected");
    println!("rejected by the schema: {rejected:?}");
}

fn base() -> Value {
    json!({
        "providers": { "openai": { "cluster": "openai", "api": "openai" } },
        "models": { "gpt-4o": { "provider": "openai" } },
        "consumers": {
            "default": { "models": ["gpt-4o"] },
            "capped": {
                "models": ["gpt-4o"],
                "max_output_tokens": 1024,
                "max_output_tokens_action": "refuse",
                "budget": { "tokens_per_minute": 10000, "tokens_per_day": 1000000 }
            }
        },
        "usage": { "inject_stream_usage": true },
        "rules": [ { "id": "r", "detect": "email", "action": "block" } ],
        "passthrough": [ { "method": "GET", "path_prefix": "/v1/models", "provider": "openai" } ],
        "identity": { "metadata": { "namespace": "jwt", "path": ["team"] } }
    })
}

#[test]
fn typos_are_rejected_at_every_level() {
    let validator = validator();
    assert!(
        errors(&validator, &base()).is_empty(),
        "{:?}",
        errors(&validator, &base())
    );
    let typos: &[(&str, &str, Value)] = &[
        ("top-level key", "/rule", json!([])),
        ("provider key", "/providers/openai/base", json!("/v1")),
        ("model key", "/models/gpt-4o/upstream", json!("x")),
        ("consumer key", "/consumers/default/mdoe", json!("audit")),
        ("rule key", "/rules/0/role", json!(["user"])),
        ("passthrough key", "/passthrough/0/prefix", json!("/v1")),
        ("identity key", "/identity/headers", json!("x")),
        ("metadata key", "/identity/metadata/key", json!("team")),
        ("global mode", "/mode", json!("Enforce")),
        (
            "consumer mode",
            "/consumers/default/mode",
            json!("auditing"),
        ),
        ("rule mode", "/rules/0/mode", json!("off")),
        ("rule action", "/rules/0/action", json!("deny")),
        ("rule field", "/rules/0/fields", json!(["tool_args"])),
        ("opaque content", "/opaque_content", json!("permit")),
        ("api family", "/providers/openai/api", json!("azure")),
        (
            "api family in a list",
            "/providers/openai/api",
            json!(["openai", "vertex"]),
        ),
        ("empty api list", "/providers/openai/api", json!([])),
        (
            "api as an object",
            "/providers/openai/api",
            json!({"openai": true}),
        ),
        (
            "max_body_bytes as a string",
            "/max_body_bytes",
            json!("4MB"),
        ),
        ("max_body_bytes zero", "/max_body_bytes", json!(0)),
        (
            "max_body_bytes over the limit",
            "/max_body_bytes",
            json!(1_u64 << 40),
        ),
        ("debug_headers as a string", "/debug_headers", json!("true")),
        (
            "consumer models as a string",
            "/consumers/default/models",
            json!("gpt-4o"),
        ),
        ("rules as an object", "/rules", json!({"id": "r"})),
        ("rule roles empty", "/rules/0/roles", json!([])),
        ("cluster as a number", "/providers/openai/cluster", json!(1)),
        ("usage key", "/usage/inject_usage", json!(false)),
        (
            "inject_stream_usage as a string",
            "/usage/inject_stream_usage",
            json!("false"),
        ),
        ("usage as a bool", "/usage", json!(false)),
        (
            "budget key",
            "/consumers/capped/budget/tokens_per_week",
            json!(1),
        ),
        ("budget empty", "/consumers/capped/budget", json!({})),
        (
            "budget zero",
            "/consumers/capped/budget/tokens_per_minute",
            json!(0),
        ),
        (
            "budget negative",
            "/consumers/capped/budget/tokens_per_day",
            json!(-5),
        ),
        (
            "budget as a number",
            "/consumers/default/budget",
            json!(1000),
        ),
        (
            "max_output_tokens zero",
            "/consumers/capped/max_output_tokens",
            json!(0),
        ),
        (
            "max_output_tokens as a string",
            "/consumers/capped/max_output_tokens",
            json!("1024"),
        ),
        (
            "max_output_tokens fraction",
            "/consumers/capped/max_output_tokens",
            json!(10.5),
        ),
        (
            "cap action typo",
            "/consumers/capped/max_output_tokens_action",
            json!("truncate"),
        ),
        (
            "cap action without a cap",
            "/consumers/default/max_output_tokens_action",
            json!("clamp"),
        ),
    ];
    for (what, pointer, value) in typos {
        let mut instance = base();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut instance
        } else {
            instance.pointer_mut(parent).unwrap()
        };
        match target {
            Value::Object(map) => {
                map.insert(key.to_owned(), value.clone());
            }
            Value::Array(list) => list[key.parse::<usize>().unwrap()] = value.clone(),
            _ => panic!("{what}: {pointer} is not in a container"),
        }
        assert!(
            !errors(&validator, &instance).is_empty(),
            "{what}: {pointer} = {value} was accepted by the schema"
        );
        // The loader refuses the same mistake.
        assert!(
            posturio::policy::Policy::from_json(instance.to_string().as_bytes()).is_err(),
            "{what}: accepted by the loader"
        );
    }
    // A required key missing.
    let mut instance = base();
    instance.as_object_mut().unwrap().remove("models");
    assert!(!errors(&validator, &instance).is_empty());
    let mut instance = base();
    instance["rules"][0]
        .as_object_mut()
        .unwrap()
        .remove("action");
    assert!(!errors(&validator, &instance).is_empty());
}

#[test]
fn schema_takes_no_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_posturio"))
        .args(["schema", "extra"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(Path::new(env!("CARGO_BIN_EXE_posturio")).exists());
}
