//! `check --diff` on inspection rules: added, removed, and each one's action, scope and mode.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{mode_change, Changes, Sign};
use crate::policy::config::{Direction, Mode, RuleAction};
use crate::policy::rules::{Detection, Rule};
use crate::policy::Policy;

fn action_strength(action: RuleAction) -> u8 {
    match action {
        RuleAction::Block => 2,
        RuleAction::Redact => 1,
        RuleAction::Audit => 0,
    }
}

fn source(rule: &Rule) -> String {
    match &rule.detection {
        Detection::Detector(detect) => format!("detect {detect}"),
        Detection::Pattern(pattern) => format!("pattern {}", Value::from(pattern.as_str())),
    }
}

fn rule_mode(rule: &Rule) -> Mode {
    // A rule's own mode can only turn it into a record; `enforce` there means "as inherited".
    rule.mode.unwrap_or(Mode::Enforce)
}

/// Which text a rule looks at: `None` is all of it.
fn scope_change(
    changes: &mut Changes,
    subject: &str,
    old: Option<BTreeSet<&str>>,
    new: Option<BTreeSet<&str>>,
) {
    if old == new {
        return;
    }
    let show = |scope: &Option<BTreeSet<&str>>| match scope {
        None => "all".to_owned(),
        Some(items) => format!("[{}]", items.iter().copied().collect::<Vec<_>>().join(", ")),
    };
    let sign = match (&old, &new) {
        (None, Some(_)) => Sign::Widen,
        (Some(_), None) => Sign::Narrow,
        (Some(before), Some(after)) if after.is_subset(before) => Sign::Widen,
        (Some(before), Some(after)) if after.is_superset(before) => Sign::Narrow,
        _ => Sign::Neutral,
    };
    changes.add(sign, format!("{subject} {} -> {}", show(&old), show(&new)));
}

fn roles(rule: &Rule) -> Option<BTreeSet<&str>> {
    rule.roles
        .as_ref()
        .map(|roles| roles.iter().map(String::as_str).collect())
}

fn fields(rule: &Rule) -> Option<BTreeSet<&'static str>> {
    rule.fields
        .as_ref()
        .map(|fields| fields.iter().map(|field| field.as_str()).collect())
}

/// What a rule reads: losing a direction lets that side through unread.
fn direction_change(changes: &mut Changes, subject: &str, old: Direction, new: Direction) {
    if old == new {
        return;
    }
    let sign = match (old, new) {
        (Direction::Both, _) => Sign::Widen,
        (_, Direction::Both) => Sign::Narrow,
        _ => Sign::Neutral,
    };
    changes.add(
        sign,
        format!("{subject}: direction {} -> {}", old.as_str(), new.as_str()),
    );
}

pub(super) fn rules(changes: &mut Changes, old: &Policy, new: &Policy) {
    let old_rules: BTreeMap<&str, &Rule> = old
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let new_rules: BTreeMap<&str, &Rule> = new
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    for (id, rule) in &new_rules {
        let subject = format!("rule {id}");
        let Some(before) = old_rules.get(id) else {
            changes.add(
                Sign::Narrow,
                format!(
                    "{subject} added ({}, action {}{}{})",
                    source(rule),
                    rule.action.as_str(),
                    match rule.direction {
                        Direction::Request => String::new(),
                        direction => format!(", direction {}", direction.as_str()),
                    },
                    if rule_mode(rule) == Mode::Audit {
                        ", mode audit"
                    } else {
                        ""
                    }
                ),
            );
            continue;
        };
        if before.action != rule.action {
            let sign = if action_strength(rule.action) < action_strength(before.action) {
                Sign::Widen
            } else {
                Sign::Narrow
            };
            changes.add(
                sign,
                format!(
                    "{subject}: action {} -> {}",
                    before.action.as_str(),
                    rule.action.as_str()
                ),
            );
        }
        let (old_source, new_source) = (source(before), source(rule));
        if old_source != new_source {
            changes.add(
                Sign::Neutral,
                format!("{subject}: {old_source} -> {new_source}"),
            );
        }
        direction_change(changes, &subject, before.direction, rule.direction);
        scope_change(
            changes,
            &format!("{subject}: roles"),
            roles(before),
            roles(rule),
        );
        scope_change(
            changes,
            &format!("{subject}: fields"),
            fields(before),
            fields(rule),
        );
        mode_change(
            changes,
            &format!("{subject}: mode"),
            rule_mode(before),
            rule_mode(rule),
            "its matches will only be recorded",
        );
    }
    for (id, rule) in &old_rules {
        if !new_rules.contains_key(id) {
            changes.add(
                Sign::Widen,
                format!(
                    "rule {id} removed (was {}, action {})",
                    source(rule),
                    rule.action.as_str()
                ),
            );
        }
    }
}
