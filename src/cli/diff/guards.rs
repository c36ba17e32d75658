//! `check --diff` on external guard services: added, removed, and each one's call, action,
//! failure handling and scope.

use std::collections::BTreeMap;

use super::{Changes, Sign};
use crate::policy::config::{GuardAction, GuardApi, GuardOnError};
use crate::policy::guards::Guard;
use crate::policy::Policy;

fn api(guard: &Guard) -> &'static str {
    match guard.api {
        GuardApi::OpenaiModeration => "openai_moderation",
        GuardApi::Webhook => "webhook",
    }
}

fn action(guard: &Guard) -> &'static str {
    match guard.action {
        GuardAction::Block => "block",
        GuardAction::Audit => "audit",
    }
}

fn on_error(guard: &Guard) -> &'static str {
    match guard.on_error {
        GuardOnError::Block => "block",
        GuardOnError::Allow => "allow",
    }
}

/// Where and how the guard is called: a change there is neither wider nor narrower.
fn call(guard: &Guard) -> String {
    format!(
        "{} {}{} at cluster {} ({} ms)",
        api(guard),
        guard.authority,
        guard.path,
        guard.cluster,
        guard.timeout_ms
    )
}

/// Which text the guard is sent, as written.
fn scope(guard: &Guard) -> String {
    let roles = guard
        .roles
        .as_ref()
        .map_or("all".to_owned(), |roles| format!("[{}]", roles.join(", ")));
    let fields = guard.fields.as_ref().map_or("all".to_owned(), |fields| {
        let names: Vec<&str> = fields.iter().map(|field| field.as_str()).collect();
        format!("[{}]", names.join(", "))
    });
    format!(
        "roles {roles}, fields {fields}, max_text_bytes {}",
        guard.max_text_bytes
    )
}

pub(super) fn guards(changes: &mut Changes, old: &Policy, new: &Policy) {
    let by_id = |policy: &Policy| -> BTreeMap<String, Guard> {
        policy
            .guards
            .iter()
            .map(|guard| (guard.id.clone(), guard.clone()))
            .collect()
    };
    let (old_guards, new_guards) = (by_id(old), by_id(new));
    for (id, guard) in &new_guards {
        let subject = format!("guard {id}");
        let Some(before) = old_guards.get(id) else {
            changes.add(
                Sign::Narrow,
                format!(
                    "{subject} added ({}, action {}, on_error {})",
                    call(guard),
                    action(guard),
                    on_error(guard)
                ),
            );
            continue;
        };
        if before.action != guard.action {
            let sign = match guard.action {
                GuardAction::Audit => Sign::Widen,
                GuardAction::Block => Sign::Narrow,
            };
            let text = format!("{subject}: action {} -> {}", action(before), action(guard));
            changes.add(sign, text);
        }
        if before.on_error != guard.on_error {
            let sign = match guard.on_error {
                GuardOnError::Allow => Sign::Widen,
                GuardOnError::Block => Sign::Narrow,
            };
            let text = format!(
                "{subject}: on_error {} -> {}",
                on_error(before),
                on_error(guard)
            );
            changes.add(sign, text);
        }
        if call(before) != call(guard) {
            let text = format!("{subject}: {} -> {}", call(before), call(guard));
            changes.add(Sign::Neutral, text);
        }
        if scope(before) != scope(guard) {
            let text = format!("{subject}: {} -> {}", scope(before), scope(guard));
            changes.add(Sign::Neutral, text);
        }
        if before.headers != guard.headers {
            // Names only: a value may be the guard's key.
            let names = |guard: &Guard| -> Vec<String> {
                guard.headers.iter().map(|(name, _)| name.clone()).collect()
            };
            let text = format!(
                "{subject}: fixed headers changed ([{}] -> [{}])",
                names(before).join(", "),
                names(guard).join(", ")
            );
            changes.add(Sign::Neutral, text);
        }
    }
    for (id, guard) in &old_guards {
        if !new_guards.contains_key(id) {
            changes.add(
                Sign::Widen,
                format!("guard {id} removed (was {})", call(guard)),
            );
        }
    }
}
