//! Compiling the guards: ids checked (as rule ids, unique), each guard's call resolved (path,
//! authority, timeout, text limit, fixed headers), and the consumers' `guards` lists resolved
//! to indices.

use super::config::{ConsumerConfig, Errors, GuardApi, GuardConfig};
use super::guards::Guard;
use super::rules::valid_rule_id;

const DEFAULT_MODERATION_PATH: &str = "/v1/moderations";
const DEFAULT_TIMEOUT_MS: u64 = 1000;
const MAX_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MAX_TEXT_BYTES: u64 = 65_536;

/// Headers the gateway sets on a guard call itself, or that would change how it is framed.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
];

pub(crate) fn compile_guards(errors: &mut Errors, configs: &[GuardConfig]) -> Vec<Guard> {
    let mut guards = Vec::with_capacity(configs.len());
    for (index, guard) in configs.iter().enumerate() {
        let path = format!("guards[{index}]");
        if !valid_rule_id(&guard.id) {
            errors.add(
                format!("{path}.id"),
                "must be 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'",
            );
        } else if configs
            .get(..index)
            .is_some_and(|before| before.iter().any(|other| other.id == guard.id))
        {
            errors.add(
                format!("{path}.id"),
                format!("\"{}\" is used by an earlier guard", guard.id),
            );
        }
        if !plain_ascii(&guard.cluster) {
            errors.add(
                format!("{path}.cluster"),
                "must be an Envoy cluster name: 1 to 256 printable ASCII characters, no spaces",
            );
        }
        let call_path = match (guard.api, &guard.path) {
            (_, Some(call_path)) => call_path.clone(),
            (GuardApi::OpenaiModeration, None) => DEFAULT_MODERATION_PATH.to_owned(),
            (GuardApi::Webhook, None) => {
                errors.add(
                    format!("{path}.path"),
                    "a webhook guard needs the path it is called on, such as \"/check\"",
                );
                String::new()
            }
        };
        if guard.path.is_some() && !(call_path.starts_with('/') && plain_ascii(&call_path)) {
            errors.add(
                format!("{path}.path"),
                "must be an absolute path such as /v1/moderations: printable ASCII, no spaces",
            );
        }
        let authority = guard
            .authority
            .clone()
            .unwrap_or_else(|| guard.cluster.clone());
        if guard.authority.is_some() && !plain_ascii(&authority) {
            errors.add(
                format!("{path}.authority"),
                "must be a host name (and port): printable ASCII, no spaces",
            );
        }
        let timeout_ms = guard.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            errors.add(
                format!("{path}.timeout_ms"),
                format!("must be between 1 and {MAX_TIMEOUT_MS} milliseconds"),
            );
        }
        if guard.model.is_some() && guard.api != GuardApi::OpenaiModeration {
            errors.add(
                format!("{path}.model"),
                "only an \"openai_moderation\" guard takes a model",
            );
        }
        if let Some(roles) = &guard.roles {
            if roles.is_empty() {
                errors.add(
                    format!("{path}.roles"),
                    "an empty list sends nothing; omit it to send all text",
                );
            }
            for (role_index, role) in roles.iter().enumerate() {
                if role.is_empty() {
                    errors.add(format!("{path}.roles[{role_index}]"), "must not be empty");
                }
            }
        }
        if guard.fields.as_ref().is_some_and(Vec::is_empty) {
            errors.add(
                format!("{path}.fields"),
                "an empty list sends nothing; omit it to send all text",
            );
        }
        let max_text_bytes = guard.max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES);
        if max_text_bytes == 0 {
            errors.add(format!("{path}.max_text_bytes"), "must be at least 1");
        }
        for (name, value) in &guard.headers {
            check_guard_header(errors, &format!("{path}.headers.{name}"), name, value);
        }
        guards.push(Guard {
            id: guard.id.clone(),
            cluster: guard.cluster.clone(),
            api: guard.api,
            path: call_path,
            authority,
            timeout_ms: u32::try_from(timeout_ms).unwrap_or(u32::MAX),
            on_error: guard.on_error.unwrap_or_default(),
            action: guard.action.unwrap_or_default(),
            model: guard.model.clone(),
            roles: guard.roles.clone(),
            fields: guard.fields.clone(),
            max_text_bytes: usize::try_from(max_text_bytes).unwrap_or(usize::MAX),
            headers: guard
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        });
    }
    guards
}

/// The guards that apply to a consumer, by index: every guard when its entry omits
/// `guards` (safe by default), none for `[]`.
pub(crate) fn consumer_guards(
    errors: &mut Errors,
    path: &str,
    consumer: &ConsumerConfig,
    guards: &[Guard],
) -> Vec<usize> {
    let Some(listed) = &consumer.guards else {
        return (0..guards.len()).collect();
    };
    let mut applies = Vec::with_capacity(listed.len());
    for (index, id) in listed.iter().enumerate() {
        match guards.iter().position(|guard| guard.id == *id) {
            Some(guard) if !applies.contains(&guard) => applies.push(guard),
            Some(_) => errors.add(
                format!("{path}.guards[{index}]"),
                format!("\"{id}\" is listed twice"),
            ),
            None => errors.add(
                format!("{path}.guards[{index}]"),
                format!("unknown guard \"{id}\"; define it under \"guards\""),
            ),
        }
    }
    applies.sort_unstable();
    applies
}

fn plain_ascii(text: &str) -> bool {
    !text.is_empty() && text.len() <= 256 && text.bytes().all(|b| b.is_ascii_graphic())
}

fn check_guard_header(errors: &mut Errors, path: &str, name: &str, value: &str) {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !token {
        errors.add(
            path,
            "must be a lowercase HTTP header name (a-z, 0-9, '-', '_')",
        );
    } else if RESERVED_HEADERS.contains(&name) {
        errors.add(
            path,
            format!("\"{name}\" is set by the gateway and cannot be given"),
        );
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        errors.add(path, "a header value cannot hold control characters");
    }
}

#[cfg(test)]
#[path = "compile_guards_tests.rs"]
mod tests;
