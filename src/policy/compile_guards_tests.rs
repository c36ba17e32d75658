//! Guard configuration: defaults, and every mistake reported at its JSON path.

use crate::policy::config::{GuardAction, GuardApi, GuardOnError};
use crate::policy::Policy;

fn policy_with(guards: &str, consumers: &str) -> Result<Policy, Vec<String>> {
    let text = format!(
        r#"{{"providers": {{"openai": {{"cluster": "openai", "api": "openai"}}}},
            "models": {{"gpt-4o": {{"provider": "openai"}}}},
            "consumers": {consumers},
            "guards": {guards}}}"#
    );
    Policy::from_json(text.as_bytes())
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn errors(guards: &str, consumers: &str) -> Vec<String> {
    policy_with(guards, consumers).err().unwrap_or_default()
}

const DEFAULT: &str = r#"{"default": {"models": ["*"]}}"#;

#[test]
fn defaults_fill_in() {
    let policy = policy_with(
        r#"[{"id": "m", "cluster": "mod", "api": "openai_moderation"}]"#,
        DEFAULT,
    )
    .unwrap();
    let guard = &policy.guards[0];
    assert_eq!(guard.path, "/v1/moderations");
    assert_eq!(guard.authority, "mod");
    assert_eq!(guard.timeout_ms, 1000);
    assert_eq!(guard.on_error, GuardOnError::Block);
    assert_eq!(guard.action, GuardAction::Block);
    assert_eq!(guard.api, GuardApi::OpenaiModeration);
    assert_eq!(guard.max_text_bytes, 65_536);
    assert_eq!(policy.guards_for(Some("default")), vec![0]);
    assert_eq!(policy.guards_for(None), vec![0]);
}

#[test]
fn consumers_opt_in_by_id_or_out_with_an_empty_list() {
    let guards = r#"[{"id": "a", "cluster": "c", "api": "webhook", "path": "/a"},
                     {"id": "b", "cluster": "c", "api": "webhook", "path": "/b"}]"#;
    let consumers = r#"{"default": {"models": ["*"]}, "one": {"models": ["*"], "guards": ["b"]},
                        "none": {"models": ["*"], "guards": []}}"#;
    let policy = policy_with(guards, consumers).unwrap();
    assert_eq!(policy.guards_for(Some("default")), vec![0, 1]);
    assert_eq!(policy.guards_for(Some("one")), vec![1]);
    assert!(policy.guards_for(Some("none")).is_empty());
}

macro_rules! config_error {
    ($name:ident, $guards:expr, $consumers:expr, $expected:expr) => {
        #[test]
        fn $name() {
            let found = errors($guards, $consumers);
            assert!(
                found.iter().any(|error| error.starts_with($expected)),
                "expected {:?} in {found:#?}",
                $expected
            );
        }
    };
}

config_error!(
    bad_id,
    r#"[{"id": "a b", "cluster": "c", "api": "openai_moderation"}]"#,
    DEFAULT,
    "guards[0].id"
);
config_error!(
    duplicate_id,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation"}, {"id": "a", "cluster": "c", "api": "openai_moderation"}]"#,
    DEFAULT,
    "guards[1].id"
);
config_error!(
    webhook_without_path,
    r#"[{"id": "a", "cluster": "c", "api": "webhook"}]"#,
    DEFAULT,
    "guards[0].path"
);
config_error!(
    relative_path,
    r#"[{"id": "a", "cluster": "c", "api": "webhook", "path": "check"}]"#,
    DEFAULT,
    "guards[0].path"
);
config_error!(
    empty_cluster,
    r#"[{"id": "a", "cluster": "", "api": "openai_moderation"}]"#,
    DEFAULT,
    "guards[0].cluster"
);
config_error!(
    timeout_zero,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "timeout_ms": 0}]"#,
    DEFAULT,
    "guards[0].timeout_ms"
);
config_error!(
    timeout_too_long,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "timeout_ms": 60001}]"#,
    DEFAULT,
    "guards[0].timeout_ms"
);
config_error!(
    model_on_webhook,
    r#"[{"id": "a", "cluster": "c", "api": "webhook", "path": "/x", "model": "m"}]"#,
    DEFAULT,
    "guards[0].model"
);
config_error!(
    empty_roles,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "roles": []}]"#,
    DEFAULT,
    "guards[0].roles"
);
config_error!(
    empty_fields,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "fields": []}]"#,
    DEFAULT,
    "guards[0].fields"
);
config_error!(
    zero_text,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "max_text_bytes": 0}]"#,
    DEFAULT,
    "guards[0].max_text_bytes"
);
config_error!(
    reserved_header,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "headers": {"content-length": "1"}}]"#,
    DEFAULT,
    "guards[0].headers.content-length"
);
config_error!(
    upper_header,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "headers": {"X-Key": "1"}}]"#,
    DEFAULT,
    "guards[0].headers.X-Key"
);
config_error!(
    header_crlf,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "headers": {"x-key": "1\r\nx: y"}}]"#,
    DEFAULT,
    "guards[0].headers.x-key"
);
config_error!(
    unknown_api,
    r#"[{"id": "a", "cluster": "c", "api": "lakera"}]"#,
    DEFAULT,
    "guards[0].api"
);
config_error!(
    unknown_key,
    r#"[{"id": "a", "cluster": "c", "api": "webhook", "path": "/x", "on_eror": "allow"}]"#,
    DEFAULT,
    "guards[0]"
);
config_error!(
    unknown_guard,
    "[]",
    r#"{"default": {"models": ["*"], "guards": ["nope"]}}"#,
    "consumers.default.guards[0]"
);
config_error!(
    guard_listed_twice,
    r#"[{"id": "a", "cluster": "c", "api": "openai_moderation"}]"#,
    r#"{"default": {"models": ["*"], "guards": ["a", "a"]}}"#,
    "consumers.default.guards[1]"
);

#[test]
fn an_authorization_header_may_carry_the_guards_key() {
    let policy = policy_with(
        r#"[{"id": "a", "cluster": "c", "api": "openai_moderation", "headers": {"authorization": "Bearer k"}}]"#,
        DEFAULT,
    )
    .unwrap();
    assert_eq!(
        policy.guards[0].headers,
        vec![("authorization".to_owned(), "Bearer k".to_owned())]
    );
}
