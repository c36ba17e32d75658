#!/usr/bin/env python3
"""`make run`: Envoy with Posturio in front of the mock providers, serving envoy/policy.json live.

    run.py --envoy .venv/bin/envoy --python .venv/bin/python --posturio target/release/posturio \
        [--build wasm|native] [--port 10000] [--admin-port 9901] [--openai-port 18081] \
        [--anthropic-port 18082] [--gemini-port 18083] [--azure-port 18084]

From the repository root. Starts tests/mock_provider.py, then Envoy with envoy/envoy-ecds.yaml
(`--build native`: envoy/envoy-ecds-native.yaml, the native module of `make native`), whose
Posturio filter comes by ECDS from a file that `posturio render` writes from envoy/policy.json
(target/run/posturio.yaml; nothing tracked is written). Every time
envoy/policy.json is saved it is rendered again: a valid policy replaces the file (by a rename,
which Envoy watches) and Envoy applies it in place, without a restart; an invalid one is
reported here with the JSON path of each mistake, and the previous policy keeps serving.
Ctrl-C stops Envoy and the mock.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

POLICY = "envoy/policy.json"
# Per build: the ECDS bootstrap and the filter file it watches (the native pair is the Wasm pair
# with the dynamic-module filter, tests/envoy_native.rs), and the module Envoy loads.
BUILDS = {
    "wasm": ("envoy/envoy-ecds.yaml", "envoy/ecds/posturio.yaml",
             "target/wasm32-wasip1/release/posturio.wasm", "make build"),
    "native": ("envoy/envoy-ecds-native.yaml", "envoy/ecds/posturio-native.yaml",
               "target/native/libposturio.so", "make native"),
}
RUN_DIR = "target/run"
LIVE_FILTER = f"{RUN_DIR}/posturio.yaml"
# Envoy's access log (its standard output) is shown here and also kept in this file, so that
# `posturio report target/run/access.log` can read what was served.
ACCESS_LOG = f"{RUN_DIR}/access.log"
STATS = "extension_config_discovery.http_filter.posturio."
# The ports of envoy/envoy-ecds.yaml (and envoy-ecds-native.yaml), each with how many times it
# appears there.
# openai and azure appear twice: as their own clusters and as the endpoints of the fallback
# pool `resilient-pool`.
PORTS = {"port": (10000, 1), "admin_port": (9901, 1), "openai_port": (18081, 2),
         "anthropic_port": (18082, 1), "gemini_port": (18083, 1), "azure_port": (18084, 2)}
POLL_SECONDS = 0.3
ADMIN = "http://127.0.0.1:9901"

BANNER = """
  Mock providers: openai 127.0.0.1:{openai_port}, anthropic :{anthropic_port}, gemini :{gemini_port},
    azure :{azure_port}
    (what a provider received last: curl -s localhost:{openai_port}/__mock/last)
  Posturio ({build} build) in Envoy: http://127.0.0.1:{port} (admin: http://127.0.0.1:{admin_port}). Try:

    curl -s localhost:{port}/v1/chat/completions -H 'content-type: application/json' \\
      -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hi"}}]}}'

  Fallback: the model "resilient" goes to openai, and to azure when openai fails. Make
  openai answer 429 (`{{}}` instead clears it), then ask:

    curl -s localhost:{openai_port}/__mock/behave -d '{{"listener": "openai", "status": 429}}'
    curl -s localhost:{port}/v1/chat/completions -H 'content-type: application/json' \
      -H 'x-posturio-consumer: platform-team' \
      -d '{{"model": "resilient", "messages": [{{"role": "user", "content": "Hi"}}]}}'

  The access log is shown here and kept in target/run/access.log: `posturio report
  target/run/access.log` sums it up by consumer and model.
  The policy is {policy}, served live: save a change and it is applied within a second,
  without a restart; a mistake is shown here and the previous policy keeps serving.
  Ctrl-C stops Envoy and the mock providers.
"""


def keep_access_log(lines) -> None:
    """Copies Envoy's standard output (the access log) here and to ACCESS_LOG, line by line."""
    with open(ACCESS_LOG, "wb") as kept:
        for line in lines:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            kept.write(line)
            kept.flush()


def say(message: str) -> None:
    print(f"==> posturio: {message}", flush=True)


def render(posturio: str, filter_file: str) -> tuple[bool, str]:
    """Renders the live filter file from the policy; (applied, what posturio said)."""
    done = subprocess.run([posturio, "render", filter_file, "--out", LIVE_FILTER],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def stats() -> dict[str, int]:
    """Envoy's ECDS counters for the filter, by name without the prefix."""
    try:
        with urllib.request.urlopen(f"{ADMIN}/stats?filter=^{STATS}", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    counters = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(STATS) and value.strip().isdigit():
            counters[name.removeprefix(STATS)] = int(value)
    return counters


def wait_for_outcome(before: dict[str, int]) -> str:
    """What Envoy did with the file just written: applied, rejected, or unknown."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = stats()
        if now.get("update_success", 0) > before.get("update_success", 0):
            return "applied"
        if now.get("update_rejected", 0) > before.get("update_rejected", 0):
            return "rejected"
        time.sleep(0.1)
    return "unknown"


def policy_stamp() -> tuple | None:
    try:
        st = os.stat(POLICY)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def wait_ready(envoy: subprocess.Popen) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and envoy.poll() is None:
        try:
            with urllib.request.urlopen(f"{ADMIN}/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoy", required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--posturio", required=True)
    parser.add_argument("--build", choices=sorted(BUILDS), default="wasm",
                        help="the Wasm module (default) or the native dynamic module")
    for name, (default, _) in PORTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    args = parser.parse_args()
    ports = {name: getattr(args, name) for name in PORTS}
    global ADMIN
    ADMIN = f"http://127.0.0.1:{args.admin_port}"

    bootstrap_file, filter_file, module, how = BUILDS[args.build]
    if not os.path.exists(module):
        say(f"{module} is missing: run `{how}` first (`make run BUILD={args.build}` does)")
        return 1
    os.makedirs(RUN_DIR, exist_ok=True)
    ok, said = render(args.posturio, filter_file)
    if not ok:
        print(said, file=sys.stderr)
        say(f"{POLICY} is not a valid policy; fix it and run again")
        return 1
    with open(bootstrap_file, encoding="utf-8") as source:
        bootstrap = source.read()
    watched = f"path: {filter_file}\n"
    if bootstrap.count(watched) != 1:
        say(f"{bootstrap_file} no longer names {filter_file} once; update envoy/run.py")
        return 1
    bootstrap = bootstrap.replace(watched, f"path: {LIVE_FILTER}\n")
    for name, (default, count) in PORTS.items():
        found = bootstrap.count(f"port_value: {default} ")
        if found != count:
            say(f"{bootstrap_file} has port {default} {found} times, not {count}; "
                "update envoy/run.py")
            return 1
        bootstrap = bootstrap.replace(f"port_value: {default} ", f"port_value: {ports[name]} ")
    with open(f"{RUN_DIR}/envoy.yaml", "w", encoding="utf-8") as out:
        out.write(bootstrap)

    children: list[subprocess.Popen] = []

    def stop(*_):
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        listeners = [f"{name}={ports[name + '_port']}" for name in ("openai", "anthropic", "gemini", "azure")]
        mock = subprocess.Popen([args.python, "tests/mock_provider.py",
                                 *[a for listen in listeners for a in ("--listen", listen)]],
                                stdout=subprocess.PIPE, text=True)
        children.append(mock)
        # The mock's first line is its port map: reading it proves every port is bound.
        if not mock.stdout.readline():
            say("the mock provider did not start (are its ports free?)")
            return 1
        envoy = subprocess.Popen([args.envoy, "-c", f"{RUN_DIR}/envoy.yaml", "--concurrency", "2",
                                  "--log-level", "info", "--disable-hot-restart"],
                                 stdout=subprocess.PIPE)
        children.append(envoy)
        threading.Thread(target=keep_access_log, args=(envoy.stdout,), daemon=True).start()
        if not wait_ready(envoy):
            say("Envoy did not become ready (are its ports free?); its log is above")
            return 1
        print(BANNER.format(policy=POLICY, build=args.build, **ports), flush=True)
        stamp = policy_stamp()
        while envoy.poll() is None:
            time.sleep(POLL_SECONDS)
            now = policy_stamp()
            if now == stamp or now is None:
                continue
            stamp = now
            before = stats()
            ok, said = render(args.posturio, filter_file)
            if not ok:
                print(said, flush=True)
                say(f"{POLICY} rejected; the previous policy keeps serving")
                continue
            outcome = wait_for_outcome(before)
            if outcome == "applied":
                say(f"{POLICY} changed: the new policy is serving")
            elif outcome == "rejected":
                say(f"Envoy rejected the new filter file (its log above says why); "
                    "the previous policy keeps serving")
            else:
                say(f"{POLICY} rendered to {LIVE_FILTER}, unchanged for Envoy")
        say("Envoy exited")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
