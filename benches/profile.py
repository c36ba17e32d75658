#!/usr/bin/env python3
"""Where Envoy's CPU goes per request, by binary: bare Envoy, both builds and both floors.

    .venv/bin/python benches/profile.py [--case route-1k] [--setups bare,native-route]

For one load case (benches/load.py's), starts each setup's Envoy as load.py does (pinned to its
own core), drives it with wrk and samples it meanwhile with `perf record` (software clock, the
Envoy process only). Each Envoy's CPU time per request (from /proc) is split by where its
samples fell: Envoy's own binary (V8 included, as it is linked in), the native module
(`libposturio*.so`), the C library, the kernel, and code with no binary (the JIT code of the
Wasm module). Envoy's binary and the modules are stripped, so the split stops at the binary.
Run as root (or with perf_event_paranoid <= 1). Prints the table and writes it to
benches/results/profile.md; not part of `make bench` (perf adds its own load).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # nothing to clean up in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab  # noqa: E402  (the sibling modules, found through the path set above)
import load  # noqa: E402

RESULTS = lab.REPO / "benches" / "results" / "profile.md"
SETUPS = ("bare", "wasm-floor", "wasm", "native-floor", "native")
# Where samples fell, by the binary perf names, in the table's order.
PLACES = ("Envoy", "native module", "C library", "kernel", "no binary (JIT)", "other")


def place(dso: str) -> str:
    if dso == "envoy":
        return "Envoy"
    if dso.startswith("libposturio"):
        return "native module"
    if dso.startswith("libc.") or dso.startswith("libc-") or dso.startswith("libm."):
        return "C library"
    if dso.startswith("[kernel"):
        return "kernel"
    if dso in ("[unknown]", "[JIT]") or dso.startswith("perf-") or dso.startswith("[JIT]"):
        return "no binary (JIT)"
    return "other"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="route-1k",
                        help="the load case (default route-1k): "
                        + ", ".join(c.name for c in load.CASES))
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help="comma-separated, of " + ", ".join(SETUPS) + " (default all); "
                        "wasm and native run the case's policy")
    parser.add_argument("--secs", type=int, default=4, help="seconds of load per setup")
    parser.add_argument("--symbols", type=int, default=0, metavar="N",
                        help="also list the N functions of the native module with the most "
                        "samples (needs a build with symbols, given as POSTURIO_NATIVE_MODULE: "
                        "CARGO_PROFILE_NATIVE_STRIP=false cargo build -p posturio-native "
                        "--profile native)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    case = lab.select(load.CASES, args.case)[0]
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        sys.exit(f"unknown setup(s) {', '.join(unknown)}; known: {', '.join(SETUPS)}")
    lab.ensure_tools({"nginx": "nginx", "wrk": "wrk", "perf": "linux-perf", "wasm-as": "binaryen"})
    bench = lab.Lab(pin=True, envoy_cpus=1)
    try:
        nginx = bench.start_nginx()
        symbols: list[str] = []
        rows = [profile(args, bench, nginx, case, setup, symbols) for setup in setups]
    finally:
        bench.close()
    lines = [
        "# Where Envoy's CPU goes per request",
        "",
        f"- Machine: {lab.machine_description()}",
        f"- Case: {case.label}; wrk, 16 connections, {args.secs} s per setup, Envoy "
        f"`--concurrency 1` pinned; `perf record -e cpu-clock` on the Envoy process",
        f"- Source: {lab.source_version()}; measured {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "| setup | req/s | Envoy CPU/req | " + " | ".join(PLACES) + " |",
        "|---|---:|---:|" + "---:|" * len(PLACES),
        *rows,
        *symbols,
    ]
    return lab.publish("\n".join(lines) + "\n", args.out)


def profile(
    args, bench: lab.Lab, nginx: lab.Process, case: load.Case, setup: str, symbols: list[str]
) -> str:
    """One setup's row: its throughput and its Envoy's CPU per request, split by binary; with
    `--symbols`, the native module's busiest functions appended to `symbols`."""
    build = "native" if setup.startswith("native") else "wasm"
    policy = None if setup == "bare" else ("floor" if setup.endswith("floor") else case.policy)
    module = None
    if setup == "wasm-floor":
        module = bench.dir / "floor.wasm"
        subprocess.run(["wasm-as", str(load.FLOOR_SOURCE), "-o", str(module)], check=True)
    elif setup == "native-floor":
        module = lab.native_floor_path()
    elif setup == "native":
        module = lab.native_module_path()
    elif setup == "wasm":
        module = lab.module_path()
    envoy = bench.start_envoy(
        setup, upstream=nginx.port, policy=load.policy_text(policy) if policy else None,
        concurrency=1, log_level="info", module=module, build=build,
    )
    body = lab.chat_body(case.size, case.model)
    script = lab.wrk_post_script(
        bench, f"{setup}-{case.name}", body,
        {"Content-Type": "application/json", **load.case_headers(case)},
    )
    bench.wrk(envoy.port, script, secs=1, connections=16, threads=1)  # warm-up
    data = bench.dir / f"{setup}.perf"
    # Call graphs only where they are read (`--symbols`, the native build): they cost perf time.
    graph = ["-g"] if args.symbols and setup == "native" else []
    perf = subprocess.Popen(
        ["perf", "record", "-q", *graph, "-e", "cpu-clock", "-F", "2000", "-p", str(envoy.pid),
         "-o", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    cpu_before = envoy.cpu_seconds()
    out = bench.wrk(envoy.port, script, secs=args.secs, connections=16, threads=1)
    cpu = envoy.cpu_seconds() - cpu_before
    perf.send_signal(2)
    perf.wait(timeout=30)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q", "--no-children"],
        capture_output=True, text=True, check=True,
    ).stdout
    shares = dict.fromkeys(PLACES, 0.0)
    for line in report.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith("%"):
            shares[place(fields[1])] += float(fields[0].rstrip("%"))
    requests = out["requests"] or 1
    per_request = cpu / requests * 1e6
    if args.symbols and setup == "native":
        symbols += module_symbols(data, module, per_request, args.symbols)
    rps = out["requests"] / (out["duration_us"] / 1e6)
    total = sum(shares.values()) or 100.0
    cells = " | ".join(f"{per_request * shares[p] / total:.1f} µs" for p in PLACES)
    envoy.popen.terminate()
    envoy.popen.wait(timeout=10)
    bench.processes.remove(envoy)
    print(f"  {setup:<13} {rps:>8.0f} req/s  {per_request:6.1f} µs/req", flush=True)
    return f"| {setup} | {rps:,.0f} | {per_request:.0f} µs | {cells} |"


def module_symbols(data: Path, module: Path, per_request: float, count: int) -> list[str]:
    """The native module's `count` busiest functions, in µs of Envoy CPU per request."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "sym", "--dsos", module.name,
         "--stdio", "-q", "--percentage", "relative", "--no-children", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    # With --percentage relative the shares are of the module's samples: scale them by the
    # module's part of the whole, from a second report over every binary.
    whole = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q", "--no-children"],
        capture_output=True, text=True, check=True,
    ).stdout
    module_share = sum(
        float(line.split()[0].rstrip("%")) for line in whole.splitlines()
        if len(line.split()) >= 2 and line.split()[1] == module.name
    )
    lines = ["", f"The native module's busiest functions ({module.name}):", "",
             "| function | µs per request |", "|---|---:|"]
    for line in report.splitlines()[:count]:
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0].endswith("%"):
            share = float(fields[0].rstrip("%")) * module_share / 100
            name = fields[2].removeprefix("[.] ").strip()
            lines.append(f"| `{name[:110]}` | {per_request * share / 100:.2f} |")
    # Envoy's side of each ABI callback, with what it calls: its exported symbols are named
    # even in the stripped binary, and Envoy's frames can be walked (the module's cannot, so
    # the hooks into the module are not listed).
    calls = subprocess.run(
        ["perf", "report", "-i", str(data), "--children", "--sort", "sym", "--stdio", "-q",
         "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    lines += ["", "Envoy's side of the ABI callbacks, with what each calls in Envoy:", "",
              "| callback | µs per request |", "|---|---:|"]
    for line in calls.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1].startswith("envoy_dynamic_module_callback_"):
            children = float(fields[0].rstrip("%"))
            lines.append(f"| `{fields[-1]}` | {per_request * children / 100:.2f} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
