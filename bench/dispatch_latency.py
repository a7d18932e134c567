"""Dispatch latency on the local stack (issue 3).

Measured: `POST /v1/jobs` (model.inspect on the demo Llama repo of a local hub) to the job's
`job`/`start` event seen on the job's SSE stream, over `--jobs` jobs run one after another (each
followed to its final event before the next is posted, so samples do not overlap), for a worker
reading SQS directly (`--queue-mode sqs`) and one leasing through the API (`lease`). The worker
long-polls (20 s) with 4 slots, so it is already waiting when a job's message arrives.

The path measured: `POST /v1/jobs` stores the job, its `queued` event, the workspace's open-job
counter, the audit record, the usage count and the slot on the chosen runtime (candidates from
the runtime listing, cached in-process for `read_cache_seconds`) in one TransactWriteItems, then
sends the job's SQS message. The worker's claim (`POST .../claim`) records the `start` event in
the same transaction that grants the claim — the worker posts no `start` of its own — so the
job's `started_at` and the start event's `at` are the same moment. The stored event wakes the SSE
stream in-process (app.services.event_feed: the API, its streams and the claim share this
process); a stream reads the table only when nothing reached it within `sse_poll_seconds`
(0.5 s), so the observed figure carries no polling delay.

Baseline, in the same run and on the same moto server: the raw SQS round trip, SendMessage to the
return of a ReceiveMessage long poll (WaitTimeSeconds 20) that was already waiting on a fresh
queue. Target: berth p50 ≤ 3× the raw p50.

Beside the observed figure, the server-side one — the stored start event's `at` minus the job's
`created_at` — leaves out the POST's way in, the claim's transaction and the SSE delivery. The
breakdown splits each job along the timestamps berth stores (plus one the bench takes itself: the
API runs in this process, so its `Queues.send` is wrapped to note when each job's message went to
SQS): posting → created → sent → start recorded (the claim; `started_at` = the event's `at`) →
seen.

Throughput: `--throughput-jobs` jobs posted back to back by one client, timed from the first POST
to the last job's `finished_at`: jobs/s through one worker with `--slots` slots.

Every queue mode and the throughput burst get a fresh stack, so none runs on a table another
filled (a fuller table makes moto's queries slower). The report shows any drift within a mode
(first and last tenth).

Usage: python bench/dispatch_latency.py [--jobs 200] [--throughput-jobs 100] [--slots 4] [--json]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402

from app.local.stack import StackOptions  # noqa: E402
from bench._stack import epoch, raw_sqs_round_trips, running_stack, running_worker, summary_ms  # noqa: E402
from tests.e2e.conftest import Account, new_account, parse_sse  # noqa: E402
from tests.support.hub import DEMO_LLAMA, make_demo_hub  # noqa: E402

TARGET_RATIO = 3.0
QUEUE_MODES = ("sqs", "lease")
WARM_UP_JOBS = 5  # first jobs import the executor's libraries and fill caches: discarded
# The workspace's cap on unfinished jobs (16 by default) would refuse the throughput burst with 429.
STACK_SETTINGS = {"BERTH_MAX_CONCURRENT_JOBS": "10000"}
INSPECT = {"type": "model.inspect", "payload": {"model": DEMO_LLAMA}}
FINAL_STATUSES = {"complete", "error", "cancelled", "expired"}


class SendStamps:
    """When each job's message went to SQS, from a wrapper around the API's `Queues.send` (in-process API)."""

    def __init__(self):
        from app.composition import services

        self.sent: dict[str, float] = {}
        self._queues = services().queues
        self._original = self._queues.send

    def __enter__(self):
        def send(queue_url, message):
            self._original(queue_url, message)
            self.sent[message.job_id] = time.time()

        self._queues.send = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc):
        del self._queues.send  # the method again


# --- one job, timed ----------------------------------------------------------------------------


def follow(account: Account, job_id: str):
    """(time seen, event data) for each event of the job's stream until its final `job` event;
    reconnects after each SSE window."""
    last = None
    while True:
        headers = {**account.headers, **({"Last-Event-ID": str(last)} if last is not None else {})}
        with account.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
            response.raise_for_status()
            for frame in parse_sse(response.iter_lines()):
                if frame["event"] == "end":
                    return
                last = int(frame["id"])
                yield time.time(), frame["data"]
                if frame["data"]["step"] == "job" and frame["data"]["status"] in FINAL_STATUSES:
                    return


def timed_job(account: Account, stamps: SendStamps) -> dict:
    """One job posted and followed until it is final, so the next one runs alone; the moments of
    its way to the `start` event, as epoch seconds (the server stamps wall-clock time too)."""
    posting = time.time()
    job_id = account.create_job(**INSPECT)
    posted = time.time()
    seen = start_at = None
    for at, event in follow(account, job_id):
        if event["step"] == "job" and event["status"] == "start" and seen is None:
            seen, start_at = at, epoch(event["at"])
    job = account.job(job_id)
    if job["status"] != "complete" or seen is None:
        raise SystemExit(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return {"posting": posting, "created": epoch(job["created_at"]), "posted": posted,
            "sent": stamps.sent[job_id], "claimed": epoch(job["started_at"]), "start_at": start_at, "seen": seen}


# Consecutive moments of a job's way to its start event, and what happens between them. The claim
# stamps `started_at` and the start event's `at` with the same clock reading, so `claimed` is not
# a moment of its own: `start_at` stands for both (the report checks they agree).
LEGS = (
    ("posting", "created", "POST in: routing, session auth (credential cached), payload validation"),
    ("created", "sent", "runtime candidates (listing cached), one TransactWriteItems (job, `queued` event, "
                        "open-job counter, audit record, usage count, runtime slot), SendMessage"),
    ("sent", "start_at", "SQS delivery to the waiting long poll (lease: the API's, then its answer to the "
                         "worker), worker parses; claim POST: routing, runtime-token auth (cached), until the "
                         "claim reads the clock for `started_at`/`at`"),
    ("start_at", "seen", "claim TransactWriteItems (claim + `start` event), the stored event handed to the "
                         "waiting SSE stream in-process, frame delivery"),
)


def stored_items() -> int:
    from app.composition import services

    return services().aws.client("dynamodb").describe_table(TableName=services().settings.table_name)["Table"][
        "ItemCount"]


def latency_row(account: Account, jobs: int) -> dict:
    with SendStamps() as stamps:
        for _ in range(WARM_UP_JOBS):
            timed_job(account, stamps)
        samples = [timed_job(account, stamps) for _ in range(jobs)]
    observed = [s["seen"] - s["posting"] for s in samples]
    tenth = max(1, len(observed) // 10)
    return {
        "sse_observed": summary_ms(observed),
        "first_tenth_p50_ms": summary_ms(observed[:tenth])["p50_ms"],
        "last_tenth_p50_ms": summary_ms(observed[-tenth:])["p50_ms"],
        "items_after": stored_items(),
        "server_side": summary_ms([s["start_at"] - s["created"] for s in samples]),
        "post_answered": summary_ms([s["posted"] - s["posting"] for s in samples]),
        "claim_vs_start_max_ms": round(max(abs(s["start_at"] - s["claimed"]) for s in samples) * 1000, 1),
        "breakdown": [{"from": a, "to": b, "what": what, **summary_ms([s[b] - s[a] for s in samples])}
                      for a, b, what in LEGS],
    }


# --- throughput --------------------------------------------------------------------------------


def burst(account: Account, jobs: int) -> dict:
    """Post `jobs` jobs back to back, then wait for all; first POST to the last `finished_at`."""
    started = time.time()
    ids = [account.create_job(**INSPECT) for _ in range(jobs)]
    submitted = time.time()
    finished = wait_until_final(account, ids)
    failed = [job["status"] for job in finished if job["status"] != "complete"]
    if failed:
        raise SystemExit(f"{len(failed)} burst jobs did not complete: {failed}")
    seconds = max(epoch(job["finished_at"]) for job in finished) - started
    return {"jobs": jobs, "post_seconds": round(submitted - started, 2), "seconds": round(seconds, 2),
            "jobs_per_second": round(jobs / seconds, 2)}


def wait_until_final(account: Account, ids: list[str], timeout: float = 900) -> list[dict]:
    """The jobs once all are final. One small GET at a time, in posting order (the order they
    finish in, roughly): listing a workspace of hundreds of jobs would load the stack measured."""
    deadline = time.monotonic() + timeout
    finished = []
    for job_id in ids:
        while not (job := account.job(job_id))["finished_at"]:
            if time.monotonic() > deadline:
                raise SystemExit("the burst did not finish in time")
            time.sleep(0.5)
        finished.append(job)
    return finished


# --- the baseline: SQS alone ---------------------------------------------------------------------


def job_message_body() -> str:
    """A body the size and shape of a real job message."""
    from app.contract.messages import JobMessage, JobType, QueueEnvelope

    message = JobMessage(job_id=f"job_{uuid.uuid4().hex}", workspace_id=f"ws_{uuid.uuid4().hex}",
                         type=JobType.model_inspect, payload=INSPECT["payload"], expires_at=time.time() + 600,
                         dispatch=1)
    return QueueEnvelope(message=message).model_dump_json()


# --- the run -----------------------------------------------------------------------------------


class MotoFailures:
    """Counts the API's AWS requests that moto answered with a 5xx. moto's DynamoDB is not safe
    under concurrent requests; the local stack serialises them (app.local.moto_fidelity), so this
    should stay 0. botocore retries any, with backoff, so they would show up as latency."""

    def __init__(self):
        self.count = 0

    def _seen(self, response=None, **_) -> None:
        if response is not None and response[0] is not None and response[0].status_code >= 500:
            self.count += 1

    @contextmanager
    def counting(self):
        from app.composition import services

        clients = [services().aws.client("dynamodb"), services().aws.client("sqs")]
        for client in clients:
            client.meta.events.register("needs-retry", self._seen)
        try:
            yield self
        finally:
            for client in clients:
                client.meta.events.unregister("needs-retry", self._seen)


@contextmanager
def stack_with_worker(mode: str, options, hub, scratch: Path):
    """A fresh stack (see the module's docstring), an account and its worker; yields the account
    and the count of moto's failures."""
    with running_stack(scratch / mode, sweep_interval=options.sweep_interval, environment=STACK_SETTINGS) as stack, \
            MotoFailures().counting() as failures, httpx.Client(base_url=stack.api_url, timeout=60) as client:
        account = new_account(client)
        # Idle when stopped: SIGKILL after 5 s rather than wait out its 20 s long poll.
        with running_worker(stack, account, scratch / mode / f"worker-{mode}", mode=mode, slots=options.slots,
                            environment=hub.environment(), stop_timeout=5):
            yield account, failures


def latency_of_mode(mode: str, options, hub, scratch: Path) -> dict:
    with stack_with_worker(mode, options, hub, scratch) as (account, failures):
        row = {"raw_sqs": raw_sqs_round_trips(options.jobs, job_message_body()), **latency_row(account, options.jobs),
               "moto_failures": failures.count}
    raw_p50 = row["raw_sqs"]["p50_ms"]
    row["ratio"] = round(row["sse_observed"]["p50_ms"] / raw_p50, 2)
    row["server_side_ratio"] = round(row["server_side"]["p50_ms"] / raw_p50, 2)
    row["target_met"] = row["ratio"] <= TARGET_RATIO
    return row


def measure(options) -> dict:
    results = {"modes": {}}
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch, make_demo_hub() as hub:
        for mode in options.modes:
            results["modes"][mode] = latency_of_mode(mode, options, hub, Path(scratch))
            print(f"{mode} worker: done", file=sys.stderr, flush=True)
        if options.throughput_jobs:
            mode = options.modes[0]
            with stack_with_worker(mode, options, hub, Path(scratch) / "throughput") as (account, failures):
                results["throughput"] = {"mode": mode, **burst(account, options.throughput_jobs),
                                         "items_after": stored_items(), "moto_failures": failures.count}
    return results


def print_report(results: dict, options) -> None:
    modes = results["modes"]
    print("| worker | path | n | p50 ms | p95 ms | p50 ÷ raw SQS p50 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for mode, row in modes.items():
        raw_p50 = row["raw_sqs"]["p50_ms"]
        for key, label in (("raw_sqs", "raw SQS send → waiting long poll returns (baseline)"),
                           ("sse_observed", "POST /v1/jobs → `start` seen on SSE"),
                           ("server_side", "job `created_at` → start event `at` (server side)")):
            figures = row[key]
            print(f"| {mode} | {label} | {figures['n']} | {figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | "
                  f"{figures['p50_ms'] / raw_p50:.2f} |")
    print()
    for mode, row in modes.items():
        verdict = "met" if row["target_met"] else "NOT met"
        print(f"{mode} worker: p50 ÷ raw SQS p50 = {row['ratio']:.2f}× (target ≤ {TARGET_RATIO:g}×: {verdict}); "
              f"server side {row['server_side_ratio']:.2f}×")
        print(f"  POST answered in p50 {row['post_answered']['p50_ms']:.1f} ms; observed p50 of the first tenth "
              f"{row['first_tenth_p50_ms']:.0f} ms, of the last {row['last_tenth_p50_ms']:.0f} ms "
              f"({row['items_after']} items stored by then); moto failed {row['moto_failures']} requests (retried)")
        print(f"  job `started_at` vs start event `at`: at most {row['claim_vs_start_max_ms']:.1f} ms apart "
              f"(recorded by the claim, in one transaction)")
    for mode, row in modes.items():
        print(f"\nwhere the time goes, {mode} worker (p50 and p95 of each leg on its own: they do not add up):\n")
        print("| leg | p50 ms | p95 ms | what happens |")
        print("| --- | ---: | ---: | --- |")
        for leg in row["breakdown"]:
            print(f"| {leg['from']} → {leg['to']} | {leg['p50_ms']:.1f} | {leg['p95_ms']:.1f} | {leg['what']} |")
    if "throughput" in results:
        figures = results["throughput"]
        print(f"\nthroughput: {figures['jobs']} jobs posted back to back (in {figures['post_seconds']:.1f} s) to one "
              f"{figures['mode']} worker with {options.slots} slots, sweeper every {options.sweep_interval:g} s:")
        print(f"  the last finished {figures['seconds']:.1f} s after the first POST: "
              f"{figures['jobs_per_second']:.2f} jobs/s "
              f"({figures['items_after']} items stored by then; moto failed {figures['moto_failures']} requests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="timed jobs per queue mode (default 200)")
    parser.add_argument("--throughput-jobs", type=int, default=100,
                        help="jobs in the throughput burst, on a stack of its own (default 100; 0 skips)")
    parser.add_argument("--slots", type=int, default=4, help="the worker's --max-concurrent-jobs (default 4)")
    parser.add_argument("--modes", nargs="+", choices=QUEUE_MODES, default=list(QUEUE_MODES))
    parser.add_argument("--sweep-interval", type=float, default=StackOptions.sweep_interval,
                        help=f"the stack's sweeper period in s (default {StackOptions.sweep_interval:g}, as `make run`)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    options = parser.parse_args()

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = measure(options)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "seconds": round(time.monotonic() - started, 1)}
    if options.json:
        print(json.dumps({**results, "target_ratio": TARGET_RATIO, "machine": machine}, indent=2))
        return
    print(f"dispatch latency, {options.jobs} jobs per mode, Python {machine['python']}, {machine['cpus']} CPUs, "
          f"load average {machine['load_average'][0]:.1f} before / {machine['load_average'][1]:.1f} after, "
          f"{machine['seconds']:.0f} s\n")
    print_report(results, options)


if __name__ == "__main__":
    main()
