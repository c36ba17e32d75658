//! The plan: its JSON form and the splice each target gets.

// Test arithmetic (small lengths) cannot overflow.
#![allow(clippy::arithmetic_side_effects)]

use super::*;

fn plan() -> Plan {
    let body = br#"{"model":"gpt-4o","x":1}"#;
    let target = |name: &str| PlanTarget {
        path: "/v1/chat/completions".to_owned(),
        texts: vec![format!("\"{name}\"")],
        body_length: Some(body.len() - 8 + name.len() + 2),
    };
    Plan {
        v: PLAN_VERSION,
        model: "gpt-4o".to_owned(),
        family: ApiFamily::OpenAi,
        shape: ApiFamily::OpenAi,
        body_length: Some(body.len()),
        spans: vec![[9, 17]],
        targets: Targets(vec![
            ("openai".to_owned(), target("gpt-4o")),
            ("azure".to_owned(), target("gpt-4o-prod")),
        ]),
    }
}

#[test]
fn round_trips_with_its_targets_in_order() {
    let plan = plan();
    let json = plan.to_json().unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(text.find("\"openai\"").unwrap() < text.find("\"azure\"").unwrap());
    assert_eq!(Plan::from_json(&json), Some(plan));
}

#[test]
fn refuses_another_version_a_twice_named_target_and_unknown_keys() {
    let text = String::from_utf8(plan().to_json().unwrap()).unwrap();
    let cases = [
        ("version", text.replace("\"v\":1", "\"v\":2")),
        ("no targets", r#"{"v":1,"model":"m","family":"openai","shape":"openai","body_length":null,"spans":[],"targets":{}}"#.to_owned()),
        ("twice", text.replace("\"azure\"", "\"openai\"")),
        ("unknown key", text.replace("\"v\":1", "\"v\":1,\"x\":1")),
        ("not json", "{".to_owned()),
    ];
    for (name, json) in cases {
        assert_eq!(Plan::from_json(json.as_bytes()), None, "{name}");
    }
}

#[test]
fn splices_each_targets_text_and_leaves_the_first_alone() {
    let plan = plan();
    let body = br#"{"model":"gpt-4o","x":1}"#;
    assert_eq!(plan.splice(body, plan.first().unwrap()), Ok(None));
    let azure = plan
        .splice(body, plan.target("azure").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(azure, br#"{"model":"gpt-4o-prod","x":1}"#);
}

#[test]
fn refuses_a_body_that_does_not_match_the_plan() {
    let plan = plan();
    let azure = plan.target("azure").unwrap();
    assert_eq!(
        plan.splice(br#"{"model":"gpt-4o","x":12}"#, azure),
        Err(SpliceError::Length {
            expected: 24,
            found: 25
        })
    );
    assert_eq!(
        plan.splice(br#"{"model":"gpt-4x","x":1}"#, azure),
        Err(SpliceError::Span(0))
    );
}
