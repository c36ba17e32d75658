//! Which processing tiers a dollar-budgeted consumer may ask for.

use super::*;

macro_rules! tier {
    ($($name:ident: $body:expr => $allowed:expr;)*) => {$(
        #[test]
        fn $name() {
            let outcome = premium_service_tier($body.as_bytes(), "team-a", ApiFamily::OpenAi);
            assert_eq!(outcome.is_ok(), $allowed, "{outcome:?}");
        }
    )*};
}

tier! {
    tier_absent: r#"{"model":"gpt"}"# => true;
    tier_null: r#"{"service_tier":null}"# => true;
    tier_default: r#"{"service_tier":"default"}"# => true;
    tier_flex: r#"{"service_tier":"flex"}"# => true;
    tier_auto: r#"{"service_tier":"auto"}"# => true;
    tier_priority: r#"{"service_tier":"priority"}"# => false;
    tier_unknown: r#"{"service_tier":"turbo"}"# => false;
    tier_not_a_string: r#"{"service_tier":1}"# => false;
    tier_case_differs: r#"{"service_tier":"Default"}"# => false;
    tier_escaped_key: r#"{"service\u005ftier":"priority"}"# => false;
    tier_repeated_key: r#"{"service_tier":"default","service_tier":"priority"}"# => false;
    tier_nested_is_not_the_field: r#"{"metadata":{"service_tier":"priority"}}"# => true;
}

#[test]
fn the_reply_names_the_field_never_the_value() {
    let reply = premium_service_tier(
        br#"{"service_tier":"secret-tier"}"#,
        "team-a",
        ApiFamily::OpenAi,
    )
    .unwrap_err();
    assert_eq!(reply.code, Code::InvalidRequest);
    assert!(
        reply.message.contains("\"service_tier\""),
        "{}",
        reply.message
    );
    assert!(reply.message.contains("team-a"), "{}", reply.message);
    assert!(!reply.message.contains("secret-tier"), "{}", reply.message);
}
