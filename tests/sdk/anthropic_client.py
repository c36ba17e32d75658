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

import sys

import anthropic

import scenarios  # tests/sdk/scenarios.py, beside this script

API_KEY = "sk-ant-posturio-sdk-test"
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]


def message(client: anthropic.Anthropic, model: str) -> dict:
    reply = client.messages.create(model=model, max_tokens=64, messages=MESSAGES)
    return {
        "model": reply.model,
        "content": "".join(block.text for block in reply.content if block.type == "text"),
        "usage": reply.usage.model_dump(),
    }


def message_stream(client: anthropic.Anthropic, model: str = "claude-haiku-4") -> dict:
    events = 0
    with client.messages.stream(model=model, max_tokens=64,
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


def models(client: anthropic.Anthropic) -> dict:
    # Iterating the page follows `has_more`: a second page would be a second request.
    return {"models": [found.id for found in client.models.list()]}


def model(client: anthropic.Anthropic, name: str) -> dict:
    found = client.models.retrieve(name)
    return {"id": found.id, "type": found.type, "display_name": found.display_name}


# name -> (extra default headers for the client, the call)
SCENARIOS = {
    "messages": ({}, lambda c: message(c, "claude-haiku-4")),
    "messages_stream": ({}, message_stream),
    "denied_model": ({}, lambda c: message(c, "claude-sonnet-4")),
    "search_team_sonnet": (
        {"x-posturio-consumer": "search-team"},
        lambda c: message(c, "claude-sonnet-4"),
    ),
    # claude-resilient is served by a fallback pool (tests/fallback_families.rs).
    "resilient": ({}, lambda c: message(c, "claude-resilient")),
    "resilient_stream": ({}, lambda c: message_stream(c, "claude-resilient")),
    "models_list": ({}, models),
    "models_list_search_team": ({"x-posturio-consumer": "search-team"}, models),
    "models_retrieve": ({}, lambda c: model(c, "claude-haiku-4")),
    # claude-sonnet-4 is search-team's, not the default consumer's.
    "models_retrieve_other": ({}, lambda c: model(c, "claude-sonnet-4")),
    # Answer inspection (tests/answers.rs): an edited stream, and a cut one.
    "answer_redacted_stream": (scenarios.answer_headers("redactor"), message_stream),
    "answer_blocked_stream": (scenarios.answer_headers("blocker"), message_stream),
}


def make_client(base_url: str, http_client, headers: dict) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base_url,
        api_key=API_KEY,
        max_retries=0,
        timeout=30,
        default_headers=headers,
        http_client=http_client,
    )


def run(base_url: str, name: str) -> dict:
    return scenarios.run(anthropic, anthropic.AnthropicError, make_client, lambda e: {"type": e.type}, SCENARIOS,
                         base_url, name)


if __name__ == "__main__":
    sys.exit(scenarios.main(SCENARIOS, run))
