//! Values shared by every worker of this Envoy (budget counters), as proxy-wasm's shared data:
//! each key holds bytes and a version; a write names the version it read and fails when
//! another write came first, so the caller reads again and retries (compare-and-swap).
//!
//! One Envoy process loads the module once, so one map serves every worker and every filter
//! configuration, as one Wasm VM id does.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A value and its version (the compare-and-swap token; never 0, which means "unconditional").
struct Entry {
    value: Vec<u8>,
    version: u32,
}

static SHARED: Mutex<Option<HashMap<String, Entry>>> = Mutex::new(None);

/// The value under `key` and its version; `(None, None)` when the key was never written.
pub fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    // A panic while the lock was held cannot leave an entry half-written (each write is one
    // insert), so a poisoned lock is still consistent.
    let shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    match shared.as_ref().and_then(|map| map.get(key)) {
        Some(entry) => (Some(entry.value.clone()), Some(entry.version)),
        None => (None, None),
    }
}

/// Stores `value` unless `cas` names a version other than the current one; returns false
/// then. `None` (or 0) writes unconditionally, and so does any write to a key never written
/// (as Envoy's proxy-wasm shared data does).
pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let map = shared.get_or_insert_with(HashMap::new);
    let current = map.get(key).map(|entry| entry.version);
    if let (Some(expected), Some(current)) = (cas.filter(|cas| *cas != 0), current) {
        if current != expected {
            return false;
        }
    }
    // Versions wrap, skipping 0: a reader that held a version through 2^32 writes is not a
    // concern for counters rewritten once per request.
    let version = match current.unwrap_or(0).wrapping_add(1) {
        0 => 1,
        next => next,
    };
    map.insert(
        key.to_owned(),
        Entry {
            value: value.to_vec(),
            version,
        },
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_version_fails_and_a_fresh_one_succeeds() {
        let key = "shared_data_tests.cas";
        assert_eq!(get(key), (None, None));
        assert!(set(key, b"a", None));
        let (value, version) = get(key);
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        let version = version.unwrap();
        assert!(set(key, b"b", Some(version)));
        assert!(!set(key, b"c", Some(version)), "the version moved on");
        assert_eq!(get(key).0.as_deref(), Some(&b"b"[..]));
        assert!(set(key, b"d", Some(0)), "0 writes unconditionally");
    }

    #[test]
    fn a_key_never_written_takes_any_version() {
        assert!(set("shared_data_tests.absent", b"x", Some(7)));
    }
}
