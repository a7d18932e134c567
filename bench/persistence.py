"""What continuous persistence costs the local stack (issue 11): job creation with the table
written within a second of each change ("on", as `berth up` runs) beside the same stack writing it
only when it stops ("off", the baseline), measured in the same run; and one snapshot's cost.

Per stored-item count K and per mode, a fresh stack (no worker, so jobs stay queued and only
creation is measured) is filled with K items shaped like jobs and their events (as in
restart_state.py), then:
  - `--jobs` jobs are created one after the other: POST /v1/jobs latency, p50 and p95;
  - `--jobs` more by `--clients` concurrent clients: jobs per second;
  - meanwhile the snapshot file is watched (each write replaces it: a new inode) and the AWS
    stand-in's CPU time is read from /proc, so the cost shows as snapshots written and moto CPU
    per job;
  - then a snapshot is written `--saves` times after one item changed (what the stand-in writes
    after a lone change: that item read again, the file rewritten) and `--saves` times whole (every
    item read again, as after a request that names no keys): their bytes, time, and the part of it
    during which DynamoDB requests waited (items are read under moto's lock).
The two modes take turns, the order swapping each run. Medians over `--runs`.

Usage: python bench/persistence.py [--items 1000 10000] [--runs 2] [--jobs 100] [--clients 4] [--json]
"""

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402

from app.local.stack import LocalStack, StackOptions, free_port  # noqa: E402
from bench._stack import summary_ms  # noqa: E402
from bench.restart_state import stored_item  # noqa: E402
from tests.e2e.conftest import new_account  # noqa: E402

MODES = {"off": 3600.0, "on": StackOptions.snapshot_interval}  # seconds from a change to its write
# The workspace's cap on unfinished jobs (16 by default) would refuse the bursts with 429.
STACK_SETTINGS = {"BERTH_MAX_CONCURRENT_JOBS": "100000"}
JOB = {"type": "model.inspect", "payload": {"model": "berth-demo/tiny-llama"}}


class SnapshotWatch:
    """Counts the snapshot file's replacements while it runs (a 5 ms poll of its inode)."""

    def __init__(self, path: Path):
        self.path = path
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "SnapshotWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        last = self._inode()
        while not self._stop.wait(0.005):
            if (now := self._inode()) != last:
                self.writes += 1
                last = now

    def _inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except FileNotFoundError:
            return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def one_stack(scratch: Path, items: int, mode: str, jobs: int, clients: int, saves: int) -> dict:
    options = StackOptions(data_dir=scratch / f"k{items}-{mode}-{time.monotonic_ns()}", port=free_port(),
                           moto_port=free_port(), worker=False, snapshot_interval=MODES[mode],
                           environment=STACK_SETTINGS)
    stack = LocalStack(options).start()
    logging.getLogger().setLevel(logging.WARNING)  # the stack logs every request at INFO
    try:
        stack.services.store.table.batch_put([stored_item(n) for n in range(items)])
        stack.save_state()  # the load is on disk: nothing is pending when the timing starts
        with httpx.Client(base_url=stack.api_url, timeout=60) as api:
            account = new_account(api)
            for _ in range(5):  # warm-up: imports, caches, connections
                account.create_job(**JOB)
            moto = stack.aws_process.pid
            cpu_before = cpu_seconds(moto)
            with SnapshotWatch(stack.state_dir / "dynamodb.jsonl") as watch:
                latencies = []
                for _ in range(jobs):
                    started = time.perf_counter()
                    account.create_job(**JOB)
                    latencies.append(time.perf_counter() - started)
                burst = concurrent_creation(stack.api_url, account.headers, jobs, clients)
            cpu = cpu_seconds(moto) - cpu_before
        one_changed = []
        for n in range(saves):
            stack.services.store.table.put({"pk": "WS#bench-persistence", "sk": f"ITEM#{n}", "n": n})
            one_changed.append(stack.save_state())
        whole = [stack.save_state(whole=True) for _ in range(saves)]
    finally:
        stack.stop()
    return {"latency": summary_ms(latencies), "jobs_per_second": burst, "snapshots": watch.writes,
            "moto_cpu_ms_per_job": cpu * 1000 / (2 * jobs),
            "one_changed_s": statistics.median(s["seconds"] for s in one_changed),
            "one_changed_locked_s": statistics.median(s["locked_seconds"] for s in one_changed),
            "whole_s": statistics.median(s["seconds"] for s in whole),
            "whole_locked_s": statistics.median(s["locked_seconds"] for s in whole),
            "snapshot_items": whole[0]["saved"], "snapshot_bytes": whole[0]["bytes"]}


def concurrent_creation(api_url: str, headers: dict, jobs: int, clients: int) -> float:
    def create(count: int) -> None:
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as client:
            for _ in range(count):
                response = client.post("/v1/jobs", json=JOB)
                if response.status_code != 202:
                    raise SystemExit(f"job creation answered {response.status_code}: {response.text}")

    shares = [jobs // clients + (1 if n < jobs % clients else 0) for n in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(create, shares))
    return jobs / (time.perf_counter() - started)


def measure(counts: list[int], runs: int, jobs: int, clients: int, saves: int) -> dict:
    samples: dict[int, dict[str, list[dict]]] = {count: {"off": [], "on": []} for count in counts}
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        for run in range(runs):
            for count in counts:
                for mode in ("off", "on") if run % 2 == 0 else ("on", "off"):
                    samples[count][mode].append(one_stack(Path(scratch), count, mode, jobs, clients, saves))
                    print(f"\rrun {run + 1}/{runs}, {count} items, persistence {mode}   ", end="", file=sys.stderr,
                          flush=True)
    print(file=sys.stderr)
    return {count: {mode: summarize(rows) for mode, rows in modes.items()} for count, modes in samples.items()}


def summarize(rows: list[dict]) -> dict:
    def median(key, inner=None):
        return statistics.median(row[key][inner] if inner else row[key] for row in rows)

    return {"runs": len(rows), "p50_ms": median("latency", "p50_ms"), "p95_ms": median("latency", "p95_ms"),
            "jobs_per_second": round(median("jobs_per_second"), 1), "snapshots": median("snapshots"),
            "moto_cpu_ms_per_job": round(median("moto_cpu_ms_per_job"), 1),
            **{key: round(median(key), 4) for key in ("one_changed_s", "one_changed_locked_s", "whole_s",
                                                      "whole_locked_s")},
            "snapshot_items": rows[0]["snapshot_items"], "snapshot_bytes": rows[0]["snapshot_bytes"]}


def print_tables(results: dict, jobs: int, clients: int) -> None:
    print(f"| stored items | persistence | POST /v1/jobs p50 (ms) | p95 (ms) | jobs/s, {clients} clients "
          f"| snapshots written ({2 * jobs} jobs) | moto CPU per job (ms) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for count, modes in results.items():
        for mode in ("off", "on"):
            row = modes[mode]
            print(f"| {count} | {mode} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['jobs_per_second']:.1f} "
                  f"| {row['snapshots']:.0f} | {row['moto_cpu_ms_per_job']:.1f} |")
        off, on = modes["off"], modes["on"]
        print(f"| {count} | on ÷ off | **{on['p50_ms'] / off['p50_ms']:.2f}** | {on['p95_ms'] / off['p95_ms']:.2f} "
              f"| **{on['jobs_per_second'] / off['jobs_per_second']:.2f}** | | "
              f"{on['moto_cpu_ms_per_job'] / off['moto_cpu_ms_per_job']:.2f} |")
    print("\n| stored items | snapshot items | bytes | write after one change (ms) | of which requests wait (ms) "
          "| whole pass (ms) | of which requests wait (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, modes in results.items():
        row = modes["on"]
        print(f"| {count} | {row['snapshot_items']} | {row['snapshot_bytes']} | {row['one_changed_s'] * 1000:.1f} "
              f"| {row['one_changed_locked_s'] * 1000:.1f} | {row['whole_s'] * 1000:.0f} "
              f"| {row['whole_locked_s'] * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 10000], help="stored item counts")
    parser.add_argument("--runs", type=int, default=2, help="stacks per item count and mode (default 2)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs created one by one, and again concurrently")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the burst (default 4)")
    parser.add_argument("--saves", type=int, default=3, help="whole snapshots timed per stack (default 3)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    options = parser.parse_args()

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = measure(options.items, options.runs, options.jobs, options.clients, options.saves)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "seconds": round(time.monotonic() - started, 1)}
    if options.json:
        print(json.dumps({"items": results, "machine": machine}, indent=2))
        return
    print(f"local-stack persistence, {options.runs} runs per item count and mode, Python {machine['python']}, "
          f"{machine['cpus']} CPUs, load average {machine['load_average'][0]:.1f} before / "
          f"{machine['load_average'][1]:.1f} after, {machine['seconds']:.0f} s\n")
    print_tables(results, options.jobs, options.clients)


if __name__ == "__main__":
    main()
