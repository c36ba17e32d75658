//! Reserve then settle, with the FakeHost: what a budgeted request holds while it is in
//! flight, what its answer settles, what a refusal or an unbilled answer gives back, a window
//! that rolls over in between, dollars beside tokens, and the records of each.
#![allow(clippy::arithmetic_side_effects)]

use std::rc::Rc;

use super::*;
use crate::pipeline::FakeHost;
use crate::policy::budget::{Counter, Limit, Unit, Window};

const POLICY: &str = r#"{
  "identity": { "header": "x-posturio-consumer" },
  "providers": { "openai": { "cluster": "openai", "api": "openai" } },
  "models": { "gpt-4.1": { "provider": "openai",
                           "price": { "input": "2.00", "output": "8.00", "cached_input": "0.50" } },
              "unpriced": { "provider": "openai" } },
  "consumers": {
    "team": { "models": ["gpt-4.1"],
              "budget": { "tokens_per_day": 100000, "usd_per_month": "5.00",
                          "default_output_tokens": 100 } },
    "watched": { "models": ["gpt-4.1"], "mode": "audit",
                 "budget": { "tokens_per_day": 50, "default_output_tokens": 100 } },
    "free": { "models": ["*"] }
  }
}"#;

const BODY: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &str = r#"{"choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"prompt_tokens_details":{"cached_tokens":200}}}"#;

/// 30 s before the end of a day (2024-02-29, in a leap year's February).
const NOW_SECS: u64 = 1_709_251_170;

/// What a request with `BODY` reserves: its bytes at 4 a token plus 100 of output; and the
/// same at the model's price (2 and 8 dollars per million).
fn reserved() -> (u64, u64) {
    let input = (BODY.len() as u64).div_ceil(4);
    let microusd = (input * 2_000_000 + 100 * 8_000_000).div_ceil(1_000_000);
    (input + 100, microusd)
}

/// What `ANSWER` costs: 800·2 + 200·0.5 + 500·8 = 5700 micro-dollars; 1500 tokens.
const ANSWER_TOKENS: u64 = 1_500;
const ANSWER_MICROUSD: u64 = 5_700;

fn host(status: &str) -> FakeHost {
    let request = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", "team")],
        BODY,
    );
    let host = FakeHost {
        upstream_headers: vec![
            (":status".into(), status.as_bytes().to_vec()),
            ("content-type".into(), b"application/json".to_vec()),
        ],
        ..request
    };
    host.properties
        .borrow_mut()
        .push(("response.code_details".into(), b"via_upstream".to_vec()));
    *host.upstream_chunks.borrow_mut() = vec![ANSWER.as_bytes().to_vec()];
    host.now.set(NOW_SECS * 1_000_000_000);
    host
}

fn with_consumer(host: &mut FakeHost, consumer: &str, body: &str) {
    let request = FakeHost::request(
        "POST",
        "/v1/chat/completions",
        &[("x-posturio-consumer", consumer)],
        body,
    );
    host.headers = request.headers;
    host.body = request.body;
}

fn policy() -> Option<Rc<Policy>> {
    Some(Rc::new(Policy::from_json(POLICY.as_bytes()).unwrap()))
}

fn used(host: &FakeHost, consumer: &str, window: Window, unit: Unit) -> Counter {
    let key = Limit {
        window,
        unit,
        amount: 1,
    }
    .shared_key(consumer);
    let shared = host.shared.borrow();
    Counter::decode(shared.get(&key).map(|(value, _)| value.as_slice()))
}

fn tokens_today(host: &FakeHost) -> u64 {
    used(host, "team", Window::Day, Unit::Tokens).used
}

fn dollars_this_month(host: &FakeHost) -> u64 {
    used(host, "team", Window::Month, Unit::MicroUsd).used
}

#[test]
fn a_request_holds_its_reservation_until_its_answer_settles_the_real_figure() {
    let host = host("200");
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    assert_eq!(filter.on_request_body(BODY.len(), true), Flow::Continue);
    let (tokens, microusd) = reserved();
    // In flight: every window holds the estimate.
    assert_eq!(tokens_today(&host), tokens);
    assert_eq!(dollars_this_month(&host), microusd);
    filter.on_response_headers(false);
    filter.on_response_body(ANSWER.len(), true);
    // Settled: the difference is charged (here more than reserved), in both units.
    assert_eq!(tokens_today(&host), ANSWER_TOKENS);
    assert_eq!(dollars_this_month(&host), ANSWER_MICROUSD);
    filter.on_log();
    assert_eq!(tokens_today(&host), ANSWER_TOKENS, "settled once");
    for (key, value) in [
        ("posturio.cost_microusd", ANSWER_MICROUSD),
        ("posturio.charged_tokens", ANSWER_TOKENS),
        ("posturio.charged_microusd", ANSWER_MICROUSD),
    ] {
        assert_eq!(host.property_value(key), Some(value.to_string()), "{key}");
    }
    assert_eq!(
        host.counter("posturio_cost_microusd_total.consumer=team;.model=gpt-4.1;.provider=openai;"),
        ANSWER_MICROUSD
    );
}

#[test]
fn an_answer_smaller_than_its_reservation_gives_the_rest_back() {
    let host = host("200");
    *host.upstream_chunks.borrow_mut() =
        vec![br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#.to_vec()];
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    filter.on_response_headers(false);
    let chunk = host.upstream_chunks.borrow()[0].len();
    filter.on_response_body(chunk, true);
    filter.on_log();
    assert_eq!(tokens_today(&host), 5);
    // 3 tokens at $2 and 2 at $8 per million: 22 micro-dollars.
    assert_eq!(dollars_this_month(&host), 22);
}

#[test]
fn an_error_the_provider_answers_gives_the_reservation_back() {
    let host = host("500");
    *host.upstream_chunks.borrow_mut() = vec![br#"{"error":{"message":"boom"}}"#.to_vec()];
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    assert!(tokens_today(&host) > 0);
    filter.on_response_headers(false);
    filter.on_response_body(28, true);
    filter.on_log();
    assert_eq!(tokens_today(&host), 0);
    assert_eq!(dollars_this_month(&host), 0);
    // Nothing was owed: nothing charged is written.
    assert_eq!(host.property_value("posturio.charged_tokens"), None);
}

#[test]
fn a_request_that_never_went_gives_its_reservation_back() {
    let host = host("200");
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    assert!(tokens_today(&host) > 0);
    // Envoy answers itself before any provider was reached (no upstream address).
    host.properties.borrow_mut().clear();
    host.properties
        .borrow_mut()
        .push(("upstream.address".into(), Vec::new()));
    filter.on_response_headers(true);
    filter.on_log();
    assert_eq!(tokens_today(&host), 0);
    assert_eq!(dollars_this_month(&host), 0);
}

#[test]
fn a_cut_answer_keeps_its_reservation_when_that_is_more_than_its_bytes() {
    let host = host("200");
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    filter.on_response_headers(false);
    // Twelve bytes of the answer, then the client is gone.
    filter.on_response_body(12, false);
    filter.on_log();
    let (tokens, microusd) = reserved();
    assert_eq!(tokens_today(&host), tokens);
    assert_eq!(dollars_this_month(&host), microusd);
    assert_eq!(
        host.property_value("posturio.charged_tokens"),
        Some(tokens.to_string())
    );
    // The usage is unknown: no cost is made up.
    assert_eq!(host.property_value("posturio.cost_microusd"), None);
}

#[test]
fn a_window_that_rolled_over_in_flight_gets_the_actual_amount() {
    let host = host("200");
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    let (tokens, _) = reserved();
    assert_eq!(tokens_today(&host), tokens);
    // The answer ends 40 s later: past midnight, and into March.
    host.now.set((NOW_SECS + 40) * 1_000_000_000);
    filter.on_response_headers(false);
    filter.on_response_body(ANSWER.len(), true);
    filter.on_log();
    let day = used(&host, "team", Window::Day, Unit::Tokens);
    assert_eq!(day.window_start, NOW_SECS + 30, "the new day");
    assert_eq!(day.used, ANSWER_TOKENS);
    let month = used(&host, "team", Window::Month, Unit::MicroUsd);
    assert_eq!(month.window_start, NOW_SECS + 30, "March 1st");
    assert_eq!(month.used, ANSWER_MICROUSD);
}

#[test]
fn the_request_that_would_cross_a_limit_is_refused_and_reserves_nothing() {
    let mut host = host("200");
    // 5 dollars a month, 4.9995 already used this month.
    let key = Limit {
        window: Window::Month,
        unit: Unit::MicroUsd,
        amount: 1,
    }
    .shared_key("team");
    let spent = Counter {
        window_start: Window::Month.start(NOW_SECS),
        used: 4_999_500,
    };
    host.shared
        .borrow_mut()
        .insert(key, (spent.encode().to_vec(), 1));
    with_consumer(&mut host, "team", BODY);
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    assert_eq!(filter.on_request_body(BODY.len(), true), Flow::Pause);
    let reply = host.replies.borrow().last().cloned().unwrap();
    assert_eq!(reply.status(), 429);
    let body = String::from_utf8(reply.body()).unwrap();
    assert!(
        body.contains(
            "consumer \\\"team\\\" has used $4.99 of its $5.00 per month (UTC); this request may \
             cost up to $0.01; retry after 30 s"
        ),
        "{body}"
    );
    // Nothing was reserved, in any window.
    assert_eq!(tokens_today(&host), 0);
    assert_eq!(dollars_this_month(&host), 4_999_500);
}

#[test]
fn audit_mode_forwards_what_would_cross_and_still_reserves_it() {
    let mut host = host("200");
    with_consumer(&mut host, "watched", BODY);
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    assert_eq!(filter.on_request_body(BODY.len(), true), Flow::Continue);
    let outcome = filter.outcome().unwrap();
    assert_eq!(
        outcome.reply.as_ref().map(|reply| reply.code),
        Some(Code::BudgetExceeded)
    );
    let (tokens, _) = reserved();
    assert_eq!(
        used(&host, "watched", Window::Day, Unit::Tokens).used,
        tokens
    );
}

#[test]
fn a_consumer_without_a_budget_reserves_nothing_but_its_answer_is_priced() {
    let mut host = host("200");
    with_consumer(&mut host, "free", BODY);
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(BODY.len(), true);
    assert!(host
        .shared
        .borrow()
        .values()
        .all(|(value, _)| { Counter::decode(Some(value)).used == 0 }));
    filter.on_response_headers(false);
    filter.on_response_body(ANSWER.len(), true);
    filter.on_log();
    assert_eq!(
        host.property_value("posturio.cost_microusd"),
        Some(ANSWER_MICROUSD.to_string())
    );
    assert_eq!(
        host.counter("posturio_cost_microusd_total.consumer=free;.model=gpt-4.1;.provider=openai;"),
        ANSWER_MICROUSD
    );
}

#[test]
fn an_unpriced_model_s_cost_is_unknown_never_zero() {
    let mut host = host("200");
    with_consumer(
        &mut host,
        "free",
        r#"{"model":"unpriced","messages":[{"role":"user","content":"hi"}]}"#,
    );
    let mut filter = Request::new(&host, policy(), Rc::default());
    filter.on_request_headers(false);
    filter.on_request_body(host.body.len(), true);
    filter.on_response_headers(false);
    filter.on_response_body(ANSWER.len(), true);
    filter.on_log();
    assert_eq!(host.property_value("posturio.cost_microusd"), None);
    assert_eq!(host.property_value("posturio.charged_microusd"), None);
    assert_eq!(
        host.property_value("posturio.charged_tokens"),
        Some(ANSWER_TOKENS.to_string())
    );
    assert_eq!(
        host.counter("posturio_cost_unknown_total.consumer=free;.model=unpriced;.provider=openai;"),
        1
    );
}

#[test]
fn a_dollar_budget_refuses_a_service_tier_billed_above_its_price() {
    let body = r#"{"model":"gpt-4.1","service_tier":"priority","messages":[{"role":"user","content":"hi"}]}"#;
    for (consumer, refused) in [("team", true), ("free", false)] {
        let mut host = host("200");
        with_consumer(&mut host, consumer, body);
        let mut filter = Request::new(&host, policy(), Rc::default());
        filter.on_request_headers(false);
        let flow = filter.on_request_body(body.len(), true);
        if refused {
            assert_eq!(flow, Flow::Pause, "{consumer}");
            let reply = host.replies.borrow().last().cloned().unwrap();
            assert_eq!(reply.status(), 400);
            let text = String::from_utf8(reply.body()).unwrap();
            assert!(text.contains("invalid_request"), "{text}");
            assert!(text.contains("service_tier"), "{text}");
            // Nothing was reserved.
            assert_eq!(tokens_today(&host), 0);
        } else {
            assert_eq!(flow, Flow::Continue, "{consumer}");
        }
    }
}
