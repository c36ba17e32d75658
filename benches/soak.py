#!/usr/bin/env python3
"""Soak: mixed traffic against Envoy with Posturio for a long while, its memory watched.

    make soak                              # or: .venv/bin/python benches/soak.py [options]
    SOAK_SECS=180 make soak                # a shorter run

Starts nginx (a fixed chat completion for every request) and Envoy 1.40 with the built module
and the example policy, on 127.0.0.1 only, then drives it with wrk for SOAK_SECS (default 600)
with a fixed mix: valid chat and Anthropic requests of 1 KiB, 64 KiB and 1 MiB, aliases that
are rewritten, denied models, prompts with a secret (blocked) or an e-mail address (redacted)
under the example policy's rules, malformed and duplicate-key JSON, wrong content types, gzip
bodies and unknown endpoints. Envoy's resident memory (VmRSS) is sampled every few seconds.

Passes when, after the warm-up, RSS never rises more than SOAK_RSS_SLACK_MIB (default 8) above
its level at the end of the warm-up, no answer is a 5xx, wrk saw no socket error, and the Wasm
VM never failed. Installs nginx and wrk with apt-get when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling module, found through the path set above)

KIB = 1024
MIB = 1024 * 1024

# The traffic mix: (weight, path, content type, extra headers, body, the status it must get
# (or the two it may get), what it is).
JSON = "application/json"


def mix() -> list[tuple[int, str, str, dict[str, str], bytes, int | tuple[int, ...], str]]:
    chat = lab.chat_body
    anthropic = json.dumps({
        "model": "claude-haiku-4", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Summarise the incident report in two lines."}],
    }).encode()
    def with_text(text: str) -> bytes:
        return json.dumps({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Please check this note: {text}."}],
        }).encode()

    gzip_like = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + chat(KIB, "gpt-4o-mini")
    return [
        (30, lab.CHAT_PATH, JSON, {}, chat(KIB, "gpt-4o-mini"), 200, "valid 1 KiB"),
        (10, lab.CHAT_PATH, JSON, {}, chat(4 * KIB, "fast"), 200, "alias, rewritten"),
        (8, "/v1/messages", JSON, {}, anthropic, 200, "Anthropic, rewritten"),
        # The example policy gives search-team a token budget, which this traffic uses up
        # within each minute: its requests are served (200) until the budget is spent, then
        # refused (429 budget_exceeded) until the minute ends, so budgets' shared counters are
        # updated by every served one.
        (6, lab.CHAT_PATH, JSON, {"x-posturio-consumer": "search-team"},
         chat(64 * KIB, "gpt-4o"), (200, 429), "valid 64 KiB, team, with a budget"),
        (1, lab.CHAT_PATH, JSON, {}, chat(MIB, "gpt-4o-mini"), 200, "valid 1 MiB"),
        (8, lab.CHAT_PATH, JSON, {}, chat(KIB, "gpt-4o"), 403, "denied model"),
        (3, lab.CHAT_PATH, JSON, {}, with_text("my key is AKIAIOSFODNN7EXAMPLE"), 403,
         "secret in the prompt, blocked"),
        (3, lab.CHAT_PATH, JSON, {}, with_text("write to dev@example.com today"), 200,
         "e-mail in the prompt, redacted"),
        (4, lab.CHAT_PATH, JSON, {}, chat(KIB, "gpt-4o-mini")[:-7], 400, "truncated JSON"),
        (3, lab.CHAT_PATH, JSON, {},
         b'{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}', 400, "duplicate key"),
        (3, lab.CHAT_PATH, "text/plain", {}, chat(KIB, "gpt-4o-mini"), 415, "wrong content type"),
        (2, lab.CHAT_PATH, JSON, {"content-encoding": "gzip"}, gzip_like, 415, "gzip body"),
        (2, "/v1/files", JSON, {}, b"{}", 404, "unknown endpoint"),
        (2, lab.CHAT_PATH, JSON, {"x-posturio-consumer": "a, b"},
         chat(KIB, "gpt-4o-mini"), 400, "identity given twice"),
    ]


WRK_SCRIPT = r"""
local spec = %(spec)s
local requests = {}
local next_index = 0

init = function(args)
  for i, r in ipairs(spec) do
    local f = assert(io.open(r.body, "rb"))
    local body = f:read("*a")
    f:close()
    requests[i] = wrk.format("POST", r.path, r.headers, body)
  end
end

request = function()
  next_index = next_index %% #requests + 1
  return requests[next_index]
end

statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%%d":%%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"timeout":%%d,"statuses":{%%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    table.concat(parts, ",")))
end
"""


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=float, default=env_number("SOAK_SECS", 600))
    parser.add_argument("--warmup", type=float, default=env_number("SOAK_WARMUP_SECS", 0),
                        help="seconds before RSS is held to the bound "
                        "(default: a fifth of the run, at most 120)")
    parser.add_argument("--sample", type=float, default=env_number("SOAK_SAMPLE_SECS", 5))
    parser.add_argument("--slack-mib", type=float, default=env_number("SOAK_RSS_SLACK_MIB", 8))
    parser.add_argument("--connections", type=int, default=int(env_number("SOAK_CONNECTIONS", 8)))
    parser.add_argument("--concurrency", type=int, default=int(env_number("SOAK_CONCURRENCY", 1)))
    args = parser.parse_args()
    warmup = args.warmup or min(args.secs / 5, 120)

    lab.ensure_tools({"nginx": "nginx", "wrk": "wrk"})
    lab.envoy_binary()
    lab.module_path()
    soak = lab.Lab(pin=True, envoy_cpus=args.concurrency)
    try:
        return run(args, warmup, soak)
    finally:
        soak.close()


def run(args, warmup: float, soak: lab.Lab) -> int:
    nginx = soak.start_nginx()
    envoy = soak.start_envoy(
        "posturio", upstream=nginx.port, policy=lab.EXAMPLE_POLICY.read_text(),
        concurrency=args.concurrency, log_level="info",
    )
    spec = []
    # Weight by status; a kind that may get either of two statuses counts under both, "a|b".
    expected: dict[str, int] = {}
    for index, (weight, path, content_type, headers, body, status, _) in enumerate(mix()):
        key = "|".join(map(str, status)) if isinstance(status, tuple) else str(status)
        expected[key] = expected.get(key, 0) + weight
        body_file = soak.write_file(f"soak-{index}.body", body)
        entry = {"path": path, "headers": {"Content-Type": content_type, **headers},
                 "body": str(body_file)}
        spec += [entry] * weight
    # Spread each kind over the cycle instead of in runs: a fixed interleaving.
    random.Random(1).shuffle(spec)
    script = soak.write_file("soak.lua", WRK_SCRIPT % {"spec": lua_table(spec)})

    print(f"soak: {args.secs:.0f} s of mixed traffic, {args.connections} connections, "
          f"warm-up {warmup:.0f} s, RSS sampled every {args.sample:.0f} s", flush=True)
    result = {}

    def drive():
        result.update(soak.wrk(envoy.port, script, secs=args.secs,
                               connections=args.connections, threads=1))

    worker = threading.Thread(target=drive)
    started = time.monotonic()
    worker.start()
    samples = []  # (seconds since start, RSS in KiB)
    while worker.is_alive():
        elapsed = time.monotonic() - started
        rss = envoy.status()["VmRSS"]
        samples.append((elapsed, rss))
        print(f"  {elapsed:6.0f} s  RSS {rss / 1024:7.1f} MiB", flush=True)
        worker.join(timeout=args.sample)
    samples.append((time.monotonic() - started, envoy.status()["VmRSS"]))

    problems = []
    if not result:
        problems.append("wrk printed no result")
    else:
        errors = {k: result[k] for k in ("connect", "read", "write", "timeout") if result[k]}
        if errors:
            problems.append(f"wrk socket errors: {errors}")
        server_errors = {s: n for s, n in result["statuses"].items() if int(s) >= 500}
        if server_errors:
            problems.append(f"5xx answers: {server_errors}")
        # Requests go out in a fixed cycle, so each status has the share of its kinds. A kind
        # with two possible statuses ("a|b") adds to the share of a and b taken together, and
        # bounds b's share alone.
        total = sum(result["statuses"].values())
        cycle = sum(expected.values())

        def share(statuses) -> float:
            return sum(result["statuses"].get(s, 0) for s in statuses) / total if total else 0

        either = {key: key.split("|") for key in expected if "|" in key}
        shared = {status for statuses in either.values() for status in statuses}
        for status in sorted((set(expected) | set(result["statuses"])) - set(either) - shared):
            got, want = share([status]), expected.get(status, 0) / cycle
            if abs(got - want) > 0.01:
                problems.append(f"status {status}: {got:.1%} of answers, expected {want:.1%}")
        for key, statuses in either.items():
            got = share(statuses)
            want = sum(expected.get(k, 0) for k in [key, *statuses]) / cycle
            if abs(got - want) > 0.01:
                problems.append(f"statuses {' or '.join(statuses)}: {got:.1%} of answers, "
                                f"expected {want:.1%}")
            alternative = statuses[-1]
            most = (expected[key] + expected.get(alternative, 0)) / cycle
            if share([alternative]) > most + 0.01:
                problems.append(f"status {alternative}: {share([alternative]):.1%} of answers, "
                                f"at most {most:.1%} expected")
    log = envoy.log_tail(10**9)
    for marker in ("Function: proxy_on_", "panicked at", "Wasm VM failed", "Uncaught RuntimeError"):
        if marker in log:
            problems.append(f"the Wasm VM failed: a log line contains {marker!r}")

    before = [rss for t, rss in samples if t < warmup]
    after = [(t, rss) for t, rss in samples if t >= warmup]
    base = before[-1] if before else samples[0][1]
    if after:
        peak = max(rss for _, rss in after)
        end = after[-1][1]
        slope = trend_mib_per_hour(after)
    else:
        peak = end = base
        slope = 0.0
    growth = (peak - base) / 1024
    rate = result.get("requests", 0) / (result.get("duration_us", 1) / 1e6)
    print()
    print(f"requests: {result.get('requests', 0):,} ({rate:,.0f}/s); "
          f"statuses: {json.dumps(result.get('statuses', {}), sort_keys=True)}")
    print(f"RSS: {samples[0][1] / 1024:.1f} MiB at start, {base / 1024:.1f} MiB at the end of "
          f"the warm-up, peak after it {peak / 1024:.1f} MiB ({growth:+.1f} MiB), "
          f"{end / 1024:.1f} MiB at the end; trend after warm-up {slope:+.1f} MiB/hour")
    print(f"bound: RSS after warm-up at most {args.slack_mib:.0f} MiB above its warm-up level")
    if growth > args.slack_mib:
        problems.append(f"RSS grew {growth:.1f} MiB after the warm-up (bound {args.slack_mib} MiB)")
    if problems:
        print("soak FAILED:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("soak passed")
    return 0


def trend_mib_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var * 3600 / 1024


def lua_table(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_table(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua_table(v) for v in value) + "}"
    return json.dumps(value)


if __name__ == "__main__":
    sys.exit(main())
