//! Email addresses.

use std::ops::Range;

use super::{Boundary, Finder, Found, Spec};

/// ASCII addresses: a local part of RFC 5322 `atext` and dots (letters, digits and
/// ``!#$%&'*+/=?^_`{|}~-.``), `@`, dot-separated domain
/// labels, and an alphabetic top-level domain of 2 to 63 letters. The regex engine finds the
/// `@` first and reads back from it, so prose without one costs a memchr. The code then
/// applies RFC 5321's limits (local part up to 64, labels up to 63, no empty label, no leading
/// or trailing `-` in a label); an address starts after an ellipsis or a doubled dot
/// (`so on...bob@x.org` reports `bob@x.org`). A local part longer than 64 with symbols in it
/// (`https://x.org/a/…/bob@x.org`) starts after its last symbol but `._%+-`, so a long run
/// before an address never hides it.
///
/// Deliberately not matched, to keep code samples quiet: `git@host` (the SSH user of Git
/// hosts) and image names such as `icon@2x.png` (a top-level domain that is an image
/// extension). Misses: internationalised addresses (non-ASCII local part or domain; a
/// non-ASCII letter just before an ASCII local part is a boundary, so `josé@x.org` reports
/// nothing and `jöhn@x.org` reports `hn@x.org`), quoted local parts, IP-literal domains, and
/// addresses obfuscated as `bob at example dot com`. False positives: `user@host.tld`-shaped
/// text that is not an address, such as `pass@host.com` in a URL's userinfo (a credential
/// anyway) or npm-style `pkg@scope.name` specifiers.
pub(super) const EMAIL: Spec = Spec {
    finders: &[Finder::Regex(
        "[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,63}",
    )],
    boundary: Boundary::Checked,
    verify: email,
};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp"];

fn email(text: &str, candidate: Range<usize>, found: &mut Found) {
    let address = text.get(candidate.clone()).unwrap_or_default();
    let Some((local, domain)) = address.split_once('@') else {
        return;
    };
    // An ellipsis or a doubled dot cannot be inside a local part: the address starts after it.
    let trimmed = local
        .rsplit_once("..")
        .map_or(local, |(_, after)| after)
        .trim_start_matches('.');
    // Too long with symbols in it: the address starts after the last symbol but `._%+-`.
    let trimmed = if trimmed.len() > 64 {
        trimmed
            .rsplit_once(|c: char| !(c.is_ascii_alphanumeric() || "._%+-".contains(c)))
            .map_or(trimmed, |(_, after)| after)
            .trim_start_matches('.')
    } else {
        trimmed
    };
    let start = candidate
        .start
        .saturating_add(local.len().saturating_sub(trimmed.len()));
    let local_ok = (1..=64).contains(&trimmed.len()) && !trimmed.ends_with('.') && trimmed != "git";
    let labels_ok = domain.len() <= 253
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len()) && !label.starts_with('-') && !label.ends_with('-')
        });
    let tld = domain.rsplit('.').next().unwrap_or_default();
    let image = IMAGE_EXTENSIONS
        .iter()
        .any(|extension| tld.eq_ignore_ascii_case(extension));
    if local_ok && labels_ok && !image && !continues(text.as_bytes(), candidate.end) {
        found.push(start..candidate.end);
    }
}

/// Whether the domain goes on past what the regex took: a letter, digit, `-` or `_`, or a dot
/// and another label (`x@example.com.1a`, where the last label cannot be a top-level domain).
fn continues(bytes: &[u8], end: usize) -> bool {
    let next = bytes.get(end).copied();
    let after = bytes.get(end.saturating_add(1)).copied();
    match next {
        Some(byte) if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' => true,
        Some(b'.') => after.is_some_and(|byte| byte.is_ascii_alphanumeric()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::detector_cases;
    use crate::policy::detect::Detector::Email;

    detector_cases! {
        Email;
        plain: "mail jane.doe@example.com today" => ["jane.doe@example.com"];
        plus_tag: "jane+llm@mail.example.co.uk" => ["jane+llm@mail.example.co.uk"];
        uppercase: "JANE@EXAMPLE.ORG" => ["JANE@EXAMPLE.ORG"];
        apostrophe: "o'brien@corp.com and first#last@corp.com" => ["o'brien@corp.com", "first#last@corp.com"];
        every_atext_symbol: "a!#$%&'*+/=?^_`{|}~-z@corp.com" => ["a!#$%&'*+/=?^_`{|}~-z@corp.com"];
        long_path_before_address: "https://example.com/a/very/long/path/with/many/segments/and/more/of/them/bob@corp.com" => ["bob@corp.com"];
        long_plain_local_part: "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde@corp.com" => [];
        in_angle_brackets: "Jane <jane@example.com>" => ["jane@example.com"];
        sentence_end: "write to jane@example.com." => ["jane@example.com"];
        mailto: "mailto:jane@example.com?subject=x" => ["jane@example.com"];
        two: "a@example.com, b_c@example.net" => ["a@example.com", "b_c@example.net"];
        long_tld: "x@example.photography" => ["x@example.photography"];
        hyphen_domain: "ops@my-company.io" => ["ops@my-company.io"];
        leading_dots_dropped: "and so on...bob@example.com" => ["bob@example.com"];
        cjk_around: "请联系bob@example.com谢谢" => ["bob@example.com"];
        accented_before: "é bob@example.com" => ["bob@example.com"];
        escaped_json_decoded: "{\"to\": \"bob@example.com\"}" => ["bob@example.com"];
        no_tld: "user@localhost" => [];
        numeric_tld: "user@host.123" => [];
        tld_one_letter: "user@example.c" => [];
        double_dot_starts_local_part: "jane..doe@example.com" => ["doe@example.com"];
        trailing_dot_local: "jane.@example.com" => [];
        label_leading_hyphen: "jane@-example.com" => [];
        label_trailing_hyphen: "jane@example-.com" => [];
        empty_label: "jane@example..com" => [];
        local_too_long: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com" => [];
        domain_continues: "jane@example.com-x" => [];
        domain_continues_digit_label: "jane@example.com.1a" => [];
        git_ssh: "git clone git@github.com:org/repo.git" => [];
        retina_image: "icon@2x.png and logo@3x.PNG" => [];
        npm_version: "lodash@4.17.21" => [];
        decorator: "@property def x(self)" => [];
        at_alone: "meet @ noon" => [];
        non_ascii_local: "josé@example.com" => [];
    }
}
