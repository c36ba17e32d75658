//! What a budgeted request reserves for its output, with the FakeHost: the output it asks for
//! times its outputs, held to the consumer's cap where the cap is enforced, else the cap, else
//! the budget's default for each output; and the request whose own ask crosses a limit,
//! refused before it is forwarded.
#![allow(clippy::arithmetic_side_effects)]

use std::rc::Rc;

use super::*;
use crate::pipeline::FakeHost;
use crate::policy::budget::{Counter, Limit, Unit, Window};

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4.1": { "provider": "openai",
                           "price": { "input": "2.00", "output": "8.00" } } },
  "consumers": {
    "team": { "models": ["*"], "rules": [],
              "budget": { "tokens_per_day": 100000000, "usd_per_month": "5.00",
                          "default_output_tokens": 100 } },
    "capped": { "models": ["*"], "rules": [], "max_output_tokens": 300,
                "budget": { "tokens_per_day": 100000000, "default_output_tokens": 100 } },
    "capped-trial": { "models": ["*"], "rules": [], "max_output_tokens": 300, "mode": "audit",
                      "budget": { "tokens_per_day": 100000000, "default_output_tokens": 100 } }
  }
}"#;

/// 30 s before the end of a day.
const NOW_SECS: u64 = 1_709_251_170;

fn policy() -> Option<Rc<Policy>> {
    Some(Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap()))
}

fn body(extra: &str) -> String {
    format!(r#"{{"model":"gpt-4.1","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
}

fn tokens_today(host: &FakeHost, consumer: &str) -> u64 {
    let key = Limit {
        window: Window::Day,
        unit: Unit::Tokens,
        amount: 1,
    }
    .shared_key(consumer);
    let shared = host.shared.borrow();
    Counter::decode(shared.get(&key).map(|(value, _)| value.as_slice())).used
}

/// Sends the request's headers and body; the flow, the host, and the body's input estimate.
fn send(consumer: &str, body: &str) -> (Flow, FakeHost, u64) {
    let host = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", consumer)],
        body,
    );
    host.now.set(NOW_SECS * 1_000_000_000);
    let flow = {
        let mut filter = Request::new(&host, policy(), Rc::default());
        filter.on_request_headers(false);
        filter.on_request_body(body.len(), true)
    };
    (flow, host, (body.len() as u64).div_ceil(4))
}

/// The output reserved for a forwarded request.
fn reserved_output(consumer: &str, extra: &str) -> u64 {
    let body = body(extra);
    let (flow, host, input) = send(consumer, &body);
    assert_eq!(
        flow,
        Flow::Continue,
        "{consumer} {extra}: {:?}",
        host.replies
    );
    tokens_today(&host, consumer) - input
}

#[test]
fn the_output_reserved_is_what_the_request_asks_for() {
    for (consumer, extra, output) in [
        ("team", r#","max_tokens":100000"#, 100_000),
        ("team", r#","max_completion_tokens":50"#, 50),
        ("team", r#","max_tokens":1000,"n":3"#, 3_000),
        ("team", r#","max_tokens":null"#, 100),
        ("team", r#","n":2"#, 200),
        ("team", "", 100),
        // The cap is enforced: the request is clamped to its share.
        ("capped", r#","max_tokens":100000"#, 300),
        ("capped", r#","max_tokens":10,"n":2"#, 20),
        ("capped", r#","max_tokens":1000,"n":2"#, 300),
        ("capped", "", 300),
        // Audit mode changes no body: what is asked goes upstream, and is reserved.
        ("capped-trial", r#","max_tokens":100000"#, 100_000),
        ("capped-trial", "", 300),
    ] {
        assert_eq!(
            reserved_output(consumer, extra),
            output,
            "{consumer} {extra}"
        );
    }
}

#[test]
fn a_value_the_reservation_cannot_read_is_refused_and_reserves_nothing() {
    let (flow, host, _) = send("team", &body(r#","max_tokens":"100000""#));
    assert_eq!(flow, Flow::Pause);
    let reply = host.replies.borrow().last().cloned().unwrap();
    assert_eq!(reply.status(), 400);
    let text = String::from_utf8(reply.body()).unwrap();
    assert!(text.contains("\\\"max_tokens\\\""), "{text}");
    assert_eq!(tokens_today(&host, "team"), 0);
}

#[test]
fn a_request_whose_own_ask_crosses_a_dollar_limit_is_refused_before_it_goes() {
    // A million output tokens at 8 dollars a million: more than the 5 dollars a month.
    let (flow, host, _) = send("team", &body(r#","max_tokens":1000000"#));
    assert_eq!(flow, Flow::Pause);
    assert!(!routed(&host), "not forwarded");
    let reply = host.replies.borrow().last().cloned().unwrap();
    assert_eq!(reply.status(), 429);
    assert_eq!(tokens_today(&host, "team"), 0, "nothing reserved");
    // The same request with a small cap goes.
    let (flow, host, _) = send("team", &body(r#","max_tokens":1000"#));
    assert_eq!(flow, Flow::Continue);
    assert!(routed(&host));
}

fn routed(host: &FakeHost) -> bool {
    host.headers
        .borrow()
        .iter()
        .any(|(name, _)| name == "x-posturio-cluster")
}
