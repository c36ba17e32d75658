//! The native floor: the least an Envoy dynamic module can do to route by the body, for
//! `benches/load.py`, beside the Wasm floor (`benches/floor.wat`).
//!
//! It does exactly the Wasm floor's work: it holds the request headers, lets Envoy buffer the
//! whole body, copies the body into its own memory once (as a filter must to read it) and sets
//! the route header to `openai`. Nothing is parsed, logged or counted: what it costs is what
//! Envoy charges any native filter that routes by the body, before the filter does any work of
//! its own. Its configuration is not read.

use envoy_abi::{
    Body, BodyStatus, Direction, EnvoyFilter, EnvoyFilterConfig, HeadersStatus, HttpFilter,
    HttpFilterConfig,
};

/// The header the benchmark's Envoy routes by (`cluster_header`), and the cluster it names.
const ROUTE_HEADER: &str = "x-posturio-cluster";
const CLUSTER: &[u8] = b"openai";

/// The filter configuration: nothing to keep.
pub struct FloorConfig;

impl HttpFilterConfig for FloorConfig {
    type Filter = Floor;

    fn new(_envoy: &EnvoyFilterConfig, _name: &[u8], _config: &[u8]) -> Option<Self> {
        Some(FloorConfig)
    }

    fn new_filter(&self, _envoy: &EnvoyFilter) -> Option<Floor> {
        Some(Floor)
    }
}

/// One stream's filter.
pub struct Floor;

impl HttpFilter for Floor {
    /// Holds the headers until the body has been read; a request without a body goes on as
    /// it came (the Wasm floor does the same).
    fn on_request_headers(&mut self, _envoy: &EnvoyFilter, end_of_stream: bool) -> HeadersStatus {
        if end_of_stream {
            HeadersStatus::Continue
        } else {
            HeadersStatus::StopIteration
        }
    }

    /// At the end of the body: copy all of it in, then route.
    fn on_request_body(&mut self, envoy: &EnvoyFilter, end_of_stream: bool) -> BodyStatus {
        if !end_of_stream {
            return BodyStatus::StopIterationAndBuffer;
        }
        let buffered = Body::Buffered(Direction::Request);
        let received = Body::Received(Direction::Request);
        // The last chunk is not in the buffered body unless Envoy hands the buffer itself.
        let last_chunk = !envoy.received_is_buffered(Direction::Request);
        let last_size = if last_chunk {
            envoy.body_size(received)
        } else {
            0
        };
        let size = envoy.body_size(buffered).saturating_add(last_size);
        let mut body = Vec::with_capacity(size);
        envoy.read_body(buffered, &mut body, size);
        if last_chunk {
            envoy.read_body(received, &mut body, size);
        }
        // The copy is the point: keep the compiler from leaving it out.
        std::hint::black_box(&body);
        envoy.set_header(Direction::Request, ROUTE_HEADER, Some(CLUSTER));
        // Envoy chose the route when the headers came (without the header: no cluster);
        // proxy-wasm clears the route cache on a header change, a dynamic module must ask.
        envoy.clear_route_cache();
        BodyStatus::Continue
    }
}

envoy_abi::export_http_filter!(FloorConfig);
