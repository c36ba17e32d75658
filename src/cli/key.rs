//! `posturio key new` and `posturio key hash`: virtual API keys for consumers. A key is
//! `pst_` and 43 characters of base64url (32 random bytes from the operating system); the
//! policy holds only its SHA-256, `sha256:` and 64 lowercase hex digits, so a leaked policy
//! leaks no key.

use std::fmt::Write as _;
use std::io::Read;

use sha2::{Digest, Sha256};

use super::{CliError, Output};

/// What every key starts with, so that a secret scanner (and a person) can tell it for one.
const KEY_PREFIX: &str = "pst_";
/// Random bytes per key: 256 bits, well above the 128 a guessing attack would have to face.
const KEY_BYTES: usize = 32;

pub fn key(args: &[String]) -> Result<Output, CliError> {
    match args.split_first() {
        Some((command, rest)) if command == "new" => new_key(rest),
        Some((command, rest)) if command == "hash" => hash_key(rest),
        Some((command, _)) => Err(CliError::Usage(format!(
            "unknown key command \"{command}\"; use key new or key hash"
        ))),
        None => Err(CliError::Usage(
            "key needs a command: new or hash".to_owned(),
        )),
    }
}

/// A fresh key on the first line of standard output (alone, so `posturio key new | head -1`
/// or `$(posturio key new)` gives it); the line to add to the policy on standard error.
fn new_key(args: &[String]) -> Result<Output, CliError> {
    let consumer = match args {
        [] => "<name>".to_owned(),
        [flag, name] if flag == "--consumer" && !name.is_empty() => name.clone(),
        _ => {
            return Err(CliError::Usage(
                "key new takes only --consumer NAME".to_owned(),
            ))
        }
    };
    let mut random = [0u8; KEY_BYTES];
    getrandom::fill(&mut random).map_err(|error| {
        CliError::Read(format!(
            "the operating system gave no random bytes ({error}); no key was made"
        ))
    })?;
    let key = format!("{KEY_PREFIX}{}", base64url(&random));
    Ok(Output {
        code: 0,
        stderr: format!(
            "add to consumers.{consumer}.api_keys: \"{}\"",
            key_hash(key.as_bytes())
        ),
        stdout: key,
    })
}

/// The hash of the key on standard input: one trailing newline (or CRLF) is removed, nothing
/// else, so `echo "$KEY" | posturio key hash` and `printf %s "$KEY" | ...` agree.
fn hash_key(args: &[String]) -> Result<Output, CliError> {
    if !args.is_empty() {
        return Err(CliError::Usage(
            "key hash takes no arguments: it reads the key from standard input".to_owned(),
        ));
    }
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| CliError::Read(format!("standard input: cannot read: {error}")))?;
    let key = strip_line_end(&input);
    if key.is_empty() {
        return Err(CliError::Read(
            "standard input holds no key; pipe the key in: echo \"$KEY\" | posturio key hash"
                .to_owned(),
        ));
    }
    Ok(Output {
        code: 0,
        stdout: key_hash(key),
        stderr: String::new(),
    })
}

/// `input` without one trailing `\n` or `\r\n`.
fn strip_line_end(input: &[u8]) -> &[u8] {
    let line = input.strip_suffix(b"\n").unwrap_or(input);
    if line.len() < input.len() {
        line.strip_suffix(b"\r").unwrap_or(line)
    } else {
        input
    }
}

/// `sha256:` and the 64 lowercase hex digits of the key's SHA-256, as the policy lists it.
pub fn key_hash(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Base64url without padding (RFC 4648, section 5): safe in headers, URLs and shells.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let symbol = |six: u8| {
        ALPHABET
            .get(usize::from(six & 63))
            .map_or('?', |byte| char::from(*byte))
    };
    let mut text = String::with_capacity(bytes.len().div_ceil(3).saturating_mul(4));
    for chunk in bytes.chunks(3) {
        let (a, b, c) = match *chunk {
            [a] => (a, 0, 0),
            [a, b] => (a, b, 0),
            [a, b, c] => (a, b, c),
            _ => continue,
        };
        let sixes = [
            a.wrapping_shr(2),
            a.wrapping_shl(4) | b.wrapping_shr(4),
            b.wrapping_shl(2) | c.wrapping_shr(6),
            c,
        ];
        // A chunk of n bytes carries n + 1 symbols.
        for six in sixes.into_iter().take(chunk.len().saturating_add(1)) {
            text.push(symbol(six));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected, "{input}");
        }
        // The two symbols where base64url differs from base64.
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; KEY_BYTES]).len(), 43);
    }

    #[test]
    fn hash_is_sha256_in_lowercase_hex() {
        assert_eq!(
            key_hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn one_line_end_is_removed() {
        for (input, expected) in [
            (&b"key\n"[..], &b"key"[..]),
            (b"key\r\n", b"key"),
            (b"key", b"key"),
            (b"key\n\n", b"key\n"),
            (b"key\r", b"key\r"),
            (b" key \n", b" key "),
            (b"\n", b""),
        ] {
            assert_eq!(strip_line_end(input), expected, "{input:?}");
        }
    }
}
