#!/usr/bin/env python3
"""V8 benchmark: the built module in node's V8, without Envoy, through a minimal proxy-wasm host.

    .venv/bin/python benches/vm.py [options]        # also run by `make bench`

Runs target/wasm32-wasip1/release/posturio.wasm in node (benches/vm_host.mjs, a proxy-wasm
ABI 0.2.1 host in JavaScript) through whole request lifecycles: request headers, the whole
request body, response headers, the whole response body (a fixed chat completion with usage),
log, done, delete. It shows what the module's own code costs per request in V8, and exactly
which host calls it makes per request, apart from Envoy's plumbing: compare with the Envoy CPU
per request in benches/results/latest.md. V8 compiles with TurboFan only, as in Envoy.

Cases: routing only (envoy/policy.json without its inspection rules) and every detector on
(benches/policy-detectors.json), each with 1 KiB, 64 KiB and 1 MiB chat requests that must be
forwarded. Each case runs several rounds in a fresh node; the table gives the median over
rounds. A run fails (exit status 1) if the module logs an error, answers a request locally,
does not set the route header, or traps. The table is written to benches/results/vm.md.

Installs node (Debian's nodejs package) with apt-get when it is missing. Options can also be
set in the environment: VM_ROUNDS, VM_SCALE, VM_CASES, VM_NODE; BENCH_QUICK=1 changes the
defaults to one round of a twentieth of the iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling module, found through the path set above)

RESULTS = lab.REPO / "benches" / "results" / "vm.md"
HOST = lab.REPO / "benches" / "vm_host.mjs"
KIB = 1024
MIB = 1024 * 1024

# Timed lifecycles per round at --scale 1: well under a second per case and round on the
# 2-core machine of docs/performance.md.
ITERATIONS = {KIB: 20000, 64 * KIB: 2000, MIB: 150}


@dataclass
class Case:
    name: str
    label: str
    size: int
    # "route" (the example policy without rules) or "detectors".
    policy: str


CASES = [
    Case("route-1k", "routing only, 1 KiB", KIB, "route"),
    Case("route-64k", "routing only, 64 KiB", 64 * KIB, "route"),
    Case("route-1m", "routing only, 1 MiB", MIB, "route"),
    Case("detectors-1k", "every detector on, 1 KiB", KIB, "detectors"),
    Case("detectors-64k", "every detector on, 64 KiB", 64 * KIB, "detectors"),
    Case("detectors-1m", "every detector on, 1 MiB", MIB, "detectors"),
]


@dataclass
class Result:
    case: Case
    iterations: int
    us: list[float] = field(default_factory=list)
    # One {host call: count per request} per round.
    calls: list[dict[str, float]] = field(default_factory=list)


def size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Environment: VM_ROUNDS, VM_SCALE, VM_CASES and VM_NODE set the defaults of "
        "--rounds, --scale, --cases and --node.",
    )
    # BENCH_QUICK=1 (make bench's short mode): one round of a twentieth of the iterations.
    quick = lab.quick()
    parser.add_argument("--rounds", type=int, default=env_int("VM_ROUNDS", 1 if quick else 3),
                        help="rounds per case, each in a fresh node; the table shows the median "
                        "(default 3)")
    parser.add_argument("--scale", type=float, default=env_float("VM_SCALE", 0.05 if quick else 1.0),
                        help="multiplies the timed iterations per round: "
                        + ", ".join(f"{n:,} for {size_label(size)}" for size, n in ITERATIONS.items())
                        + " at 1 (default 1)")
    parser.add_argument("--cases", default=os.environ.get("VM_CASES", ""),
                        help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--node", default=os.environ.get("VM_NODE", "node"),
                        help="the node binary (default: node, installed with apt-get when "
                        "missing)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.scale > 0:
        parser.error("--scale must be above 0")
    return args


def node_binary(name: str) -> str:
    if name == "node":
        lab.ensure_tools({"node": "nodejs"})
    path = shutil.which(name)
    if path is None:
        sys.exit(f"node is not installed at {name}")
    return path


def main() -> int:
    args = parse_args()
    cases = lab.select(CASES, args.cases)
    node = node_binary(args.node)
    built = lab.module_path()
    if any(case.policy == "detectors" for case in cases) and not lab.DETECTORS_POLICY.exists():
        sys.exit(f"{lab.DETECTORS_POLICY} does not exist")
    with tempfile.TemporaryDirectory(prefix="posturio-vm-") as tmp:
        work = Path(tmp)
        # A copy of the module, so that a rebuild during the run cannot change what is measured.
        module = work / "posturio.wasm"
        shutil.copyfile(built, module)
        return run(args, cases, node, module, work)


def run(args, cases: list[Case], node: str, module: Path, work: Path) -> int:
    module_bytes = module.stat().st_size
    policies = {
        "route": work / "policy-route.json",
        "detectors": work / "policy-detectors.json",
    }
    policies["route"].write_text(lab.routing_only(lab.EXAMPLE_POLICY.read_text()))
    if lab.DETECTORS_POLICY.exists():
        shutil.copyfile(lab.DETECTORS_POLICY, policies["detectors"])
    bodies = {}
    for size in sorted({case.size for case in cases}):
        bodies[size] = work / f"body-{size}.json"
        bodies[size].write_bytes(lab.chat_body(size, "gpt-4o-mini"))

    results = {
        case.name: Result(case, max(10, round(ITERATIONS[case.size] * args.scale)))
        for case in cases
    }
    print(
        f"{len(cases)} cases x {args.rounds} rounds in {node_version(node)}, "
        f"iterations per round x{args.scale:g}",
        flush=True,
    )
    started = time.monotonic()
    # Rounds outermost, so that the machine's drift spreads over every case alike.
    for round_index in range(args.rounds):
        for case in cases:
            result = results[case.name]
            out = run_host(
                node, module, policies[case.policy], bodies[case.size], result.iterations, case
            )
            result.us.append(out["us_per_request"])
            result.calls.append(out["host_calls"])
            print(
                f"  round {round_index + 1}/{args.rounds} {case.name:<14}"
                f" {out['us_per_request']:>10.1f} µs/request  "
                f"{out['host_calls_total']:g} host calls/request",
                flush=True,
            )
    elapsed = time.monotonic() - started

    report = render(args, cases, results, node, module_bytes, elapsed)
    return lab.publish(report, args.out)


def run_host(
    node: str, module: Path, policy: Path, body: Path, iterations: int, case: Case
) -> dict:
    """One fresh node through `iterations` lifecycles; exits on any failure."""
    command = [
        node, "--no-warnings", str(HOST), str(module), str(policy), str(body), str(iterations)
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        sys.exit(f"{case.name}: {HOST.name} did not finish within 900 s")
    if done.returncode != 0:
        sys.exit(
            f"{case.name}: {HOST.name} failed (exit status {done.returncode}):\n"
            f"{done.stderr.strip()[-2000:]}"
        )
    if done.stderr.strip():
        # The module's warnings: shown, as Envoy would log them, but not a failure.
        print(done.stderr.strip(), file=sys.stderr, flush=True)
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
        float(out["us_per_request"])
        dict(out["host_calls"])
    except (IndexError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"{case.name}: unexpected output from {HOST.name} ({error}):\n{done.stdout}")
    return out


def node_version(node: str) -> str:
    try:
        done = subprocess.run(
            [node, "-p", "`node ${process.version} (V8 ${process.versions.v8})`"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "node (unknown version)"
    return done.stdout.strip() or "node (unknown version)"


def fmt_us(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def fmt_count(count: float) -> str:
    return f"{count:g}"


def fmt_calls(calls: dict[str, float]) -> str:
    ordered = sorted(calls.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"`{name}` {fmt_count(count)}" for name, count in ordered)


def render(args, cases: list[Case], results: dict[str, Result], node: str, module_bytes: int,
           elapsed: float) -> str:
    iterations = ", ".join(
        f"{results[c.name].iterations:,} ({c.name})" for c in cases
    )
    lines = [
        "# Posturio in V8, without Envoy",
        "",
        f"- Machine: {lab.machine_description()}",
        f"- Runtime: {node_version(node)}, TurboFan only (`--no-liftoff`, as Envoy's V8); host: "
        "`benches/vm_host.mjs`",
        f"- Run: {args.rounds} rounds per case, each in a fresh node; timed request lifecycles "
        f"per round: {iterations}; each after a warm-up of min(2,000, a tenth of them) "
        "(medians shown, the range over rounds in brackets)",
        f"- Module: `posturio.wasm`, {module_bytes:,} bytes, from source {lab.source_version()}",
        f"- Measured: {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min; "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "| case | µs per request in V8 (median [min–max]) | host calls per request |",
        "|---|---:|---:|",
    ]
    for case in cases:
        result = results[case.name]
        totals = sorted({sum(calls.values()) for calls in result.calls})
        shown_calls = (
            fmt_count(totals[0]) if len(totals) == 1
            else f"{fmt_count(totals[0])}–{fmt_count(totals[-1])}"
        )
        lines.append(
            f"| {case.label} | **{fmt_us(statistics.median(result.us))}** "
            f"[{fmt_us(min(result.us))}–{fmt_us(max(result.us))}] | {shown_calls} |"
        )
    lines.append("")

    # The host calls by name: route-1k's, then any case whose calls differ from them.
    reference = results["route-1k"].calls[0] if "route-1k" in results else None
    if reference is not None:
        lines.append(f"Host calls per request, routing only, 1 KiB: {fmt_calls(reference)}.")
    for case in cases:
        calls = results[case.name].calls[0]
        if case.name != "route-1k" and (reference is None or calls != reference):
            lines.append(f"Host calls per request, {case.label}: {fmt_calls(calls)}.")
    lines += [
        "",
        "A request lifecycle is what Envoy drives for one forwarded request: request headers, "
        "the whole request body (end of stream), response headers, the whole response body (a "
        "fixed chat completion with usage), log, done, delete. The time is the module's own "
        "work in V8 plus the crossings between Wasm and JavaScript, the copies of the headers "
        "and bodies into the module's memory (as Envoy makes them), and the JavaScript host's "
        "own work per call, kept small (maps serialised once, nothing logged) but included. "
        "It leaves out what Envoy does around each host call (header maps, buffers, stats, "
        "properties); Envoy's whole CPU per request is in `benches/results/latest.md`.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
