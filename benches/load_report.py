"""The load benchmark's report (benches/load.py): its tables and the targets, in markdown.

Every figure that compares two setups pairs them by round (the same round's runs, made
minutes apart at most), then takes the median over rounds, with the range in brackets.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import lab

# The targets Posturio is held to (see docs/performance.md). The native build is held to
# what bare Envoy serves; the Wasm build to what it adds over the Wasm floor, as no Wasm
# filter can cost Envoy less than the floor does.
NATIVE_TARGET_RATIO = {"route-1k": 0.90, "detectors-1k": 0.85, "detectors-64k": 0.60}
NATIVE_TARGET_RSS_MIB = 8
WASM_TARGET_OVER_FLOOR_US = {"route-1k": 25, "detectors-1k": 35, "detectors-64k": 120}
WASM_TARGET_RSS_MIB = 32
TARGET_MODULE_BYTES = 1_000_000

BUILD_LABELS = {
    "bare": "bare Envoy",
    "wasm": "Posturio Wasm",
    "native": "Posturio native",
    "baseline": "baseline Wasm",
}
POLICY_LABELS = {
    "route": "routing only",
    "keys": "API keys",
    "detectors": "every detector",
    "answers": "detectors on answers",
    "guard": "one guard call",
}


@dataclass
class Measured:
    """Everything load.py measured in one run."""

    args: object
    cases: list
    # Every case's label by name, run or not (the targets name cases that may not have run).
    labels: dict
    results: dict
    at_start: dict
    memory: dict
    # Bytes of each module loaded: "wasm", "native", "wasm-floor", "native-floor", "baseline".
    sizes: dict
    skipped: dict
    # Setups left out of a case because their check request was answered wrongly.
    failed: set
    threads: int
    envoy_cpus: list
    elapsed: float
    other_cores: float
    load_end: float


def label(key: str) -> str:
    """How a setup is named in the tables."""
    if key == "bare":
        return BUILD_LABELS["bare"]
    build, policy = key.split("-", 1)
    if policy == "floor":
        return "*Wasm floor*" if build == "wasm" else "*native floor*"
    return BUILD_LABELS[build]


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def fmt_added(us: float, unit: str = "ms") -> str:
    sign = "+" if us >= 0 else "−"
    return f"{sign}{abs(us) / 1000:.2f} ms" if unit == "ms" else f"{sign}{abs(us):,.0f} µs"


def fmt_mib(kib: float) -> str:
    sign = "+" if kib >= 0 else "−"
    return f"{sign}{abs(kib) / 1024:.1f} MiB"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt) -> str:
    """The median of `values`, with their range in brackets when there are several."""
    shown = fmt(median(values))
    if len(values) > 1:
        shown += f" [{fmt(min(values))}–{fmt(max(values))}]"
    return shown


def ratios(result, side: str) -> list[float]:
    """The side's throughput over bare Envoy's, round by round."""
    return [s.rps / b.rps for b, s in zip(result.runs["bare"], result.runs[side]) if b.rps]


def added_cpu(runs: list, reference: list) -> list[float]:
    """Envoy CPU per request of `runs` less that of `reference`, round by round."""
    return [r.cpu_us - base.cpu_us for base, r in zip(reference, runs)]


def floor_runs(m: Measured, build: str, size: int) -> list | None:
    """The runs of `build`'s floor module at a body size, from the routing case of that size."""
    for result in m.results.values():
        key = f"{build}-floor"
        if result.case.floors and result.case.size == size and key in result.runs:
            return result.runs[key]
    return None


def render(m: Measured) -> str:
    args = m.args
    lines = [
        "# Posturio load benchmark",
        "",
        f"- Machine: {lab.machine_description()}",
        f"- Envoy: {lab.version_of([str(lab.envoy_binary()), '--version']).split('version: ')[-1]}",
        f"- Upstream: {lab.version_of(['nginx', '-v'])}; load: "
        f"{lab.version_of(['wrk', '--version'])}",
        f"- Load: wrk, {args.connections} connections, {m.threads} thread(s), {args.secs} s per "
        f"run, {args.rounds} round(s), the setups of a case in turn, each round starting one "
        f"further on (medians shown, ranges over rounds in brackets; every ratio and added "
        f"figure pairs two runs of the same round), Envoy `--concurrency {args.concurrency}`, "
        f"log level {args.log_level}"
        + (f", Envoy pinned to CPU {m.envoy_cpus}" if m.envoy_cpus else ""),
        f"- Measured: {time.strftime('%Y-%m-%d %H:%M %Z')}, {m.elapsed / 60:.1f} min of load; "
        f"other work on the machine meanwhile: {m.other_cores:.2f} of {os.cpu_count()} cores on "
        f"average (everything but this benchmark's Envoys, nginx and wrk); load average "
        f"{m.load_end:.1f} at the end",
    ]
    if args.quick:
        lines.append("- **Quick mode** (`BENCH_QUICK=1`): a check of the machinery; its "
                     "figures mean nothing.")
    lines += [
        "",
        "| case | Envoy | req/s | ratio to bare | p50 | added p50 | p99 | added p99 "
        "| Envoy CPU/req | added CPU/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in m.results.values():
        bare = result.runs["bare"]
        bare_p50 = median([r.p50 for r in bare])
        bare_p99 = median([r.p99 for r in bare])
        first = True
        for side in result.sides:
            runs = result.runs[side]
            case = result.case.label if first else ""
            first = False
            p50, p99 = median([r.p50 for r in runs]), median([r.p99 for r in runs])
            cpu = median([r.cpu_us for r in runs])
            rps = f"{median([r.rps for r in runs]):,.0f}"
            if side == "bare":
                lines.append(f"| {case} | {label(side)} | {rps} | — | {fmt_ms(p50)} | — "
                             f"| {fmt_ms(p99)} | — | {cpu:.0f} µs | — |")
                continue
            ratio = spread(ratios(result, side), lambda v: f"{v:.2f}×")
            if not side.endswith("-floor"):
                ratio = "**" + ratio.replace(" [", "** [", 1) if " [" in ratio else f"**{ratio}**"
            lines.append(
                f"| {case} | {label(side)} | {rps} | {ratio} | {fmt_ms(p50)} "
                f"| {fmt_added(p50 - bare_p50)} | {fmt_ms(p99)} | {fmt_added(p99 - bare_p99)} "
                f"| {cpu:.0f} µs | {spread(added_cpu(runs, bare), lambda v: fmt_added(v, 'us'))} |"
            )
    lines.append("")
    for key, reason in m.skipped.items():
        lines.append(f"Not measured: {key}, {reason}.")
    if m.skipped:
        lines.append("")
    lines.append(
        "The denied case compares Posturio's local 403 with bare Envoy proxying the same "
        "request to nginx: it shows what a refusal costs, not a like-for-like ratio. The floor "
        "rows are not Posturio: benches/floor.wat (Wasm) and benches/native-floor (a native "
        "dynamic module) only hold the headers, copy the buffered body in once and set the "
        "route header, so they show what Envoy charges any filter of that build that routes "
        "by the body."
    )
    lines += over_the_floor(m)
    lines += baseline_table(m)
    lines += memory_table(m)
    lines += targets(m)
    return "\n".join(lines) + "\n"


def over_the_floor(m: Measured) -> list[str]:
    """Each build's Envoy CPU per request over its own floor module's, at the same body size."""
    rows = []
    for result in m.results.values():
        cells = []
        for build in ("wasm", "native"):
            side = f"{build}-{result.case.policy}"
            floor = floor_runs(m, build, result.case.size)
            if side in result.runs and floor:
                cells.append(spread(added_cpu(result.runs[side], floor),
                                    lambda v: fmt_added(v, "us")))
            else:
                cells.append("not run")
        if any(cell != "not run" for cell in cells):
            rows.append(f"| {result.case.label} | {cells[0]} | {cells[1]} |")
    if not rows:
        return []
    return [
        "",
        "Envoy CPU per request over the floor module of the same build, at the same body size "
        "(the floor from the routing case of that size, in the same round): what Posturio "
        "itself costs Envoy.",
        "",
        "| case | Posturio Wasm over the Wasm floor | Posturio native over the native floor |",
        "|---|---:|---:|",
        *rows,
    ]


def baseline_table(m: Measured) -> list[str]:
    rows = []
    for result in m.results.values():
        this, base = f"wasm-{result.case.policy}", f"baseline-{result.case.policy}"
        if base not in result.runs or this not in result.runs:
            continue
        before, after = median(ratios(result, base)), median(ratios(result, this))
        before_cpu = median([r.cpu_us for r in result.runs[base]])
        after_cpu = median([r.cpu_us for r in result.runs[this]])
        rows.append(
            f"| {result.case.label} | {before:.2f}× | {after:.2f}× | "
            f"{(after / before - 1) * 100:+.1f}% | {before_cpu:.0f} → {after_cpu:.0f} µs |"
        )
    if not rows:
        return []
    return [
        "",
        f"This Wasm build against the baseline module ({m.args.baseline}), measured in the same "
        "rounds; each ratio is against bare Envoy in the same round.",
        "",
        "| case | baseline ratio | this build ratio | change | Envoy CPU/req baseline → "
        "this build |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]


def memory_table(m: Measured) -> list[str]:
    lines = [
        "",
        "| Envoy | RSS at start, idle | above bare | peak RSS (VmHWM) | above bare |",
        "|---|---:|---:|---:|---:|",
    ]
    bare_start = m.at_start["bare"]["VmRSS"]
    bare_hwm = m.memory["bare"]["VmHWM"]
    for name, values in m.memory.items():
        start = m.at_start[name]["VmRSS"]
        shown = "—" if name == "bare" else fmt_mib(values["VmHWM"] - bare_hwm)
        shown_start = "—" if name == "bare" else fmt_mib(start - bare_start)
        policy = name.split("-", 1)[1] if "-" in name else ""
        what = label(name) + (f" ({POLICY_LABELS[policy]})" if policy in POLICY_LABELS else "")
        lines.append(
            f"| {what} | {start / 1024:.1f} MiB | {shown_start} "
            f"| {values['VmHWM'] / 1024:.1f} MiB | {shown} |"
        )
    lines += [
        "",
        "Peak RSS includes the bodies in flight: Posturio holds each whole body (16 connections "
        "× 1 MiB in the 1 MiB case) where bare Envoy streams it; the idle figure is the "
        "module's own cost.",
        "",
    ]
    names = {
        "wasm": "`posturio.wasm`",
        "native": "`libposturio.so`",
        "wasm-floor": "Wasm floor",
        "native-floor": "`libposturio_floor.so`",
        "baseline": "baseline",
    }
    shown = [f"{names[key]} {size:,} bytes" for key, size in m.sizes.items() if key in names]
    source = f"given as {m.args.module}" if m.args.module else f"from source {lab.source_version()}"
    lines.append(f"Modules ({source}): " + "; ".join(shown) + ".")
    return lines


def targets(m: Measured) -> list[str]:
    """The targets, each met or missed, from this run alone."""
    lines = ["", "| target | measured | |", "|---|---|---|"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def result_of(name: str):
        return m.results.get(name)

    for name, goal in NATIVE_TARGET_RATIO.items():
        what = f"Posturio native ≥ {goal:.2f}× bare Envoy, {case_label(m, name)}"
        result = result_of(name)
        if result is None or "native-" + result.case.policy not in result.runs:
            lines.append(f"| {what} | {not_measured(m, 'native-' + name.split('-')[0])} | |")
            continue
        values = ratios(result, "native-" + result.case.policy)
        shown = spread(values, lambda v: f"{v:.2f}×")
        lines.append(f"| {what} | {shown} | {verdict(median(values) >= goal)} |")
    lines.append(rss_row(m, "native-route", NATIVE_TARGET_RSS_MIB, "Posturio native"))
    for name, goal in WASM_TARGET_OVER_FLOOR_US.items():
        what = f"Posturio Wasm ≤ {goal} µs of Envoy CPU per request over the Wasm floor, " \
            f"{case_label(m, name)}"
        result = result_of(name)
        floor = floor_runs(m, "wasm", result.case.size) if result else None
        side = f"wasm-{result.case.policy}" if result else ""
        if result is None or floor is None or side not in result.runs:
            why = not_measured(m, "wasm-" + name.split("-")[0])
            if why == "not run":
                why = "not run (needs the routing case of that size)"
            lines.append(f"| {what} | {why} | |")
            continue
        values = added_cpu(result.runs[side], floor)
        shown = spread(values, lambda v: fmt_added(v, "us"))
        lines.append(f"| {what} | {shown} | {verdict(median(values) <= goal)} |")
    result = result_of("route-1m")
    if result and "wasm-route" in result.runs:
        bare_p50 = median([r.p50 for r in result.runs["bare"]])
        added = median([r.p50 for r in result.runs["wasm-route"]]) - bare_p50
        lines.append(
            f"| Posturio Wasm added p50 below bare Envoy's p50, routing only, 1 MiB "
            f"| {fmt_added(added)} vs {fmt_ms(bare_p50)} | {verdict(added < bare_p50)} |"
        )
    else:
        lines.append("| Posturio Wasm added p50 below bare Envoy's p50, routing only, 1 MiB "
                     "| not run | |")
    lines.append(rss_row(m, "wasm-route", WASM_TARGET_RSS_MIB, "Posturio Wasm"))
    if "wasm" in m.sizes:
        size = m.sizes["wasm"]
        lines.append(f"| Wasm module ≤ {TARGET_MODULE_BYTES / 1e6:.1f} MB | {size / 1e6:.2f} MB "
                     f"({size:,} bytes) | {verdict(size <= TARGET_MODULE_BYTES)} |")
    lines += [
        "",
        "RSS is the idle RSS once started, above bare Envoy's, routing-only policy; "
        "`benches/memory.py` measures it per worker, idle and after load.",
    ]
    return lines


def not_measured(m: Measured, key: str) -> str:
    if key in m.failed:
        return f"not measured: {key} answered its check request wrongly"
    if key in m.skipped:
        return f"not measured: {key} did not start"
    return "not run"


def case_label(m: Measured, name: str) -> str:
    return m.labels.get(name, name)


def rss_row(m: Measured, key: str, goal_mib: int, who: str) -> str:
    what = f"{who} RSS above bare Envoy ≤ {goal_mib} MiB, {m.args.concurrency} worker(s)"
    if key not in m.at_start:
        return f"| {what} | not run | |"
    if key in m.failed:
        return f"| {what} | {not_measured(m, key)} | |"
    above = m.at_start[key]["VmRSS"] - m.at_start["bare"]["VmRSS"]
    ok = above <= goal_mib * 1024
    return f"| {what} | {fmt_mib(above)} idle | {'met' if ok else '**missed**'} |"
