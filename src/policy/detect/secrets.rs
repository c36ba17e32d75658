//! Credentials with a recognisable shape: a vendor prefix and a fixed alphabet.
//!
//! Every pattern but the JWT's starts with a literal, so the regex engine skips to it with a
//! prefilter. None of these checks a token's own checksum (GitHub's CRC32 tail, say): a wrong
//! guess there would hide real keys, and a prefix plus length already makes a chance match
//! unlikely. Known misses for all of them: a token split across lines or by inserted spaces,
//! and a token written next to a letter or digit with nothing between (`xAKIA…`), which is
//! read as part of a longer word.

use std::ops::Range;

use super::{Boundary, Finder, Found, Spec};

/// AWS access key ids: `AKIA` (long-term), `ASIA` (temporary, STS), `ABIA`, `ACCA`, then 16
/// capitals or digits. Only the id: the secret key is 40 characters of base64 with no prefix,
/// which cannot be told from a hash. False positives: an uppercase identifier that happens to
/// start with one of these prefixes and is exactly 20 characters long.
pub(super) const AWS_ACCESS_KEY: Spec = Spec {
    finders: &[Finder::Regex("(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}")],
    boundary: Boundary::Alnum,
    verify: accept,
};

/// PEM private keys: `-----BEGIN … PRIVATE KEY-----` with any label (RSA, EC, DSA, OPENSSH,
/// ENCRYPTED, PGP … BLOCK). With its END line within 64 KiB, the whole block matches; without
/// one (a truncated paste, or a key split over two messages), everything from the BEGIN line
/// to the next BEGIN line or the end of the text: what follows may be key body written any
/// way (after a blank line, a comment), and a key half redacted is a key leaked. A key's tail
/// without its BEGIN line (the rest of a split key) matches too: the base64 lines before an
/// `-----END … PRIVATE KEY-----` line, and that line. Public keys and certificates are not
/// matched. Misses: PuTTY `.ppk` files and SSH2 (`---- BEGIN SSH2 …`) armour.
pub(super) const PRIVATE_KEY: Spec = Spec {
    finders: &[
        Finder::Regex("-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
        Finder::Regex("-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
    ],
    boundary: Boundary::Checked,
    verify: private_key_block,
};

/// GitHub tokens: `ghp_` (personal), `gho_` (OAuth), `ghu_` (user-to-server), `ghs_`
/// (server-to-server), `ghr_` (refresh) with 36 or more base62 characters, and fine-grained
/// `github_pat_` tokens. False positives: hardly any; a placeholder such as `ghp_` followed by
/// 36 `x` is reported.
pub(super) const GITHUB_TOKEN: Spec = Spec {
    finders: &[
        Finder::Regex("gh[pousr]_[A-Za-z0-9]{36,251}"),
        Finder::Regex("github_pat_[A-Za-z0-9_]{22,251}"),
    ],
    boundary: Boundary::Word,
    verify: accept,
};

/// GitLab tokens: personal (`glpat-`), deploy (`gldt-`), runner (`glrt-`), pipeline trigger
/// (`glptt-`), feed (`glft-`), service account (`glsoat-`), CI build (`glcbt-`), incoming mail
/// (`glimt-`) and OAuth app secrets (`gloas-`), with at least 20 base64url characters, and the
/// dotted tail of the newer routable tokens.
pub(super) const GITLAB_TOKEN: Spec = Spec {
    finders: &[Finder::Regex(
        "(?:glpat|gldt|glrt|glptt|glft|glsoat|glcbt|glimt|gloas)-[A-Za-z0-9_-]{20,255}\
         (?:\\.[A-Za-z0-9_-]+){0,2}",
    )],
    boundary: Boundary::Base64Url,
    verify: accept,
};

/// Slack tokens (`xoxb-` bot, `xoxp-` user, `xoxa-`, `xoxr-` refresh, `xoxs-`, `xoxo-`, `xoxe-`
/// and `xoxe.xoxp-` rotating, `xapp-` app-level) of at least 20 characters in dash-separated
/// parts, and incoming webhook URLs (`hooks.slack.com/services/…`, `/workflows/…`,
/// `/triggers/…`), with their scheme when present. A webhook URL reaches the same hook however
/// it is spelled, so it is matched as any HTTP client reads it: the host in any letter case,
/// with a trailing dot or a port, slashes doubled, the path in any case or percent-encoded
/// (`/%73ervices/`); any first path segment on that host followed by a long path counts.
pub(super) const SLACK_TOKEN: Spec = Spec {
    finders: &[
        Finder::Regex("(?:xox[abposre]|xoxe\\.xox[bp]|xapp)-[0-9A-Za-z]+(?:-[0-9A-Za-z]+)+"),
        Finder::Regex(
            "(?i:(?:https?:/+)?hooks\\.slack\\.com\\.?(?::[0-9]{1,5})?/+[a-z0-9%]{1,40}/+[a-z0-9_/%-]{16,})",
        ),
    ],
    boundary: Boundary::Alnum,
    verify: slack,
};

/// Stripe secret (`sk_`) and restricted (`rk_`) keys, live and test, with at least 20 base62
/// characters. Publishable keys (`pk_`) are meant to be public and are not matched.
pub(super) const STRIPE_KEY: Spec = Spec {
    finders: &[Finder::Regex("[sr]k_(?:live|test)_[A-Za-z0-9]{20,247}")],
    boundary: Boundary::Word,
    verify: accept,
};

/// Google API keys: `AIza` and 35 base64url characters (Maps, Gemini, Firebase and the other
/// Google Cloud APIs use the same shape). Firebase keys are often public by design; they are
/// still reported.
pub(super) const GOOGLE_API_KEY: Spec = Spec {
    finders: &[Finder::Regex("AIza[A-Za-z0-9_-]{35}")],
    boundary: Boundary::Base64Url,
    verify: accept,
};

/// OpenAI keys: `sk-` with at least 32 base64url characters, the labelled forms included
/// (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, `sk-None-`). Anthropic's `sk-ant-` keys are left to
/// their own detector. The body must look random (at least two of lower case, upper case,
/// digits, and few `-`/`_`), which keeps kebab-case names such as `sk-button-primary-…` out.
/// False positives: other vendors' `sk-` keys of the same shape (DeepSeek, many
/// OpenAI-compatible gateways): secrets all the same.
pub(super) const OPENAI_KEY: Spec = Spec {
    finders: &[Finder::Regex("sk-[A-Za-z0-9_-]{32,}")],
    boundary: Boundary::Base64Url,
    verify: openai,
};

/// Anthropic keys: `sk-ant-` with at least 32 base64url characters (`sk-ant-api03-…` API keys,
/// `sk-ant-admin01-…`, `sk-ant-oat01-…`).
pub(super) const ANTHROPIC_KEY: Spec = Spec {
    finders: &[Finder::Regex("sk-ant-[A-Za-z0-9_-]{32,}")],
    boundary: Boundary::Base64Url,
    verify: accept,
};

/// JSON Web Tokens (JWS compact form): three base64url segments joined by dots, header and
/// payload each starting `eyJ` (the encoding of `{"`), the signature possibly empty (`alg`
/// `none`). Encrypted JWTs (five segments) are not matched. False positives: any base64url
/// JSON pair in that shape, which in practice is a JWT.
pub(super) const JWT: Spec = Spec {
    finders: &[Finder::Regex(
        "eyJ[A-Za-z0-9_-]{5,}\\.eyJ[A-Za-z0-9_-]{5,}\\.[A-Za-z0-9_-]*",
    )],
    boundary: Boundary::Base64Url,
    verify: accept,
};

fn accept(_text: &str, candidate: Range<usize>, found: &mut Found) {
    found.push(candidate);
}

/// A key block may be this long: 16384-bit RSA keys and PGP blocks stay below it. Searching
/// no further keeps a BEGIN line without its END from costing a pass over the whole prompt.
const MAX_KEY_BLOCK: usize = 64 * 1024;

fn private_key_block(text: &str, candidate: Range<usize>, found: &mut Found) {
    let begin = text.get(candidate.clone()).unwrap_or_default();
    if begin.starts_with("-----END ") {
        private_key_tail(text, candidate, found);
        return;
    }
    let label = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.strip_suffix("-----"))
        .unwrap_or_default();
    let end_line = format!("-----END {label}-----");
    // A block ends before the next BEGIN line, and looking no further keeps a text of many
    // BEGIN lines without END lines linear.
    let limit = floor_char_boundary(text, candidate.end.saturating_add(MAX_KEY_BLOCK));
    let window = text.get(candidate.end..limit).unwrap_or_default();
    // Without a next BEGIN line within reach, the key runs to the end of the text.
    let window_end = window
        .find("-----BEGIN ")
        .map_or(text.len(), |at| candidate.end.saturating_add(at));
    let end = match window.find(&end_line).filter(|at| {
        candidate
            .end
            .saturating_add(*at)
            .saturating_add(end_line.len())
            <= window_end
    }) {
        Some(at) => candidate
            .end
            .saturating_add(at)
            .saturating_add(end_line.len()),
        None => {
            let rest = text.get(candidate.end..window_end).unwrap_or_default();
            candidate.end.saturating_add(rest.trim_end().len())
        }
    };
    found.push(candidate.start..end);
}

/// A key's tail without its BEGIN line: the END line at `candidate`, the base64 before it on
/// its line, and the lines before that holding only base64 (blank lines passed over), up to
/// 64 KiB back. Nothing when no base64 precedes the END line, or when a BEGIN line does:
/// then the BEGIN line's match holds the whole block.
fn private_key_tail(text: &str, candidate: Range<usize>, found: &mut Found) {
    let floor = ceil_char_boundary(text, candidate.start.saturating_sub(MAX_KEY_BLOCK));
    let before = text.get(floor..candidate.start).unwrap_or_default();
    // The end of the line being read, walking back one line at a time.
    let mut cursor = candidate.start;
    let mut start = candidate.start;
    let mut body = false;
    for line in before.rsplit('\n') {
        let line_start = cursor.saturating_sub(line.len());
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            if !trimmed.bytes().all(is_base64) {
                if trimmed.contains("-----BEGIN ") {
                    return;
                }
                break;
            }
            body = true;
            let leading = line.len().saturating_sub(line.trim_start().len());
            start = line_start.saturating_add(leading);
        }
        cursor = line_start.saturating_sub(1);
    }
    if body {
        found.push(start..candidate.end);
    }
}

/// The smallest char boundary of `text` at or above `at`.
fn ceil_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at = at.saturating_add(1);
    }
    at
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at = at.saturating_sub(1);
    }
    at
}

fn slack(text: &str, candidate: Range<usize>, found: &mut Found) {
    let token = text.get(candidate.clone()).unwrap_or_default();
    if token.len() >= 20 || token.to_ascii_lowercase().contains("hooks.slack.com") {
        found.push(candidate);
    }
}

fn openai(text: &str, candidate: Range<usize>, found: &mut Found) {
    let token = text.get(candidate.clone()).unwrap_or_default();
    let body = token.strip_prefix("sk-").unwrap_or_default();
    if body.starts_with("ant-") {
        return;
    }
    let body = ["proj-", "svcacct-", "admin-", "None-"]
        .iter()
        .find_map(|label| body.strip_prefix(label))
        .unwrap_or(body);
    if body.len() >= 32 && looks_random(body) {
        found.push(candidate);
    }
}

/// Random base62/base64url text of 32 or more characters mixes character classes and has a
/// `-` or `_` about once in 32 characters; names and prose joined by dashes do not.
fn looks_random(body: &str) -> bool {
    let bytes = body.as_bytes();
    let lower = bytes.iter().any(u8::is_ascii_lowercase);
    let upper = bytes.iter().any(u8::is_ascii_uppercase);
    let digit = bytes.iter().any(u8::is_ascii_digit);
    let classes = [lower, upper, digit].iter().filter(|&&class| class).count();
    let separators = bytes.iter().filter(|&&b| b == b'-' || b == b'_').count();
    classes >= 2 && separators.saturating_mul(12) <= bytes.len()
}

#[cfg(test)]
mod tests {
    use crate::policy::detect::tests::matches;
    use crate::policy::detect::Detector::{self, *};

    macro_rules! cases {
        ($($name:ident: $detector:expr, $text:expr => [$($expected:expr),*];)*) => {$(
            #[test]
            fn $name() {
                let expected: Vec<&str> = vec![$($expected),*];
                assert_eq!(matches($detector, $text), expected);
            }
        )*};
    }

    const GHP: &str = "ghp_1234567890abcdefghijABCDEFGHIJ123456";

    cases! {
        aws_akia: AwsAccessKey, "key AKIAIOSFODNN7EXAMPLE here" => ["AKIAIOSFODNN7EXAMPLE"];
        aws_asia: AwsAccessKey, "ASIAY34FZKBOKMUTVV7A" => ["ASIAY34FZKBOKMUTVV7A"];
        aws_in_quotes: AwsAccessKey, "\"AKIAIOSFODNN7EXAMPLE\"," => ["AKIAIOSFODNN7EXAMPLE"];
        aws_env_line: AwsAccessKey, "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n" => ["AKIAIOSFODNN7EXAMPLE"];
        aws_next_to_cjk: AwsAccessKey, "密钥AKIAIOSFODNN7EXAMPLE。" => ["AKIAIOSFODNN7EXAMPLE"];
        aws_two: AwsAccessKey, "AKIAIOSFODNN7EXAMPLE,ASIAY34FZKBOKMUTVV7A" => ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"];
        aws_too_short: AwsAccessKey, "AKIAIOSFODNN7EXAMPL" => [];
        aws_too_long: AwsAccessKey, "AKIAIOSFODNN7EXAMPLEX" => [];
        aws_lowercase_tail: AwsAccessKey, "AKIAIOSFODNN7EXAMPLEabc" => [];
        aws_wrong_prefix: AwsAccessKey, "AKIBIOSFODNN7EXAMPLE" => [];
        aws_lowercase: AwsAccessKey, "akiaiosfodnn7example" => [];
        aws_inside_hex: AwsAccessKey, "9f86d081884c7d65AKIA1234567890ABCDEF9a2f" => [];
        aws_after_letter: AwsAccessKey, "xAKIAIOSFODNN7EXAMPLE" => [];
        pem_rsa_block: PrivateKey, "k: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nok" => ["-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"];
        pem_pkcs8: PrivateKey, "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----" => ["-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"];
        pem_ec: PrivateKey, "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----" => ["-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----"];
        pem_openssh: PrivateKey, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----" => ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----"];
        pem_encrypted: PrivateKey, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----" => ["-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----"];
        pem_pgp: PrivateKey, "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOY\n-----END PGP PRIVATE KEY BLOCK-----" => ["-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOY\n-----END PGP PRIVATE KEY BLOCK-----"];
        pem_one_line: PrivateKey, "-----BEGIN RSA PRIVATE KEY----- MIIEow -----END RSA PRIVATE KEY----- x" => ["-----BEGIN RSA PRIVATE KEY----- MIIEow -----END RSA PRIVATE KEY-----"];
        pem_crlf: PrivateKey, "-----BEGIN PRIVATE KEY-----\r\nMIIE\r\n-----END PRIVATE KEY-----\r\n" => ["-----BEGIN PRIVATE KEY-----\r\nMIIE\r\n-----END PRIVATE KEY-----"];
        pem_escaped_newlines: PrivateKey, "\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\"" => ["-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"];
        pem_truncated: PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq1w2e3r4+/==\nand then prose\n" => ["-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq1w2e3r4+/==\nand then prose"];
        pem_truncated_after_blank_line: PrivateKey, "-----BEGIN PRIVATE KEY-----\n\nMIIEowIBAAKCAQEA\nq1w2e3r4" => ["-----BEGIN PRIVATE KEY-----\n\nMIIEowIBAAKCAQEA\nq1w2e3r4"];
        pem_truncated_stops_at_next_begin: PrivateKey, "-----BEGIN PRIVATE KEY-----\nMIIE\n-----BEGIN EC PRIVATE KEY-----\nMHcC" => ["-----BEGIN PRIVATE KEY-----\nMIIE", "-----BEGIN EC PRIVATE KEY-----\nMHcC"];
        pem_tail_alone: PrivateKey, "rest of it:\nq1w2e3r4+/AB\n\nMIIEowIBAAKCAQEA==\n-----END RSA PRIVATE KEY-----\nthanks" => ["q1w2e3r4+/AB\n\nMIIEowIBAAKCAQEA==\n-----END RSA PRIVATE KEY-----"];
        pem_tail_on_one_line: PrivateKey, "MIIEow -----END PRIVATE KEY-----" => ["MIIEow -----END PRIVATE KEY-----"];
        pem_end_line_alone: PrivateKey, "the line -----END PRIVATE KEY----- closes a key" => [];
        pem_truncated_headers: PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17\n\nMIIE\n" => ["-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17\n\nMIIE"];
        pem_begin_only: PrivateKey, "-----BEGIN PRIVATE KEY----- and more\n\nnext" => ["-----BEGIN PRIVATE KEY----- and more\n\nnext"];
        pem_mismatched_end: PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END EC PRIVATE KEY-----" => ["-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END EC PRIVATE KEY-----"];
        pem_public_key: PrivateKey, "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----" => [];
        pem_certificate: PrivateKey, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----" => [];
        pem_two_blocks: PrivateKey, "-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----\n-----BEGIN EC PRIVATE KEY-----\nB\n-----END EC PRIVATE KEY-----" => ["-----BEGIN PRIVATE KEY-----\nA\n-----END PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----\nB\n-----END EC PRIVATE KEY-----"];
        pem_begin_inside_unended_block: PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----" => ["-----BEGIN RSA PRIVATE KEY-----\nMIIE", "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----"];
        github_classic: GithubToken, "token ghp_1234567890abcdefghijABCDEFGHIJ123456 ok" => [GHP];
        github_oauth: GithubToken, "gho_16C7e42F292c6912E7710c838347Ae178B4a" => ["gho_16C7e42F292c6912E7710c838347Ae178B4a"];
        github_server: GithubToken, "ghs_abcdefghijklmnopqrstuvwxyz0123456789" => ["ghs_abcdefghijklmnopqrstuvwxyz0123456789"];
        github_fine_grained: GithubToken, "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456" => ["github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"];
        github_url_userinfo: GithubToken, "https://ghp_1234567890abcdefghijABCDEFGHIJ123456@github.com/o/r" => [GHP];
        github_both_kinds_in_order: GithubToken, "github_pat_11ABCDEFG0123456789abc_xyz then ghp_1234567890abcdefghijABCDEFGHIJ123456" => ["github_pat_11ABCDEFG0123456789abc_xyz", GHP];
        github_short: GithubToken, "ghp_1234567890abcdefghijABCDEFGHIJ12345" => [];
        github_wrong_letter: GithubToken, "ghx_1234567890abcdefghijABCDEFGHIJ123456" => [];
        github_embedded: GithubToken, "xghp_1234567890abcdefghijABCDEFGHIJ123456" => [];
        github_dash_tail: GithubToken, "ghp_1234567890abcdefghijABCDEFGHIJ123456-x" => [GHP];
        gitlab_pat: GitlabToken, "glpat-xxxxXXXX1234yyyyZZZZ" => ["glpat-xxxxXXXX1234yyyyZZZZ"];
        gitlab_dashes: GitlabToken, "CI_TOKEN=glpat-Ab_9-cdEf-GhIj_KlMn-OpQr " => ["glpat-Ab_9-cdEf-GhIj_KlMn-OpQr"];
        gitlab_routable: GitlabToken, "glpat-abcdefghijklmnopqrstuvwxyz0.01.0q1w2e3r4" => ["glpat-abcdefghijklmnopqrstuvwxyz0.01.0q1w2e3r4"];
        gitlab_deploy: GitlabToken, "gldt-AbCdEfGhIjKlMnOpQrSt" => ["gldt-AbCdEfGhIjKlMnOpQrSt"];
        gitlab_runner: GitlabToken, "glrt-AbCdEfGhIjKlMnOpQrSt" => ["glrt-AbCdEfGhIjKlMnOpQrSt"];
        gitlab_short: GitlabToken, "glpat-short123" => [];
        gitlab_unknown_prefix: GitlabToken, "glxyz-xxxxXXXX1234yyyyZZZZ" => [];
        gitlab_embedded: GitlabToken, "myglpat-xxxxXXXX1234yyyyZZZZ" => [];
        slack_bot: SlackToken, "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx" => ["xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"];
        slack_user: SlackToken, "xoxp-1234567890-1234567890-1234567890123-0123456789abcdef0123456789abcdef" => ["xoxp-1234567890-1234567890-1234567890123-0123456789abcdef0123456789abcdef"];
        slack_app: SlackToken, "xapp-1-A0123456789-1234567890123-abcdef0123456789" => ["xapp-1-A0123456789-1234567890123-abcdef0123456789"];
        slack_rotating: SlackToken, "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMjM0" => ["xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMjM0"];
        slack_webhook: SlackToken, "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now" => ["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_no_scheme: SlackToken, "hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghij0123456789" => ["hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghij0123456789"];
        slack_webhook_then_token: SlackToken, "hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghij0123456789 xoxb-1234567890123-1234567890123-AbCd" => ["hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghij0123456789", "xoxb-1234567890123-1234567890123-AbCd"];
        slack_too_short: SlackToken, "xoxb-123-456" => [];
        slack_no_parts: SlackToken, "xoxb-12345678901234567890" => [];
        slack_wrong_letter: SlackToken, "xoxz-1234567890123-1234567890123-AbCd" => [];
        slack_embedded: SlackToken, "abcxoxb-1234567890123-1234567890123-AbCd" => [];
        slack_webhook_upper_host: SlackToken, "post to https://HOOKS.SLACK.COM/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" => ["https://HOOKS.SLACK.COM/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_trailing_dot: SlackToken, "https://hooks.slack.com./services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" => ["https://hooks.slack.com./services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_port: SlackToken, "https://hooks.slack.com:443/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" => ["https://hooks.slack.com:443/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_double_slash: SlackToken, "https://hooks.slack.com//services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" => ["https://hooks.slack.com//services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_percent_path: SlackToken, "https://hooks.slack.com/%73ervices/T00000000/B00000000/XXXXXXXX%58XXXXXXXXXXXXXXX" => ["https://hooks.slack.com/%73ervices/T00000000/B00000000/XXXXXXXX%58XXXXXXXXXXXXXXX"];
        slack_webhook_mixed_case_path: SlackToken, "Https://Hooks.Slack.Com/SERVICES/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" => ["Https://Hooks.Slack.Com/SERVICES/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"];
        slack_webhook_host_only: SlackToken, "see https://hooks.slack.com/ for help" => [];
        slack_webhook_short_path: SlackToken, "https://hooks.slack.com/services/abc" => [];
        slack_other_hooks: SlackToken, "https://hooks.example.com/services/T00000000/B00000000/XXXXXXXX" => [];
        stripe_live: StripeKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc" => ["sk_live_4eC39HqLyjWDarjtT1zdp7dc"];
        stripe_test: StripeKey, "STRIPE_KEY='sk_test_4eC39HqLyjWDarjtT1zdp7dc'" => ["sk_test_4eC39HqLyjWDarjtT1zdp7dc"];
        stripe_restricted: StripeKey, "rk_live_51H8abcdefghijklmnopqrstuv" => ["rk_live_51H8abcdefghijklmnopqrstuv"];
        stripe_publishable: StripeKey, "pk_live_4eC39HqLyjWDarjtT1zdp7dc" => [];
        stripe_short: StripeKey, "sk_live_abc" => [];
        stripe_embedded: StripeKey, "risk_live_4eC39HqLyjWDarjtT1zdp7dc" => [];
        google_key: GoogleApiKey, "key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&" => ["AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"];
        google_short: GoogleApiKey, "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQ" => [];
        google_long: GoogleApiKey, "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeX" => [];
        google_lowercase_prefix: GoogleApiKey, "aizaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe" => [];
        openai_legacy: OpenaiKey, "sk-ABCDEFGHIJKLMNOPQRSTT3BlbkFJabcdefghijklmnopqrst" => ["sk-ABCDEFGHIJKLMNOPQRSTT3BlbkFJabcdefghijklmnopqrst"];
        openai_project: OpenaiKey, "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9oPq2rSt5u_Vw8xYz1-Ab4cDe7fGh0iJk3lMn6oPq9rSt2uVw5xYz8T3BlbkFJAb1cDe4fGh7iJk0lMn3oPq6rSt9uVw2xYz5" => ["sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9oPq2rSt5u_Vw8xYz1-Ab4cDe7fGh0iJk3lMn6oPq9rSt2uVw5xYz8T3BlbkFJAb1cDe4fGh7iJk0lMn3oPq6rSt9uVw2xYz5"];
        openai_service_account: OpenaiKey, "sk-svcacct-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0" => ["sk-svcacct-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0"];
        openai_hex_body: OpenaiKey, "sk-0123456789abcdef0123456789abcdef" => ["sk-0123456789abcdef0123456789abcdef"];
        openai_not_anthropic: OpenaiKey, "sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9o" => [];
        openai_kebab_name: OpenaiKey, "sk-button-primary-large-disabled-state-2" => [];
        openai_one_class: OpenaiKey, "sk-abcdefghijklmnopqrstuvwxyzabcdefghij" => [];
        openai_short: OpenaiKey, "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1" => [];
        openai_embedded: OpenaiKey, "task-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0f" => [];
        anthropic_api: AnthropicKey, "x-api-key: sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9oPq2rSt5u_Vw8xYz1-Ab4cDe7fGh0iJk3lMn6oPq9rSt2uVw5AA\n" => ["sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9oPq2rSt5u_Vw8xYz1-Ab4cDe7fGh0iJk3lMn6oPq9rSt2uVw5AA"];
        anthropic_admin: AnthropicKey, "sk-ant-admin01-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c" => ["sk-ant-admin01-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"];
        anthropic_short: AnthropicKey, "sk-ant-api03-short" => [];
        anthropic_embedded: AnthropicKey, "risk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0f" => [];
        jwt_hs256: Jwt, "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c" => ["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"];
        jwt_unsigned: Jwt, "t=eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9. end" => ["eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."];
        jwt_in_json: Jwt, "{\"id_token\":\"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY2NvdW50cyJ9.c2lnbmF0dXJl\"}" => ["eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY2NvdW50cyJ9.c2lnbmF0dXJl"];
        jwt_two_segments: Jwt, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9" => [];
        jwt_payload_not_json: Jwt, "eyJhbGciOiJub25lIn0.abcdefghijk.sig" => [];
        jwt_embedded: Jwt, "xeyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.sig" => [];
    }

    #[test]
    fn many_begin_lines_without_end_stay_linear() {
        let text = "-----BEGIN PRIVATE KEY-----\nMIIE\n".repeat(20_000);
        assert_eq!(matches(PrivateKey, &text).len(), 20_000);
    }

    #[test]
    fn every_secret_is_in_the_group() {
        let group = Detector::lookup("secrets").unwrap();
        assert_eq!(group.len(), 10);
        assert!(group.iter().all(|d| d.name().starts_with("secrets.")));
    }
}
