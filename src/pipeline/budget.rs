//! The budget step: token budgets kept in counters shared by every worker. Counters are
//! created when the policy is loaded, checked before a request goes upstream (refused, or in
//! audit mode recorded), and charged once the response's usage is known.

use super::host::Host;
use super::state::Pending;
use crate::policy::budget::{self, Counter, CAS_RETRIES};
use crate::policy::{Code, Mode, Policy, Reply};

/// Creates every budget counter that does not exist yet, so that later updates always carry a
/// compare-and-swap token: two workers can then never both write the first value of a key.
pub(super) fn create_counters<H: Host>(host: &H, policy: &Policy) {
    for consumer in policy.consumers.values() {
        let Some(limits) = &consumer.budget else {
            continue;
        };
        for limit in &limits.limits {
            let key = budget::shared_key(&consumer.name, limit.window);
            if let Ok((None, _)) = host.shared_data(&key) {
                let empty = Counter::default().encode();
                if let Err(error) = host.set_shared_data(&key, &empty, None) {
                    log::warn!("budget counter {key} could not be created: {error}");
                }
            }
        }
    }
}

/// What the budget check found.
pub(super) enum Checked {
    /// Within budget, or no budget applies.
    Within,
    /// Over budget, but audit mode lets the request through: the overrun is recorded with
    /// the decision.
    Audited(Reply),
    /// Over budget: refused (429 with `Retry-After`).
    Refused(Reply),
}

/// Checks the consumer's token budget.
pub(super) fn check<H: Host>(host: &H, policy: &Policy, pending: &Pending) -> Checked {
    let Some(consumer) = pending.consumer.as_deref() else {
        return Checked::Within;
    };
    let Some(limits) = policy.budget_for(consumer) else {
        return Checked::Within;
    };
    let now = match host.now_nanos() {
        Ok(nanos) => nanos / 1_000_000_000,
        Err(error) => {
            log::warn!("{error}; budget of {consumer} not checked");
            return Checked::Within;
        }
    };
    let over = budget::exceeded(limits, now, |window| {
        let stored = host
            .shared_data(&budget::shared_key(consumer, window))
            .map(|(value, _)| value)
            .unwrap_or_default();
        Counter::decode(stored.as_deref())
    });
    let Some(over) = over else {
        return Checked::Within;
    };
    let reply = Reply::new(
        Code::BudgetExceeded,
        pending.shape(),
        over.message(consumer),
    )
    .with_retry_after(over.retry_after);
    match policy.consumer_mode(consumer) {
        Some(Mode::Audit) => Checked::Audited(reply),
        _ => Checked::Refused(reply),
    }
}

/// Adds `tokens` to each of the consumer's budget windows, shared by every worker:
/// compare-and-swap, retried a few times when another worker wrote first.
pub(super) fn charge<H: Host>(host: &H, policy: &Policy, consumer: &str, tokens: u64) {
    let Some(limits) = policy.budget_for(consumer) else {
        return;
    };
    let Ok(now) = host.now_nanos() else {
        return;
    };
    let now = now / 1_000_000_000;
    for limit in &limits.limits {
        let key = budget::shared_key(consumer, limit.window);
        let charged = (0..CAS_RETRIES).any(|_| {
            let Ok((stored, cas)) = host.shared_data(&key) else {
                return false;
            };
            let next = Counter::decode(stored.as_deref()).plus(limit.window, now, tokens);
            host.set_shared_data(&key, &next.encode(), cas)
                .unwrap_or(false)
        });
        if !charged {
            log::warn!(
                "budget of {consumer} per {} not charged {tokens} tokens: shared data kept \
                 changing or failed",
                limit.window.as_str()
            );
        }
    }
}
