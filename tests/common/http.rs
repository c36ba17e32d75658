//! A raw HTTP/1.1 client over TCP to 127.0.0.1, so that a test controls the exact bytes it
//! sends: duplicate headers, odd paths, chunked or truncated bodies, pipelined requests.
// Test support code: failing loudly (unwrap/panic) is how it reports a broken test setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::string_slice
)]

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// How long one read may wait for the server before the request is given up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP response as received.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// In received order and spelling; look up with `header` for a case-insensitive match.
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked transfer coding removed.
    pub body: Vec<u8>,
    /// Whether the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The sizes of the chunks as received (empty unless `chunked`).
    pub chunk_sizes: Vec<usize>,
    /// Trailer fields after a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Statuses of interim (1xx) responses that came before this one, e.g. `100`.
    pub interim: Vec<u16>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in received order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }

    /// The body as JSON; panics showing the status and body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{self:?}"))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of a server-sent event stream, as JSON (`[DONE]` left out).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter(|data| *data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP/1.1 {} {}", self.status, self.reason)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        writeln!(f)?;
        let text = self.text();
        if text.len() > 4000 {
            let mut end = 4000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "{}... ({} bytes)", &text[..end], self.body.len())?;
        } else {
            write!(f, "{text}")?;
        }
        for (name, value) in &self.trailers {
            write!(f, "\n[trailer] {name}: {value}")?;
        }
        Ok(())
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One client connection to 127.0.0.1:`port`. Requests may be sent in any pieces, and
/// several responses read in turn from one connection (keep-alive, pipelining).
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Methods of the requests sent whose responses are not read yet (a response to HEAD
    /// has no body).
    methods: std::collections::VecDeque<String>,
}

impl Connection {
    /// Connects, or panics.
    pub fn open(port: u16) -> Connection {
        Connection::try_open(port).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_open(port: u16) -> Result<Connection, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Connection {
            stream,
            buf: Vec::new(),
            methods: Default::default(),
        })
    }

    /// Sends bytes as they are. Every `METHOD ` at the start of a write is remembered, so
    /// that the response to a HEAD request is read without a body.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Some(method) = request_method(bytes) {
            self.methods.push_back(method);
        }
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write failed: {e}"))?;
        self.stream
            .flush()
            .map_err(|e| format!("flush failed: {e}"))
    }

    /// Closes the sending side (the server sees end of input, e.g. a truncated body).
    pub fn shutdown_write(&mut self) {
        // The peer may have closed already; then there is nothing left to shut down.
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sets the read timeout (default `READ_TIMEOUT`).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// Reads one response, or panics.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads one final response (interim 1xx responses other than 101 are collected into
    /// `interim`). Err if the connection closes or times out before the response is whole.
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let head_request = self.methods.pop_front().is_some_and(|m| m == "HEAD");
        let mut interim = Vec::new();
        loop {
            let head = self.read_head()?;
            let (status, reason, headers) = parse_head(&head)?;
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            let mut response = Response {
                status,
                reason,
                headers,
                body: Vec::new(),
                chunked: false,
                chunk_sizes: Vec::new(),
                trailers: Vec::new(),
                interim,
            };
            if head_request || status == 204 || status == 304 || status == 101 {
                return Ok(response);
            }
            let chunked = response.header_values("transfer-encoding").iter().any(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
            if chunked {
                response.chunked = true;
                self.read_chunked(&mut response)?;
            } else if let Some(length) = response.header("content-length") {
                let length: usize = length
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad content-length {length:?} in\n{response:?}"))?;
                response.body = self.read_exact_bytes(length).map_err(|e| {
                    format!("{e} (reading a body of content-length {length}) in\n{response:?}")
                })?;
            } else {
                response.body = self.read_to_close()?;
            }
            return Ok(response);
        }
    }

    /// Reads until the server closes the connection; returns what arrived (for tests of
    /// connections that the server drops).
    pub fn read_until_close(&mut self) -> Result<Vec<u8>, String> {
        self.read_to_close()
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!(
                    "no response within the read timeout; received so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ))
            }
            Err(e) => Err(format!("read failed: {e}")),
        }
    }

    fn read_head(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Ok(head);
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed before a complete response head; received {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        }
    }

    fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..end + 2).collect();
                line.truncate(end);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err("connection closed inside a chunked body".to_string());
            }
        }
    }

    fn read_exact_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        while self.fill()? != 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    fn read_chunked(&mut self, response: &mut Response) -> Result<(), String> {
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                break;
            }
            let chunk = self.read_exact_bytes(size)?;
            response.body.extend_from_slice(&chunk);
            response.chunk_sizes.push(size);
            if !self.read_line()?.is_empty() {
                return Err("chunk not followed by CRLF".to_string());
            }
        }
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok(());
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let (name, value) = line
                .split_once(':')
                .ok_or(format!("bad trailer {line:?}"))?;
            response
                .trailers
                .push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn request_method(bytes: &[u8]) -> Option<String> {
    let space = bytes.iter().take(20).position(|&b| b == b' ')?;
    let method = &bytes[..space];
    (!method.is_empty() && method.iter().all(u8::is_ascii_uppercase))
        .then(|| String::from_utf8_lossy(method).into_owned())
}

/// Status, reason phrase and header fields of a response head.
type Head = (u16, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {text:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(format!("bad header line {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((status, reason, headers))
}

/// Connects to 127.0.0.1:`port`, writes `bytes` as they are and reads one response.
/// Panics if no complete response arrives (use `try_send_raw` to expect that).
pub fn send_raw(port: u16, bytes: &[u8]) -> Response {
    try_send_raw(port, bytes)
        .unwrap_or_else(|e| panic!("{e}\nrequest was:\n{}", String::from_utf8_lossy(bytes)))
}

/// Like `send_raw`, but Err when the connection closes before a complete response.
pub fn try_send_raw(port: u16, bytes: &[u8]) -> Result<Response, String> {
    let mut conn = Connection::try_open(port)?;
    conn.try_send(bytes)?;
    conn.try_read_response()
}

/// Writes `bytes`, then closes the sending side (so the server sees the request end there,
/// e.g. a body shorter than its Content-Length), then reads one response.
pub fn try_send_raw_then_close(port: u16, bytes: &[u8]) -> Result<Response, String> {
    let mut conn = Connection::try_open(port)?;
    conn.try_send(bytes)?;
    conn.shutdown_write();
    conn.try_read_response()
}

/// The bytes of a request. Adds `Host`, `Content-Length` (when there is a body or the
/// method is POST/PUT/PATCH) and `Connection: close` unless `headers` already has them.
pub fn build_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        out.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends one request (see `build_request`) and reads the response.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    send_raw(port, &build_request(port, method, path, headers, body))
}

/// `POST path` with `body`, adding Host, Content-Length and `Connection: close`.
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(port, "POST", path, headers, body)
}

/// `POST path` with `body` serialised as JSON and `Content-Type: application/json`.
pub fn post_json(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Response {
    let mut all: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    post(port, path, &all, body.to_string().as_bytes())
}

/// `GET path`, adding Host and `Connection: close`.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers, b"")
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
