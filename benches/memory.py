#!/usr/bin/env python3
"""Memory benchmark: what Posturio adds to Envoy's resident memory, per worker, in each build.

    .venv/bin/python benches/memory.py [options]     # also run by `make bench`

For each worker count (Envoy's --concurrency), starts on 127.0.0.1 a bare Envoy 1.40, an Envoy
1.40 with the built Posturio Wasm module and one with the native build (a dynamic module), the
last two with the example policy (envoy/policy.json) without its inspection rules, all in front
of the same nginx. Each Envoy's RSS (VmRSS) is read once it has settled ("idle"), and again 2 s
after wrk has driven it with 1 KiB chat requests ("after load"); "above bare" is its RSS minus
bare Envoy's. Envoy's admin /memory gives how much of each RSS is tcmalloc heap: what is not is
mostly V8 in the Wasm build (the compiled module and each worker's Wasm memory), which tcmalloc
does not allocate, and the loaded library in the native one. "Per further worker" is how much
"above bare" grows with each worker added. The table is written to benches/results/memory.md.

Installs nginx and wrk with apt-get when they are missing. Options can also be set in the
environment: MEMORY_CONCURRENCY, MEMORY_SECS, MEMORY_SETTLE_SECS, BENCH_BUILDS;
BENCH_QUICK=1 changes the defaults to one worker, 1 s of load, 1 s to settle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling module, found through the path set above)

RESULTS = lab.REPO / "benches" / "results" / "memory.md"
KIB = 1024
MIB = 1024 * 1024

# The targets Posturio is held to (see docs/performance.md), by build.
TARGET_RSS_ABOVE_BARE_MIB = {"wasm": 32, "native": 8}  # at concurrency 1
TARGET_PER_WORKER_MIB = 10  # for each further worker
BUILD_LABELS = {"bare": "bare", "wasm": "Posturio Wasm", "native": "Posturio native"}

CONNECTIONS = 16
WRK_THREADS = 1
AFTER_LOAD_SECS = 2
# The fields of Envoy's admin /memory shown, in the table's order.
TCMALLOC_FIELDS = ("allocated", "heap_size", "pageheap_free", "total_thread_cache")


@dataclass
class Reading:
    idle_kib: int
    after_kib: int = 0
    # Envoy's admin /memory after load, in bytes.
    tcmalloc: dict[str, int] | None = None


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def parse_args() -> argparse.Namespace:
    quick = lab.quick()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency-list",
                        default=os.environ.get("MEMORY_CONCURRENCY", "1" if quick else "1,2,4"),
                        help="comma-separated Envoy worker counts, each measured in turn "
                        "(default 1,2,4; env MEMORY_CONCURRENCY)")
    parser.add_argument("--secs", type=int, default=env_int("MEMORY_SECS", 1 if quick else 4),
                        help="seconds of load per Envoy (default 4; env MEMORY_SECS)")
    parser.add_argument("--settle-secs", type=int,
                        default=env_int("MEMORY_SETTLE_SECS", 1 if quick else 6),
                        help="seconds after start before the idle RSS is read "
                        "(default 6; env MEMORY_SETTLE_SECS)")
    parser.add_argument("--builds", default=os.environ.get("BENCH_BUILDS", "wasm,native"),
                        help="the builds measured beside bare Envoy: wasm, native or both "
                        "(default both; env BENCH_BUILDS)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args()
    args.builds = lab.builds(args.builds)
    try:
        args.workers = sorted({int(n) for n in args.concurrency_list.split(",") if n.strip()})
    except ValueError:
        parser.error(f"--concurrency-list: not a list of numbers: {args.concurrency_list!r}")
    if not args.workers or args.workers[0] < 1:
        parser.error("--concurrency-list needs worker counts of at least 1")
    if args.secs < 1 or args.settle_secs < 0:
        parser.error("--secs must be at least 1 and --settle-secs at least 0")
    return args


def main() -> int:
    args = parse_args()
    lab.ensure_tools({"nginx": "nginx", "wrk": "wrk"})
    lab.envoy_binary()
    built = {}
    if "wasm" in args.builds:
        built["wasm"] = (lab.module_path(), "posturio.wasm")
    if "native" in args.builds:
        built["native"] = (lab.native_module_path(), "libposturio.so")
    # Not pinned: memory, not speed, is measured, and pinning Envoy to as many cores as it has
    # workers is not possible once the worker count exceeds the cores (4 on a 2-core machine).
    bench = lab.Lab(pin=False, envoy_cpus=max(args.workers))
    try:
        # Copies of the modules, so that a rebuild during the run cannot change what is measured.
        modules = {}
        for build, (path, name) in built.items():
            modules[build] = bench.dir / name
            shutil.copyfile(path, modules[build])
        return run(args, bench, modules)
    except lab.StartFailed as failure:
        print(f"an Envoy did not start: {failure}", file=sys.stderr)
        return 1
    finally:
        bench.close()


def run(args, bench: lab.Lab, modules: dict[str, Path]) -> int:
    sizes = {build: module.stat().st_size for build, module in modules.items()}
    policy = lab.routing_only(lab.EXAMPLE_POLICY.read_text())
    body = lab.chat_body(KIB, "gpt-4o-mini")
    script = lab.wrk_post_script(bench, "chat-1k", body, {"Content-Type": "application/json"})
    nginx = bench.start_nginx()
    readings: dict[int, dict[str, Reading]] = {}
    problems: list[str] = []
    started = time.monotonic()
    for workers in args.workers:
        envoys = {
            "bare": bench.start_envoy(
                f"bare-{workers}", upstream=nginx.port, policy=None,
                concurrency=workers, log_level="info",
            ),
            **{
                build: bench.start_envoy(
                    f"{build}-{workers}", upstream=nginx.port, policy=policy,
                    concurrency=workers, log_level="info", module=module, build=build,
                )
                for build, module in modules.items()
            },
        }
        time.sleep(args.settle_secs)
        readings[workers] = {name: Reading(e.status()["VmRSS"]) for name, e in envoys.items()}
        for name, envoy in envoys.items():
            # One request first, so a broken setup fails with the answer rather than wrk's count.
            status, reply = bench.post(envoy.port, body)
            if status != 200:
                problems.append(f"{name} Envoy, {workers} worker(s): answered {status}, expected "
                                f"200: {reply[:300]!r}\n{envoy.log_tail()}")
                continue
            out = bench.wrk(envoy.port, script, secs=args.secs,
                            connections=CONNECTIONS, threads=WRK_THREADS)
            problems += check_run(f"{name} Envoy, {workers} worker(s)", out)
            time.sleep(AFTER_LOAD_SECS)
            reading = readings[workers][name]
            reading.after_kib = envoy.status()["VmRSS"]
            reading.tcmalloc = admin_memory(envoy)
            print(f"  {workers} worker(s) {name:<7} {out['requests'] / (out['duration_us'] / 1e6):>8.0f}"
                  f" req/s  RSS idle {reading.idle_kib / KIB:6.1f} MiB, after load "
                  f"{reading.after_kib / KIB:6.1f} MiB", flush=True)
        for name, envoy in envoys.items():
            problems += check_envoy(f"{name} Envoy, {workers} worker(s)", envoy)
            stop(bench, envoy)
        if problems:
            break
    elapsed = time.monotonic() - started

    report = render(args, readings, sizes, elapsed)
    return lab.publish(report, args.out, problems)


def check_run(what: str, out: dict) -> list[str]:
    """The checks load.py makes of a wrk result that expects 200s only."""
    problems = []
    socket_errors = {k: out[k] for k in ("connect", "read", "write", "timeout") if out[k]}
    if socket_errors:
        problems.append(f"{what}: wrk socket errors {socket_errors}")
    # wrk counts every status >= 400 as a status error.
    if out["status"]:
        problems.append(f"{what}: {out['status']} of {out['requests']} responses had an error "
                        "status, expected none")
    if out["requests"] == 0:
        problems.append(f"{what}: no request completed")
    return problems


def check_envoy(what: str, envoy: lab.Process) -> list[str]:
    if envoy.popen.poll() is not None:
        return [f"{what} exited during the run:\n{envoy.log_tail()}"]
    log = envoy.log_tail(10**9)
    # The Wasm VM's failure, or a panic (the native build catches and logs each one).
    markers = ("Function: proxy_on_", "panicked at", "Wasm VM failed", "Uncaught RuntimeError",
               "panic in on_")
    for marker in markers:
        if marker in log:
            return [f"{what}: the filter failed: a log line contains {marker!r}"]
    return []


def admin_memory(envoy: lab.Process) -> dict[str, int]:
    """Envoy's admin /memory: tcmalloc's figures, in bytes (Envoy sends them as strings)."""
    url = f"http://127.0.0.1:{envoy.admin}/memory"
    with urllib.request.urlopen(url, timeout=10) as response:
        data = json.loads(response.read())
    return {key: int(value) for key, value in data.items() if str(value).isdigit()}


def stop(bench: lab.Lab, envoy: lab.Process) -> None:
    """Stops one Envoy now, so the next worker count runs without it (Lab.close stops the rest)."""
    envoy.popen.terminate()
    try:
        envoy.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        envoy.popen.kill()
        envoy.popen.wait()
    bench.processes.remove(envoy)


def mib(kib: float) -> str:
    return f"{kib / KIB:.1f} MiB"


def added(kib: float) -> str:
    sign = "+" if kib >= 0 else "−"
    return f"{sign}{abs(kib) / KIB:.1f} MiB"


def render(args, readings: dict[int, dict[str, Reading]], sizes: dict[str, int],
           elapsed: float) -> str:
    modules = {"wasm": "`posturio.wasm`", "native": "`libposturio.so`"}
    lines = [
        "# Posturio memory benchmark",
        "",
        f"- Machine: {lab.machine_description()}",
        f"- Envoy: {lab.version_of([str(lab.envoy_binary()), '--version']).split('version: ')[-1]}",
        f"- Upstream: {lab.version_of(['nginx', '-v'])}; load: "
        f"{lab.version_of(['wrk', '--version'])}",
        f"- Method: RSS (VmRSS) after {args.settle_secs} s idle, and {AFTER_LOAD_SECS} s after "
        f"{args.secs} s of wrk ({CONNECTIONS} connections, {WRK_THREADS} thread, 1 KiB chat "
        "bodies, routed to nginx); Envoy not pinned, log level info; tcmalloc figures from "
        "each Envoy's admin /memory after load",
        "- Modules: " + "; ".join(f"{modules[b]}, {n:,} bytes ({n / 1e6:.2f} MB)"
                                  for b, n in sizes.items())
        + f", from source {lab.source_version()}",
        f"- Measured: {time.strftime('%Y-%m-%d %H:%M %Z')}, {elapsed / 60:.1f} min",
    ]
    if lab.quick():
        lines.append("- **Quick mode** (`BENCH_QUICK=1`): a check of the machinery; its "
                     "figures mean nothing.")
    lines += [
        "",
        "| workers | Envoy | idle | above bare | after load | above bare "
        "| tcmalloc allocated / heap / page-heap free / thread caches |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    builds = [build for build in ("wasm", "native") if build in sizes]
    # {build: {workers: (idle above bare, after load above bare)}}, in KiB.
    above: dict[str, dict[int, tuple[int, int]]] = {build: {} for build in builds}
    for workers, by_name in readings.items():
        bare = by_name["bare"]
        for name in ("bare", *builds):
            reading = by_name.get(name)
            if reading is None:
                continue
            measured = reading.tcmalloc is not None and bare.tcmalloc is not None
            idle_above = "—" if name == "bare" else added(reading.idle_kib - bare.idle_kib)
            if not measured:
                lines.append(f"| {workers} | {BUILD_LABELS[name]} | {mib(reading.idle_kib)} "
                             f"| {idle_above} | not measured | | |")
                continue
            after_above = "—" if name == "bare" else added(reading.after_kib - bare.after_kib)
            if name != "bare":
                above[name][workers] = (reading.idle_kib - bare.idle_kib,
                                        reading.after_kib - bare.after_kib)
                idle_above, after_above = f"**{idle_above}**", f"**{after_above}**"
            heap = " / ".join(f"{reading.tcmalloc.get(key, 0) / MIB:.1f}"
                              for key in TCMALLOC_FIELDS)
            lines.append(
                f"| {workers} | {BUILD_LABELS[name]} | {mib(reading.idle_kib)} | {idle_above} "
                f"| {mib(reading.after_kib)} | {after_above} | {heap} MiB |"
            )
    lines.append("")

    steps: dict[str, list[tuple[int, int, float, float]]] = {}
    for build in builds:
        counts = sorted(above[build])
        steps[build] = []
        for low, high in zip(counts, counts[1:]):
            idle = (above[build][high][0] - above[build][low][0]) / (high - low)
            after = (above[build][high][1] - above[build][low][1]) / (high - low)
            steps[build].append((low, high, idle, after))
            lines.append(f"Per further worker, {BUILD_LABELS[build]}, {low} → {high}: "
                         f"{added(idle)} idle, {added(after)} after load.")
    if any(steps.values()):
        lines.append("")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines += ["| target | measured | |", "|---|---|---|"]
    for build in builds:
        who = BUILD_LABELS[build]
        goal = TARGET_RSS_ABOVE_BARE_MIB[build]
        if 1 in above[build]:
            idle, after = above[build][1]
            worst = max(idle, after)
            lines.append(f"| {who} RSS above bare ≤ {goal} MiB, concurrency 1 | {added(idle)} "
                         f"idle, {added(after)} after load | {verdict(worst <= goal * KIB)} |")
        else:
            lines.append(f"| {who} RSS above bare ≤ {goal} MiB, concurrency 1 | not measured | |")
        goal = TARGET_PER_WORKER_MIB
        if steps[build]:
            worst = max(max(idle, after) for _, _, idle, after in steps[build])
            lines.append(f"| {who} ≤ {goal} MiB per further worker | at most {added(worst)} "
                         f"| {verdict(worst <= goal * KIB)} |")
        else:
            lines.append(f"| {who} ≤ {goal} MiB per further worker | not measured (one worker "
                         "count) | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
