//! A request, in the loose HTTP/1 form of `posturio_fuzz::parse_request`, through
//! `Policy::on_headers` and `Policy::on_body` with the example policy (and the detector
//! policy of the benchmarks, once this build accepts it). Besides not panicking, every
//! decision must pass `posturio_fuzz::evaluate_and_check`: no 500, a forwarded model is in the
//! catalogue, approved and routed to its provider, a rewritten body is strict JSON naming the
//! upstream model and otherwise unchanged, and a refusal never repeats the body's secrets.
//! Then a secret is put at the end of one of the body's strings (`check_planted_secret`): a
//! request whose body was read must then be refused, whatever follows that string.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use posturio::policy::Policy;
use posturio_fuzz::{check_planted_secret, evaluate_and_check, parse_request, Catalogue};

const EXAMPLE: &str = include_str!("../../envoy/policy.json");
const DETECTORS: &str = include_str!("../../benches/policy-detectors.json");

struct Policies {
    all: Vec<(Policy, Catalogue)>,
}

fn policies() -> &'static Policies {
    static POLICIES: OnceLock<Policies> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let mut all = Vec::new();
        for text in [EXAMPLE, DETECTORS] {
            // The detector policy is refused by builds without prompt inspection.
            if let Ok(policy) = Policy::from_json(text.as_bytes()) {
                all.push((policy, Catalogue::from_json(text)));
            }
        }
        assert!(!all.is_empty(), "the example policy does not compile");
        Policies { all }
    })
}

fuzz_target!(|data: &[u8]| {
    let request = parse_request(data);
    let choice = data.iter().fold(0usize, |hash, &byte| {
        hash.wrapping_mul(31).wrapping_add(usize::from(byte))
    });
    for (policy, catalogue) in &policies().all {
        evaluate_and_check(policy, catalogue, &request);
        check_planted_secret(policy, catalogue, &request, choice);
    }
});
