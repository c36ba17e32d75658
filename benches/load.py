#!/usr/bin/env python3
"""Load benchmark: bare Envoy against Envoy with Posturio, same listener, same upstream.

    make bench                       # or: .venv/bin/python benches/load.py [options]

Starts, on 127.0.0.1 only: nginx answering every POST with a fixed chat completion; a bare
Envoy 1.40 routing to it through a fixed cluster; Envoy 1.40 with the built Posturio module and
the example policy (envoy/policy.json) without its inspection rules, routing by the cluster
header as shipped; a third Envoy with every built-in detector on
(benches/policy-detectors.json), skipped with the reason when the module refuses that policy;
a fourth with the same policy identifying consumers by API key (each request carries one, which
is hashed, looked up and removed); and a fifth with the floor module (benches/floor.wat, built with binaryen's wasm-as) in
Posturio's place, which only reads the body and sets the route header: what any Wasm filter
that routes by the body costs in this Envoy, for scale. The guardrail cases add an Envoy whose
rules read answers too (the whole answer held and scanned) and one whose policy calls a webhook
guard, which nginx answers, for every request; `fold-1k` sends the detector Envoy text that
folding changes (full-width letters, zero-width spaces).
Each case is driven with wrk, alternately against bare Envoy and Posturio, for several rounds;
the table gives the medians over rounds. It is written to benches/results/latest.md.

Installs nginx, wrk and binaryen with apt-get when they are missing. Options can also be set in the
environment: BENCH_SECS, BENCH_ROUNDS, BENCH_CONCURRENCY, BENCH_CONNECTIONS, BENCH_CASES,
BENCH_MODULE, BENCH_BASELINE.

`--baseline OLD.wasm` (or BENCH_BASELINE) also runs each Posturio case against a second Envoy
loading an older build, in the same rounds as bare Envoy and this build, and adds a table of the
two builds side by side: a change is judged against its previous module under the same load, not
against figures from another hour of a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling module, found through the path set above)

RESULTS = lab.REPO / "benches" / "results" / "latest.md"
KIB = 1024
MIB = 1024 * 1024


@dataclass
class Case:
    name: str
    label: str
    size: int
    model: str
    # Which Posturio Envoy serves it: "posturio" (example policy), "keys" (the same with
    # consumers identified by API key, every request carrying one), "detectors" or "floor".
    target: str
    # The status Posturio must answer; bare Envoy always answers 200 (from nginx).
    status: int
    # The request's prose: "plain", or "fold" (characters that folding changes, see
    # lab.FOLD_PROSE).
    text: str = "plain"


CASES = [
    Case("route-1k", "routing only, 1 KiB", KIB, "gpt-4o-mini", "posturio", 200),
    Case("route-64k", "routing only, 64 KiB", 64 * KIB, "gpt-4o-mini", "posturio", 200),
    Case("route-1m", "routing only, 1 MiB", MIB, "gpt-4o-mini", "posturio", 200),
    Case("denied-1k", "denied model (local 403), 1 KiB", KIB, "gpt-4o", "posturio", 403),
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
    # Not Posturio: the floor module (benches/floor.wat) in its place, for scale.
    Case("floor-1k", "floor module, 1 KiB", KIB, "gpt-4o-mini", "floor", 200),
    Case("floor-64k", "floor module, 64 KiB", 64 * KIB, "gpt-4o-mini", "floor", 200),
    Case("floor-1m", "floor module, 1 MiB", MIB, "gpt-4o-mini", "floor", 200),
]

FLOOR_SOURCE = lab.REPO / "benches" / "floor.wat"

# The targets Posturio is held to (see docs/performance.md).
TARGET_RATIO = {"route-1k": 0.90, "detectors-1k": 0.85, "detectors-64k": 0.70}
TARGET_RSS_ABOVE_BARE_MIB = 24
TARGET_MODULE_BYTES = 1_000_000


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
    bare: list[Run] = field(default_factory=list)
    posturio: list[Run] = field(default_factory=list)
    baseline: list[Run] = field(default_factory=list)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=int, default=env_int("BENCH_SECS", 4),
                        help="seconds of load per case, Envoy and round (default 4)")
    parser.add_argument("--rounds", type=int, default=env_int("BENCH_ROUNDS", 5),
                        help="rounds; the table shows the median over them (default 5)")
    parser.add_argument("--warmup", type=int, default=env_int("BENCH_WARMUP", 1),
                        help="seconds of discarded load per case and Envoy first (default 1)")
    parser.add_argument("--concurrency", type=int, default=env_int("BENCH_CONCURRENCY", 1),
                        help="Envoy worker threads, the same for every Envoy (default 1)")
    parser.add_argument("--connections", type=int, default=env_int("BENCH_CONNECTIONS", 16),
                        help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=env_int("BENCH_THREADS", 0),
                        help="wrk threads (default: one per core left to the load generator)")
    parser.add_argument("--cases", default=os.environ.get("BENCH_CASES", ""),
                        help="comma-separated case names (default: all): "
                        + ", ".join(c.name for c in CASES))
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
                        help="an older build of the module, measured in the same rounds as the "
                        "one under test (Posturio cases only)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args()
    if args.module is not None and not args.module.is_file():
        parser.error(f"--module: no such file: {args.module}")
    if args.baseline is not None and not args.baseline.is_file():
        parser.error(f"--baseline: no such file: {args.baseline}")
    if args.secs < 1 or args.rounds < 1 or args.concurrency < 1 or args.connections < 1:
        parser.error("--secs, --rounds, --concurrency and --connections must be at least 1")
    return args


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def fmt_added(us: float) -> str:
    sign = "+" if us >= 0 else "−"
    return f"{sign}{abs(us) / 1000:.2f} ms"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    args = parse_args()
    cases = lab.select(CASES, args.cases)
    tools = {"nginx": "nginx", "wrk": "wrk"}
    if any(case.target == "floor" for case in cases):
        tools["wasm-as"] = "binaryen"
    lab.ensure_tools(tools)
    lab.envoy_binary()
    built = args.module or lab.module_path()
    bench = lab.Lab(pin=not args.no_pin, envoy_cpus=args.concurrency)
    try:
        # A copy of the module, so that a rebuild during the run cannot change what is measured.
        module = bench.dir / "posturio.wasm"
        shutil.copyfile(built, module)
        baseline = None
        if args.baseline:
            baseline = bench.dir / "baseline.wasm"
            shutil.copyfile(args.baseline, baseline)
        threads = args.threads or max(1, len(bench.load_cpus) or 1)
        return run(args, cases, bench, threads, module, baseline)
    finally:
        bench.close()


def run(
    args, cases: list[Case], bench: lab.Lab, threads: int, module: Path, baseline: Path | None
) -> int:
    # The size of the module the Envoys load, before anything can rebuild it.
    module_bytes = module.stat().st_size
    nginx = bench.start_nginx()
    envoys = {}
    envoys["bare"] = bench.start_envoy(
        "bare", upstream=nginx.port, policy=None,
        concurrency=args.concurrency, log_level=args.log_level,
    )
    envoys["posturio"] = bench.start_envoy(
        "posturio", upstream=nginx.port, policy=lab.routing_only(lab.EXAMPLE_POLICY.read_text()),
        concurrency=args.concurrency, log_level=args.log_level, module=module,
    )
    if any(case.target == "keys" for case in cases):
        envoys["keys"] = bench.start_envoy(
            "keys", upstream=nginx.port, policy=keys_policy(),
            concurrency=args.concurrency, log_level=args.log_level, module=module,
        )
    skipped: dict[str, str] = {}
    if any(case.target == "detectors" for case in cases):
        reason = start_detectors(args, bench, nginx, envoys, module)
        if reason:
            skipped.update({c.name: reason for c in cases if c.target == "detectors"})
            print(f"skipping the detector cases: {reason}", flush=True)
    if any(case.target == "answers" for case in cases):
        envoys["answers"] = bench.start_envoy(
            "answers", upstream=nginx.port, policy=answers_policy(),
            concurrency=args.concurrency, log_level=args.log_level, module=module,
        )
    if any(case.target == "guard" for case in cases):
        envoys["guard"] = bench.start_envoy(
            "guard", upstream=nginx.port, policy=guard_policy(),
            concurrency=args.concurrency, log_level=args.log_level, module=module,
        )
    if baseline:
        envoys["posturio-baseline"] = bench.start_envoy(
            "posturio-baseline", upstream=nginx.port,
            policy=lab.routing_only(lab.EXAMPLE_POLICY.read_text()),
            concurrency=args.concurrency, log_level=args.log_level, module=baseline,
        )
        if "keys" in envoys:
            try:
                envoys["keys-baseline"] = bench.start_envoy(
                    "keys-baseline", upstream=nginx.port, policy=keys_policy(),
                    concurrency=args.concurrency, log_level=args.log_level, module=baseline,
                )
            except lab.StartFailed:
                # A build from before API keys refuses the policy: nothing to compare with.
                print("the baseline module does not read API keys; keys-1k has no baseline")
        if "detectors" in envoys:
            envoys["detectors-baseline"] = bench.start_envoy(
                "detectors-baseline", upstream=nginx.port,
                policy=lab.DETECTORS_POLICY.read_text(),
                concurrency=args.concurrency, log_level=args.log_level, module=baseline,
            )
    if any(case.target == "floor" for case in cases):
        envoys["floor"] = start_floor(args, bench, nginx)
    cases = [case for case in cases if case.name not in skipped]
    time.sleep(1)
    at_start = {name: envoy.status() for name, envoy in envoys.items()}

    scripts = {}
    for case in cases:
        prose = lab.FOLD_PROSE if case.text == "fold" else lab.PROSE
        body = lab.chat_body(case.size, case.model, prose)
        scripts[case.name] = lab.wrk_post_script(
            bench, case.name, body, {"Content-Type": "application/json", **case_headers(case)}
        )
        check_case(bench, case, body, envoys)

    def sides(case: Case) -> tuple[str, ...]:
        if f"{case.target}-baseline" in envoys:
            return ("bare", "posturio", "baseline")
        return ("bare", "posturio")

    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(
            f"warning: the load average is {busy:.1f} before the benchmark starts; other work "
            "on this machine will make the figures noisy",
            file=sys.stderr,
            flush=True,
        )
    per_run = args.secs + 0.5
    total = sum(len(sides(case)) for case in cases) * (args.warmup + args.rounds * per_run)
    print(
        f"{len(cases)} cases x {'3' if baseline else '2'} Envoys x {args.rounds} rounds x {args.secs} s, "
        f"{args.connections} connections, wrk threads {threads}, Envoy --concurrency "
        f"{args.concurrency}; about {total / 60:.1f} min",
        flush=True,
    )
    if bench.envoy_cpus:
        print(f"Envoy pinned to CPU {bench.envoy_cpus}, nginx and wrk to CPU {bench.load_cpus}")

    def drive(case: Case, which: str, secs: int) -> tuple[dict, float]:
        name = {"bare": "bare", "posturio": case.target}.get(which, f"{case.target}-baseline")
        envoy = envoys[name]
        cpu_before = envoy.cpu_seconds()
        out = bench.wrk(
            envoy.port, scripts[case.name],
            secs=secs, connections=args.connections, threads=threads,
        )
        return out, envoy.cpu_seconds() - cpu_before

    for case in cases:
        for which in sides(case):
            if args.warmup:
                drive(case, which, args.warmup)

    results = {case.name: Result(case) for case in cases}
    anomalies: list[str] = []
    started = time.monotonic()
    for round_index in range(args.rounds):
        # Alternate which Envoy goes first, so neither always runs on a warmer machine.
        for case in cases:
            order = sides(case)
            order = order if round_index % 2 == 0 else tuple(reversed(order))
            for which in order:
                out, cpu = drive(case, which, args.secs)
                requests = out["requests"]
                seconds = out["duration_us"] / 1e6
                run_ = Run(
                    rps=requests / seconds if seconds else 0.0,
                    p50=out["p50"],
                    p99=out["p99"],
                    cpu_us=cpu / requests * 1e6 if requests else float("nan"),
                    requests=requests,
                )
                getattr(results[case.name], which).append(run_)
                anomalies += check_run(case, which, out)
                print(
                    f"  round {round_index + 1}/{args.rounds} {case.name:<14} {which:<9}"
                    f" {run_.rps:>9.0f} req/s  p50 {fmt_ms(run_.p50):>9}  p99 "
                    f"{fmt_ms(run_.p99):>9}  Envoy CPU {run_.cpu_us:6.1f} us/req",
                    flush=True,
                )
    elapsed = time.monotonic() - started

    memory = {name: envoy.status() for name, envoy in envoys.items()}
    for name, envoy in envoys.items():
        if envoy.popen.poll() is not None:
            anomalies.append(f"{name} Envoy exited during the run:\n{envoy.log_tail()}")
        for line in envoy.log_tail(100000).splitlines():
            if "Function: proxy_on_" in line or "panicked at" in line or "Wasm VM failed" in line:
                anomalies.append(f"{name} Envoy: Wasm VM failure: {line}")
                break

    report = render(
        args, cases, results, at_start, memory, module_bytes, skipped, threads, bench, elapsed
    )
    return lab.publish(report, args.out, anomalies)


def start_detectors(
    args, bench: lab.Lab, nginx: lab.Process, envoys: dict, module: Path
) -> str | None:
    """Starts the detector Envoy; returns why not, when it cannot run."""
    if not lab.DETECTORS_POLICY.exists():
        return f"{lab.DETECTORS_POLICY.relative_to(lab.REPO)} does not exist"
    try:
        envoys["detectors"] = bench.start_envoy(
            "detectors", upstream=nginx.port, policy=lab.DETECTORS_POLICY.read_text(),
            concurrency=args.concurrency, log_level=args.log_level, module=module,
        )
    except lab.StartFailed as failure:
        refused = [
            line.split("wasm log posturio", 1)[-1].strip(" :")
            for line in str(failure).splitlines()
            if "invalid configuration" in line
        ]
        if refused:
            first = refused[0] if len(refused[0]) <= 160 else refused[0][:157] + "..."
            return f"the module refuses {lab.DETECTORS_POLICY.relative_to(lab.REPO)}: {first}"
        return f"Envoy with the detector policy did not start: {failure}"
    return None


def start_floor(args, bench: lab.Lab, nginx: lab.Process) -> lab.Process:
    """Envoy with the floor module in Posturio's place, in the same configuration."""
    module = bench.dir / "floor.wasm"
    subprocess.run(["wasm-as", str(FLOOR_SOURCE), "-o", str(module)], check=True)
    return bench.start_envoy(
        "floor", upstream=nginx.port, policy=lab.routing_only(lab.EXAMPLE_POLICY.read_text()),
        concurrency=args.concurrency, log_level=args.log_level, module=module,
    )


def check_case(bench: lab.Lab, case: Case, body: bytes, envoys: dict) -> None:
    """One request to each Envoy before the load, so a broken setup fails clearly."""
    for which, expected in (
        ("bare", 200),
        (case.target, case.status),
        (f"{case.target}-baseline", case.status),
    ):
        if which not in envoys:
            continue
        headers = case_headers(case) if which != "bare" else {}
        status, reply = bench.post(envoys[which].port, body, headers)
        if status != expected:
            sys.exit(
                f"{case.name}: {which} Envoy answered {status}, expected {expected}:\n"
                f"{reply[:500]!r}\n{envoys[which].log_tail()}"
            )


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
    return {"Authorization": f"Bearer {BENCH_KEY}"} if case.target == "keys" else {}


def check_run(case: Case, which: str, out: dict) -> list[str]:
    problems = []
    socket_errors = {k: out[k] for k in ("connect", "read", "write", "timeout") if out[k]}
    if socket_errors:
        problems.append(f"{case.name} {which}: wrk socket errors {socket_errors}")
    # wrk counts every status >= 400 as a status error.
    expected_errors = out["requests"] if which != "bare" and case.status >= 400 else 0
    if out["status"] != expected_errors:
        problems.append(
            f"{case.name} {which}: {out['status']} of {out['requests']} responses had an "
            f"error status, expected {expected_errors}"
        )
    if out["requests"] == 0:
        problems.append(f"{case.name} {which}: no request completed")
    return problems


def render(
    args, cases, results, at_start, memory, module_bytes: int, skipped, threads, bench, elapsed
) -> str:
    lines = [
        "# Posturio load benchmark",
        "",
        f"- Machine: {lab.machine_description()}",
        f"- Envoy: {lab.version_of([str(lab.envoy_binary()), '--version']).split('version: ')[-1]}",
        f"- Upstream: {lab.version_of(['nginx', '-v'])}; load: "
        f"{lab.version_of(['wrk', '--version'])}",
        f"- Load: wrk, {args.connections} connections, {threads} thread(s), {args.secs} s per "
        f"run, {args.rounds} rounds (medians shown; the ratio is the median of each round's "
        f"back-to-back ratio, its range in brackets), "
        f"Envoy `--concurrency {args.concurrency}`, log level {args.log_level}"
        + (f", Envoy pinned to CPU {bench.envoy_cpus}" if bench.envoy_cpus else ""),
        f"- Measured: {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min of load; "
        f"load average {os.getloadavg()[0]:.1f} at the end (about 2 means only the benchmark ran)",
        "",
        "| case | bare req/s | Posturio req/s | ratio | bare p50 | Posturio p50 | added p50 "
        "| bare p99 | Posturio p99 | added p99 | Envoy CPU/req bare → Posturio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for case in cases:
        result = results[case.name]
        bare_rps = median([r.rps for r in result.bare])
        post_rps = median([r.rps for r in result.posturio])
        # Each round's ratio compares two runs made back to back; their median is the ratio
        # shown, as this steadies it against the machine's own drift between rounds.
        ratios = [p.rps / b.rps for b, p in zip(result.bare, result.posturio) if b.rps]
        ratio = median(ratios)
        bare_p50 = median([r.p50 for r in result.bare])
        post_p50 = median([r.p50 for r in result.posturio])
        bare_p99 = median([r.p99 for r in result.bare])
        post_p99 = median([r.p99 for r in result.posturio])
        bare_cpu = median([r.cpu_us for r in result.bare])
        post_cpu = median([r.cpu_us for r in result.posturio])
        summary[case.name] = (ratio, bare_p50, post_p50 - bare_p50)
        lines.append(
            f"| {case.label} | {bare_rps:,.0f} | {post_rps:,.0f} | **{ratio:.2f}×** "
            f"[{min(ratios):.2f}–{max(ratios):.2f}] | {fmt_ms(bare_p50)} | {fmt_ms(post_p50)} "
            f"| {fmt_added(post_p50 - bare_p50)} | {fmt_ms(bare_p99)} | {fmt_ms(post_p99)} "
            f"| {fmt_added(post_p99 - bare_p99)} | {bare_cpu:.0f} → {post_cpu:.0f} µs |"
        )
    for name in skipped:
        case = next(c for c in CASES if c.name == name)
        lines.append(f"| {case.label} | skipped | | | | | | | | | |")
    lines.append("")
    if skipped:
        lines += [f"Skipped: {next(iter(skipped.values()))}.", ""]
    lines.append(
        "The denied case compares Posturio's local 403 with bare Envoy proxying the same "
        "request to nginx: it shows what a refusal costs, not a like-for-like ratio. The floor "
        "rows are not Posturio: they run benches/floor.wat, which only holds the headers, "
        "copies the buffered body in and sets the route header, so they show what Envoy and "
        "V8 charge any Wasm filter that routes by the body."
    )

    if any(results[case.name].baseline for case in cases):
        lines += [
            "",
            f"This build against the baseline module ({args.baseline}), measured in the same "
            "rounds; each ratio is against bare Envoy in the same round.",
            "",
            "| case | baseline ratio | this build ratio | change | Envoy CPU/req baseline → "
            "this build |",
            "|---|---:|---:|---:|---:|",
        ]
        for case in cases:
            result = results[case.name]
            if not result.baseline:
                continue
            base = median([b.rps / r.rps for r, b in zip(result.bare, result.baseline) if r.rps])
            this = median([p.rps / r.rps for r, p in zip(result.bare, result.posturio) if r.rps])
            base_cpu = median([r.cpu_us for r in result.baseline])
            this_cpu = median([r.cpu_us for r in result.posturio])
            lines.append(
                f"| {case.label} | {base:.2f}× | {this:.2f}× | {(this / base - 1) * 100:+.1f}% "
                f"| {base_cpu:.0f} → {this_cpu:.0f} µs |"
            )
    lines += [
        "",
        "| Envoy | RSS at start, idle | above bare | peak RSS (VmHWM) | above bare |",
        "|---|---:|---:|---:|---:|",
    ]
    bare_start = at_start["bare"]["VmRSS"]
    bare_hwm = memory["bare"]["VmHWM"]
    rss_above = {}
    for name, values in memory.items():
        start = at_start[name]["VmRSS"]
        above = (values["VmHWM"] - bare_hwm) / 1024
        rss_above[name] = above
        shown = "—" if name == "bare" else f"{above:+.1f} MiB"
        shown_start = "—" if name == "bare" else f"{(start - bare_start) / 1024:+.1f} MiB"
        lines.append(
            f"| {name} | {start / 1024:.1f} MiB | {shown_start} "
            f"| {values['VmHWM'] / 1024:.1f} MiB | {shown} |"
        )
    lines.append("")
    lines.append(
        "Peak RSS includes the bodies in flight: Posturio holds each whole body (16 connections "
        "× 1 MiB in the 1 MiB case) where bare Envoy streams it."
    )
    lines += [
        "",
        f"Module: `posturio.wasm`, {module_bytes:,} bytes ({module_bytes / 1e6:.2f} MB), "
        + (f"given as {args.module}." if args.module else f"from source {lab.source_version()}."),
        "",
    ]

    lines += ["| target | measured | |", "|---|---|---|"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for name, goal in TARGET_RATIO.items():
        label = next(c.label for c in CASES if c.name == name)
        if name in summary:
            ratio = summary[name][0]
            lines.append(f"| ≥ {goal:.2f}× bare, {label} | {ratio:.2f}× | {verdict(ratio >= goal)} |")
        else:
            lines.append(f"| ≥ {goal:.2f}× bare, {label} | not run | |")
    if "route-1m" in summary:
        _, bare_p50, added = summary["route-1m"]
        lines.append(
            f"| added p50 below bare p50, 1 MiB | {fmt_added(added)} vs {fmt_ms(bare_p50)} "
            f"| {verdict(added < bare_p50)} |"
        )
    for name in ("posturio", "detectors"):
        if name in rss_above:
            above = rss_above[name]
            lines.append(
                f"| RSS above bare ≤ {TARGET_RSS_ABOVE_BARE_MIB} MiB ({name}, concurrency "
                f"{args.concurrency}) | {above:+.1f} MiB | "
                f"{verdict(above <= TARGET_RSS_ABOVE_BARE_MIB)} |"
            )
    lines.append(
        f"| module ≤ 1 MB | {module_bytes / 1e6:.2f} MB | "
        f"{verdict(module_bytes <= TARGET_MODULE_BYTES)} |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
