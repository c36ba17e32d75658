//! Compiling the inspection rules: ids checked, detectors resolved, patterns compiled, and all
//! of them gathered into one scanner.

use super::config::{Errors, Field, Mode, RuleAction, RuleConfig};
use super::inspect::{RuleSource, Scanner};

/// A compiled inspection rule; its detectors and pattern live in the policy's one scanner.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: String,
    // Read by `posturio check --diff`, which the Wasm module does not include.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub detection: Detection,
    pub action: RuleAction,
    pub roles: Option<Vec<String>>,
    pub fields: Option<Vec<Field>>,
    pub mode: Option<Mode>,
}

/// What a rule looks for, as written: kept so a review can name it (the scanner holds the
/// compiled form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detection {
    /// A built-in detector (`detect`).
    Detector(String),
    /// A regular expression (`pattern`).
    Pattern(String),
}

impl Rule {
    /// Whether the rule reads text in this field, under this role.
    pub(crate) fn looks_at(&self, field: Field, role: Option<&str>) -> bool {
        let field_ok = self
            .fields
            .as_ref()
            .is_none_or(|fields| fields.contains(&field));
        let role_ok = self
            .roles
            .as_ref()
            .is_none_or(|roles| role.is_some_and(|role| roles.iter().any(|r| r == role)));
        field_ok && role_ok
    }
}

/// Rule ids appear in replies, logs and redaction markers: keep them plain.
pub(crate) fn valid_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) fn compile_rules(
    errors: &mut Errors,
    configs: &[RuleConfig],
) -> (Vec<Rule>, Option<Scanner>) {
    let mut rules = Vec::with_capacity(configs.len());
    let mut sources = Vec::new();
    for (index, rule) in configs.iter().enumerate() {
        let path = format!("rules[{index}]");
        if !valid_rule_id(&rule.id) {
            errors.add(
                format!("{path}.id"),
                "must be 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'",
            );
        } else if configs
            .get(..index)
            .is_some_and(|before| before.iter().any(|other| other.id == rule.id))
        {
            errors.add(
                format!("{path}.id"),
                format!("\"{}\" is used by an earlier rule", rule.id),
            );
        }
        let detection = match (&rule.detect, &rule.pattern) {
            (Some(name), None) => {
                match super::inspect::detectors(name) {
                    Some(found) => sources.extend(
                        found
                            .into_iter()
                            .map(|detector| (index, RuleSource::Detector(detector))),
                    ),
                    None => errors.add(
                        format!("{path}.detect"),
                        format!(
                            "unknown detector \"{name}\"; known: {}",
                            super::inspect::detector_names().join(", ")
                        ),
                    ),
                }
                Detection::Detector(name.clone())
            }
            (None, Some(pattern)) => {
                sources.push((index, RuleSource::Pattern(pattern.clone())));
                Detection::Pattern(pattern.clone())
            }
            _ => {
                errors.add(&path, "give exactly one of \"detect\" or \"pattern\"");
                // Never used: a configuration with a mistake compiles to no policy.
                Detection::Pattern(String::new())
            }
        };
        if let Some(roles) = &rule.roles {
            if roles.is_empty() {
                errors.add(
                    format!("{path}.roles"),
                    "an empty list matches nothing; omit it to look at all text",
                );
            }
            for (role_index, role) in roles.iter().enumerate() {
                if role.is_empty() {
                    errors.add(format!("{path}.roles[{role_index}]"), "must not be empty");
                }
            }
        }
        if rule.fields.as_ref().is_some_and(Vec::is_empty) {
            errors.add(
                format!("{path}.fields"),
                "an empty list matches nothing; omit it to look at all text",
            );
        }
        rules.push(Rule {
            id: rule.id.clone(),
            detection,
            action: rule.action,
            roles: rule.roles.clone(),
            fields: rule.fields.clone(),
            mode: rule.mode,
        });
    }
    if sources.is_empty() {
        return (rules, None);
    }
    match Scanner::new(sources) {
        Ok(scanner) => (rules, Some(scanner)),
        Err((rule_index, message)) => {
            errors.add(format!("rules[{rule_index}].pattern"), message);
            (rules, None)
        }
    }
}
