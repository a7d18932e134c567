"""Worker memory with idle sandboxes, on the local stack (issue 4, benchmark 3).

One worker (`--queue-mode sqs`, `--max-concurrent-jobs 24`, long polls parked, serving
`--control-listen 127.0.0.1:0`: a sandbox worker as the local stack deploys it, its control
endpoint's server included) is measured by its own VmRSS (/proc/PID/status: the worker process
alone; the sandboxed servers are processes of their own and not counted):

  0 sandboxes, cold    registered and idle, before any sandbox ran (the baseline)
  0 sandboxes, warm    after one sandbox started and ended: what a first sandbox leaves behind
                       (lazily built clients, thread pools, allocator arenas) is not per-sandbox
  N sandboxes          `--sandboxes` (default 20) echo-server sandboxes running, idle
  after                all of them deleted and their jobs final

Per-sandbox worker overhead = (RSS with N − RSS with 0) / N, against both baselines. For context,
the servers' own memory: the sum of `rss_bytes` that `/api/containers` reports (each sandbox's
process tree: bwrap and the server), and the sum of their PSS (/proc/PID/smaps_rollup), which
shares the interpreter's and libraries' pages among the processes that map them instead of
counting them once per process.

Each figure is the median of SAMPLES readings SAMPLE_SECONDS apart, taken after SETTLE_SECONDS.

Usage: python bench/sandbox_memory.py [--sandboxes 20]
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402

from bench._stack import running_stack, running_worker  # noqa: E402
from bench.sandbox_tool_calls import (ECHO_WORKER_ARGS, STACK_SETTINGS, create_sandbox, end_sandboxes,  # noqa: E402
                                      wait_running)
from tests.e2e.conftest import Account, new_account  # noqa: E402

SLOTS = 24
SETTLE_SECONDS = 3.0  # heartbeats and lease renewals have run once or twice: a steady state
SAMPLES = 5
SAMPLE_SECONDS = 0.5
MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} for process {pid}")


def worker_rss(pid: int) -> float:
    """The worker's own resident memory in MiB, once it has settled."""
    time.sleep(SETTLE_SECONDS)
    readings = []
    for _ in range(SAMPLES):
        readings.append(status_kib(pid, "VmRSS") / 1024)
        time.sleep(SAMPLE_SECONDS)
    return statistics.median(readings)


def pss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            return next(int(line.split()[1]) for line in file if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0  # exited meanwhile


def servers_memory(account: Account, session_ids: list[str]) -> dict:
    """The sandboxes' process trees as the worker reports them through `/api/containers`."""
    containers = [c for c in account.get("/api/containers").json()["containers"] if c["id"] in session_ids]
    if len(containers) != len(session_ids) or any(c["state"] != "running" for c in containers):
        raise SystemExit(f"expected {len(session_ids)} running containers, got {containers}")
    pids = [pid for container in containers for pid in container["pids"]]
    return {"processes": len(pids), "rss_mib": sum(c["rss_bytes"] for c in containers) / MIB,
            "pss_mib": sum(pss_mib(pid) for pid in pids)}


def start_sandboxes(account: Account, count: int) -> list[str]:
    """Create them all at once, then wait until every one runs."""
    session_ids = [create_sandbox(account) for _ in range(count)]
    for session_id in session_ids:
        wait_running(account, session_id, timeout=180)
    return session_ids


def measure(count: int, scratch: Path) -> dict:
    with running_stack(scratch, environment=STACK_SETTINGS) as stack, \
            httpx.Client(base_url=stack.api_url, timeout=60) as client:
        account = new_account(client)
        with running_worker(stack, account, scratch / "worker", slots=SLOTS, direct_control=True,
                            extra_args=ECHO_WORKER_ARGS) as worker:
            figures = {"cold": worker_rss(worker.pid)}
            end_sandboxes(account, start_sandboxes(account, 1))
            figures["warm"] = worker_rss(worker.pid)
            started = time.monotonic()
            session_ids = start_sandboxes(account, count)
            figures["start_seconds"] = time.monotonic() - started
            figures["loaded"] = worker_rss(worker.pid)
            figures["servers"] = servers_memory(account, session_ids)
            end_sandboxes(account, session_ids)
            figures["after"] = worker_rss(worker.pid)
    return figures


def report(figures: dict, count: int) -> None:
    cold, warm, loaded, servers = figures["cold"], figures["warm"], figures["loaded"], figures["servers"]
    print("| worker state | worker VmRSS MiB | vs 0 sandboxes, cold |")
    print("| --- | ---: | ---: |")
    for label, value in (("0 sandboxes, cold (baseline)", cold), ("0 sandboxes, warm (one ran and ended)", warm),
                         (f"{count} idle sandboxes", loaded), (f"after the {count} ended", figures["after"])):
        print(f"| {label} | {value:.1f} | {value - cold:+.1f} |")
    print(f"\nper-sandbox worker overhead: {(loaded - cold) / count:.2f} MiB against the cold baseline, "
          f"{(loaded - warm) / count:.2f} MiB against the warm one")
    print(f"the {count} servers themselves ({servers['processes']} processes, bwrap included): "
          f"RSS sum {servers['rss_mib']:.0f} MiB ({servers['rss_mib'] / count:.1f} per sandbox), "
          f"PSS sum {servers['pss_mib']:.0f} MiB ({servers['pss_mib'] / count:.1f} per sandbox); "
          f"all {count} were running {figures['start_seconds']:.1f} s after the first POST")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandboxes", type=int, default=20, help=f"idle sandboxes at once (default 20, ≤ {SLOTS})")
    options = parser.parse_args()
    if not 1 <= options.sandboxes <= SLOTS:
        parser.error(f"--sandboxes must be between 1 and {SLOTS}")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        figures = measure(options.sandboxes, Path(scratch))
    print(f"worker memory, {options.sandboxes} sandboxes, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, "
          f"{time.monotonic() - started:.0f} s\n")
    report(figures, options.sandboxes)


if __name__ == "__main__":
    main()
