//! Compiling the inspection rules: ids checked, detectors resolved, patterns compiled, and all
//! of them gathered into one scanner.

use super::config::{Direction, Errors, Field, Mode, RuleAction, RuleConfig};
use super::detect::Detector;
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
    pub direction: Direction,
    /// The longest match the rule can make, in bytes (capped): what a streamed answer holds
    /// back for it.
    pub longest_match: usize,
}

/// The roles an answer is written under: `assistant`, and Gemini's `model`.
pub(crate) const ANSWER_ROLES: [&str; 2] = ["assistant", "model"];

/// What a rule looks for, as written: kept so a review can name it (the scanner holds the
/// compiled form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detection {
    /// A built-in detector (`detect`).
    Detector(String),
    /// A regular expression (`pattern`).
    Pattern(String),
}

/// Whether text of this field, under this role, is read by something that restricts itself to
/// `fields` and `roles` (absent: all): a rule, or a guard.
pub(crate) fn reads(
    fields: Option<&[Field]>,
    roles: Option<&[String]>,
    field: Field,
    role: Option<&str>,
) -> bool {
    let field_ok = fields.is_none_or(|fields| fields.contains(&field));
    let role_ok =
        roles.is_none_or(|roles| role.is_some_and(|role| roles.iter().any(|r| r == role)));
    field_ok && role_ok
}

impl Rule {
    /// Whether the rule reads text in this field, under this role, in a request.
    pub(crate) fn looks_at(&self, field: Field, role: Option<&str>) -> bool {
        self.direction.reads_requests()
            && reads(self.fields.as_deref(), self.roles.as_deref(), field, role)
    }

    /// Whether the rule reads answers at all: its direction says so and its roles, if any,
    /// name the role answers are written under.
    pub(crate) fn reads_answers(&self) -> bool {
        self.direction.reads_answers()
            && self.roles.as_ref().is_none_or(|roles| {
                roles
                    .iter()
                    .any(|role| ANSWER_ROLES.contains(&role.as_str()))
            })
    }

    /// Whether a match of the rule is enforced for a consumer in `consumer_mode`: audit
    /// anywhere (rule or consumer) turns its action into a record.
    pub(crate) fn enforced(&self, consumer_mode: Mode) -> bool {
        self.mode != Some(Mode::Audit) && consumer_mode == Mode::Enforce
    }

    /// Whether the rule reads this kind of answer text.
    pub(crate) fn reads_answer_field(&self, field: Field) -> bool {
        self.fields
            .as_ref()
            .is_none_or(|fields| fields.contains(&field))
    }
}

/// The longest match worth knowing exactly: a streamed answer holds back at most this much.
pub(crate) const LONGEST_MATCH_CAP: usize = 8 * 1024;
/// The bound given to detectors of short tokens and numbers.
const SHORT_MATCH_LEN: usize = 256;
/// A private key block, whose length the detector does not bound.
const PRIVATE_KEY_LEN: usize = 4 * 1024;

/// The longest match a rule can make, in bytes, capped at the window's maximum: a pattern's
/// longest match where its syntax bounds it, a detector's own bound.
fn longest_match(detection: &Detection) -> usize {
    match detection {
        Detection::Pattern(pattern) => regex_syntax::Parser::new()
            .parse(pattern)
            .ok()
            .and_then(|hir| hir.properties().maximum_len())
            .unwrap_or(LONGEST_MATCH_CAP)
            .min(LONGEST_MATCH_CAP),
        Detection::Detector(name) => Detector::lookup(name)
            .unwrap_or_default()
            .into_iter()
            .map(detector_longest_match)
            .max()
            .unwrap_or(SHORT_MATCH_LEN),
    }
}

/// Each detector's longest match, from the formats it reads (a token's prefix and body, an
/// address's length limit, a card's digits with separators).
fn detector_longest_match(detector: Detector) -> usize {
    match detector {
        Detector::PrivateKey => PRIVATE_KEY_LEN,
        // A JWT's three parts carry claims of any size; one as long as a private key is
        // already an unusual token.
        Detector::Jwt => PRIVATE_KEY_LEN,
        // RFC 5321: a path of at most 256 octets, an address of at most 254.
        Detector::Email => 256,
        Detector::AwsAccessKey
        | Detector::GithubToken
        | Detector::GitlabToken
        | Detector::SlackToken
        | Detector::StripeKey
        | Detector::GoogleApiKey
        | Detector::OpenaiKey
        | Detector::AnthropicKey => SHORT_MATCH_LEN,
        Detector::CreditCard | Detector::Iban | Detector::UsSsn | Detector::Phone => 64,
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

/// A rule's direction against its roles and fields: a rule that reads only answers must name
/// the role answers are written under, if it names roles, and a rule that reads only requests
/// cannot look at the model's output, which no request holds.
fn check_direction(errors: &mut Errors, path: &str, rule: &RuleConfig) {
    let roles = rule.roles.as_deref().unwrap_or_default();
    if rule.direction == Direction::Response
        && !roles.is_empty()
        && !roles
            .iter()
            .any(|role| ANSWER_ROLES.contains(&role.as_str()))
    {
        errors.add(
            format!("{path}.roles"),
            "a rule with \"direction\": \"response\" reads answers, which are written as \
             \"assistant\" (\"model\" in Gemini); list one of them, or omit \"roles\"",
        );
    }
    if rule.direction == Direction::Request
        && rule
            .fields
            .as_ref()
            .is_some_and(|fields| fields.contains(&Field::Output))
    {
        errors.add(
            format!("{path}.fields"),
            "\"output\" is the model's text in an answer, which a request rule never reads; \
             set \"direction\" to \"response\" or \"both\", or remove \"output\"",
        );
    }
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
        check_direction(errors, &path, rule);
        rules.push(Rule {
            id: rule.id.clone(),
            action: rule.action,
            roles: rule.roles.clone(),
            fields: rule.fields.clone(),
            mode: rule.mode,
            direction: rule.direction,
            longest_match: longest_match(&detection),
            detection,
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
