//! Hostile traffic in real Envoy: a few thousand requests from many threads and connections,
//! malformed and abusive ones mixed with valid ones, over HTTP/1.1 and HTTP/2 (h2c).
//!
//! Asserted: no 5xx at all; every valid request served (200) with the right model at the
//! provider, and nothing else reaching it; Envoy's own counters agree; the Wasm VM never fails.

// Test helpers index JSON and fail loudly; the panic-free rules are for the filter's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{http, Connection, Envoy, EnvoyOptions, MockProvider, Response};
use serde_json::{json, Value};

/// Client threads, each with its own connections.
const THREADS: usize = 12;
/// Scenarios per thread; one scenario is one to twenty requests.
const ROUNDS: usize = 160;
/// The test refuses to run longer than this; it normally takes a fraction of it.
const DEADLINE: Duration = Duration::from_secs(50);
const READ_TIMEOUT: Duration = Duration::from_secs(15);

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";

/// What one request must get.
#[derive(Clone, Debug)]
enum Expect {
    /// Served by the provider: 200, and the provider saw `upstream` as the model.
    Served { id: String, upstream: &'static str },
    /// Refused by Posturio with this status and code.
    Refused(u16, &'static str),
    /// Answered by Envoy itself, before Posturio (header limits).
    Envoy(u16),
    /// The client gave up mid-request: no response, or a 4xx.
    Abandoned,
}

/// What all threads saw.
#[derive(Default)]
struct Tally {
    requests: usize,
    statuses: BTreeMap<u16, usize>,
    /// Request id → the model the provider must have received.
    served: BTreeMap<String, &'static str>,
    /// Ids of requests that must never reach the provider.
    refused_ids: BTreeSet<String>,
    /// Pipelined requests left unanswered when Envoy closed the connection after a refusal.
    pipeline_cut: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, got: Result<Response, String>, expect: &Expect) {
        self.requests += 1;
        let response = match (got, expect) {
            (Err(_), Expect::Abandoned) => return,
            (Err(error), _) => {
                self.failures.push(format!("{what}: no response: {error}"));
                return;
            }
            (Ok(response), _) => response,
        };
        *self.statuses.entry(response.status).or_default() += 1;
        if response.status >= 500 {
            self.failures
                .push(format!("{what}: a 5xx answer: {response:?}"));
            return;
        }
        let ok = match expect {
            Expect::Served { id, upstream } => {
                let served = response.status == 200
                    && serde_json::from_slice::<Value>(&response.body)
                        .is_ok_and(|body| body["model"] == *upstream);
                if served {
                    self.served.insert(id.clone(), upstream);
                }
                served
            }
            Expect::Refused(status, code) => {
                response.status == *status
                    && response.header("x-posturio-code") == Some(code)
                    && serde_json::from_slice::<Value>(&response.body).is_ok()
            }
            Expect::Envoy(status) => response.status == *status,
            Expect::Abandoned => (400..500).contains(&response.status),
        };
        if !ok {
            self.failures
                .push(format!("{what}: expected {expect:?}, got {response:?}"));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.served.extend(other.served);
        self.refused_ids.extend(other.refused_ids);
        self.pipeline_cut += other.pipeline_cut;
        self.failures.extend(other.failures);
    }
}

// --- request bodies --------------------------------------------------------------------

fn chat(model: &str, id: &str, text: &str) -> Vec<u8> {
    json!({"model": model, "user": id, "messages": [{"role": "user", "content": text}]})
        .to_string()
        .into_bytes()
}

fn anthropic(model: &str, id: &str) -> Vec<u8> {
    json!({"model": model, "max_tokens": 16, "metadata": {"user_id": id},
           "messages": [{"role": "user", "content": "Say hi"}]})
    .to_string()
    .into_bytes()
}

/// The id a valid request carries, as the provider received it.
fn id_of(body: &Value) -> Option<String> {
    body["user"]
        .as_str()
        .or(body["metadata"]["user_id"].as_str())
        .map(str::to_string)
}

fn raw(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: llm\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn json_headers(close: bool) -> Vec<(&'static str, String)> {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if close {
        headers.push(("Connection", "close".to_string()));
    }
    headers
}

/// A real gzip member holding `data` in one stored (uncompressed) deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65536);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // BFINAL, stored
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// --- scenarios -------------------------------------------------------------------------

/// Bodies made once and shared by every thread.
struct Shared {
    port: u16,
    /// A valid chat body of about 3.5 MiB, under the policy's 4 MiB limit.
    huge_text: String,
    /// 5 MiB of JSON, over the limit.
    over_limit: Vec<u8>,
    deep: Vec<u8>,
}

fn send(port: u16, bytes: &[u8]) -> Result<Response, String> {
    let mut conn = Connection::try_open(port)?;
    conn.set_read_timeout(READ_TIMEOUT);
    conn.try_send(bytes)?;
    conn.try_read_response()
}

fn scenario(shared: &Shared, thread: usize, round: usize, tally: &mut Tally) {
    let port = shared.port;
    let id = format!("h{thread}-{round}");
    let served = |upstream| Expect::Served {
        id: id.clone(),
        upstream,
    };
    let close = json_headers(true);
    match (thread * 7 + round) % 24 {
        0..=3 => {
            let body = chat("gpt-4o-mini", &id, "Say hi");
            let got = send(port, &raw("POST", CHAT, &close, &body));
            tally.check("valid", got, &served("gpt-4o-mini"));
        }
        4 | 5 => {
            let body = chat("fast", &id, "alias");
            let got = send(port, &raw("POST", CHAT, &close, &body));
            tally.check("alias", got, &served("gpt-4o-mini"));
        }
        6 => {
            let body = anthropic("claude-haiku-4", &id);
            let got = send(port, &raw("POST", MESSAGES, &close, &body));
            tally.check("anthropic", got, &served("claude-haiku-4-5-20251001"));
        }
        7 => {
            let mut headers = close.clone();
            headers.push(("x-posturio-consumer", "search-team".to_string()));
            headers.push(("x-posturio-cluster", "anthropic".to_string()));
            let body = chat("gpt-4o", &id, "team, with a spoofed route header");
            let got = send(port, &raw("POST", CHAT, &headers, &body));
            tally.check("team", got, &served("gpt-4o"));
        }
        8 => {
            tally.refused_ids.insert(id.clone());
            let body = chat("gpt-4o", &id, "not approved for default");
            let got = send(port, &raw("POST", CHAT, &close, &body));
            tally.check("denied", got, &Expect::Refused(403, "model_not_approved"));
        }
        9 => {
            tally.refused_ids.insert(id.clone());
            let bodies: [(&[u8], &str); 7] = [
                (b"{\"model\":\"gpt-4o-mini\",\"messages\":[", "invalid_json"),
                (b"{\"model\":\"gpt-4o-mini\",}", "invalid_json"),
                (
                    b"{\"model\":\"gpt-4o-mini\",\"x\":\"\xff\xfe\"}",
                    "invalid_json",
                ),
                (
                    b"{\"model\":\"gpt-4o-mini\",\"model\":\"gpt-4o\"}",
                    "duplicate_key",
                ),
                (
                    b"{\"model\":\"gpt-4o-mini\"} {\"model\":\"gpt-4o\"}",
                    "invalid_json",
                ),
                // Keys equal once case is folded: decoders that ignore case read the second.
                (
                    b"{\"model\":\"gpt-4o-mini\",\"Model\":\"gpt-4o\"}",
                    "duplicate_key",
                ),
                (
                    "{\"model\":\"gpt-4o-mini\",\"messages\":[],\"me\u{17f}\u{17f}ages\":[]}"
                        .as_bytes(),
                    "duplicate_key",
                ),
            ];
            let (body, code) = bodies[round % bodies.len()];
            let got = send(port, &raw("POST", CHAT, &close, body));
            tally.check("malformed", got, &Expect::Refused(400, code));
        }
        10 => {
            // The client stops mid-body: half-closes, or drops the connection unread.
            let body = chat("gpt-4o-mini", &id, &"x".repeat(2000));
            let bytes = raw("POST", CHAT, &close, &body);
            let cut = bytes.len() - 1500;
            tally.refused_ids.insert(id.clone());
            if round % 2 == 0 {
                let got = http::try_send_raw_then_close(port, &bytes[..cut]);
                tally.check("truncated", got, &Expect::Abandoned);
            } else if let Ok(mut conn) = Connection::try_open(port) {
                let _ = conn.try_send(&bytes[..cut]);
                tally.requests += 1;
            }
        }
        11 => {
            // Large headers: under Envoy's 60 KiB limit they reach Posturio and pass.
            let mut headers = close.clone();
            headers.push(("x-padding", "p".repeat(20 * 1024)));
            headers.extend((0..60).map(|i| ("x-many", format!("value-{i}"))));
            let body = chat("gpt-4o-mini", &id, "big headers");
            let got = send(port, &raw("POST", CHAT, &headers, &body));
            tally.check("large headers", got, &served("gpt-4o-mini"));
        }
        12 => {
            tally.refused_ids.insert(id.clone());
            let mut headers = close.clone();
            if round % 2 == 0 {
                headers.push(("x-padding", "p".repeat(80 * 1024)));
            } else {
                headers.extend((0..120).map(|i| ("x-many", format!("value-{i}"))));
            }
            let body = chat("gpt-4o-mini", &id, "too many header bytes");
            let got = send(port, &raw("POST", CHAT, &headers, &body));
            tally.check("oversized headers", got, &Expect::Envoy(431));
        }
        13 => {
            tally.refused_ids.insert(id.clone());
            // Over the body limit: declared (refused on the headers) or chunked (refused as
            // the limit is crossed, while the client is still sending).
            let got = if round % 2 == 0 {
                // Envoy answers and closes at once: send the head and a little of the body.
                let bytes = raw("POST", CHAT, &close, &shared.over_limit);
                let head = bytes.len() - shared.over_limit.len();
                send(port, &bytes[..head + 64 * 1024])
            } else {
                let mut headers = close.clone();
                headers.push(("Transfer-Encoding", "chunked".to_string()));
                let mut conn = Connection::try_open(port).unwrap();
                conn.set_read_timeout(READ_TIMEOUT);
                conn.send(&raw("POST", CHAT, &headers, b""));
                for piece in shared.over_limit.chunks(256 * 1024) {
                    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                    chunk.extend_from_slice(piece);
                    chunk.extend_from_slice(b"\r\n");
                    if conn.try_send(&chunk).is_err() {
                        break;
                    }
                }
                let _ = conn.try_send(b"0\r\n\r\n");
                conn.try_read_response()
            };
            tally.check("over limit", got, &Expect::Refused(413, "body_too_large"));
        }
        14 => {
            tally.refused_ids.insert(id.clone());
            let got = send(port, &raw("POST", CHAT, &close, &shared.deep));
            tally.check("deep nesting", got, &Expect::Refused(400, "invalid_json"));
        }
        15 => {
            // Nested, but within the limit: served.
            let nested = format!(
                "{{\"model\":\"gpt-4o-mini\",\"user\":\"{id}\",\"messages\":[],\"metadata\":{}1{}}}",
                "{\"a\":".repeat(50),
                "}".repeat(50)
            );
            let got = send(port, &raw("POST", CHAT, &close, nested.as_bytes()));
            tally.check("nested", got, &served("gpt-4o-mini"));
        }
        16 => {
            tally.refused_ids.insert(id.clone());
            let mut headers = close.clone();
            headers.push(("Content-Encoding", "gzip".to_string()));
            let body = gzip_stored(&chat("gpt-4o-mini", &id, "compressed"));
            let got = send(port, &raw("POST", CHAT, &headers, &body));
            tally.check("gzip", got, &Expect::Refused(415, "unsupported_media_type"));
        }
        17 => {
            tally.refused_ids.insert(id.clone());
            let types = [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "application/json; charset=iso-8859-1",
                "application/jsonx",
            ];
            let headers = vec![
                ("Content-Type", types[round % types.len()].to_string()),
                ("Connection", "close".to_string()),
            ];
            let body = chat("gpt-4o-mini", &id, "wrong type");
            let got = send(port, &raw("POST", CHAT, &headers, &body));
            tally.check(
                "content type",
                got,
                &Expect::Refused(415, "unsupported_media_type"),
            );
        }
        18 => {
            // A slow sender: the head in three pieces, the body in small ones, with pauses.
            let body = chat("fast", &id, "slowly");
            let bytes = raw("POST", CHAT, &close, &body);
            let got = (|| {
                let mut conn = Connection::try_open(port)?;
                conn.set_read_timeout(READ_TIMEOUT);
                for piece in bytes.chunks(bytes.len() / 12 + 1) {
                    conn.try_send(piece)?;
                    std::thread::sleep(Duration::from_millis(3));
                }
                conn.try_read_response()
            })();
            tally.check("slow sender", got, &served("gpt-4o-mini"));
        }
        19 => pipelined(port, &id, false, tally),
        20 => pipelined(port, &id, true, tally),
        21 => {
            if round % 3 == 0 {
                h2c(port, &id, tally);
            } else {
                pipelined(port, &id, round % 3 == 1, tally);
            }
        }
        22 if thread < 2 && round % 20 == 2 => {
            let body = chat("gpt-4o-mini", &id, &shared.huge_text);
            let got = send(port, &raw("POST", CHAT, &close, &body));
            tally.check("huge body", got, &served("gpt-4o-mini"));
        }
        _ => {
            // Keep-alive: three valid requests in turn on one connection.
            let mut conn = Connection::try_open(port).unwrap();
            conn.set_read_timeout(READ_TIMEOUT);
            for k in 0..3 {
                let id = format!("{id}-{k}");
                let body = chat("gpt-4o-mini", &id, "keep-alive");
                let got = conn
                    .try_send(&raw("POST", CHAT, &json_headers(k == 2), &body))
                    .and_then(|()| conn.try_read_response());
                tally.check(
                    "keep-alive",
                    got,
                    &Expect::Served {
                        id,
                        upstream: "gpt-4o-mini",
                    },
                );
            }
        }
    }
}

/// Requests written at once on one keep-alive connection; the answers come back in order.
///
/// All valid: every one is served. Mixed: Envoy 1.40 closes an HTTP/1.1 connection whose next
/// pipelined request arrives while a Wasm filter's local reply is being sent ("dispatch error:
/// Too many responses queued"), whatever the filter; so after the first refusal the rest may
/// get no answer, and then they must not have reached the provider either.
fn pipelined(port: u16, id: &str, mixed: bool, tally: &mut Tally) {
    let cases: &[(&str, &str, Option<&'static str>)] = if mixed {
        &[
            ("gpt-4o-mini", CHAT, Some("gpt-4o-mini")),
            ("fast", CHAT, Some("gpt-4o-mini")),
            ("gpt-4o", CHAT, None),
            ("dup", CHAT, None),
            (
                "claude-haiku-4",
                MESSAGES,
                Some("claude-haiku-4-5-20251001"),
            ),
            ("gpt-5", CHAT, None),
            ("gpt-4o-mini", CHAT, Some("gpt-4o-mini")),
            ("fast", CHAT, Some("gpt-4o-mini")),
        ]
    } else {
        &[
            ("gpt-4o-mini", CHAT, Some("gpt-4o-mini")),
            ("fast", CHAT, Some("gpt-4o-mini")),
            (
                "claude-haiku-4",
                MESSAGES,
                Some("claude-haiku-4-5-20251001"),
            ),
            ("gpt-4o-mini", CHAT, Some("gpt-4o-mini")),
            ("fast", CHAT, Some("gpt-4o-mini")),
            ("gpt-4o-mini", CHAT, Some("gpt-4o-mini")),
        ]
    };
    let mut bytes = Vec::new();
    let mut expects = Vec::new();
    for (k, (model, path, upstream)) in cases.iter().enumerate() {
        let id = format!("{id}-p{k}");
        let body = match (*model, *path) {
            ("dup", _) => format!("{{\"model\":\"gpt-4o-mini\",\"user\":\"{id}\",\"user\":\"x\"}}")
                .into_bytes(),
            (model, MESSAGES) => anthropic(model, &id),
            (model, _) => chat(model, &id, "pipelined"),
        };
        bytes.extend(raw(
            "POST",
            path,
            &json_headers(k == cases.len() - 1),
            &body,
        ));
        let expect = match (*model, upstream) {
            (_, Some(upstream)) => Expect::Served {
                id: id.clone(),
                upstream,
            },
            ("gpt-4o", None) => Expect::Refused(403, "model_not_approved"),
            ("dup", None) => Expect::Refused(400, "duplicate_key"),
            _ => Expect::Refused(403, "model_not_found"),
        };
        if !matches!(expect, Expect::Served { .. }) {
            tally.refused_ids.insert(id.clone());
        }
        expects.push((id, expect));
    }
    let mut conn = Connection::try_open(port).unwrap();
    conn.set_read_timeout(READ_TIMEOUT);
    let sent = conn.try_send(&bytes);
    let mut refused = false;
    for (id, expect) in &expects {
        let got = sent.clone().and_then(|()| conn.try_read_response());
        if got.is_err() && refused {
            // Cut by Envoy after a local reply: this one must never reach the provider.
            tally.requests += 1;
            tally.pipeline_cut += 1;
            tally.refused_ids.insert(id.clone());
            continue;
        }
        refused |= got.as_ref().is_ok_and(|r| r.status != 200);
        tally.check("pipelined", got, expect);
    }
}

/// Twenty streams multiplexed on one HTTP/2 connection without TLS (prior knowledge), two of
/// them reset by the client mid-body, sent by tests/h2c_client.py.
fn h2c(port: u16, id: &str, tally: &mut Tally) {
    let mut requests = Vec::new();
    let mut expects = Vec::new();
    for k in 0..20 {
        let id = format!("{id}-s{k}");
        let served = Expect::Served {
            id: id.clone(),
            upstream: "gpt-4o-mini",
        };
        let (body, content_type, reset_after, expect) = match k % 10 {
            0..=2 => (
                chat("gpt-4o-mini", &id, "h2"),
                "application/json",
                None,
                served,
            ),
            3 => (
                chat("fast", &id, &"long ".repeat(40_000)),
                "application/json",
                None,
                served,
            ),
            4 | 5 => (chat("fast", &id, "h2"), "application/json", None, served),
            6 => (
                chat("gpt-4o", &id, "h2"),
                "application/json",
                None,
                Expect::Refused(403, "model_not_approved"),
            ),
            7 => (
                chat("gpt-4o-mini", &id, "h2"),
                "text/plain",
                None,
                Expect::Refused(415, "unsupported_media_type"),
            ),
            8 => (
                b"{\"model\":\"gpt-4o-mini\",".to_vec(),
                "application/json",
                None,
                Expect::Refused(400, "invalid_json"),
            ),
            _ => (
                chat("gpt-4o-mini", &id, &"cut ".repeat(1000)),
                "application/json",
                Some(1000),
                Expect::Abandoned,
            ),
        };
        if !matches!(expect, Expect::Served { .. }) {
            tally.refused_ids.insert(id.clone());
        }
        let mut request = json!({
            "method": "POST",
            "path": format!("{CHAT}?k={k}"),
            "headers": [["content-type", content_type]],
            "body_b64": base64::engine::general_purpose::STANDARD.encode(&body),
        });
        if let Some(cut) = reset_after {
            request["reset_after"] = json!(cut);
        }
        requests.push(request);
        expects.push(expect);
    }
    let mut child = Command::new(common::mock::python())
        .arg(common::repo_path("tests/h2c_client.py"))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(requests).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let results: Vec<Value> = match serde_json::from_slice(&output.stdout) {
        Ok(results) => results,
        Err(error) => {
            tally.failures.push(format!(
                "h2c client failed ({error}): {}",
                String::from_utf8_lossy(&output.stderr)
            ));
            return;
        }
    };
    for (result, expect) in results.iter().zip(&expects) {
        if result["reset"] == true {
            tally.requests += 1;
            continue;
        }
        let got = match result["status"].as_u64() {
            Some(status) => Ok(Response {
                status: status as u16,
                reason: String::new(),
                headers: result["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pair| {
                        (
                            pair[0].as_str().unwrap().to_string(),
                            pair[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                body: base64::engine::general_purpose::STANDARD
                    .decode(result["body_b64"].as_str().unwrap())
                    .unwrap(),
                chunked: false,
                chunk_sizes: Vec::new(),
                trailers: Vec::new(),
                interim: Vec::new(),
            }),
            None => Err(result["error"].to_string()),
        };
        tally.check("h2c stream", got, expect);
    }
}

#[test]
fn hostile_traffic_is_refused_and_valid_traffic_served() {
    let mock = MockProvider::start();
    let envoy = Envoy::start_with(
        EnvoyOptions::new(&common::example_policy())
            .mock(&mock)
            .concurrency(2),
    );
    let huge_text = "All work and no play makes a dull model. ".repeat(3_500_000 / 41);
    let over_limit = chat("gpt-4o-mini", "over", &"y".repeat(5 * 1024 * 1024));
    let deep = format!(
        "{{\"model\":\"gpt-4o-mini\",\"x\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    )
    .into_bytes();
    let shared = Shared {
        port: envoy.port(),
        huge_text,
        over_limit,
        deep,
    };

    let started = Instant::now();
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (shared, tally) = (&shared, &tally);
            scope.spawn(move || {
                let mut mine = Tally::default();
                for round in 0..ROUNDS {
                    if started.elapsed() > DEADLINE {
                        mine.failures.push(format!(
                            "thread {thread} stopped at round {round}: over {DEADLINE:?}"
                        ));
                        break;
                    }
                    scenario(shared, thread, round, &mut mine);
                }
                tally.lock().unwrap().merge(mine);
            });
        }
    });
    let elapsed = started.elapsed();
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "hostile: {} requests in {elapsed:.1?}; statuses {:?}; {} served; {} pipelined \
         requests cut after a refusal",
        tally.requests,
        tally.statuses,
        tally.served.len(),
        tally.pipeline_cut
    );
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests went wrong; the first ones:\n{}",
        tally.failures.len(),
        tally.requests,
        tally.failures[..tally.failures.len().min(15)].join("\n")
    );
    assert!(tally.requests >= 2000, "only {} requests", tally.requests);

    // What the provider received: exactly the valid requests, each with its upstream model.
    let records = mock.requests();
    let mut seen = BTreeMap::new();
    for record in &records {
        let body = record.json();
        let id = id_of(&body).unwrap_or_else(|| panic!("a request without an id: {body}"));
        assert!(
            !tally.refused_ids.contains(&id),
            "refused request {id} reached the provider"
        );
        assert!(
            seen.insert(id.clone(), body["model"].clone()).is_none(),
            "{id} reached the provider twice"
        );
    }
    for (id, upstream) in &tally.served {
        assert_eq!(
            seen.get(id),
            Some(&Value::from(*upstream)),
            "{id}: the provider did not get {upstream}"
        );
    }
    assert_eq!(
        seen.len(),
        tally.served.len(),
        "requests reached the provider unasked"
    );

    // Envoy's own view agrees.
    let counter = |name: &str| envoy.counter(name).unwrap_or(0);
    assert_eq!(counter("http.llm.downstream_rq_5xx"), 0);
    assert!(counter("http.llm.downstream_rq_2xx") >= tally.served.len() as u64);
    let upstream_total: u64 = ["openai", "anthropic", "gemini"]
        .iter()
        .map(|cluster| counter(&format!("cluster.{cluster}.upstream_rq_total")))
        .sum();
    assert_eq!(
        upstream_total,
        records.len() as u64,
        "upstream requests vs mock records"
    );
    for cluster in ["openai", "anthropic", "gemini"] {
        assert_eq!(counter(&format!("cluster.{cluster}.upstream_rq_5xx")), 0);
    }
    assert!(
        counter("http.llm.downstream_cx_http2_total") > 0,
        "no HTTP/2 connection was made"
    );
    assert!(elapsed < DEADLINE, "took {elapsed:?}");
    envoy.assert_no_wasm_failure();

    // The workers still serve after all that.
    let after = http::post(
        envoy.port(),
        CHAT,
        &[("content-type", "application/json")],
        &chat("gpt-4o-mini", "after", "still there?"),
    );
    assert_eq!(after.status, 200, "{after:?}");
    let _ = std::io::stderr().flush();
}

/// Envoy's HTTP/1 parser accepts an obsolete folded header line (RFC 9112 section 5.2) and has
/// no setting to refuse it: the continuation is joined into the value, line breaks removed. A
/// folded identity header therefore never names the consumer its first line names: Posturio
/// reads the joined value, which names no consumer, so the request is judged as `default`
/// (the first line's `search-team` may use gpt-4o; `default` may not). This is why the identity
/// header must be set by Envoy itself, never passed through from a client (docs/security.md).
#[test]
fn a_folded_identity_header_is_read_joined() {
    let mock = MockProvider::start();
    let envoy = Envoy::with_mock(&common::example_policy(), &mock);
    let body = chat("gpt-4o", "folded", "hello");
    let mut headers = json_headers(true);
    headers.push(("x-posturio-consumer", "search-team\r\n default".to_string()));
    let response = send(envoy.port(), &raw("POST", CHAT, &headers, &body)).unwrap();
    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.header("x-posturio-code"),
        Some("model_not_approved"),
        "{response:?}"
    );
    assert!(
        response.text().contains("consumer \\\"default\\\""),
        "{}",
        response.text()
    );
    // Unfolded, the same request is served.
    let mut headers = json_headers(true);
    headers.push(("x-posturio-consumer", "search-team".to_string()));
    let response = send(envoy.port(), &raw("POST", CHAT, &headers, &body)).unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(mock.requests().len(), 1, "{:?}", mock.requests());
    envoy.assert_no_wasm_failure();
}
