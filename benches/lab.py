"""Shared parts of the load benchmark and the soak run (stdlib only).

Starts the pieces on 127.0.0.1 with free ports and a private temporary directory: nginx as a
fixed upstream, Envoy with or without Posturio (configured from the shipped `envoy/envoy.yaml`),
and `wrk` to drive them. Every process started here is stopped by `Lab.close()`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "envoy" / "envoy.yaml"
MODULE = REPO / "target" / "wasm32-wasip1" / "release" / "posturio.wasm"
# The native build (`make native`) and the native floor module (`make native-floor`).
NATIVE_MODULE = REPO / "target" / "native" / "libposturio.so"
NATIVE_FLOOR = REPO / "target" / "native" / "libposturio_floor.so"
EXAMPLE_POLICY = REPO / "envoy" / "policy.json"
DETECTORS_POLICY = REPO / "benches" / "policy-detectors.json"

# The ports the template uses, replaced one by one (each must occur exactly once).
TEMPLATE_LISTENER_PORT = 10000
TEMPLATE_ADMIN_PORT = 9901
TEMPLATE_PROVIDER_PORTS = (18081, 18082, 18083, 18084)
# The guard service's port in the template: nginx answers guard calls too (`/guard`).
TEMPLATE_GUARD_PORT = 18090

CHAT_PATH = "/v1/chat/completions"

# What nginx answers to every request: a fixed OpenAI chat completion. No `$` in it (nginx
# would read it as a variable) and no `'` (it is quoted with those).
UPSTREAM_REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from nginx.", "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    },
    separators=(",", ":"),
)

# --- request bodies ----------------------------------------------------------------------
#
# Realistic chat bodies of an exact size: a system prompt, alternating user and assistant
# turns of plain prose, and a last user turn cut to fit. benches/policy.rs builds the same
# bytes with the same rules; keep the two in step.

PROSE = [
    "The quarterly report shows that the ingestion pipeline handled more traffic than planned.",
    "Please summarise the main risks in plain words for a reader who has not seen the design.",
    "Each service writes its logs to the shared collector, which keeps them for thirty days.",
    "The migration moved the billing tables to the new cluster without a maintenance window.",
    "We want the answer as a short list, with the most urgent item first and no marketing tone.",
    "Latency at the ninety-ninth percentile rose after the cache was resized last Tuesday.",
    "The on-call engineer rolled back the change and opened a ticket to find the root cause.",
    "A customer asked whether their data leaves the region when the assistant is used.",
    "Draft a reply that explains the retention policy and links to the public documentation.",
    "The test suite runs in eleven minutes on the build farm and in four on a laptop.",
    "Compare the two proposals on cost, operational burden and how easy they are to undo.",
    "The team agreed to review the runbook together before the next release goes out.",
]



def _full_width(word: str) -> str:
    """`word` in full-width letters, written as JSON escapes so that the body stays ASCII."""
    return "".join(f"\\u{ord(c) + 0xFEE0:04x}" if "!" <= c <= "~" else c for c in word)


def _to_fold(sentence: str) -> str:
    """A sentence a reader reads as `sentence`, in JSON text: every fifth word in full-width
    letters and every seventh with a zero-width space in it, so folding has work in each."""
    words = sentence.split(" ")
    for i, word in enumerate(words):
        if i % 5 == 0:
            words[i] = _full_width(word)
        elif i % 7 == 3 and len(word) > 2:
            words[i] = word[:2] + "\\u200b" + word[2:]
    return " ".join(words)


# The same prose as `PROSE`, with characters to fold (see `_to_fold`).
FOLD_PROSE = [_to_fold(sentence) for sentence in PROSE]

SYSTEM_PROMPT = (
    "You are a careful assistant for an internal engineering team. "
    "Answer briefly and cite the documents you use."
)


def routing_only(policy_text: str) -> str:
    """The policy without its inspection rules: approvals and routing only. Its models served
    by a fallback pool go too: the benchmark's Envoy has no pool (see `envoy_config`), and a
    baseline module older than pools could not read them."""
    policy = json.loads(policy_text)
    policy.pop("rules", None)
    pooled = {name for name, model in policy.get("models", {}).items() if "targets" in model}
    for name in pooled:
        del policy["models"][name]
    for consumer in policy.get("consumers", {}).values():
        consumer.pop("rules", None)
        if "models" in consumer:
            consumer["models"] = [name for name in consumer["models"] if name not in pooled]
    return json.dumps(policy, indent=2)


def source_version() -> str:
    """The commit the working tree is at, marked when it has changes."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def chat_body(size: int, model: str, prose: list[str] = PROSE) -> bytes:
    """A chat completion request of exactly `size` bytes, its turns made of `prose` (JSON
    text: `FOLD_PROSE` holds escapes)."""
    head = '{"model":"' + model + '","messages":['
    tail = '],"temperature":0.2,"max_tokens":512}'
    parts = ['{"role":"system","content":"' + SYSTEM_PROMPT + '"}']
    last_empty = '{"role":"user","content":""}'

    def length() -> int:
        return len(head) + len(",".join(parts)) + len(tail)

    turn = 0
    while True:
        role = "user" if turn % 2 == 0 else "assistant"
        content = " ".join(prose[(turn * 5 + j) % len(prose)] for j in range(7))
        message = '{"role":"' + role + '","content":"' + content + '"}'
        if length() + 1 + len(message) + 1 + len(last_empty) > size:
            break
        parts.append(message)
        turn += 1
    room = size - length() - 1 - len(last_empty)
    if room < 0:
        raise ValueError(f"a chat body cannot be as small as {size} bytes")
    stream = " ".join(prose) + " "
    filler = (stream * (room // len(stream) + 1))[:room]
    # An escape cut in two would make the body invalid JSON: blank it out instead.
    cut = filler.rfind("\\", max(0, len(filler) - 6))
    if cut >= 0 and len(filler) - cut < 6:
        filler = filler[:cut] + " " * (len(filler) - cut)
    parts.append('{"role":"user","content":"' + filler + '"}')
    body = (head + ",".join(parts) + tail).encode()
    assert len(body) == size, (len(body), size)
    return body


# --- cases and reports -------------------------------------------------------------------


def select(cases: list, spec: str) -> list:
    """The cases named in `spec` (comma-separated, in that order); all of them when empty.
    Each case has a `name`."""
    if not spec.strip():
        return list(cases)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    known = {case.name: case for case in cases}
    unknown = [name for name in names if name not in known]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names]


def publish(report: str, out: Path, problems: list[str] = ()) -> int:
    """Prints the report and writes it to `out`; a run with problems is reported invalid and
    exits 1."""
    print()
    print(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"written to {out}")
    if problems:
        print("\nThe run is not valid:", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


# --- tools -------------------------------------------------------------------------------


def ensure_tools(tools: dict[str, str]) -> None:
    """Installs the Debian packages of the missing commands ({command: package})."""
    missing = {cmd: pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None}
    if not missing:
        return
    packages = sorted(set(missing.values()))
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(
            f"missing {', '.join(sorted(missing))}: install the Debian packages "
            f"{' '.join(packages)} (apt-get install -y {' '.join(packages)})"
        )
    print(f"installing {' '.join(packages)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
    still = [cmd for cmd in missing if shutil.which(cmd) is None]
    if still:
        sys.exit(f"still missing after apt-get: {', '.join(still)}")


def envoy_binary() -> Path:
    path = Path(os.environ.get("POSTURIO_ENVOY") or REPO / ".venv" / "bin" / "envoy")
    if not path.exists():
        sys.exit(f"Envoy is not installed at {path}: run `make venv` (or set POSTURIO_ENVOY)")
    return path


def module_path() -> Path:
    if not MODULE.exists() or MODULE.stat().st_size < 8:
        sys.exit(f"the Wasm module {MODULE} is missing: run `make build`")
    return MODULE


def native_module_path() -> Path:
    """The native build: `POSTURIO_NATIVE_MODULE` when set (as for the tests), else the one
    `make native` made."""
    path = Path(os.environ.get("POSTURIO_NATIVE_MODULE") or NATIVE_MODULE)
    if not path.is_file():
        sys.exit(f"the native module {path} is missing: run `make native`")
    return path


def native_floor_path() -> Path:
    if not NATIVE_FLOOR.is_file():
        sys.exit(f"the native floor module {NATIVE_FLOOR} is missing: run `make native-floor`")
    return NATIVE_FLOOR


def quick() -> bool:
    """`BENCH_QUICK=1`: a short run that only shows the machinery works (every setup starts,
    answers and is measured once); its figures mean nothing."""
    return os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")


def builds(spec: str) -> list[str]:
    """The builds named in `spec` (comma-separated: wasm, native), in a fixed order."""
    names = {name.strip() for name in spec.split(",") if name.strip()}
    unknown = names - {"wasm", "native"}
    if unknown or not names:
        sys.exit(f"builds: expected wasm, native or both, got {spec!r}")
    return [name for name in ("wasm", "native") if name in names]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def version_of(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Linux {platform.release()}"


class OtherWork:
    """How busy the machine was with work other than this process and its children, between
    `__init__` and `cores()`: the machine's busy CPU time (/proc/stat) less the CPU time of
    this process, its live descendants (Envoy, nginx and its workers) and its reaped children
    (each wrk run). Read it where nothing of ours is starting or stopping."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy = self._machine_busy()
        self.ours = self._our_cpu()

    @staticmethod
    def _machine_busy() -> float:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(value) for value in fields]
        # user nice system idle iowait irq softirq steal (guest time is already in user).
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _our_cpu() -> float:
        tick = os.sysconf("SC_CLK_TCK")
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        ours = {os.getpid()}
        grew = True
        while grew:
            found = {pid for pid, parent in parents.items() if parent in ours} - ours
            ours |= found
            grew = bool(found)
        live = sum(cpu.get(pid, 0.0) for pid in ours if pid != os.getpid())
        me = os.times()
        # User and system time of this process and of every child it has waited for.
        return live + me.user + me.system + me.children_user + me.children_system

    def cores(self) -> float:
        """Cores' worth of other work on average since this was made."""
        seconds = time.monotonic() - self.started
        if seconds <= 0:
            return 0.0
        others = (self._machine_busy() - self.busy) - (self._our_cpu() - self.ours)
        return max(0.0, others / seconds)


# --- Envoy configuration -----------------------------------------------------------------


def _replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise SystemExit(f"{TEMPLATE}: expected exactly one `{old}`, found {count}")
    return text.replace(old, new, 1)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _replace_policy(yaml: str, policy: str) -> str:
    lines = yaml.splitlines()
    heads = [i for i, line in enumerate(lines) if line.rstrip().endswith("value: |")]
    if len(heads) != 1:
        raise SystemExit(f"{TEMPLATE}: expected one `value: |` line (the inline policy)")
    head = heads[0]
    end = head + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(lines[head])):
        end += 1
    pad = " " * (_indent(lines[head]) + 2)
    body = [pad + line if line.strip() else "" for line in policy.strip().splitlines()]
    return "\n".join(lines[: head + 1] + body + [""] + lines[end:]) + "\n"


def _item_end(lines: list[str], start: int) -> int:
    """The index just past the YAML list item that starts at `start` (a `- ` line)."""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(lines[start])):
        end += 1
    return end


def _drop_pools(yaml: str) -> str:
    """The template without its fallback pools: every cluster that runs Posturio as an upstream
    filter, and the route that sends to it. The cases measure one filter on one provider; a
    pool would add an upstream Wasm filter (and its memory) to bare Envoy too."""
    lines = yaml.splitlines()
    pools = []
    clusters = next((i for i, line in enumerate(lines) if line.rstrip() == "  clusters:"), len(lines))
    for i, line in enumerate(lines):
        if i > clusters and line.strip().startswith("- name: ") and _indent(line) == 2:
            block = lines[i:_item_end(lines, i)]
            if any(entry.strip() == "- name: envoy.filters.http.wasm" for entry in block):
                pools.append((i, line.strip().removeprefix("- name: ")))
    for start, _ in reversed(pools):
        del lines[start:_item_end(lines, start)]
    for _, name in pools:
        routes = [i for i, line in enumerate(lines) if line.strip() == f"cluster: {name}"]
        for route in reversed(routes):
            start = route
            while start > 0 and not lines[start].lstrip().startswith("- match:"):
                start -= 1
            del lines[start:_item_end(lines, start)]
    return "\n".join(lines) + "\n"


def _wasm_filter(lines: list[str]) -> tuple[int, int]:
    """Where the Wasm filter's entry in the listener's filter chain starts and ends."""
    starts = [i for i, line in enumerate(lines) if line.strip() == "- name: envoy.filters.http.wasm"]
    if len(starts) != 1:
        raise SystemExit(f"{TEMPLATE}: expected one wasm filter entry")
    start = starts[0]
    end = start + 1
    while end < len(lines) and not (
        _indent(lines[end]) == _indent(lines[start]) and lines[end].lstrip().startswith("- ")
    ):
        end += 1
    return start, end


def _drop_wasm_filter(yaml: str) -> str:
    lines = yaml.splitlines()
    start, end = _wasm_filter(lines)
    return "\n".join(lines[:start] + lines[end:]) + "\n"


def _native_filter(yaml: str, module: Path, policy: str) -> str:
    """The template with the native build in the Wasm filter's place, as in the shipped
    native configuration (envoy/envoy-native.yaml): the dynamic module filter, loaded from its
    path, its metrics under the Wasm build's `wasmcustom` namespace and names, the policy as its
    `filter_config`; the rest of the chain unchanged."""
    lines = yaml.splitlines()
    start, end = _wasm_filter(lines)
    pad = " " * _indent(lines[start])
    entry = [
        f"{pad}- name: envoy.filters.http.dynamic_modules",
        f"{pad}  typed_config:",
        f'{pad}    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter',
        f"{pad}    dynamic_module_config:",
        f"{pad}      name: posturio",
        f"{pad}      module: {{ local: {{ filename: {json.dumps(str(module))} }} }}",
        f"{pad}      metrics_namespace: wasmcustom",
        f"{pad}    filter_name: posturio",
        f"{pad}    filter_config:",
        f'{pad}      "@type": type.googleapis.com/google.protobuf.StringValue',
        f"{pad}      value: |",
    ]
    entry += [f"{pad}        {line}" if line.strip() else "" for line in policy.strip().splitlines()]
    text = "\n".join(lines[:start] + entry + lines[end:]) + "\n"
    if "\nlayered_runtime:" in text:
        raise SystemExit(f"{TEMPLATE}: has a layered_runtime; the native translation adds its own")
    return text + NATIVE_RUNTIME


# The runtime layer the shipped native configuration (envoy/envoy-native.yaml) has: with it,
# Envoy lists the module's metrics under the Wasm build's names.
NATIVE_RUNTIME = """
layered_runtime:
  layers:
  - name: static
    static_layer:
      envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true
"""


def envoy_config(
    *,
    listener: int,
    admin: int,
    upstream: int,
    policy: str | None,
    module: Path | None,
    build: str = "wasm",
) -> str:
    """The shipped envoy.yaml on the given ports, every cluster pointing at `upstream`.

    With a policy: Posturio runs it and routes by the cluster header, as shipped; `build`
    says whether `module` is the Wasm module or the native one (a dynamic module in the Wasm
    filter's place). Without one (bare Envoy): the same listener, without the filter, routing
    to the `openai` cluster.
    """
    text = _drop_pools(TEMPLATE.read_text())
    text = _replace_once(text, f"port_value: {TEMPLATE_LISTENER_PORT}", f"port_value: {listener}")
    text = _replace_once(text, f"port_value: {TEMPLATE_ADMIN_PORT}", f"port_value: {admin}")
    for port in (*TEMPLATE_PROVIDER_PORTS, TEMPLATE_GUARD_PORT):
        text = _replace_once(text, f"port_value: {port}", f"port_value: {upstream}")
    if policy is None:
        text = _drop_wasm_filter(text)
        return _replace_once(text, "cluster_header: x-posturio-cluster", "cluster: openai")
    assert module is not None
    if build == "native":
        return _native_filter(text, module, policy)
    text = re.sub(
        r"(?m)^(\s*)filename: \S*posturio\.wasm\s*$",
        lambda m: f"{m.group(1)}filename: {json.dumps(str(module))}",
        text,
    )
    return _replace_policy(text, policy)


# --- processes ---------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    port: int
    admin: int | None = None
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def status(self) -> dict[str, int]:
        """Memory figures from /proc/<pid>/status, in KiB (VmRSS, VmHWM)."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the whole process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class StartFailed(Exception):
    """A process did not become ready; the message carries its log."""


class Lab:
    """The processes of one run, in one temporary directory, all stopped by `close`."""

    def __init__(self, pin: bool, envoy_cpus: int):
        self.dir = Path(tempfile.mkdtemp(prefix="posturio-bench-"))
        self.processes: list[Process] = []
        cpus = sorted(os.sched_getaffinity(0))
        # Pinning keeps Envoy's workers on cores of their own, and nginx and wrk on the rest,
        # so the two Envoys compete with the load generator the same way.
        if pin and len(cpus) > envoy_cpus:
            self.envoy_cpus = cpus[:envoy_cpus]
            self.load_cpus = cpus[envoy_cpus:]
        else:
            self.envoy_cpus = self.load_cpus = []
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def _taskset(self, cpus: list[int]) -> list[str]:
        if not cpus or shutil.which("taskset") is None:
            return []
        return ["taskset", "-c", ",".join(map(str, cpus))]

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_nginx(self) -> Process:
        port = free_port()
        root = self.dir / "nginx"
        (root / "body").mkdir(parents=True)
        conf = root / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        # Request bodies up to 8 MiB are read and discarded in memory.
        client_max_body_size 8m;
        client_body_buffer_size 2m;
        location / {{
            # `return` answers every method, POST included (static files would get 405).
            default_type application/json;
            return 200 '{UPSTREAM_REPLY}';
        }}
        # A guard service in Posturio's webhook shape that lets every request through.
        location = /guard {{
            default_type application/json;
            return 200 '{{"verdict":"allow"}}';
        }}
    }}
}}
"""
        )
        log = root / "error.log"
        popen = subprocess.Popen(
            [*self._taskset(self.load_cpus), "nginx", "-p", str(root), "-e", str(log), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "stderr.log", "wb"),
        )
        process = Process("nginx", popen, port, log=log)
        self.processes.append(process)
        self._wait_port(process, deadline=10)
        return process

    def start_envoy(
        self,
        name: str,
        *,
        upstream: int,
        policy: str | None,
        concurrency: int,
        log_level: str,
        module: Path | None = None,
        build: str = "wasm",
    ) -> Process:
        """Starts Envoy; raises StartFailed (with its log) if it is not ready within 60 s.

        Without a policy it is bare Envoy; with one, it runs `module` (default: the built Wasm
        module), a Wasm module or a native one as `build` says.
        """
        listener, admin = free_port(), free_port()
        root = self.dir / name
        root.mkdir()
        config = envoy_config(
            listener=listener,
            admin=admin,
            upstream=upstream,
            policy=policy,
            module=(module or module_path()) if policy is not None else None,
            build=build,
        )
        (root / "envoy.yaml").write_text(config)
        log = root / "envoy.log"
        popen = subprocess.Popen(
            [
                *self._taskset(self.envoy_cpus),
                str(envoy_binary()),
                "-c", str(root / "envoy.yaml"),
                "--concurrency", str(concurrency),
                "--disable-hot-restart",
                "--log-level", log_level,
                "--log-path", str(log),
                "--file-flush-interval-msec", "1000",
            ],
            stdin=subprocess.DEVNULL,
            # The access log goes to stdout: written, as in production, but not kept.
            stdout=subprocess.DEVNULL,
            stderr=open(root / "stderr.log", "wb"),
        )
        process = Process(name, popen, listener, admin=admin, log=log)
        self.processes.append(process)
        try:
            self._wait_envoy(process)
        except StartFailed:
            self.processes.remove(process)
            if popen.poll() is None:
                popen.kill()
            popen.wait()
            raise
        return process

    def _wait_port(self, process: Process, deadline: float) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if process.popen.poll() is not None:
                raise StartFailed(f"{process.name} exited at start:\n{process.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", process.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise StartFailed(f"{process.name} did not listen within {deadline} s")

    def _wait_envoy(self, process: Process) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if process.popen.poll() is not None:
                raise StartFailed(f"{process.name} exited at start:\n{process.log_tail(40)}")
            try:
                url = f"http://127.0.0.1:{process.admin}/ready"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.read().strip() == b"LIVE":
                        self._wait_port(process, deadline=10)
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise StartFailed(f"{process.name} was not ready within 60 s:\n{process.log_tail(40)}")

    def post(self, port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request, for checks before the load: (status, body)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{CHAT_PATH}",
            data=body,
            method="POST",
            headers={"content-type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stats(self, process: Process, regex: str) -> dict[str, int]:
        """Numeric stats of an Envoy whose names match `regex`."""
        url = f"http://127.0.0.1:{process.admin}/stats?filter={urllib.request.quote(regex)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                values[name] = int(value)
        return values

    # --- wrk -----------------------------------------------------------------------------

    def write_file(self, name: str, data: bytes | str) -> Path:
        path = self.dir / name
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        return path

    def wrk(
        self,
        port: int,
        script: Path,
        *,
        secs: float,
        connections: int,
        threads: int,
        timeout_secs: int = 10,
    ) -> dict:
        """Runs wrk with a script whose `done` prints a `WRK_JSON {...}` line; returns it."""
        command = [
            *self._taskset(self.load_cpus),
            "wrk",
            "-t", str(threads),
            "-c", str(connections),
            "-d", f"{secs:g}s",
            "--timeout", f"{timeout_secs}s",
            "-s", str(script),
            f"http://127.0.0.1:{port}{CHAT_PATH}",
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=secs + timeout_secs + 60
        )
        for line in done.stdout.splitlines():
            if line.startswith("WRK_JSON "):
                return json.loads(line.removeprefix("WRK_JSON "))
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


# The Lua that reports wrk's summary as one JSON line. Latencies are in microseconds.
WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50":%d,"p90":%d,"p99":%d,' ..
    '"max":%d,"mean":%.1f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_post_script(lab: Lab, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script that POSTs one fixed body (wrk builds the request once)."""
    body_file = lab.write_file(f"{name}.body", body)
    header_lines = "".join(
        f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n" for key, value in headers.items()
    )
    script = f"""
local f = assert(io.open({json.dumps(str(body_file))}, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
{header_lines}
{WRK_DONE}
"""
    return lab.write_file(f"{name}.lua", script)
