"""What both SDK client scripts share: run one scenario with a fresh client, record every HTTP
request the SDK makes, and print the outcome as one JSON line."""

import base64
import json
import sys

SCENARIO_HEADER = "x-sdk-scenario"
# An answer with a secret split over two deltas, for the answer-inspection scenarios: the mock
# provider writes it (`x-mock-answer`), a rule with direction "response" redacts or blocks it.
SPLIT_SECRET = ["Your key is SECRET-12", "3456, keep it."]


def answer_headers(consumer: str) -> dict:
    """The headers that make the mock answer with `SPLIT_SECRET`, as `consumer`."""
    answer = base64.b64encode(json.dumps({"pieces": SPLIT_SECRET}).encode()).decode()
    return {"x-posturio-consumer": consumer, "x-mock-answer": answer}


def run(sdk, base_error, make_client, error_fields, scenarios, base_url: str, name: str) -> dict:
    """`sdk` is the SDK module; `make_client(base_url, http_client, headers)` builds its client;
    `error_fields(e)` gives the SDK-specific fields of an API error (OpenAI's `code`,
    Anthropic's `type`)."""
    headers, call = scenarios[name]
    sent = []

    def record(request) -> None:
        sent.append({
            "method": request.method,
            "path": request.url.raw_path.decode(),
            "headers": [[key.lower(), value] for key, value in request.headers.items()],
            "body": request.read().decode("utf-8", "replace"),
        })

    http_client = sdk.DefaultHttpxClient(
        trust_env=False,  # no proxy from the environment between the SDK and Envoy
        event_hooks={"request": [record]},
    )
    client = make_client(base_url, http_client, {SCENARIO_HEADER: name, **headers})
    try:
        outcome = {"ok": True, **call(client)}
    except sdk.APIStatusError as e:
        outcome = {
            "ok": False,
            "error_class": type(e).__name__,
            "status": e.status_code,
            **error_fields(e),
            "body": e.body,
            "message": e.message,
            "posturio_code": e.response.headers.get("x-posturio-code"),
        }
    except base_error as e:
        outcome = {"ok": False, "error_class": type(e).__name__, "status": None,
                   "message": str(e)}
    finally:
        client.close()
    return {"scenario": name, **outcome, "sent": sent}


def main(scenarios, run_one) -> int:
    if len(sys.argv) < 3 or any(name not in scenarios for name in sys.argv[2:]):
        print(f"usage: {sys.argv[0]} BASE_URL SCENARIO... (scenarios: {', '.join(scenarios)})",
              file=sys.stderr)
        return 2
    for name in sys.argv[2:]:
        print(json.dumps(run_one(sys.argv[1], name)), flush=True)
    return 0
