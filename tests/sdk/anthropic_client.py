#!/usr/bin/env python3
"""Drives Posturio with the official Anthropic Python SDK, as a real client would.

    python tests/sdk/anthropic_client.py BASE_URL SCENARIO [SCENARIO...]

BASE_URL is Envoy's listener (http://127.0.0.1:PORT). Each scenario makes its SDK call(s)
with a fresh client and prints one JSON line:

    {"scenario": NAME, "ok": true, ...what the SDK returned...,
     "sent": [{"method", "path", "headers", "body"}, ...]}
    {"scenario": NAME, "ok": false, "error_class": "PermissionDeniedError", "status": 403,
     "type": ..., "body": ..., "message": ..., "sent": [...]}

"sent" lists the HTTP requests the SDK made, headers and bodies as sent. Every request carries
the header `x-sdk-scenario: NAME`, so the test can tell which scenario reached the provider.
Retries are off: a refused call is exactly one request.
"""

import json
import sys

import anthropic

API_KEY = "sk-ant-posturio-sdk-test"
SCENARIO_HEADER = "x-sdk-scenario"
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]


def message(client: anthropic.Anthropic, model: str) -> dict:
    reply = client.messages.create(model=model, max_tokens=64, messages=MESSAGES)
    return {
        "model": reply.model,
        "content": "".join(block.text for block in reply.content if block.type == "text"),
        "usage": reply.usage.model_dump(),
    }


def message_stream(client: anthropic.Anthropic) -> dict:
    events = 0
    with client.messages.stream(model="claude-haiku-4", max_tokens=64,
                                messages=MESSAGES) as stream:
        for _ in stream:
            events += 1
        final = stream.get_final_message()
    return {
        "model": final.model,
        "content": "".join(block.text for block in final.content if block.type == "text"),
        "chunks": events,
        "usage": final.usage.model_dump(),
    }


# name -> (extra default headers for the client, the call)
SCENARIOS = {
    "messages": ({}, lambda c: message(c, "claude-haiku-4")),
    "messages_stream": ({}, message_stream),
    "denied_model": ({}, lambda c: message(c, "claude-sonnet-4")),
    "search_team_sonnet": (
        {"x-posturio-consumer": "search-team"},
        lambda c: message(c, "claude-sonnet-4"),
    ),
}


def run(base_url: str, name: str) -> dict:
    headers, call = SCENARIOS[name]
    sent = []

    def record(request) -> None:
        sent.append({
            "method": request.method,
            "path": request.url.raw_path.decode(),
            "headers": [[name.lower(), value] for name, value in request.headers.items()],
            "body": request.read().decode("utf-8", "replace"),
        })

    http_client = anthropic.DefaultHttpxClient(
        trust_env=False,  # no proxy from the environment between the SDK and Envoy
        event_hooks={"request": [record]},
    )
    client = anthropic.Anthropic(
        base_url=base_url,
        api_key=API_KEY,
        max_retries=0,
        timeout=30,
        default_headers={SCENARIO_HEADER: name, **headers},
        http_client=http_client,
    )
    try:
        outcome = {"ok": True, **call(client)}
    except anthropic.APIStatusError as e:
        outcome = {
            "ok": False,
            "error_class": type(e).__name__,
            "status": e.status_code,
            "type": e.type,
            "body": e.body,
            "message": e.message,
            "posturio_code": e.response.headers.get("x-posturio-code"),
        }
    except anthropic.AnthropicError as e:
        outcome = {"ok": False, "error_class": type(e).__name__, "status": None,
                   "message": str(e)}
    finally:
        client.close()
    return {"scenario": name, **outcome, "sent": sent}


def main() -> int:
    if len(sys.argv) < 3 or any(name not in SCENARIOS for name in sys.argv[2:]):
        print(f"usage: {sys.argv[0]} BASE_URL SCENARIO... (scenarios: {', '.join(SCENARIOS)})",
              file=sys.stderr)
        return 2
    for name in sys.argv[2:]:
        print(json.dumps(run(sys.argv[1], name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
