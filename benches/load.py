#!/usr/bin/env python3
"""Load benchmark: bare Envoy against Envoy with Posturio, both builds, and both floors.

    make bench                       # or: .venv/bin/python benches/load.py [options]
    BENCH_QUICK=1 make bench         # a short run that only checks the machinery

Starts, on 127.0.0.1 only, nginx answering every POST with a fixed chat completion, and one
Envoy 1.40 per setup, each with the same listener in front of it:

- bare Envoy, routing to nginx through a fixed cluster;
- Posturio Wasm: the built module (target/wasm32-wasip1/release/posturio.wasm) with the example
  policy (envoy/policy.json) without its inspection rules, routing by the cluster header as
  shipped; further Envoys run it with every built-in detector on
  (benches/policy-detectors.json), with consumers identified by API key, with rules that read
  answers too, and with a webhook guard that nginx answers;
- Posturio native: the native build (target/native/libposturio.so, an Envoy dynamic module) in
  the Wasm filter's place, with the same policies;
- the Wasm floor (benches/floor.wat, built with binaryen's wasm-as) and the native floor
  (benches/native-floor, target/native/libposturio_floor.so): filters that only hold the
  headers, copy the whole body in once and set the route header, so they show what Envoy
  charges any filter of that build that routes by the body.

Each case (a request body and a policy) is driven with wrk against every setup that serves it,
in turn, for several rounds; the order rotates from round to round so that the machine's drift
hits every setup alike, and each ratio is taken against bare Envoy in the same round. The
report (benches/results/latest.md) ends with the targets Posturio is held to.

Installs nginx, wrk and binaryen with apt-get when they are missing. Options can also be set in
the environment: BENCH_SECS, BENCH_ROUNDS, BENCH_WARMUP, BENCH_CONCURRENCY, BENCH_CONNECTIONS,
BENCH_CASES, BENCH_BUILDS, BENCH_MODULE, BENCH_BASELINE; BENCH_QUICK=1 changes the defaults
to one round of one second, no warm-up, the cases route-1k and detectors-1k.

`--baseline OLD.wasm` (or BENCH_BASELINE) also runs each Wasm case against a further Envoy
loading an older build, in the same rounds, and adds a table of the two builds side by side:
a change is judged against its previous module under the same load, not against figures from
another hour of a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling module, found through the path set above)
import load_report  # noqa: E402

RESULTS = lab.REPO / "benches" / "results" / "latest.md"
KIB = 1024
MIB = 1024 * 1024
FLOOR_SOURCE = lab.REPO / "benches" / "floor.wat"


@dataclass
class Case:
    name: str
    label: str
    size: int
    model: str
    # The policy the Posturio Envoys of both builds run for it: "route" (the example policy
    # without rules), "keys" (the same, consumers identified by API key, every request
    # carrying one), "detectors", "answers" or "guard".
    policy: str
    # The status Posturio must answer; bare Envoy and the floors always answer 200 (nginx).
    status: int
    # The request's prose: "plain", or "fold" (characters that folding changes, see
    # lab.FOLD_PROSE).
    text: str = "plain"
    # Whether the floor modules run it too (the routing cases: one floor figure per body size).
    floors: bool = False


CASES = [
    Case("route-1k", "routing only, 1 KiB", KIB, "gpt-4o-mini", "route", 200, floors=True),
    Case("route-64k", "routing only, 64 KiB", 64 * KIB, "gpt-4o-mini", "route", 200, floors=True),
    Case("route-1m", "routing only, 1 MiB", MIB, "gpt-4o-mini", "route", 200, floors=True),
    Case("denied-1k", "denied model (local 403), 1 KiB", KIB, "gpt-4o", "route", 403),
    Case("keys-1k", "API key identity, 1 KiB", KIB, "gpt-4o-mini", "keys", 200),
    Case("detectors-1k", "every detector on, 1 KiB", KIB, "gpt-4o-mini", "detectors", 200),
    Case("detectors-64k", "every detector on, 64 KiB", 64 * KIB, "gpt-4o-mini", "detectors", 200),
    Case("detectors-1m", "every detector on, 1 MiB", MIB, "gpt-4o-mini", "detectors", 200),
    # What the guardrails cost: folding (the same detectors, on text with full-width letters
    # and zero-width spaces), every detector on the answer too (the whole answer held and
    # scanned), and one guard call per request to a webhook guard on loopback (nginx).
    Case("fold-1k", "every detector on, 1 KiB with text to fold", KIB, "gpt-4o-mini",
         "detectors", 200, text="fold"),
    Case("answers-1k", "every detector on request and answer, 1 KiB", KIB, "gpt-4o-mini",
         "answers", 200),
    Case("guard-1k", "routing and one guard call, 1 KiB", KIB, "gpt-4o-mini", "guard", 200),
]

QUICK_CASES = "route-1k,detectors-1k"


@dataclass
class Run:
    rps: float
    p50: int
    p99: int
    cpu_us: float
    requests: int


@dataclass
class Result:
    case: Case
    # The setups that serve the case, bare Envoy first, in the report's order.
    sides: list[str]
    # Per setup, one run per round (in round order).
    runs: dict[str, list[Run]] = field(default_factory=dict)


def setup_key(build: str, policy: str) -> str:
    """The name of the Envoy that runs `build` ("wasm", "native", "baseline") with `policy`
    ("floor" for the floor module of that build)."""
    return f"{build}-{policy}"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse_args() -> argparse.Namespace:
    quick = lab.quick()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=int, default=env_int("BENCH_SECS", 1 if quick else 4),
                        help="seconds of load per case, Envoy and round (default 4)")
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_ROUNDS", 1 if quick else 5),
                        help="rounds; the table shows the median over them (default 5)")
    parser.add_argument("--warmup", type=int, default=env_int("BENCH_WARMUP", 0 if quick else 1),
                        help="seconds of discarded load per case and Envoy first (default 1)")
    parser.add_argument("--concurrency", type=int, default=env_int("BENCH_CONCURRENCY", 1),
                        help="Envoy worker threads, the same for every Envoy (default 1)")
    parser.add_argument("--connections", type=int, default=env_int("BENCH_CONNECTIONS", 16),
                        help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=env_int("BENCH_THREADS", 0),
                        help="wrk threads (default: one per core left to the load generator)")
    parser.add_argument("--cases",
                        default=os.environ.get("BENCH_CASES", "") or (QUICK_CASES if quick else ""),
                        help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--builds", default=os.environ.get("BENCH_BUILDS", "wasm,native"),
                        help="the builds measured, each with its floor: wasm, native or both "
                        "(default both)")
    parser.add_argument("--log-level", default="info",
                        help="Envoy's --log-level (default info, as deployed)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin Envoy and the load generator to separate cores")
    parser.add_argument("--module", type=Path,
                        default=Path(os.environ["BENCH_MODULE"]) if os.environ.get("BENCH_MODULE")
                        else None,
                        help="the Wasm module to measure (default: the one `make build` made); "
                        "an older build's copy measures the change between two commits")
    parser.add_argument("--baseline", type=Path,
                        default=Path(os.environ["BENCH_BASELINE"])
                        if os.environ.get("BENCH_BASELINE") else None,
                        help="an older build of the Wasm module, measured in the same rounds as "
                        "the one under test")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args()
    args.builds = lab.builds(args.builds)
    args.quick = quick
    if args.module is not None and not args.module.is_file():
        parser.error(f"--module: no such file: {args.module}")
    if args.baseline is not None and not args.baseline.is_file():
        parser.error(f"--baseline: no such file: {args.baseline}")
    if args.baseline is not None and "wasm" not in args.builds:
        parser.error("--baseline is a Wasm module: measure the wasm build too")
    if args.secs < 1 or args.rounds < 1 or args.concurrency < 1 or args.connections < 1:
        parser.error("--secs, --rounds, --concurrency and --connections must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def main() -> int:
    args = parse_args()
    cases = lab.select(CASES, args.cases)
    tools = {"nginx": "nginx", "wrk": "wrk"}
    if "wasm" in args.builds and any(case.floors for case in cases):
        tools["wasm-as"] = "binaryen"
    lab.ensure_tools(tools)
    lab.envoy_binary()
    bench = lab.Lab(pin=not args.no_pin, envoy_cpus=args.concurrency)
    try:
        # Copies of the modules, so that a rebuild during the run cannot change what is
        # measured.
        modules: dict[str, Path] = {}
        if "wasm" in args.builds:
            modules["wasm"] = bench.dir / "posturio.wasm"
            shutil.copyfile(args.module or lab.module_path(), modules["wasm"])
        if "native" in args.builds:
            modules["native"] = bench.dir / "libposturio.so"
            shutil.copyfile(lab.native_module_path(), modules["native"])
            if any(case.floors for case in cases):
                modules["native-floor"] = bench.dir / "libposturio_floor.so"
                shutil.copyfile(lab.native_floor_path(), modules["native-floor"])
        if args.baseline:
            modules["baseline"] = bench.dir / "baseline.wasm"
            shutil.copyfile(args.baseline, modules["baseline"])
        threads = args.threads or max(1, len(bench.load_cpus) or 1)
        return run(args, cases, bench, threads, modules)
    finally:
        bench.close()


def policy_text(policy: str) -> str:
    """The policy JSON each Posturio Envoy runs (the floors run the routing one, unread)."""
    if policy in ("route", "floor"):
        return lab.routing_only(lab.EXAMPLE_POLICY.read_text())
    if policy == "keys":
        return keys_policy()
    if policy == "detectors":
        return lab.DETECTORS_POLICY.read_text()
    if policy == "answers":
        return answers_policy()
    if policy == "guard":
        return guard_policy()
    raise ValueError(policy)


def essential(key: str) -> bool:
    """Whether the run is invalid without this setup: the floors and each build's routing
    Envoy. Any other setup that does not start (a policy an older baseline refuses, say) is
    left out with the reason."""
    floor = key.endswith("-floor")
    routing = key.endswith("-route") and not key.startswith("baseline-")
    return floor or routing


def run(args, cases: list[Case], bench: lab.Lab, threads: int, modules: dict[str, Path]) -> int:
    """Starts every setup the cases need, checks each with one request, drives them round
    after round, and publishes the report; the exit status (1 when the run is not valid)."""
    nginx = bench.start_nginx()
    problems: list[str] = []
    skipped: dict[str, str] = {}
    envoys: dict[str, lab.Process] = {
        "bare": bench.start_envoy(
            "bare", upstream=nginx.port, policy=None,
            concurrency=args.concurrency, log_level=args.log_level,
        )
    }
    wanted: list[tuple[str, str, Path | None]] = []  # (key, build, module)
    policies = list(dict.fromkeys(case.policy for case in cases))
    for build in args.builds:
        if any(case.floors for case in cases):
            wanted.append((setup_key(build, "floor"), build, None))
        wanted += [(setup_key(build, policy), build, modules[build]) for policy in policies]
    if args.baseline:
        wanted += [(setup_key("baseline", p), "wasm", modules["baseline"]) for p in policies]
    for key, build, module in wanted:
        if key == "wasm-floor":
            module = bench.dir / "floor.wasm"
            subprocess.run(["wasm-as", str(FLOOR_SOURCE), "-o", str(module)], check=True)
        elif key == "native-floor":
            module = modules["native-floor"]
        policy = key.split("-", 1)[1]
        if policy == "detectors" and not lab.DETECTORS_POLICY.exists():
            skipped[key] = f"{lab.DETECTORS_POLICY.relative_to(lab.REPO)} does not exist"
            continue
        try:
            envoys[key] = bench.start_envoy(
                key, upstream=nginx.port, policy=policy_text(policy),
                concurrency=args.concurrency, log_level=args.log_level,
                module=module, build=build,
            )
        except lab.StartFailed as failure:
            skipped[key] = start_failure(failure)
            print(f"skipping {key}: {skipped[key]}", flush=True)
            if essential(key):
                problems.append(f"{key} did not start: {skipped[key]}")
    time.sleep(1)
    at_start = {name: envoy.status() for name, envoy in envoys.items()}

    results: dict[str, Result] = {}
    scripts: dict[str, Path] = {}
    failed: set[str] = set()
    for case in cases:
        prose = lab.FOLD_PROSE if case.text == "fold" else lab.PROSE
        body = lab.chat_body(case.size, case.model, prose)
        scripts[case.name] = lab.wrk_post_script(
            bench, case.name, body, {"Content-Type": "application/json", **case_headers(case)}
        )
        sides = ["bare"]
        for build in (*args.builds, "baseline"):
            if case.floors and build != "baseline":
                sides.append(setup_key(build, "floor"))
            sides.append(setup_key(build, case.policy))
        sides = [side for side in sides if side in envoys]
        for side in list(sides):
            wrong = check_side(bench, case, side, body, envoys[side])
            if wrong:
                problems.append(wrong)
                failed.add(side)
                sides.remove(side)
        if len(sides) > 1:
            results[case.name] = Result(case, sides, {side: [] for side in sides})

    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(
            f"warning: the load average is {busy:.1f} before the benchmark starts; other work "
            "on this machine will make the figures noisy",
            file=sys.stderr,
            flush=True,
        )
    per_run = args.secs + 0.5
    total = sum(len(r.sides) for r in results.values()) * (args.warmup + args.rounds * per_run)
    print(
        f"{len(results)} cases, {sum(len(r.sides) for r in results.values())} case-Envoy pairs "
        f"x {args.rounds} rounds x {args.secs} s, {args.connections} connections, wrk threads "
        f"{threads}, Envoy --concurrency {args.concurrency}; about {total / 60:.1f} min",
        flush=True,
    )
    if bench.envoy_cpus:
        print(f"Envoy pinned to CPU {bench.envoy_cpus}, nginx and wrk to CPU {bench.load_cpus}")

    def drive(case: Case, side: str, secs: int) -> tuple[dict, float]:
        envoy = envoys[side]
        cpu_before = envoy.cpu_seconds()
        out = bench.wrk(
            envoy.port, scripts[case.name],
            secs=secs, connections=args.connections, threads=threads,
        )
        return out, envoy.cpu_seconds() - cpu_before

    if args.warmup:
        for result in results.values():
            for side in result.sides:
                drive(result.case, side, args.warmup)

    started = time.monotonic()
    others = lab.OtherWork()
    for round_index in range(args.rounds):
        for result in results.values():
            # Each round starts one setup further on, so none always runs first or last.
            shift = round_index % len(result.sides)
            for side in result.sides[shift:] + result.sides[:shift]:
                out, cpu = drive(result.case, side, args.secs)
                requests = out["requests"]
                seconds = out["duration_us"] / 1e6
                run_ = Run(
                    rps=requests / seconds if seconds else 0.0,
                    p50=out["p50"],
                    p99=out["p99"],
                    cpu_us=cpu / requests * 1e6 if requests else float("nan"),
                    requests=requests,
                )
                result.runs[side].append(run_)
                problems += check_run(result.case, side, out)
                print(
                    f"  round {round_index + 1}/{args.rounds} {result.case.name:<14} "
                    f"{side:<18} {run_.rps:>9.0f} req/s  p50 "
                    f"{load_report.fmt_ms(run_.p50):>9}  p99 {load_report.fmt_ms(run_.p99):>9}  "
                    f"Envoy CPU {run_.cpu_us:6.1f} us/req",
                    flush=True,
                )
    other_cores = others.cores()
    elapsed = time.monotonic() - started

    memory = {name: envoy.status() for name, envoy in envoys.items()}
    for name, envoy in envoys.items():
        problems += check_envoy(name, envoy)

    sizes = {build: path.stat().st_size for build, path in modules.items()}
    if "wasm-floor" in envoys:
        sizes["wasm-floor"] = (bench.dir / "floor.wasm").stat().st_size
    report = load_report.render(
        load_report.Measured(
            args=args, cases=cases, labels={case.name: case.label for case in CASES},
            results=results, at_start=at_start, memory=memory,
            sizes=sizes, skipped=skipped, failed=failed, threads=threads,
            envoy_cpus=bench.envoy_cpus,
            elapsed=elapsed, other_cores=other_cores, load_end=os.getloadavg()[0],
        )
    )
    return lab.publish(report, args.out, problems)


def start_failure(failure: lab.StartFailed) -> str:
    """Why an Envoy did not start, in a line: the module's own refusal when it logged one."""
    refused = [
        line.split("posturio", 1)[-1].strip(" :")
        for line in str(failure).splitlines()
        if "invalid configuration" in line
    ]
    if refused:
        first = refused[0] if len(refused[0]) <= 160 else refused[0][:157] + "..."
        return f"the module refuses the policy: {first}"
    last = [line for line in str(failure).splitlines() if line.strip()][-3:]
    return " / ".join(last)[-400:]


def check_side(bench: lab.Lab, case: Case, side: str, body: bytes, envoy: lab.Process) -> str:
    """One request to a setup before the load, so a broken setup fails clearly; why not, when
    its answer is not the one expected."""
    expected = case.status if side != "bare" and not side.endswith("-floor") else 200
    headers = case_headers(case) if side != "bare" else {}
    status, reply = bench.post(envoy.port, body, headers)
    if status == expected:
        return ""
    return (
        f"{case.name}: {side} answered {status}, expected {expected}; left out of the case:\n"
        f"{reply[:500]!r}\n{envoy.log_tail(10)}"
    )


def check_envoy(name: str, envoy: lab.Process) -> list[str]:
    """An Envoy that exited, or whose filter failed, makes the run invalid."""
    if envoy.popen.poll() is not None:
        return [f"{name} Envoy exited during the run:\n{envoy.log_tail()}"]
    logs = envoy.log_tail(100000).splitlines()
    stderr = envoy.log.parent / "stderr.log" if envoy.log else None
    if stderr and stderr.exists():
        logs += stderr.read_text(errors="replace").splitlines()
    for line in logs:
        # The Wasm VM's failure, or a panic (the native build catches and logs each one).
        marks = ("Function: proxy_on_", "panicked at", "Wasm VM failed", "panic in on_")
        if any(mark in line for mark in marks):
            return [f"{name} Envoy: the filter failed: {line}"]
    return []


# The key every "keys" request carries, and the policy that knows it by its hash.
BENCH_KEY = "pst_bench-key-for-load-tests-only-0000000000000"


def keys_policy() -> str:
    """The routing-only example policy, with consumers identified by API key: `default`
    holds the benchmark's key, so each request's key is read, hashed, looked up and removed."""
    policy = json.loads(lab.routing_only(lab.EXAMPLE_POLICY.read_text()))
    policy["identity"] = {"api_keys": True}
    digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
    policy["consumers"]["default"]["api_keys"] = [f"sha256:{digest}"]
    return json.dumps(policy, indent=2)


def answers_policy() -> str:
    """The detector policy with every rule reading the answer as well as the request."""
    policy = json.loads(lab.DETECTORS_POLICY.read_text())
    for rule in policy.get("rules", []):
        rule["direction"] = "both"
    return json.dumps(policy, indent=2)


def guard_policy() -> str:
    """The routing-only example policy with one webhook guard, which nginx answers with an
    allow verdict: the cost of one guard call, the text extracted and folded, the request held
    until the guard answers."""
    policy = json.loads(lab.routing_only(lab.EXAMPLE_POLICY.read_text()))
    policy["guards"] = [
        {"id": "bench-guard", "cluster": "guard", "api": "webhook", "path": "/guard",
         "timeout_ms": 2000}
    ]
    for consumer in policy.get("consumers", {}).values():
        consumer.pop("guards", None)
    return json.dumps(policy, indent=2)


def case_headers(case: Case) -> dict[str, str]:
    return {"Authorization": f"Bearer {BENCH_KEY}"} if case.policy == "keys" else {}


def check_run(case: Case, side: str, out: dict) -> list[str]:
    problems = []
    socket_errors = {k: out[k] for k in ("connect", "read", "write", "timeout") if out[k]}
    if socket_errors:
        problems.append(f"{case.name} {side}: wrk socket errors {socket_errors}")
    # wrk counts every status >= 400 as a status error.
    refusing = side != "bare" and not side.endswith("-floor") and case.status >= 400
    expected_errors = out["requests"] if refusing else 0
    if out["status"] != expected_errors:
        problems.append(
            f"{case.name} {side}: {out['status']} of {out['requests']} responses had an "
            f"error status, expected {expected_errors}"
        )
    if out["requests"] == 0:
        problems.append(f"{case.name} {side}: no request completed")
    return problems


if __name__ == "__main__":
    sys.exit(main())
