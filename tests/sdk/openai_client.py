#!/usr/bin/env python3
"""Drives Posturio with the official OpenAI Python SDK, as a real client would.

    python tests/sdk/openai_client.py BASE_URL SCENARIO [SCENARIO...]

BASE_URL is Envoy's listener (http://127.0.0.1:PORT, without /v1). Each scenario makes its
SDK call(s) with a fresh client and prints one JSON line:

    {"scenario": NAME, "ok": true, ...what the SDK returned...,
     "sent": [{"method", "path", "headers", "body"}, ...]}
    {"scenario": NAME, "ok": false, "error_class": "PermissionDeniedError", "status": 403,
     "code": ..., "body": ..., "message": ..., "sent": [...]}

"sent" lists the HTTP requests the SDK made, headers and bodies as sent. Every request carries
the header `x-sdk-scenario: NAME`, so the test can tell which scenario reached the provider.
Retries are off: a refused call is exactly one request.
"""

import sys

import openai

import scenarios  # tests/sdk/scenarios.py, beside this script

API_KEY = "sk-posturio-sdk-test"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the gateway."},
]


def chat(client: openai.OpenAI, model: str) -> dict:
    reply = client.chat.completions.create(model=model, messages=MESSAGES)
    return {
        "model": reply.model,
        "content": reply.choices[0].message.content,
        "usage": reply.usage.model_dump() if reply.usage else None,
    }


def chat_stream(client: openai.OpenAI) -> dict:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, content, usage, model = 0, [], None, None
    for chunk in stream:
        chunks += 1
        model = chunk.model
        if chunk.choices and chunk.choices[0].delta.content:
            content.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return {"model": model, "content": "".join(content), "chunks": chunks, "usage": usage}


def chat_stream_naive(client: openai.OpenAI) -> dict:
    # The loop from OpenAI's own streaming example: it indexes choices[0] on every chunk, so
    # an extra chunk without choices (the usage chunk the gateway asks for to count tokens)
    # would raise IndexError here.
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks, content = 0, []
    for chunk in stream:
        chunks += 1
        content.append(chunk.choices[0].delta.content or "")
    return {"content": "".join(content), "chunks": chunks}


def responses_stream(client: openai.OpenAI) -> dict:
    # The SDK's helper: it assembles the events and raises the API error of an error event.
    with client.responses.stream(model="gpt-4o-mini", input="Say hello to the gateway.") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    return {"content": "".join(deltas), "output_text": final.output_text}


def embeddings(client: openai.OpenAI) -> dict:
    # No encoding_format: the SDK asks for base64 and decodes it back to floats.
    reply = client.embeddings.create(model="text-embedding-3-small", input="hello gateway")
    return {
        "model": reply.model,
        "embedding": reply.data[0].embedding,
        "usage": reply.usage.model_dump(),
    }


def responses(client: openai.OpenAI) -> dict:
    reply = client.responses.create(model="gpt-4o-mini", input="Say hello to the gateway.")
    return {
        "model": reply.model,
        "content": reply.output_text,
        "usage": reply.usage.model_dump() if reply.usage else None,
    }


def models(client: openai.OpenAI) -> dict:
    return {"models": [model.id for model in client.models.list().data]}


def model(client: openai.OpenAI, name: str) -> dict:
    found = client.models.retrieve(name)
    return {"id": found.id, "object": found.object, "owned_by": found.owned_by}


# name -> (extra default headers for the client, the call)
SCENARIOS = {
    "chat": ({}, lambda c: chat(c, "gpt-4o-mini")),
    "chat_alias": ({}, lambda c: chat(c, "fast")),
    "chat_stream": ({}, chat_stream),
    "chat_stream_naive": ({}, chat_stream_naive),
    "denied_model": ({}, lambda c: chat(c, "gpt-4o")),
    "unknown_model": ({}, lambda c: chat(c, "gpt-5")),
    "embeddings": ({}, embeddings),
    "responses": ({}, responses),
    "models_list": ({}, models),
    "models_list_search_team": ({"x-posturio-consumer": "search-team"}, models),
    "models_retrieve": ({}, lambda c: model(c, "fast")),
    # gpt-4o is search-team's, not the default consumer's; gpt-5 is no one's.
    "models_retrieve_other": ({}, lambda c: model(c, "gpt-4o")),
    "models_retrieve_unknown": ({}, lambda c: model(c, "gpt-5")),
    "search_team_gemini": (
        {"x-posturio-consumer": "search-team"},
        lambda c: chat(c, "gemini-flash"),
    ),
    # A model with targets: served by whichever target of its pool answers (tests/fallback.rs).
    "resilient": ({"x-posturio-consumer": "platform-team"}, lambda c: chat(c, "resilient")),
    "spoofed_cluster": ({"x-posturio-cluster": "anthropic"}, lambda c: chat(c, "gpt-4o-mini")),
    # Answer inspection (tests/answers.rs): an edited answer, whole and streamed, and a cut one.
    "answer_redacted": (scenarios.answer_headers("redactor"), lambda c: chat(c, "gpt-4o-mini")),
    "answer_redacted_stream": (scenarios.answer_headers("redactor"), chat_stream),
    "answer_blocked": (scenarios.answer_headers("blocker"), lambda c: chat(c, "gpt-4o-mini")),
    "answer_blocked_stream": (scenarios.answer_headers("blocker"), chat_stream),
    "answer_blocked_responses_stream": (scenarios.answer_headers("blocker"), responses_stream),
}


def make_client(base_url: str, http_client, headers: dict) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{base_url}/v1",
        api_key=API_KEY,
        max_retries=0,
        timeout=30,
        default_headers=headers,
        http_client=http_client,
    )


def run(base_url: str, name: str) -> dict:
    return scenarios.run(openai, openai.OpenAIError, make_client, lambda e: {"code": e.code}, SCENARIOS,
                         base_url, name)


if __name__ == "__main__":
    sys.exit(scenarios.main(SCENARIOS, run))
