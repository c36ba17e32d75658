//! `FakeHost`: the host trait over plain memory. It serves a request (headers, body) and an
//! upstream's answer (headers, body chunks), records every host call in order, and keeps what
//! the pipeline set: headers, the new body, filter state, replies, metrics, shared counters.
//! The pipeline's tests and `posturio eval` run the pipeline over it.
//!
//! A call the pipeline should never make (a body replaced by a different size, a chunk read
//! that was not delivered) fails with a `HostError`, which the pipeline refuses on, so a test
//! sees it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::answer::Answer;
use super::host::{Host, HostError, MetricKind};
use crate::policy::{budget, Reply};

/// Records every call; serves canned headers and body; can be told to fail.
#[derive(Default)]
pub struct FakeHost {
    pub headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub body: Vec<u8>,
    /// The refusals answered, as data.
    pub replies: RefCell<Vec<Reply>>,
    /// Every local answer as the client receives it, refusals included.
    pub answers: RefCell<Vec<Sent>>,
    pub new_body: RefCell<Option<Vec<u8>>>,
    /// Makes the request headers unreadable.
    pub fail_headers: bool,
    /// Makes the request body unreadable.
    pub fail_body: bool,
    /// Makes setting (or removing) this request header fail.
    pub fail_header: Option<&'static str>,
    pub properties: RefCell<Vec<(String, Vec<u8>)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    /// What the upstream answered: headers and body chunks.
    pub upstream_headers: Vec<(String, Vec<u8>)>,
    pub upstream_chunks: RefCell<Vec<Vec<u8>>>,
    /// The body chunks as the client receives them, after any replacement.
    pub delivered: RefCell<Vec<Vec<u8>>>,
    pub now: Cell<u64>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Makes this many compare-and-swap writes fail first, as if another worker won.
    pub cas_losses: Cell<usize>,
    pub metric_names: RefCell<Vec<(String, MetricKind)>>,
    /// Counter totals and histogram samples, by full metric name.
    pub counters: RefCell<HashMap<String, u64>>,
    pub samples: RefCell<HashMap<String, Vec<u64>>>,
    /// Every host call, by name, in order: each costs Envoy about a microsecond.
    pub calls: RefCell<Vec<&'static str>>,
    /// Every call to a guard cluster, in order; its token is its index.
    pub http_calls: RefCell<Vec<HttpCall>>,
    /// The call answer being delivered: headers (`:status` included) and body.
    pub http_answer: RefCell<CallAnswer>,
    /// Makes every call to a guard cluster fail to start.
    pub fail_dispatch: bool,
    /// How many times a paused request was resumed.
    pub resumed: Cell<usize>,
}

/// A guard call's answer: headers (`:status` included) and body.
pub type CallAnswer = (Vec<(String, Vec<u8>)>, Vec<u8>);

/// A call the pipeline made to a guard cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// A local answer as sent: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn refused(call: &'static str, why: &str) -> HostError {
    HostError {
        call,
        status: why.to_owned(),
    }
}

impl FakeHost {
    /// A request with these headers (pseudo-headers included) and body.
    pub fn new(headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Self {
        FakeHost {
            headers: RefCell::new(headers),
            body,
            ..FakeHost::default()
        }
    }

    /// A JSON request: method, path, `content-type: application/json`, then `extra`.
    pub fn request(method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Self {
        let mut headers = vec![
            (":method".to_owned(), method.as_bytes().to_vec()),
            (":path".to_owned(), path.as_bytes().to_vec()),
            ("content-type".to_owned(), b"application/json".to_vec()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())),
        );
        FakeHost::new(headers, body.as_bytes().to_vec())
    }

    /// The first value of a request header, as the upstream would get it.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .borrow()
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }

    /// A counter's total, by full metric name.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }

    /// Tokens charged to a consumer's budget window.
    pub fn budget_used(&self, consumer: &str, window: budget::Window) -> u64 {
        let shared = self.shared.borrow();
        let stored = shared.get(&budget::shared_key(consumer, window));
        budget::Counter::decode(stored.map(|(value, _)| value.as_slice())).used
    }

    /// The last value set for a filter-state property.
    pub fn property_value(&self, key: &str) -> Option<String> {
        self.properties
            .borrow()
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }

    /// Sets the call answer the next `on_guard_answer` reads: a status and a body.
    pub fn answer_call(&self, status: u16, body: &str) {
        *self.http_answer.borrow_mut() = (
            vec![(":status".to_owned(), status.to_string().into_bytes())],
            body.as_bytes().to_vec(),
        );
    }

    fn called(&self, call: &'static str) {
        self.calls.borrow_mut().push(call);
    }
}

impl Host for &FakeHost {
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.called("request_headers");
        if self.fail_headers {
            return Err(refused("get_map_bytes", "InternalFailure"));
        }
        Ok(self.headers.borrow().clone())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.called("set_request_header");
        if self.fail_header == Some(name) {
            return Err(refused("set_map_value_bytes", "InternalFailure"));
        }
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(key, _)| key != name);
        if let Some(value) = value {
            headers.push((name.to_owned(), value.as_bytes().to_vec()));
        }
        Ok(())
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.called("request_body");
        if self.fail_body {
            return Err(refused("get_buffer", "InternalFailure"));
        }
        let size = size.min(self.body.len());
        Ok(self.body.get(..size).unwrap_or_default().to_vec())
    }

    fn replace_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        self.called("replace_request_body");
        if size != self.body.len() {
            return Err(refused("replace_request_body", "not the whole body"));
        }
        *self.new_body.borrow_mut() = Some(body.to_vec());
        Ok(())
    }

    fn send_reply(&self, answer: &Answer) -> Result<(), HostError> {
        self.called("send_reply");
        if let Some(reply) = answer.refusal() {
            self.replies.borrow_mut().push(reply.clone());
        }
        self.answers.borrow_mut().push(Sent {
            status: answer.status(),
            headers: answer
                .headers()
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            body: answer.body().to_vec(),
        });
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.called("property");
        Ok(self
            .properties
            .borrow()
            .iter()
            .rev()
            .find(|(key, _)| key == &path.join("."))
            .map(|(_, value)| value.clone()))
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.called("set_property");
        self.properties
            .borrow_mut()
            .push((path.join("."), value.to_vec()));
        Ok(())
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.called("set_response_header");
        self.response_headers
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.called("response_headers");
        Ok(self.upstream_headers.clone())
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.called("response_body");
        let mut chunks = self.upstream_chunks.borrow_mut();
        if chunks.first().map(Vec::len) != Some(size) {
            return Err(refused("response_body", "no chunk of that size"));
        }
        let chunk = chunks.remove(0);
        self.delivered.borrow_mut().push(chunk.clone());
        Ok(chunk)
    }

    fn replace_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        self.called("replace_response_body");
        let mut delivered = self.delivered.borrow_mut();
        match delivered.last_mut() {
            Some(last) if last.len() == size => {
                *last = body.to_vec();
                Ok(())
            }
            _ => Err(refused("replace_response_body", "not the whole chunk")),
        }
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        self.called("remove_response_header");
        self.response_headers
            .borrow_mut()
            .push((name.to_owned(), "<removed>".to_owned()));
        Ok(())
    }

    fn now_nanos(&self) -> Result<u64, HostError> {
        self.called("now_nanos");
        Ok(self.now.get())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.called("shared_data");
        Ok(match self.shared.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared_data(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, HostError> {
        self.called("set_shared_data");
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, cas)| *cas);
        if self.cas_losses.get() > 0 {
            self.cas_losses.set(self.cas_losses.get().saturating_sub(1));
            // Another worker wrote in between: the stored token moves on.
            if let Some(entry) = shared.get_mut(key) {
                entry.1 = entry.1.wrapping_add(1);
            }
            return Ok(false);
        }
        if cas.is_some() && cas != current {
            return Ok(false);
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        shared.insert(key.to_owned(), (value.to_vec(), next));
        Ok(true)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        self.called("define_metric");
        let mut names = self.metric_names.borrow_mut();
        names.push((name.to_owned(), kind));
        u32::try_from(names.len().saturating_sub(1))
            .map_err(|_| refused("define_metric", "too many metrics"))
    }

    fn increment_metric(&self, id: u32, by: u64) -> Result<(), HostError> {
        self.called("increment_metric");
        let name = self.metric(id, MetricKind::Counter, "increment_metric")?;
        let mut counters = self.counters.borrow_mut();
        let total = counters.entry(name).or_default();
        *total = total.saturating_add(by);
        Ok(())
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        self.called("dispatch_http_call");
        if self.fail_dispatch {
            return Err(refused("dispatch_http_call", "BadArgument"));
        }
        let mut calls = self.http_calls.borrow_mut();
        calls.push(HttpCall {
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        u32::try_from(calls.len().saturating_sub(1))
            .map_err(|_| refused("dispatch_http_call", "too many calls"))
    }

    fn http_call_response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.called("http_call_response_headers");
        Ok(self.http_answer.borrow().0.clone())
    }

    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.called("http_call_response_body");
        let answer = self.http_answer.borrow();
        Ok(answer.1.get(..size).unwrap_or(&answer.1).to_vec())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.called("resume_request");
        self.resumed.set(self.resumed.get().saturating_add(1));
        Ok(())
    }

    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        self.called("record_metric");
        let name = self.metric(id, MetricKind::Histogram, "record_metric")?;
        self.samples
            .borrow_mut()
            .entry(name)
            .or_default()
            .push(value);
        Ok(())
    }
}

impl FakeHost {
    /// The name of metric `id`, which must be of `kind`.
    fn metric(&self, id: u32, kind: MetricKind, call: &'static str) -> Result<String, HostError> {
        let names = self.metric_names.borrow();
        match usize::try_from(id).ok().and_then(|id| names.get(id)) {
            Some((name, defined)) if *defined == kind => Ok(name.clone()),
            _ => Err(refused(call, "no metric of that id and kind")),
        }
    }
}
