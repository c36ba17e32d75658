#!/usr/bin/env python3
"""A local mock of the LLM providers that Posturio routes to (stdlib only).

Serves OpenAI-, Anthropic- and OpenAI-compatible endpoints, Azure OpenAI deployments, Gemini
generateContent and Bedrock Converse on one or more ports, so that
`make run` works offline and integration tests can assert on exactly what reached the
provider. Usage:

    python3 tests/mock_provider.py --listen openai=18081 --listen anthropic=18082 \
        --listen gemini=18083

Port 0 picks a free port. Once every socket is bound, one JSON line on stdout maps each name
to its port. Every request except the control endpoints below is recorded:

    GET  /__mock/requests  -> JSON array of records, in arrival order, across all listeners
    GET  /__mock/last      -> the body of the last recorded request, byte for byte, as the
                              provider received it (404 when none was recorded)
    POST /__mock/reset     -> clears the records, answers {}

A record is {"listener", "method", "path" (with its query), "headers" ([name, value] pairs in
order, names lowercased, duplicates kept), "body_b64" (the exact body bytes, de-chunked),
"body_length"}, plus "trailers" when a chunked body carried any.

With `--tls CERT KEY`, every listener named by `--tls-listener NAME` speaks TLS with that
certificate (a test's throwaway one), for configurations that originate TLS to providers.
`--serve-file PATH=FILE` answers `GET PATH` with the bytes of FILE (not recorded), like an
artifact server that hands out the module.

A request header `x-mock-status: NNN` makes the mock answer that status with an error body
(and `x-should-retry: false`, so the SDKs do not retry it).
A request header `x-mock-event-delay-ms: N` makes a streamed answer wait N ms between events
(for clients that leave in the middle of a stream).
A request header `x-mock-bedrock-cache: N` makes a Bedrock answer report N cache-read input
tokens the way Bedrock does: `converse` in its body (`cacheReadInputTokens`, in `totalTokens`
too) with only the input and output count headers; `invoke` (an Anthropic message; without the header
`invoke` gets the mock's 404) in its body and in the `x-amzn-bedrock-cache-read-input-token-count`
header.
`converse-stream` and `invoke-with-response-stream` answer in the AWS event stream framing
(`application/vnd.amazon.eventstream`, both CRC-32s correct, each message with `:event-type`,
`:content-type` and `:message-type` headers, payloads padded with Bedrock's `p` field):
converse-stream sends `messageStart`, one `contentBlockDelta` per piece, `contentBlockStop`,
`messageStop` and `metadata` (its `usage`, with `cacheReadInputTokens` under
`x-mock-bedrock-cache`); invoke-with-response-stream sends the Anthropic stream's events, each
base64 in a `chunk` event's `bytes`, the last with `amazon-bedrock-invocationMetrics`. A
request header `x-mock-bedrock-stream` scripts a fault: `bad-crc` corrupts the message CRC of
the last message (the one with the usage), `cut` ends the stream cleanly before it.
A request header `x-mock-responses-end: incomplete|failed` ends a Responses stream with
`response.incomplete` (its usage given, `incomplete_details` set) or `response.failed` (an
error, `usage: null`) instead of `response.completed`.
A request header `x-mock-header-delay-ms: N` makes the mock wait N ms before its status line,
as a provider does while it generates a whole answer (for clients that leave before it).
A request header `x-mock-usage-style` changes how a chat stream reports its usage: `azure`
adds Azure's `prompt_filter_results` to the usage chunk; `split` sends the input count in one
usage chunk and the output count, written as a float (`7.0`), in a later one; `content` puts
the usage on the last chunk, the one that also carries the choice and its `finish_reason`.
A Gemini `streamGenerateContent` answers server-sent events when the query has `alt=sse`,
else one JSON array streamed element by element (`application/json`), as Gemini does; a
request header `x-mock-stream-framing: sse|json` overrides that, to play a provider that
answers in the other framing than the one asked for.
A request header `x-mock-answer: <base64 of JSON {"pieces": [..], "tool_args": [..]}>` sets the
answer's text: the pieces joined for a whole answer, one text delta per piece in a stream, for
every family (chat, completions, Responses, Anthropic, Gemini, Converse, Bedrock invoke of an
Anthropic model). `tool_args` (optional) adds a tool call whose arguments are those pieces:
joined in a whole answer (chat `tool_calls[].function.arguments`; Anthropic `tool_use.input`,
the joined text parsed as JSON), one argument delta per piece in a stream (chat `tool_calls`
deltas, Anthropic `input_json_delta`). Families without tool calls here ignore it.
A request header `x-mock-gemini-tool-use: N` makes a Gemini answer report N more prompt tokens
as `toolUsePromptTokenCount` (tool results read into the prompt), in its total too.

A listener can be given a behaviour, to play a provider that fails (for fallback tests), on the
command line (`--behave openai='{"status":429}'`) or at run time:

    POST /__mock/behave {"listener": "openai", "status": 429}         -> answers {}

    {"status": NNN}                  answer every request with that status and an error body
                                     (plus "retry_after": "S" for a `retry-after: S` header)
    {"reset": "before"}              read the request, then reset the connection (TCP RST)
                                     without a byte of answer
    {"reset": "after_first_event"}   answer 200 with an event stream, send one event, then
                                     reset the connection
    {}                               clear: answer normally again

Requests to a listener with a behaviour are still recorded, before it acts. `POST /__mock/reset`
clears the records, not the behaviours.
"""

import argparse
import base64
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORDS: list[dict] = []
FILES: dict[str, bytes] = {}
RECORDS_LOCK = threading.Lock()
# Listener name -> behaviour object (see the docstring); absent: answer normally.
BEHAVIOURS: dict[str, dict] = {}

PROMPT_TOKENS = 12
COMPLETION_TOKENS = 7


class BadRequest(Exception):
    pass


def check_behaviour(behaviour) -> dict:
    """The behaviour object if it is one the mock knows; raises BadRequest otherwise."""
    if not isinstance(behaviour, dict):
        raise BadRequest("a behaviour is a JSON object")
    unknown = set(behaviour) - {"status", "retry_after", "reset"}
    if unknown:
        raise BadRequest(f"unknown behaviour keys {sorted(unknown)}")
    status = behaviour.get("status")
    if status is not None and not (isinstance(status, int) and 200 <= status <= 599):
        raise BadRequest("status must be an integer from 200 to 599")
    if behaviour.get("reset") not in (None, "before", "after_first_event"):
        raise BadRequest('reset must be "before" or "after_first_event"')
    if status is not None and "reset" in behaviour:
        raise BadRequest("a behaviour has a status or a reset, not both")
    return behaviour


def ident(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def sse(data, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


class Server(ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 drops connections in a burst (seen with 50
    # concurrent SDK requests); Envoy's connection pool opens them in bursts too.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client or Envoy hanging up mid-response is routine in tests: no traceback for it.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 gives keep-alive, which Envoy's connection pool relies on.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits
    # for the peer's delayed ACK (~40 ms) on every reused connection.
    disable_nagle_algorithm = True
    listener = "mock"  # replaced per listener by a subclass

    reset_sent = False

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[mock {self.listener}] {fmt % args}\n")

    def finish(self) -> None:
        # After a reset the socket is closed: nothing is left to flush.
        if not self.reset_sent:
            super().finish()

    def reset_connection(self) -> None:
        """Closes the connection with a TCP RST (SO_LINGER 0), as a failing provider can."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.reset_sent = True
        self.close_connection = True

    def act_out(self, behaviour: dict) -> None:
        if "status" in behaviour:
            status = behaviour["status"]
            extra = []
            if "retry_after" in behaviour:
                extra.append(("retry-after", str(behaviour["retry_after"])))
            error = {"type": "error", "error": {"message": f"mock: {self.listener} answers {status}",
                                                "type": "mock_error", "param": None,
                                                "code": str(status)}}
            self.send_json(status, error, [("x-should-retry", "false"), *extra])
        elif behaviour.get("reset") == "before":
            self.reset_connection()
        elif behaviour.get("reset") == "after_first_event":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            event = sse({"first": True, "listener": self.listener})
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.05)  # the event reaches the client before the reset
            self.reset_connection()

    # --- request body -------------------------------------------------------------------

    def read_body(self) -> tuple[bytes, list[list[str]]]:
        codings = [c.strip().lower() for c in self.headers.get("transfer-encoding", "").split(",")]
        if codings[-1] == "chunked":  # chunked wins over Content-Length (RFC 9112 6.3)
            return self.read_chunked()
        length = self.headers.get("content-length")
        if length is None:
            return b"", []
        if not length.strip().isdigit():
            raise BadRequest("bad content-length")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise BadRequest("body shorter than content-length")
        return body, []

    def read_chunked(self) -> tuple[bytes, list[list[str]]]:
        # http.server leaves chunked bodies undecoded; without this the connection desyncs.
        parts = []
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise BadRequest("truncated chunk size line")
            size_text = line.split(b";", 1)[0].strip()  # drop chunk extensions
            try:
                size = int(size_text, 16)
            except ValueError:
                size = -1
            if size < 0:
                raise BadRequest(f"bad chunk size {size_text!r}")
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("truncated chunk")
            parts.append(chunk)
        trailers = []
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n"):
                break
            if not line.endswith(b"\n"):
                raise BadRequest("truncated trailers")
            name, _, value = line.decode("latin-1").partition(":")
            trailers.append([name.strip().lower(), value.strip()])
        return b"".join(parts), trailers

    # --- responses ----------------------------------------------------------------------

    def send_json(self, status: int, obj, extra_headers=()) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_stream(self, events: list[bytes], content_type: str = "text/event-stream") -> None:
        # Chunked, so the connection survives the stream; each event is flushed on its own
        # so clients see it as a separate read, as with a real provider.
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        delay = self.headers.get("x-mock-event-delay-ms", "").strip()
        for n, event in enumerate(events):
            if n and delay.isdigit():
                time.sleep(int(delay) / 1000)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def send_json_array(self, elements: list) -> None:
        # Gemini's stream without ?alt=sse: one JSON array, chunked, each element flushed on
        # its own as it is generated ("[" + first, then "," + each next, then "]").
        self.send_response(200)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        delay = self.headers.get("x-mock-event-delay-ms", "").strip()
        pieces = [("[" if n == 0 else "\r\n,") + json.dumps(element)
                  for n, element in enumerate(elements)] + ["]" if elements else "[]"]
        for n, piece in enumerate(pieces):
            if n and delay.isdigit():
                time.sleep(int(delay) / 1000)
            data = piece.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def send_error_json(self, status: int, message: str, kind: str) -> None:
        # OpenAI's error shape, plus Anthropic's top-level "type", so both SDKs parse it.
        # x-should-retry: false stops the SDKs from retrying, so a test sees one request.
        error = {"type": "error",
                 "error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        self.send_json(status, error, [("x-should-retry", "false")])

    # --- dispatch -----------------------------------------------------------------------

    def handle_any(self) -> None:
        try:
            body, trailers = self.read_body()
        except BadRequest as exc:
            self.close_connection = True
            self.send_error_json(400, f"mock: {exc}", "invalid_request_error")
            return
        path = self.path.split("?", 1)[0]
        if path in FILES and self.command == "GET":
            data = FILES[path]
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/__mock/requests" and self.command == "GET":
            with RECORDS_LOCK:
                snapshot = list(RECORDS)
            self.send_json(200, snapshot)
            return
        if path == "/__mock/last" and self.command == "GET":
            with RECORDS_LOCK:
                last = RECORDS[-1] if RECORDS else None
            if last is None:
                self.send_error_json(404, "mock: no request recorded yet", "not_found_error")
                return
            data = base64.b64decode(last["body_b64"])
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/__mock/behave" and self.command == "POST":
            try:
                order = json.loads(body)
                if not isinstance(order, dict) or not isinstance(order.get("listener"), str):
                    raise BadRequest('expected {"listener": NAME, ...behaviour}')
                name = order.pop("listener")
                behaviour = check_behaviour(order)
            except (ValueError, BadRequest) as exc:
                self.send_error_json(400, f"mock: bad behaviour: {exc}", "invalid_request_error")
                return
            with RECORDS_LOCK:
                if behaviour:
                    BEHAVIOURS[name] = behaviour
                else:
                    BEHAVIOURS.pop(name, None)
            self.send_json(200, {})
            return
        if path == "/__mock/reset" and self.command == "POST":
            with RECORDS_LOCK:
                RECORDS.clear()
            self.send_json(200, {})
            return
        record = {
            "listener": self.listener,
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "body_length": len(body),
        }
        if trailers:
            record["trailers"] = trailers
        with RECORDS_LOCK:
            RECORDS.append(record)
            behaviour = BEHAVIOURS.get(self.listener)
        if behaviour:
            self.act_out(behaviour)
            return

        header_delay = self.headers.get("x-mock-header-delay-ms", "").strip()
        if header_delay.isdigit():
            time.sleep(int(header_delay) / 1000)
        forced = self.headers.get("x-mock-status", "").strip()
        if forced.isdigit() and 200 <= int(forced) <= 599:
            self.send_error_json(int(forced), f"mock: forced status {forced}", "mock_error")
            return
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            req = {}
        if not isinstance(req, dict):
            req = {}
        self.respond(path, req)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    def respond(self, path: str, req: dict) -> None:
        model = req.get("model") if isinstance(req.get("model"), str) else "mock-model"
        stream = req.get("stream") is True
        text = f"Hello from the mock {self.listener} provider."
        pieces = ["Hello from the mock ", f"{self.listener} provider."]
        tool_args = None
        answer_header = self.headers.get("x-mock-answer", "").strip()
        if answer_header:
            wanted = json.loads(base64.b64decode(answer_header))
            pieces = [str(piece) for piece in wanted.get("pieces", [])]
            text = "".join(pieces)
            if wanted.get("tool_args") is not None:
                tool_args = [str(piece) for piece in wanted["tool_args"]]
        if path.endswith("/chat/completions"):
            include_usage = (req.get("stream_options") or {}).get("include_usage") is True
            if stream:
                style = self.headers.get("x-mock-usage-style", "").strip()
                self.send_stream(chat_stream(model, pieces, include_usage, style, tool_args))
            else:
                self.send_json(200, chat_completion(model, text, tool_args))
        elif path.endswith("/completions"):
            self.send_json(200, text_completion(model, text))
        elif path.endswith("/embeddings"):
            self.send_json(200, embeddings(model, req))
        elif path.endswith("/responses"):
            if stream:
                end = self.headers.get("x-mock-responses-end", "").strip()
                self.send_stream(responses_stream(model, pieces, end))
            else:
                self.send_json(200, response_object(model, text, "completed"))
        elif path.endswith("/messages/count_tokens"):
            self.send_json(200, {"input_tokens": PROMPT_TOKENS})
        elif path.endswith("/messages"):
            if stream:
                self.send_stream(anthropic_stream(model, pieces, tool_args))
            else:
                self.send_json(200, anthropic_message(model, text, tool_args))
        elif path.endswith(":generateContent"):
            tool_use = int(self.headers.get("x-mock-gemini-tool-use", "").strip() or 0)
            self.send_json(200, gemini_response(gemini_model(path), text, tool_use))
        elif path.endswith(":streamGenerateContent"):
            chunks = gemini_stream(gemini_model(path), pieces)
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            framing = self.headers.get("x-mock-stream-framing", "").strip()
            if not framing:
                framing = "sse" if "alt=sse" in query.split("&") else "json"
            if framing == "sse":
                self.send_stream([sse(chunk) for chunk in chunks])
            else:
                self.send_json_array(chunks)
        elif path.endswith("/converse-stream") or path.endswith("/invoke-with-response-stream"):
            cached = int(self.headers.get("x-mock-bedrock-cache", "").strip() or 0)
            if path.endswith("/converse-stream"):
                messages = converse_stream(pieces, cached)
            else:
                messages = invoke_stream(model, pieces, cached)
            fault = self.headers.get("x-mock-bedrock-stream", "").strip()
            if fault == "cut":
                messages = messages[:-1]
            elif fault == "bad-crc":
                last = bytearray(messages[-1])
                last[-1] ^= 0xFF
                messages[-1] = bytes(last)
            self.send_stream(messages, "application/vnd.amazon.eventstream")
        elif path.endswith("/converse") or (
                path.endswith("/invoke") and self.headers.get("x-mock-bedrock-cache")):
            cached = int(self.headers.get("x-mock-bedrock-cache", "").strip() or 0)
            counts = [("x-amzn-bedrock-input-token-count", str(PROMPT_TOKENS)),
                      ("x-amzn-bedrock-output-token-count", str(COMPLETION_TOKENS))]
            if path.endswith("/converse"):
                answer = bedrock_converse(text)
                if cached:
                    answer["usage"]["cacheReadInputTokens"] = cached
                    answer["usage"]["totalTokens"] += cached
                    self.send_json(200, answer, counts)
                else:
                    self.send_json(200, answer)
            else:
                answer = anthropic_message(model, text)
                if cached:
                    answer["usage"]["cache_read_input_tokens"] = cached
                    counts.append(("x-amzn-bedrock-cache-read-input-token-count", str(cached)))
                self.send_json(200, answer, counts)
        elif path.endswith("/models") and self.command in ("GET", "HEAD"):
            model_entry = {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "mock"}
            self.send_json(200, {"object": "list", "data": [model_entry]})
        else:
            self.send_error_json(404, "mock: no such endpoint", "invalid_request_error")


# --- response bodies ------------------------------------------------------------------------

OPENAI_USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}


TOOL_CALL_ID = "call_mock_1"


def chat_completion(model: str, text: str, tool_args=None) -> dict:
    message = {"role": "assistant", "content": text, "refusal": None}
    if tool_args is not None:
        message["tool_calls"] = [{"id": TOOL_CALL_ID, "type": "function", "function": {
            "name": "lookup", "arguments": "".join(tool_args)}}]
    return {
        "id": ident("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "mock",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": OPENAI_USAGE,
    }


def chat_stream(model: str, pieces: list[str], include_usage: bool, style: str = "",
                tool_args=None) -> list[bytes]:
    base = {"id": ident("chatcmpl-"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "mock"}

    def chunk(delta: dict, finish=None) -> dict:
        out = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None,
                                   "finish_reason": finish}])
        if include_usage:  # OpenAI sends usage: null on every chunk but the last
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    if tool_args is not None:
        call = {"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": "lookup", "arguments": ""}}
        chunks.append(chunk({"tool_calls": [call]}))
        chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                   for piece in tool_args]
    chunks.append(chunk({}, "stop" if tool_args is None else "tool_calls"))
    if include_usage and style == "split":
        chunks.append(dict(base, choices=[], usage={"prompt_tokens": PROMPT_TOKENS}))
        chunks.append(dict(base, choices=[], usage={"completion_tokens": float(COMPLETION_TOKENS)}))
    elif include_usage and style == "content":
        # Usage on the last chunk that still carries a choice, as some compatible servers do.
        chunks[-1]["usage"] = OPENAI_USAGE
    elif include_usage and style == "azure":
        filtered = {"hate": {"filtered": False, "severity": "safe"}}
        chunks.append(dict(base, choices=[], usage=OPENAI_USAGE, prompt_filter_results=[
            {"prompt_index": 0, "content_filter_results": filtered}]))
    elif include_usage:
        chunks.append(dict(base, choices=[], usage=OPENAI_USAGE))
    return [sse(c) for c in chunks] + [sse("[DONE]")]


def text_completion(model: str, text: str) -> dict:
    return {
        "id": ident("cmpl-"), "object": "text_completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": OPENAI_USAGE,
    }


def embeddings(model: str, req: dict) -> dict:
    inputs = req.get("input", "")
    # A string or a list of token ids is one input; any other list is one input per item.
    if isinstance(inputs, list) and inputs and not all(isinstance(i, int) for i in inputs):
        count = len(inputs)
    else:
        count = 1
    data = []
    for index in range(count):
        vector = [round(0.1 * (index + 1), 4), 0.25, -0.5, 0.75]
        if req.get("encoding_format") == "base64":  # little-endian float32, as OpenAI sends
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def response_object(model: str, text: str, status: str, resp_id=None, msg_id=None) -> dict:
    done = status == "completed"
    message = {"type": "message", "id": msg_id or ident("msg_"), "status": "completed",
               "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    usage = {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": COMPLETION_TOKENS,
             "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
    return {
        "id": resp_id or ident("resp_"), "object": "response", "created_at": int(time.time()),
        "status": status, "model": model, "output": [message] if done else [],
        "usage": usage if done else None, "error": None, "incomplete_details": None,
        "instructions": None, "metadata": {}, "parallel_tool_calls": True,
        "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto", "tools": [],
    }


def responses_stream(model: str, pieces: list[str], end: str = "") -> list[bytes]:
    # Beyond created/delta/completed, the item and part events are sent too: the SDK's
    # responses.stream() helper builds its snapshot from them and fails without them.
    resp_id, msg_id, text = ident("resp_"), ident("msg_"), "".join(pieces)
    where = {"item_id": msg_id, "output_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    item = {"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant",
            "content": []}
    done = response_object(model, text, "completed", resp_id, msg_id)
    events = [
        ("response.created", {"response": response_object(model, "", "in_progress", resp_id)}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added", dict(where, content_index=0, part=part)),
        *[("response.output_text.delta", dict(where, content_index=0, delta=p, logprobs=[]))
          for p in pieces],
        ("response.output_text.done", dict(where, content_index=0, text=text, logprobs=[])),
        ("response.content_part.done",
         dict(where, content_index=0, part=dict(part, text=text))),
        ("response.output_item.done", {"output_index": 0, "item": done["output"][0]}),
        ("response.completed", {"response": done}),
    ]
    if end == "incomplete":
        cut = dict(done, status="incomplete",
                   incomplete_details={"reason": "max_output_tokens"})
        events[-1] = ("response.incomplete", {"response": cut})
    elif end == "failed":
        failed = dict(done, status="failed", output=[], usage=None,
                      error={"code": "server_error", "message": "The model failed."})
        events[-1] = ("response.failed", {"response": failed})
    return [sse(dict(data, type=name, sequence_number=n), name)
            for n, (name, data) in enumerate(events)]


def tool_input(tool_args: list[str]):
    joined = "".join(tool_args)
    try:
        return json.loads(joined)
    except ValueError:
        return {"text": joined}


def anthropic_message(model: str, text: str, tool_args=None) -> dict:
    content = [{"type": "text", "text": text}]
    if tool_args is not None:
        content.append({"type": "tool_use", "id": "toolu_mock_1", "name": "lookup",
                        "input": tool_input(tool_args)})
    return {
        "id": ident("msg_"), "type": "message", "role": "assistant", "model": model,
        "content": content,
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
    }


def anthropic_stream(model: str, pieces: list[str], tool_args=None) -> list[bytes]:
    return [sse(dict(data, type=name), name)
            for name, data in anthropic_events(model, pieces, tool_args)]


def anthropic_events(model: str, pieces: list[str], tool_args=None,
                     cached: int = 0) -> list[tuple[str, dict]]:
    start = dict(anthropic_message(model, ""), content=[], stop_reason=None,
                 usage={"input_tokens": PROMPT_TOKENS, "output_tokens": 1})
    if cached:
        start["usage"]["cache_read_input_tokens"] = cached
    return [
        ("message_start", {"message": start}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
        *[("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
          for p in pieces],
        ("content_block_stop", {"index": 0}),
        *([] if tool_args is None else [
            ("content_block_start", {"index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_mock_1", "name": "lookup", "input": {}}}),
            *[("content_block_delta", {"index": 1, "delta": {
                "type": "input_json_delta", "partial_json": p}}) for p in tool_args],
            ("content_block_stop", {"index": 1}),
        ]),
        ("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": COMPLETION_TOKENS}}),
        ("message_stop", {}),
    ]


def gemini_model(path: str) -> str:
    # /v1beta/models/{model}:generateContent
    return path.rsplit("/", 1)[-1].split(":", 1)[0]


def gemini_response(model: str, text: str, tool_use: int = 0) -> dict:
    usage = {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": COMPLETION_TOKENS,
             "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS + tool_use}
    if tool_use:
        usage["toolUsePromptTokenCount"] = tool_use
    candidate = {"content": {"role": "model", "parts": [{"text": text}]},
                 "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
            "responseId": ident("")}


def gemini_stream(model: str, pieces: list[str]) -> list[dict]:
    # Each element (an event with ?alt=sse, an array element without) is a whole
    # GenerateContentResponse; usage comes with the last.
    chunks = []
    for n, piece in enumerate(pieces):
        chunk = gemini_response(model, piece)
        if n < len(pieces) - 1:
            del chunk["candidates"][0]["finishReason"]
        chunks.append(chunk)
    return chunks


def bedrock_converse(text: str) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": PROMPT_TOKENS, "outputTokens": COMPLETION_TOKENS,
                  "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        "metrics": {"latencyMs": 1},
    }


# --- AWS event streams (Bedrock) -------------------------------------------------------------


def aws_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One message of the AWS event stream encoding: prelude (total length, headers length,
    CRC-32 of both), string headers (type 7), payload, CRC-32 of everything before it."""
    block = b"".join(bytes([len(name)]) + name.encode() + b"\x07"
                     + struct.pack(">H", len(value)) + value.encode()
                     for name, value in headers)
    prelude = struct.pack(">II", 16 + len(block) + len(payload), len(block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def aws_event(event_type: str, payload: dict) -> bytes:
    # Bedrock pads each payload with "p" so that lengths do not give away the text.
    padded = dict(payload, p="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"[
        :1 + len(json.dumps(payload)) % 40])
    headers = [(":event-type", event_type), (":content-type", "application/json"),
               (":message-type", "event")]
    return aws_message(headers, json.dumps(padded, separators=(",", ":")).encode())


def converse_stream(pieces: list[str], cached: int = 0) -> list[bytes]:
    usage = {"inputTokens": PROMPT_TOKENS, "outputTokens": COMPLETION_TOKENS,
             "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS + cached}
    if cached:
        usage["cacheReadInputTokens"] = cached
        usage["cacheWriteInputTokens"] = 0
    return [
        aws_event("messageStart", {"role": "assistant"}),
        *[aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
          for piece in pieces],
        aws_event("contentBlockStop", {"contentBlockIndex": 0}),
        aws_event("messageStop", {"stopReason": "end_turn"}),
        aws_event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}),
    ]


def invoke_stream(model: str, pieces: list[str], cached: int = 0) -> list[bytes]:
    events = [dict(data, type=name) for name, data in anthropic_events(model, pieces, None, cached)]
    # Bedrock adds its own count of the invocation to the model's last event.
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": PROMPT_TOKENS, "outputTokenCount": COMPLETION_TOKENS,
        "invocationLatency": 2, "firstByteLatency": 1,
        "cacheReadInputTokenCount": cached, "cacheWriteInputTokenCount": 0}
    return [aws_event("chunk", {"bytes": base64.b64encode(json.dumps(event).encode()).decode()})
            for event in events]


# --- main -----------------------------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, int]:
    name, sep, port = value.partition("=")
    if not sep or not name or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {value!r}")
    return name, int(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", type=parse_listen, required=True,
                        metavar="NAME=PORT", help="a listener name and its port (0: any free)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: %(default)s)")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                        help="certificate chain and key for the --tls-listener listeners")
    parser.add_argument("--tls-listener", action="append", default=[], metavar="NAME",
                        help="a listener that speaks TLS (needs --tls)")
    parser.add_argument("--serve-file", action="append", default=[], metavar="PATH=FILE",
                        help="answer GET PATH with the bytes of FILE")
    parser.add_argument("--behave", action="append", default=[], metavar="NAME=JSON",
                        help="a listener's behaviour, e.g. openai='{\"status\":429}'")
    args = parser.parse_args()
    for item in args.behave:
        name, sep, text = item.partition("=")
        try:
            behaviour = check_behaviour(json.loads(text)) if sep else None
        except (ValueError, BadRequest) as exc:
            parser.error(f"--behave {item!r}: {exc}")
        if not sep or not name:
            parser.error(f"expected NAME=JSON, got {item!r}")
        if behaviour:
            BEHAVIOURS[name] = behaviour
    if args.tls_listener and not args.tls:
        parser.error("--tls-listener needs --tls CERT KEY")
    for item in args.serve_file:
        url_path, sep, file_name = item.partition("=")
        if not sep or not url_path.startswith("/"):
            parser.error(f"expected PATH=FILE, got {item!r}")
        with open(file_name, "rb") as f:
            FILES[url_path] = f.read()
    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)

    servers: dict[str, Server] = {}
    for name, port in args.listen:
        if name in servers:
            parser.error(f"listener {name!r} given twice")
        handler = type(f"Handler_{name}", (Handler,), {"listener": name})
        try:
            servers[name] = Server((args.host, port), handler)
        except OSError as exc:
            print(f"mock_provider: cannot listen on {args.host}:{port} for {name}: {exc}",
                  file=sys.stderr)
            return 1
        if name in args.tls_listener:
            # The handshake happens on first read, in the thread that serves the connection.
            servers[name].socket = context.wrap_socket(
                servers[name].socket, server_side=True, do_handshake_on_connect=False)
    unknown = set(args.tls_listener) - set(servers)
    if unknown:
        parser.error(f"--tls-listener names no listener: {sorted(unknown)}")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for server in servers.values():
        # A short poll interval keeps shutdown quick: each server notices it within 0.1 s.
        threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    print(json.dumps({name: s.server_address[1] for name, s in servers.items()}), flush=True)

    stop.wait()
    for server in servers.values():
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
