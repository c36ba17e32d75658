//! The settlement step: once the response is over (or cut short), its tokens — or their
//! absence — are counted once, priced, put in filter state for the access log, and charged to
//! the consumer's budget.
//!
//! What is charged: the reported input plus output, at the price of the model (or of the
//! target that served); when the usage is unknown (a stream cut before its usage, the client
//! gone, an answer without usage) the larger of the reservation and an estimate from the bytes
//! that passed, so that cutting an answer short never saves anything.

use super::budget;
use super::host::Host;
use super::metrics;
use super::response::{Context, Upstream};
use super::state::Settlement;
use crate::policy::budget::{estimate_usage, Reserve};
use crate::policy::price::{cost, Price};
use crate::policy::usage::UsageReader;

/// Counts the response's usage once; later calls do nothing.
pub(super) fn settle<H: Host>(upstream: &mut Upstream, cx: &Context<H>) {
    if upstream.settled {
        return;
    }
    upstream.settled = true;
    if !upstream.expects_usage {
        // Nothing is owed (the provider's own error, or nothing reached a provider): what was
        // reserved is given back.
        if let (Some(reservation), Some(policy)) = (upstream.reservation.take(), cx.policy) {
            budget::release(cx.host, policy, &reservation);
        }
        return;
    }
    // A cut answer's usage counts only where the provider gives its final counts in an event
    // of their own: a chunk's growing counts, even one that ends an output, say nothing of the
    // outputs still being generated.
    let body_usage = upstream
        .reader
        .as_ref()
        .and_then(|reader| match upstream.cut {
            true => reader.usage_when_cut(),
            false => reader.usage(),
        });
    let usage = match (upstream.header_usage, body_usage) {
        (Some(headers), Some(body)) => Some(headers.larger(body)),
        (headers, body) => headers.or(body),
    };
    let partial_input = upstream
        .reader
        .as_ref()
        .and_then(UsageReader::partial_input);
    upstream.reader = None;
    let Some(labels) = cx.labels else {
        return;
    };
    let by = [
        ("consumer", labels.consumer.as_str()),
        ("model", labels.model.as_str()),
        ("provider", labels.provider.as_str()),
    ];
    let price: Option<Price> = cx
        .policy
        .and_then(|policy| policy.price(&labels.model, &labels.provider));
    let reserved = upstream.reservation.as_ref();
    let settlement = match usage {
        Some(usage) => Settlement {
            usage: Some(usage),
            cost_microusd: price.map(|price| cost(&usage, &price)),
            charged_tokens: usage.input.saturating_add(usage.output),
            charged_microusd: price.map(|price| cost(&usage, &price)),
            reserved: reserved.map(|held| held.amount),
        },
        None => {
            // Never free: the bytes that passed, or what was reserved if that is more.
            let estimated = estimate_usage(
                partial_input,
                upstream.request_bytes,
                upstream.relayed_bytes,
                cx.policy
                    .and_then(|policy| policy.output_cap_for(&labels.consumer)),
            );
            let tokens = estimated.input.saturating_add(estimated.output);
            Settlement {
                usage: None,
                cost_microusd: None,
                charged_tokens: tokens.max(reserved.map_or(0, |held| held.amount.tokens)),
                charged_microusd: price.map(|price| {
                    cost(&estimated, &price).max(reserved.map_or(0, |held| held.amount.microusd))
                }),
                reserved: reserved.map(|held| held.amount),
            }
        }
    };
    count(cx, &by, &settlement, price.is_some());
    write_filter_state(cx, &settlement);
    if let Some(policy) = cx.policy {
        match upstream.reservation.take() {
            Some(reservation) => budget::settle(cx.host, policy, &reservation, &settlement),
            None => budget::charge(
                cx.host,
                policy,
                &labels.consumer,
                Reserve {
                    tokens: settlement.charged_tokens,
                    microusd: settlement.charged_microusd.unwrap_or(0),
                },
            ),
        }
    }
    upstream.settlement = Some(settlement);
}

/// The token and cost counters.
fn count<H: Host>(cx: &Context<H>, by: &[(&str, &str); 3], settlement: &Settlement, priced: bool) {
    let Ok(mut metrics) = cx.metrics.try_borrow_mut() else {
        return;
    };
    let Some(usage) = settlement.usage else {
        metrics.count(cx.host, metrics::USAGE_UNKNOWN, by, 1);
        return;
    };
    metrics.count(cx.host, metrics::INPUT_TOKENS, by, usage.input);
    metrics.count(cx.host, metrics::OUTPUT_TOKENS, by, usage.output);
    metrics.count(cx.host, metrics::CACHED_INPUT_TOKENS, by, usage.cached);
    match settlement.cost_microusd {
        Some(cost) if priced => metrics.count(cx.host, metrics::COST_MICROUSD, by, cost),
        _ => metrics.count(cx.host, metrics::COST_UNKNOWN, by, 1),
    }
}

/// The settlement in filter state, for the access log. A value that is not known is left
/// unset (the access log shows `null`); reasoning tokens only when some were reported, as
/// each value costs a host call.
fn write_filter_state<H: Host>(cx: &Context<H>, settlement: &Settlement) {
    let mut state: [(&str, Option<u64>); 8] = [
        ("posturio.input_tokens", None),
        ("posturio.output_tokens", None),
        ("posturio.cached_tokens", None),
        ("posturio.reasoning_tokens", None),
        ("posturio.tokens", None),
        ("posturio.cost_microusd", settlement.cost_microusd),
        ("posturio.charged_tokens", Some(settlement.charged_tokens)),
        ("posturio.charged_microusd", settlement.charged_microusd),
    ];
    if let (Some(usage), [input, output, cached, reasoning, total, ..]) =
        (settlement.usage, &mut state)
    {
        input.1 = Some(usage.input);
        output.1 = Some(usage.output);
        cached.1 = Some(usage.cached);
        reasoning.1 = Some(usage.reasoning).filter(|&tokens| tokens > 0);
        total.1 = Some(usage.input.saturating_add(usage.output));
    }
    for (key, value) in state {
        let Some(value) = value else {
            continue;
        };
        if let Err(error) = cx.host.set_property(&[key], value.to_string().as_bytes()) {
            log::debug!("{error}; the access log will miss {key}");
        }
    }
}
