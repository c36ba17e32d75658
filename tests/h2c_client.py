#!/usr/bin/env python3
"""Sends many HTTP/2 streams on one cleartext connection (h2c, prior knowledge).

    python3 tests/h2c_client.py PORT < requests.json > responses.json

requests.json is a JSON array of {"method", "path", "headers": [[name, value], ...],
"body_b64", and optionally "reset_after": N}: with it, the stream sends N body bytes and is then
reset by the client (RST_STREAM, CANCEL) instead of finishing; or "trailers": [[name, value],
...]: the stream ends with them after its body. Every stream is opened at once,
multiplexed on the one connection. The output is a JSON array, one entry per request in the
same order: {"status", "headers", "body_b64"}, or {"reset": true} for a stream the client reset,
or {"error": "..."} for one that got no complete response.
"""

import base64
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events

DEADLINE_SECS = 20


def main() -> int:
    port = int(sys.argv[1])
    requests = json.load(sys.stdin)
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECS)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    streams = {}  # stream id -> index
    pending = {}  # stream id -> (remaining body bytes, end the stream when sent)
    results = [None] * len(requests)
    for index, request in enumerate(requests):
        stream = conn.get_next_available_stream_id()
        streams[stream] = index
        headers = [
            (":method", request["method"]),
            (":path", request["path"]),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            *[(name, value) for name, value in request.get("headers", [])],
        ]
        body = base64.b64decode(request.get("body_b64", ""))
        reset_after = request.get("reset_after")
        if reset_after is not None:
            body = body[:reset_after]
        trailers = [(name, value) for name, value in request.get("trailers", [])]
        conn.send_headers(
            stream, headers, end_stream=not body and not trailers and reset_after is None
        )
        results[index] = {"status": None, "headers": [], "body": b""}
        pending[stream] = (body, reset_after is None, trailers)
    sock.sendall(conn.data_to_send())

    open_streams = set(streams)
    deadline = time.monotonic() + DEADLINE_SECS
    while open_streams and time.monotonic() < deadline:
        # Send what flow control allows, then finish or reset the stream.
        for stream, (body, finish, trailers) in list(pending.items()):
            if stream not in open_streams:
                pending.pop(stream)
                continue
            while body:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                piece, body = body[:window], body[window:]
                conn.send_data(stream, piece, end_stream=finish and not body and not trailers)
            if not body:
                pending.pop(stream)
                if finish and trailers:
                    conn.send_headers(stream, trailers, end_stream=True)
                if not finish:
                    conn.reset_stream(stream, error_code=8)  # CANCEL
                    results[streams[stream]] = {"reset": True}
                    open_streams.discard(stream)
            else:
                pending[stream] = (body, finish, trailers)
        sock.sendall(conn.data_to_send())
        if not open_streams:
            break
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        for event in conn.receive_data(data):
            stream = getattr(event, "stream_id", None)
            if stream not in streams or results[streams[stream]].get("reset"):
                continue
            result = results[streams[stream]]
            if isinstance(event, h2.events.ResponseReceived):
                for name, value in event.headers:
                    name, value = name.decode(), value.decode()
                    if name == ":status":
                        result["status"] = int(value)
                    else:
                        result["headers"].append([name, value])
            elif isinstance(event, h2.events.DataReceived):
                result["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamEnded):
                open_streams.discard(stream)
            elif isinstance(event, h2.events.StreamReset):
                result["error"] = f"stream reset by the server (code {event.error_code})"
                open_streams.discard(stream)
        sock.sendall(conn.data_to_send())

    conn.close_connection()
    try:
        sock.sendall(conn.data_to_send())
    except OSError:
        pass
    sock.close()
    out = []
    for stream, index in sorted(streams.items(), key=lambda item: item[1]):
        result = results[index]
        if result.get("reset"):
            out.append({"reset": True})
        elif stream in open_streams or result["status"] is None:
            out.append({"error": result.get("error", "no complete response")})
        else:
            out.append({
                "status": result["status"],
                "headers": result["headers"],
                "body_b64": base64.b64encode(result["body"]).decode(),
            })
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
