//! Native micro-benchmark of the policy layer: `Policy::on_headers` then `Policy::on_body`, on
//! the chat bodies the load benchmark sends (benches/lab.py builds the same bytes by the same
//! rules), with the headers Envoy hands the filter.
//!
//! ```text
//! cargo bench --bench policy              # every case
//! cargo bench --bench policy -- 64k      # the cases whose name contains "64k"
//! POSTURIO_BENCH_SECS=3 cargo bench --bench policy
//! ```
//!
//! Run by `cargo test` (without `--bench`), each case runs once and its decision is checked.
// A benchmark reports a broken setup by failing loudly; the panic-free rules are for the
// filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use posturio::pipeline::classification::{classify_request, IdentityInputs};
use posturio::pipeline::decision::decide_body;
use posturio::pipeline::Decision;
use posturio::policy::extract::read_body;
use posturio::policy::Policy;

const EXAMPLE_POLICY: &str = include_str!("../envoy/policy.json");
const DETECTORS_POLICY: &str = include_str!("policy-detectors.json");

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// --- the load benchmark's bodies (keep in step with benches/lab.py) ------------------------

const PROSE: [&str; 12] = [
    "The quarterly report shows that the ingestion pipeline handled more traffic than planned.",
    "Please summarise the main risks in plain words for a reader who has not seen the design.",
    "Each service writes its logs to the shared collector, which keeps them for thirty days.",
    "The migration moved the billing tables to the new cluster without a maintenance window.",
    "We want the answer as a short list, with the most urgent item first and no marketing tone.",
    "Latency at the ninety-ninth percentile rose after the cache was resized last Tuesday.",
    "The on-call engineer rolled back the change and opened a ticket to find the root cause.",
    "A customer asked whether their data leaves the region when the assistant is used.",
    "Draft a reply that explains the retention policy and links to the public documentation.",
    "The test suite runs in eleven minutes on the build farm and in four on a laptop.",
    "Compare the two proposals on cost, operational burden and how easy they are to undo.",
    "The team agreed to review the runbook together before the next release goes out.",
];

const SYSTEM_PROMPT: &str = "You are a careful assistant for an internal engineering team. \
                             Answer briefly and cite the documents you use.";

/// A chat completion request of exactly `size` bytes: a system prompt, alternating user and
/// assistant turns of prose, and a last user turn cut to fit.
fn chat_body(size: usize, model: &str) -> Vec<u8> {
    let head = format!(r#"{{"model":"{model}","messages":["#);
    let tail = r#"],"temperature":0.2,"max_tokens":512}"#;
    let last_empty = r#"{"role":"user","content":""}"#;
    let mut parts = vec![format!(
        r#"{{"role":"system","content":"{SYSTEM_PROMPT}"}}"#
    )];
    let length = |parts: &[String]| head.len() + parts.join(",").len() + tail.len();
    let mut turn = 0;
    loop {
        let role = if turn % 2 == 0 { "user" } else { "assistant" };
        let content: Vec<&str> = (0..7)
            .map(|j| PROSE[(turn * 5 + j) % PROSE.len()])
            .collect();
        let message = format!(r#"{{"role":"{role}","content":"{}"}}"#, content.join(" "));
        if length(&parts) + 1 + message.len() + 1 + last_empty.len() > size {
            break;
        }
        parts.push(message);
        turn += 1;
    }
    let room = size
        .checked_sub(length(&parts) + 1 + last_empty.len())
        .unwrap_or_else(|| panic!("a chat body cannot be as small as {size} bytes"));
    let stream = format!("{} ", PROSE.join(" "));
    let filler: String = stream.chars().cycle().take(room).collect();
    parts.push(format!(r#"{{"role":"user","content":"{filler}"}}"#));
    let body = format!("{head}{}{tail}", parts.join(",")).into_bytes();
    assert_eq!(body.len(), size);
    body
}

/// The request headers as Envoy hands them to the filter for such a request.
fn envoy_headers(path: &str, length: usize) -> Vec<(String, Vec<u8>)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", path),
        (":method", "POST"),
        (":scheme", "http"),
        ("user-agent", "OpenAI/Python 1.99.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("authorization", "Bearer sk-bench-not-a-real-key"),
        ("content-length", &length.to_string()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
    .collect()
}

// --- cases -----------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Expect {
    /// Forwarded; with `Some(model)` the body is rewritten to that upstream model.
    Forward(Option<&'static str>),
    /// Refused with this status.
    Refuse(u16),
    /// Only `read_body` (the strict JSON pass and the model lookup) is measured.
    ParseOnly,
}

struct Case {
    name: &'static str,
    detectors: bool,
    size: usize,
    model: &'static str,
    expect: Expect,
}

const fn case(
    name: &'static str,
    detectors: bool,
    size: usize,
    model: &'static str,
    expect: Expect,
) -> Case {
    Case {
        name,
        detectors,
        size,
        model,
        expect,
    }
}

const CASES: &[Case] = &[
    case("route-1k", false, KIB, "gpt-4o-mini", Expect::Forward(None)),
    case(
        "route-64k",
        false,
        64 * KIB,
        "gpt-4o-mini",
        Expect::Forward(None),
    ),
    case("route-1m", false, MIB, "gpt-4o-mini", Expect::Forward(None)),
    case(
        "alias-1k",
        false,
        KIB,
        "fast",
        Expect::Forward(Some("gpt-4o-mini")),
    ),
    case(
        "alias-64k",
        false,
        64 * KIB,
        "fast",
        Expect::Forward(Some("gpt-4o-mini")),
    ),
    case(
        "alias-1m",
        false,
        MIB,
        "fast",
        Expect::Forward(Some("gpt-4o-mini")),
    ),
    case("denied-1k", false, KIB, "gpt-4o", Expect::Refuse(403)),
    case("parse-1k", false, KIB, "gpt-4o-mini", Expect::ParseOnly),
    case(
        "parse-64k",
        false,
        64 * KIB,
        "gpt-4o-mini",
        Expect::ParseOnly,
    ),
    case("parse-1m", false, MIB, "gpt-4o-mini", Expect::ParseOnly),
    case(
        "detectors-1k",
        true,
        KIB,
        "gpt-4o-mini",
        Expect::Forward(None),
    ),
    case(
        "detectors-64k",
        true,
        64 * KIB,
        "gpt-4o-mini",
        Expect::Forward(None),
    ),
    case(
        "detectors-1m",
        true,
        MIB,
        "gpt-4o-mini",
        Expect::Forward(None),
    ),
];

/// One evaluation of a request, as the filter does it: headers, then the whole body.
fn evaluate(policy: &Policy, headers: &[(String, Vec<u8>)], body: &[u8]) -> Decision {
    match classify_request(policy, headers, &IdentityInputs::default()) {
        Ok(pending) => decide_body(policy, &pending, body).0,
        Err(reply) => Decision::Refuse(reply),
    }
}

fn check(case: &Case, policy: &Policy, headers: &[(String, Vec<u8>)], body: &[u8]) {
    if let Expect::ParseOnly = case.expect {
        let parsed = read_body(body).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(parsed.model.name, case.model, "{}", case.name);
        return;
    }
    match (evaluate(policy, headers, body), case.expect) {
        (Decision::Forward(forward), Expect::Forward(rewrite)) => {
            assert_eq!(forward.cluster, "openai", "{}", case.name);
            assert!(forward.audited.is_none(), "{}", case.name);
            match (rewrite, &forward.body) {
                (None, None) => {}
                (Some(model), Some(new_body)) => {
                    let value: serde_json::Value = serde_json::from_slice(new_body).unwrap();
                    assert_eq!(value["model"], model, "{}", case.name);
                }
                (want, got) => panic!(
                    "{}: expected rewrite {want:?}, got a body: {}",
                    case.name,
                    got.is_some()
                ),
            }
        }
        (Decision::Refuse(reply), Expect::Refuse(status)) => {
            assert_eq!(reply.status(), status, "{}: {}", case.name, reply.message);
        }
        (Decision::Forward(_), _) => panic!("{}: forwarded, expected a refusal", case.name),
        (Decision::AnswerLocally(_), _) => panic!("{}: answered locally", case.name),
        (Decision::Refuse(reply), _) => {
            panic!(
                "{}: refused ({}), expected forwarding",
                case.name, reply.message
            )
        }
    }
}

/// Median time per iteration over batches of about 20 ms, for about `budget` in all.
fn measure(budget: Duration, mut run: impl FnMut()) -> Duration {
    let mut per_batch = 1u32;
    loop {
        let started = Instant::now();
        for _ in 0..per_batch {
            run();
        }
        if started.elapsed() >= Duration::from_millis(20) || per_batch >= 1 << 24 {
            break;
        }
        per_batch *= 2;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || samples.len() < 5 {
        let batch = Instant::now();
        for _ in 0..per_batch {
            run();
        }
        samples.push(batch.elapsed() / per_batch);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benchmarking = args.iter().any(|arg| arg == "--bench");
    let filters: Vec<&str> = args
        .iter()
        .filter(|arg| !arg.starts_with('-'))
        .map(String::as_str)
        .collect();
    let budget = Duration::from_secs_f64(
        std::env::var("POSTURIO_BENCH_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(1.0),
    );

    // Routing only, as the load benchmark runs it: the example policy without its rules.
    let mut routing: serde_json::Value = serde_json::from_str(EXAMPLE_POLICY).unwrap();
    routing.as_object_mut().unwrap().remove("rules");
    let example = Policy::from_json(routing.to_string().as_bytes())
        .unwrap_or_else(|errors| panic!("envoy/policy.json: {errors:?}"));
    let detectors = Policy::from_json(DETECTORS_POLICY.as_bytes())
        .map_err(|errors| errors.first().map(ToString::to_string).unwrap_or_default());

    if benchmarking {
        println!(
            "{:<16} {:>9} {:>14} {:>10}",
            "case", "body", "ns/request", "MB/s"
        );
    }
    let mut checked = 0;
    for case in CASES {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f)) {
            continue;
        }
        let policy = match (case.detectors, &detectors) {
            (false, _) => &example,
            (true, Ok(policy)) => policy,
            (true, Err(error)) => {
                println!("{:<16} skipped: the policy is refused ({error})", case.name);
                continue;
            }
        };
        let body = chat_body(case.size, case.model);
        let headers = envoy_headers("/v1/chat/completions", body.len());
        check(case, policy, &headers, &body);
        checked += 1;
        if !benchmarking {
            continue;
        }
        let per_request = match case.expect {
            Expect::ParseOnly => measure(budget, || {
                black_box(read_body(black_box(&body)).ok());
            }),
            _ => measure(budget, || {
                black_box(evaluate(policy, black_box(&headers), black_box(&body)));
            }),
        };
        let nanos = per_request.as_secs_f64() * 1e9;
        let size = if case.size >= MIB {
            format!("{} MiB", case.size / MIB)
        } else {
            format!("{} KiB", case.size / KIB)
        };
        println!(
            "{:<16} {:>9} {:>14.0} {:>10.0}",
            case.name,
            size,
            nanos,
            case.size as f64 / nanos * 1e3
        );
    }
    if !benchmarking {
        println!(
            "policy bench: {checked} cases checked (run `cargo bench --bench policy` to time them)"
        );
    }
}
