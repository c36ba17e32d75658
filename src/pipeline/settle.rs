//! The settlement step: once the response is over (or cut short), its tokens — or their
//! absence — are counted once, put in filter state for the access log, and charged to the
//! consumer's budget.

use super::budget;
use super::host::Host;
use super::metrics;
use super::response::{Context, Upstream};
use crate::policy::budget::estimate;
use crate::policy::usage::UsageReader;

/// Counts the response's usage once; later calls do nothing.
pub(super) fn settle<H: Host>(upstream: &mut Upstream, cx: &Context<H>) {
    if upstream.settled {
        return;
    }
    upstream.settled = true;
    if !upstream.expects_usage {
        return;
    }
    let body_usage = upstream.reader.as_ref().and_then(UsageReader::usage);
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
    let Some(usage) = usage else {
        if let Ok(mut metrics) = cx.metrics.try_borrow_mut() {
            metrics.count(cx.host, metrics::USAGE_UNKNOWN, &by, 1);
        }
        // Never free: a budget is charged an estimate from the bytes that passed.
        let Some(policy) = cx.policy else {
            return;
        };
        let tokens = estimate(
            partial_input,
            upstream.request_bytes,
            upstream.relayed_bytes,
            policy.output_cap_for(&labels.consumer),
        );
        budget::charge(cx.host, policy, &labels.consumer, tokens);
        return;
    };
    if let Ok(mut metrics) = cx.metrics.try_borrow_mut() {
        metrics.count(cx.host, metrics::INPUT_TOKENS, &by, usage.input);
        metrics.count(cx.host, metrics::OUTPUT_TOKENS, &by, usage.output);
        metrics.count(cx.host, metrics::CACHED_INPUT_TOKENS, &by, usage.cached);
    }
    let total = usage.input.saturating_add(usage.output);
    for (key, value) in [
        ("posturio.input_tokens", usage.input),
        ("posturio.output_tokens", usage.output),
        ("posturio.cached_tokens", usage.cached),
        ("posturio.tokens", total),
    ] {
        if let Err(error) = cx.host.set_property(&[key], value.to_string().as_bytes()) {
            log::debug!("{error}; the access log will miss {key}");
        }
    }
    if let Some(policy) = cx.policy {
        budget::charge(cx.host, policy, &labels.consumer, total);
    }
}
