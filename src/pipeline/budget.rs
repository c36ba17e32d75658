//! The budget step: budgets in tokens and dollars kept in counters shared by every worker.
//! Counters are created when the policy is loaded. Before a budgeted consumer's request goes
//! upstream its estimate is reserved against every window (refused, or in audit mode
//! recorded, when that would cross a limit); the answer settles the real figure
//! (`settle.rs`), and a request that never goes gives its reservation back.

use super::host::Host;
use super::state::{Pending, Reservation, Settlement};
use crate::policy::budget::{self, Counter, Limit, Reserve, Unit, CAS_RETRIES};
use crate::policy::limits::AskedOutput;
use crate::policy::price::cost;
use crate::policy::usage::Usage;
use crate::policy::{Code, Mode, Policy, Reply};

/// Creates every budget counter that does not exist yet, so that later updates always carry a
/// compare-and-swap token: two workers can then never both write the first value of a key.
pub(super) fn create_counters<H: Host>(host: &H, policy: &Policy) {
    for consumer in policy.consumers.values() {
        let Some(limits) = &consumer.budget else {
            continue;
        };
        for limit in &limits.limits {
            let key = limit.shared_key(&consumer.name);
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
    /// No budget applies.
    Unbudgeted,
    /// Within budget: the estimate is reserved.
    Reserved(Reservation),
    /// Over budget, but audit mode lets the request through, still reserved: the overrun is
    /// recorded with the decision.
    Audited(Reply, Option<Reservation>),
    /// Over budget: refused (429 with `Retry-After`), with what it would have reserved.
    Refused(Reply, Reserve),
}

/// What a request is expected to use: its body at `BYTES_PER_TOKEN` for the input, and for
/// the output what it asks for (`reserved_output`); priced at the highest price among the
/// model and its targets.
pub(crate) fn estimate(
    policy: &Policy,
    consumer: &str,
    model: Option<&str>,
    body_bytes: usize,
    asked: AskedOutput,
) -> Reserve {
    let Some(limits) = policy.budget_for(consumer) else {
        return Reserve::default();
    };
    let usage = Usage {
        input: budget::tokens_in(u64::try_from(body_bytes).unwrap_or(u64::MAX)),
        output: reserved_output(policy, consumer, asked, limits.default_output_tokens),
        cached: 0,
        reasoning: 0,
        cache_write: 0,
    };
    let price = model.and_then(|model| policy.highest_price(model));
    Reserve {
        tokens: usage.input.saturating_add(usage.output),
        microusd: price.map_or(0, |price| cost(&usage, &price)),
    }
}

/// The output tokens reserved for a request: what it asks for (the largest value times its
/// outputs), held to the consumer's `max_output_tokens` where the cap is enforced (the
/// request is clamped or refused to it); else the cap; else `default_output_tokens` for each
/// output. In audit mode the cap changes no body, so what is asked is reserved whole.
fn reserved_output(policy: &Policy, consumer: &str, asked: AskedOutput, default: u64) -> u64 {
    let cap = policy.output_cap_for(consumer);
    let enforced = policy.consumer_mode(consumer) == Some(Mode::Enforce);
    match (asked.total(), cap) {
        (Some(total), Some(cap)) if enforced => total.min(cap),
        (Some(total), _) => total,
        (None, Some(cap)) => cap,
        (None, None) => default.saturating_mul(asked.outputs),
    }
}

/// Checks the consumer's budget and reserves `estimate` against every window: compare-and-
/// swap on each counter, so that two workers never both take the last of a limit.
pub(super) fn reserve<H: Host>(
    host: &H,
    policy: &Policy,
    pending: &Pending,
    estimate: Reserve,
) -> Checked {
    let Some(consumer) = pending.consumer.as_deref() else {
        return Checked::Unbudgeted;
    };
    let Some(limits) = policy.budget_for(consumer) else {
        return Checked::Unbudgeted;
    };
    let now = match host.now_nanos() {
        Ok(nanos) => nanos / 1_000_000_000,
        Err(error) => {
            log::warn!("{error}; budget of {consumer} not checked");
            return Checked::Unbudgeted;
        }
    };
    let audit = policy.consumer_mode(consumer) == Some(Mode::Audit);
    let reservation = Reservation {
        consumer: consumer.to_owned(),
        at: now,
        amount: estimate,
    };
    let mut added: Vec<&Limit> = Vec::with_capacity(limits.limits.len());
    let mut crossed = false;
    for limit in &limits.limits {
        let amount = estimate.of(limit.unit);
        match add(host, consumer, limit, now, amount, !audit) {
            Added::Yes => added.push(limit),
            Added::Crossed => {
                crossed = true;
                if !audit {
                    break;
                }
            }
            Added::Failed => {}
        }
    }
    if !crossed {
        return Checked::Reserved(reservation);
    }
    if !audit {
        for limit in added {
            adjust(host, consumer, limit, (now, estimate.of(limit.unit)), 0);
        }
    }
    // Read again for the reply: every crossed limit, and the longest wait among them, with
    // what others used (audit mode added this request's own reservation: it is left out).
    let over = budget::exceeded(limits, now, estimate, |limit| {
        let counter = read(host, consumer, limit);
        match audit {
            true => Counter {
                used: counter.used.saturating_sub(estimate.of(limit.unit)),
                ..counter
            },
            false => counter,
        }
    });
    let Some(over) = over else {
        // Freed between the two reads: the request is still refused, as its reservation was
        // not taken; the caller may retry at once.
        let reply = Reply::new(
            Code::BudgetExceeded,
            pending.shape(),
            format!("consumer \"{consumer}\" is at its budget's limit; retry after 1 s"),
        )
        .with_retry_after(1);
        return refused(audit, reply, reservation);
    };
    let reply = Reply::new(
        Code::BudgetExceeded,
        pending.shape(),
        over.message(consumer),
    )
    .with_retry_after(over.retry_after);
    refused(audit, reply, reservation)
}

fn refused(audit: bool, reply: Reply, reservation: Reservation) -> Checked {
    if audit {
        Checked::Audited(reply, Some(reservation))
    } else {
        Checked::Refused(reply, reservation.amount)
    }
}

enum Added {
    Yes,
    /// The limit would be crossed; nothing was added (unless audit mode added it anyway).
    Crossed,
    /// Shared data kept changing or failed: the limit is neither checked nor charged.
    Failed,
}

/// Adds `amount` to one limit's counter, unless `enforce` and that would cross the limit.
fn add<H: Host>(
    host: &H,
    consumer: &str,
    limit: &Limit,
    now: u64,
    amount: u64,
    enforce: bool,
) -> Added {
    let key = limit.shared_key(consumer);
    for _ in 0..CAS_RETRIES {
        let Ok((stored, cas)) = host.shared_data(&key) else {
            break;
        };
        let counter = Counter::decode(stored.as_deref());
        let used = counter.used_at(limit.window, now);
        let crosses = used >= limit.amount || used.saturating_add(amount) > limit.amount;
        if crosses && enforce {
            return Added::Crossed;
        }
        let next = counter.plus(limit.window, now, amount);
        if host
            .set_shared_data(&key, &next.encode(), cas)
            .unwrap_or(false)
        {
            return if crosses { Added::Crossed } else { Added::Yes };
        }
    }
    log::warn!(
        "budget {} of {consumer} not checked: shared data kept changing or failed",
        limit.config_key()
    );
    Added::Failed
}

fn read<H: Host>(host: &H, consumer: &str, limit: &Limit) -> Counter {
    let stored = host
        .shared_data(&limit.shared_key(consumer))
        .map(|(value, _)| value)
        .unwrap_or_default();
    Counter::decode(stored.as_deref())
}

/// Settles one limit's counter: `reserved` (taken at `reserved.0`) becomes `actual`.
fn adjust<H: Host>(host: &H, consumer: &str, limit: &Limit, reserved: (u64, u64), actual: u64) {
    let Ok(now) = host.now_nanos() else {
        return;
    };
    let now = now / 1_000_000_000;
    let key = limit.shared_key(consumer);
    let done = (0..CAS_RETRIES).any(|_| {
        let Ok((stored, cas)) = host.shared_data(&key) else {
            return false;
        };
        let next = Counter::decode(stored.as_deref()).settled(limit.window, now, reserved, actual);
        host.set_shared_data(&key, &next.encode(), cas)
            .unwrap_or(false)
    });
    if !done {
        log::warn!(
            "budget {} of {consumer} not settled ({} reserved, {actual} used): shared data \
             kept changing or failed",
            limit.config_key(),
            reserved.1
        );
    }
}

/// Gives a reservation back: the request never went, or nothing is owed for it.
pub(super) fn release<H: Host>(host: &H, policy: &Policy, reservation: &Reservation) {
    let Some(limits) = policy.budget_for(&reservation.consumer) else {
        return;
    };
    for limit in &limits.limits {
        let held = (reservation.at, reservation.amount.of(limit.unit));
        adjust(host, &reservation.consumer, limit, held, 0);
    }
}

/// Turns a reservation into what the answer was charged.
pub(super) fn settle<H: Host>(
    host: &H,
    policy: &Policy,
    reservation: &Reservation,
    settlement: &Settlement,
) {
    let Some(limits) = policy.budget_for(&reservation.consumer) else {
        return;
    };
    for limit in &limits.limits {
        let actual = match limit.unit {
            Unit::Tokens => settlement.charged_tokens,
            Unit::MicroUsd => settlement.charged_microusd.unwrap_or(0),
        };
        let held = (reservation.at, reservation.amount.of(limit.unit));
        adjust(host, &reservation.consumer, limit, held, actual);
    }
}

/// Adds what an answer was charged to each of the consumer's windows, for a request that
/// reserved nothing (the clock could not be read when it was checked).
pub(super) fn charge<H: Host>(host: &H, policy: &Policy, consumer: &str, charged: Reserve) {
    let Some(limits) = policy.budget_for(consumer) else {
        return;
    };
    let Ok(now) = host.now_nanos() else {
        return;
    };
    let now = now / 1_000_000_000;
    for limit in &limits.limits {
        if let Added::Failed = add(host, consumer, limit, now, charged.of(limit.unit), false) {
            log::warn!("budget {} of {consumer} not charged", limit.config_key());
        }
    }
}
