"""Local-stack restart time against the number of stored items (issue 2).

Each start is a fresh Python process, as `berth up` is, so moto's in-process state is empty and
every start pays the same imports. Per run and per `--items` count K:

  1. a process on an empty data dir times `LocalStack.start()` (the baseline: nothing to
     restore), times one job-sized TransactWriteItems, puts K items (about 340 B each, shaped like
     jobs and their events) with `Table.batch_put`, times `save_state(whole=True)` (one pass
     over the table, as the AWS stand-in writes after a request that names no keys) and then
     `stop()`, which writes the last changes;
  2. a second process on the same data dir times `start()` again (restore), reads
     `restore_seconds` (the snapshot load alone, inside the AWS stand-in) and times the same
     transaction.

The transaction shows whether the restored items make every job creation and completion slower
after the restart, not only the start (moto once copied the whole table on each one). The
continuous writes are pushed out of the measured spans (`snapshot_interval`). Medians over `--runs`.

Usage: python bench/restart_state.py [--items 3000 [10000 ...]] [--runs 3] [--json]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSACTIONS = 5  # job-sized transactions timed per process; their median is reported


# --- child processes ---------------------------------------------------------------------------


def _child(data_dir: str, items: int) -> None:
    """One stack lifetime on `data_dir`; prints its timings as JSON. `items` > 0: load and save them."""
    sys.path.insert(0, str(ROOT))
    from app.local.stack import LocalStack, StackOptions, free_port

    # Continuous snapshots and the TTL timer would read the table in the background, inside the measured spans.
    stack = LocalStack(StackOptions(data_dir=Path(data_dir), port=free_port(), moto_port=free_port(), worker=False,
                                    snapshot_interval=3600, ttl_interval=3600))
    started = time.perf_counter()
    stack.start()
    result = {"start_s": time.perf_counter() - started, "restore_s": stack.restore_seconds,
              "restored_items": stack.restored_items, "transaction_ms": _transaction_ms()}
    if items:
        result.update(_load_and_save(stack, items))
    stopping = time.perf_counter()
    stack.stop()
    result["stop_s"] = time.perf_counter() - stopping
    print(json.dumps(result))


def _transaction_ms() -> float:
    """Median time of a transaction shaped like a job's creation: two puts and a counter update."""
    from app.composition import services
    from app.store.table import Write

    table = services().store.table
    table.put({"pk": "WS#bench-txn", "sk": "WORKSPACE", "open_jobs": 0})
    timings = []
    for _ in range(TRANSACTIONS):
        key = f"WS#bench-txn#{time.time_ns()}"
        writes = [Write.put({"pk": key, "sk": "JOB#1", "status": "queued"}, must_not_exist=True),
                  Write.put({"pk": key, "sk": "EV#1", "status": "queued"}, must_not_exist=True),
                  Write.update("WS#bench-txn", "WORKSPACE", add={"open_jobs": 1})]
        started = time.perf_counter()
        table.transact(writes)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _load_and_save(stack, items: int) -> dict:
    started = time.perf_counter()
    stack.services.store.table.batch_put([stored_item(n) for n in range(items)])
    loaded = time.perf_counter()
    saved_items = stack.save_state(whole=True)["saved"]
    saved = time.perf_counter()
    snapshot = stack.state_dir / "dynamodb.jsonl"
    return {"load_s": loaded - started, "save_s": saved - loaded, "saved_items": saved_items,
            "snapshot_bytes": snapshot.stat().st_size}


def stored_item(n: int) -> dict:
    """A job or one of its events, as berth stores them: about 300 bytes in the snapshot."""
    workspace = f"ws_bench{n % 40:04d}"
    job = f"job_01m8{n // 6:021d}"
    at = f"2026-11-{1 + n % 28:02d}T07:{n % 60:02d}:00.000Z"
    if n % 6 == 0:
        return {"pk": f"WS#{workspace}", "sk": f"JOB#{job}", "job_id": job, "workspace_id": workspace,
                "type": "model.inspect", "status": "complete", "payload": {"model": "berth-demo/tiny-llama"},
                "created_at": at, "finished_at": at, "dispatch": 1, "runtime_id": "rt_01m8bench0000000000000"}
    return {"pk": f"WS#{workspace}#JOB#{job}", "sk": f"EV#{n % 6:010d}", "seq": n % 6, "step": "resolve",
            "status": "running", "message": "resolving berth-demo/tiny-llama at main on the hub",
            "data": {"revision": "main", "files": 7}, "at": at}


# --- the parent ----------------------------------------------------------------------------------


def run_child(data_dir: Path, items: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(data_dir), str(items)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child on {data_dir} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def measure(counts: list[int], runs: int, scratch: Path) -> dict:
    samples: dict[int, list[tuple[dict, dict]]] = {count: [] for count in counts}
    for run in range(runs):
        for count in counts:
            data_dir = scratch / f"k{count}-run{run}"
            first = run_child(data_dir, count)  # empty start, then load and save
            second = run_child(data_dir, 0)  # restart: restore
            samples[count].append((first, second))
        print(f"\rrun {run + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {count: summarize(pairs) for count, pairs in samples.items()}


def summarize(pairs: list[tuple[dict, dict]]) -> dict:
    def median(values) -> float:
        return round(statistics.median(values), 3)

    firsts, seconds = [f for f, _ in pairs], [s for _, s in pairs]
    row = {
        "runs": len(pairs),
        "start_empty_s": median(f["start_s"] for f in firsts),
        "save_s": median(f["save_s"] for f in firsts),
        "stop_s": median(f["stop_s"] for f in firsts),
        "start_with_items_s": median(s["start_s"] for s in seconds),
        "restore_s": median(s["restore_s"] for s in seconds),
        "restored_items": seconds[0]["restored_items"],
        "snapshot_bytes": firsts[0]["snapshot_bytes"],
        "item_bytes": round(firsts[0]["snapshot_bytes"] / firsts[0]["saved_items"]),
        "transaction_empty_ms": round(statistics.median(f["transaction_ms"] for f in firsts), 1),
        "transaction_with_items_ms": round(statistics.median(s["transaction_ms"] for s in seconds), 1),
    }
    row["start_ratio"] = round(row["start_with_items_s"] / row["start_empty_s"], 2)
    return row


def print_table(results: dict) -> None:
    print("| stored items K | start, empty (s) | save K (s) | stop (s) | start with K (s) | of which restore (s) "
          "| start with K ÷ empty | job-sized transaction, empty → after restart (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, row in results.items():
        print(f"| {count} ({row['restored_items']} restored, {row['item_bytes']} B each) | "
              f"{row['start_empty_s']:.2f} | {row['save_s']:.2f} | {row['stop_s']:.2f} | "
              f"{row['start_with_items_s']:.2f} | {row['restore_s']:.2f} | {row['start_ratio']:.2f} | "
              f"{row['transaction_empty_ms']:.0f} → {row['transaction_with_items_ms']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[3000], help="stored item counts (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="restarts per item count (default 3)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    options = parser.parse_args()

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        results = measure(options.items, options.runs, Path(scratch))
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "seconds": round(time.monotonic() - started, 1)}
    if options.json:
        print(json.dumps({"items": results, "machine": machine}, indent=2))
        return
    print(f"local-stack restart, {options.runs} runs per item count, Python {machine['python']}, "
          f"{machine['cpus']} CPUs, load average {machine['load_average'][0]:.1f} before / "
          f"{machine['load_average'][1]:.1f} after, {machine['seconds']:.0f} s\n")
    print_table(results)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
