#!/usr/bin/env python3
"""A stand-in for a global rate limit service (stdlib and `h2` only), for the tests.

Serves gRPC `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over cleartext
HTTP/2 (h2c, prior knowledge), as Envoy's `envoy.filters.http.ratelimit` calls it, and a
plain-HTTP control interface on a second port. Usage:

    python3 tests/fake_rls.py --port 0 --control-port 0 --over search-team

Port 0 picks a free port. Once both sockets are bound, one JSON line on stdout gives them:
{"grpc": PORT, "control": PORT}. It keeps no counters: the answer depends only on the
request. A request is answered OVER_LIMIT when an entry of any of its descriptors has a value
given with `--over` (repeatable), OK otherwise. An OK answer asks Envoy to add the header
`x-fake-rls-call: N` to the request it forwards (`request_headers_to_add`), N being the
call's number (1, 2, ...), so the provider's copy shows which check let it through.

Every call is recorded, in arrival order, before it is answered:

    GET  /calls  -> JSON array of records
    POST /reset  -> clears the records (numbering goes on), answers {}

A record is {"call": N, "domain", "descriptors": [{"entries": [{"key", "value"}, ...],
"hits_addend": int or null}], "hits_addend": int, "code": "OK" or "OVER_LIMIT"}. A
descriptor's `hits_addend` is a google.protobuf.UInt64Value: null when absent, so a check
sent with `hits_addend: { number: 0 }` (present, 0) differs from one sent without it.
The request's own `hits_addend` is a plain uint32 (0 when absent).

Calls to any other method get grpc-status 12 (UNIMPLEMENTED); a message that is compressed,
truncated or not a valid RateLimitRequest gets 13 (INTERNAL) or 3 (INVALID_ARGUMENT). Each
connection has its own thread, and streams on it are multiplexed. SIGTERM or SIGINT stops it.
"""

import argparse
import json
import signal
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.config
import h2.connection
import h2.events
import h2.exceptions

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

# RateLimitResponse.Code
CODE_OK = 1
CODE_OVER_LIMIT = 2

# gRPC status codes
GRPC_OK = 0
GRPC_INVALID_ARGUMENT = 3
GRPC_UNIMPLEMENTED = 12
GRPC_INTERNAL = 13

CALLS: list[dict] = []
CALLS_LOCK = threading.Lock()
NEXT_CALL = [1]


def log(message: str) -> None:
    print(f"fake_rls: {message}", file=sys.stderr, flush=True)


# --- protobuf (only what RateLimitRequest and RateLimitResponse need) -----------------------


class DecodeError(Exception):
    pass


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def fields(data: bytes):
    """(field number, wire type, value) for each field: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
        if pos > len(data):
            raise DecodeError("truncated field")
        yield number, wire_type, value


def expect(wire_type: int, want: int, what: str) -> None:
    if wire_type != want:
        raise DecodeError(f"{what} has wire type {wire_type}, expected {want}")


def decode_entry(data: bytes) -> dict:
    # RateLimitDescriptor.Entry { string key = 1; string value = 2; }
    entry = {"key": "", "value": ""}
    for number, wire_type, value in fields(data):
        if number in (1, 2):
            expect(wire_type, 2, "Entry field")
            entry["key" if number == 1 else "value"] = value.decode()
    return entry


def decode_descriptor(data: bytes) -> dict:
    # RateLimitDescriptor { repeated Entry entries = 1; RateLimitOverride limit = 2;
    #                       google.protobuf.UInt64Value hits_addend = 3; }
    descriptor = {"entries": [], "hits_addend": None}
    for number, wire_type, value in fields(data):
        if number == 1:
            expect(wire_type, 2, "entries")
            descriptor["entries"].append(decode_entry(value))
        elif number == 3:
            expect(wire_type, 2, "hits_addend")
            # UInt64Value { uint64 value = 1; }: an empty message is 0.
            hits = 0
            for inner, inner_type, inner_value in fields(value):
                if inner == 1:
                    expect(inner_type, 0, "UInt64Value.value")
                    hits = inner_value
            descriptor["hits_addend"] = hits
    return descriptor


def decode_request(data: bytes) -> dict:
    # RateLimitRequest { string domain = 1; repeated RateLimitDescriptor descriptors = 2;
    #                    uint32 hits_addend = 3; }
    request = {"domain": "", "descriptors": [], "hits_addend": 0}
    for number, wire_type, value in fields(data):
        if number == 1:
            expect(wire_type, 2, "domain")
            request["domain"] = value.decode()
        elif number == 2:
            expect(wire_type, 2, "descriptors")
            request["descriptors"].append(decode_descriptor(value))
        elif number == 3:
            expect(wire_type, 0, "hits_addend")
            request["hits_addend"] = value
    return request


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def encode_response(code: int, request_headers: list[tuple[str, str]]) -> bytes:
    # RateLimitResponse { Code overall_code = 1; ...;
    #                     repeated config.core.v3.HeaderValue request_headers_to_add = 4; }
    # HeaderValue { string key = 1; string value = 2; }
    out = varint(1 << 3 | 0) + varint(code)
    for key, value in request_headers:
        header = length_delimited(1, key.encode()) + length_delimited(2, value.encode())
        out += length_delimited(4, header)
    return out


# --- gRPC over h2c ---------------------------------------------------------------------------


def grpc_frame(message: bytes) -> bytes:
    """A length-prefixed message: compressed flag 0, 4-byte big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def grpc_messages(body: bytes) -> list[bytes]:
    messages, pos = [], 0
    while pos < len(body):
        if len(body) - pos < 5:
            raise DecodeError("truncated gRPC message prefix")
        compressed, length = body[pos], struct.unpack(">I", body[pos + 1:pos + 5])[0]
        if compressed:
            raise DecodeError("compressed gRPC message (no grpc-encoding is supported)")
        if len(body) - pos - 5 < length:
            raise DecodeError("truncated gRPC message")
        messages.append(body[pos + 5:pos + 5 + length])
        pos += 5 + length
    return messages


class Stream:
    def __init__(self, headers: dict[str, str]):
        self.headers = headers
        self.body = bytearray()


class Connection:
    """One HTTP/2 connection from Envoy; any number of concurrent unary calls on it."""

    def __init__(self, sock: socket.socket, over: frozenset[str]):
        self.sock = sock
        self.over = over
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, Stream] = {}
        # Replies waiting for flow-control window: stream id -> remaining DATA bytes, trailers.
        self.pending: dict[int, tuple[bytes, list[tuple[str, str]]]] = {}

    def run(self) -> None:
        try:
            self.h2.initiate_connection()
            self.flush()
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                for event in self.h2.receive_data(data):
                    self.handle(event)
                self.send_pending()
                self.flush()
        except (OSError, h2.exceptions.ProtocolError) as exc:
            log(f"connection closed: {exc!r}")
        finally:
            self.sock.close()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def handle(self, event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self.streams[event.stream_id] = Stream(dict(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                self.answer(event.stream_id, stream)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
            self.pending.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise OSError("peer sent GOAWAY")

    def answer(self, stream_id: int, stream: Stream) -> None:
        path = stream.headers.get(":path", "")
        content_type = stream.headers.get("content-type", "")
        if stream.headers.get(":method") != "POST" or path != METHOD:
            self.reply(stream_id, None, GRPC_UNIMPLEMENTED, f"unknown method {path}")
            return
        if not content_type.startswith("application/grpc"):
            self.reply(stream_id, None, GRPC_INTERNAL, f"content-type {content_type!r}")
            return
        try:
            messages = grpc_messages(bytes(stream.body))
            if len(messages) != 1:
                raise DecodeError(f"{len(messages)} messages in a unary call")
            request = decode_request(messages[0])
        except (DecodeError, UnicodeDecodeError) as exc:
            log(f"stream {stream_id}: bad request: {exc}")
            self.reply(stream_id, None, GRPC_INVALID_ARGUMENT, str(exc))
            return
        over = any(entry["value"] in self.over
                   for descriptor in request["descriptors"]
                   for entry in descriptor["entries"])
        with CALLS_LOCK:
            number = NEXT_CALL[0]
            NEXT_CALL[0] += 1
            record = {"call": number, **request, "code": "OVER_LIMIT" if over else "OK"}
            CALLS.append(record)
        log(json.dumps(record))
        if over:
            response = encode_response(CODE_OVER_LIMIT, [])
        else:
            response = encode_response(CODE_OK, [("x-fake-rls-call", str(number))])
        self.reply(stream_id, response, GRPC_OK, "")

    def reply(self, stream_id: int, message: bytes | None, status: int, detail: str) -> None:
        """Headers now; the message and the trailers (grpc-status) as flow control allows.
        Without a message, one HEADERS frame carries all (gRPC's Trailers-Only)."""
        headers = [(":status", "200"), ("content-type", "application/grpc")]
        trailers = [("grpc-status", str(status))]
        if detail:
            trailers.append(("grpc-message", detail.replace("\r", " ").replace("\n", " ")))
        if message is None:
            self.h2.send_headers(stream_id, headers + trailers, end_stream=True)
            return
        self.h2.send_headers(stream_id, headers)
        self.pending[stream_id] = (grpc_frame(message), trailers)

    def send_pending(self) -> None:
        """Sends each waiting reply as far as flow control allows, trailers last."""
        for stream_id in list(self.pending):
            data, trailers = self.pending[stream_id]
            while data:
                window = min(self.h2.local_flow_control_window(stream_id),
                             self.h2.max_outbound_frame_size)
                if window <= 0:
                    break
                self.h2.send_data(stream_id, data[:window])
                data = data[window:]
            if data:
                self.pending[stream_id] = (data, trailers)
                continue
            self.h2.send_headers(stream_id, trailers, end_stream=True)
            del self.pending[stream_id]


def serve_grpc(listener: socket.socket, over: frozenset[str], stop: threading.Event) -> None:
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(sock, over)
        threading.Thread(target=connection.run, daemon=True).start()


# --- control interface -----------------------------------------------------------------------


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_json(self, status: int, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/calls":
            with CALLS_LOCK:
                calls = list(CALLS)
            self.send_json(200, calls)
        else:
            self.send_json(404, {"error": f"no {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if self.path == "/reset":
            with CALLS_LOCK:
                CALLS.clear()
            self.send_json(200, {})
        else:
            self.send_json(404, {"error": f"no {self.path}"})

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0,
                        help="the gRPC port (default 0: any free port)")
    parser.add_argument("--control-port", type=int, default=0,
                        help="the plain-HTTP control port (default 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")
    parser.add_argument("--over", action="append", default=[], metavar="VALUE",
                        help="answer OVER_LIMIT to a request with a descriptor entry whose "
                             "value is VALUE (repeatable)")
    args = parser.parse_args()

    try:
        listener = socket.create_server((args.host, args.port), backlog=128)
        control = ThreadingHTTPServer((args.host, args.control_port), Control)
    except OSError as exc:
        print(f"fake_rls: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 1
    control.daemon_threads = True

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    grpc = threading.Thread(target=serve_grpc, args=(listener, frozenset(args.over), stop),
                            daemon=True)
    grpc.start()
    threading.Thread(target=control.serve_forever, args=(0.1,), daemon=True).start()
    print(json.dumps({"grpc": listener.getsockname()[1],
                      "control": control.server_address[1]}), flush=True)

    stop.wait()
    control.shutdown()
    control.server_close()
    grpc.join()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
