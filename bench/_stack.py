"""What the local-stack benches share: the local stack started for a measurement, a worker process
registered in an account's workspace, the raw SQS baseline and the figures every bench reports.

The benches run as scripts from the project root and put it on `sys.path` before importing this.
cold_start.py and restart_state.py stay apart: their timed child processes must not import, before
the timer starts, what the timed span would import itself.
"""

import logging
import math
import statistics
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import Account

LONG_POLL_SECONDS = 20  # the workers' and the raw baseline's: parked, waiting when a message arrives
SETTLE_SECONDS = 0.05  # lets a just re-armed long poll reach moto before the next message is sent
DIRECT_CONTROL_LISTEN = "127.0.0.1:0"  # loopback, any free port: as the local stack runs its worker


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.5), 1), "p95_ms": round(percentile(ms, 0.95), 1),
            "mean_ms": round(statistics.fmean(ms), 1)}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- the stack -----------------------------------------------------------------------------------


@contextmanager
def running_stack(scratch: Path, *, sweep_interval: float = StackOptions.sweep_interval,
                  environment: dict[str, str] | None = None):
    """A local stack on `scratch / "stack"` with `environment` as extra BERTH_* settings, no worker
    of its own (the bench starts the one it measures) and its snapshot timer parked."""
    options = StackOptions(data_dir=scratch / "stack", port=free_port(), moto_port=free_port(), worker=False,
                           sweep_interval=sweep_interval, snapshot_interval=3600, environment=dict(environment or {}))
    stack = LocalStack(options).start()  # moto afresh on a new data dir: each stack starts empty
    logging.getLogger().setLevel(logging.WARNING)  # the stack logs every request at INFO
    try:
        yield stack
    finally:
        stack.stop()


# --- a worker ------------------------------------------------------------------------------------


@contextmanager
def running_worker(stack: LocalStack, account: Account, data_dir: Path, *, mode: str = "sqs", slots: int = 4,
                   direct_control: bool = False, extra_args: tuple[str, ...] = (),
                   environment: dict[str, str] | None = None, stop_timeout: float = 60):
    """One worker process registered in the account's workspace, its long polls parked; it logs to
    `data_dir` + ".log". With `direct_control` it serves a control endpoint on loopback, which the
    API then uses for control requests instead of its control queue. `environment` adds to the
    stack's worker environment; `stop_timeout`: see `stop_worker`."""
    direct = ("--control-listen", DIRECT_CONTROL_LISTEN) if direct_control else ()
    command = stack.worker_command(data_dir, "--queue-mode", mode, "--max-concurrent-jobs", str(slots),
                                   "--poll-wait-seconds", str(LONG_POLL_SECONDS), *extra_args, *direct)
    environment = {**stack.worker_environment(account.join_token()), **(environment or {})}
    with open(f"{data_dir}.log", "w") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_registration(data_dir, process)
            yield process
        finally:
            stop_worker(process, stop_timeout)


def stop_worker(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` s. An idle worker exits once its parked long polls
    return (up to LONG_POLL_SECONDS); one still running sandboxes (a failed run) needs its stop
    grace as well."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_registration(data_dir: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (data_dir / "runtime.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not register (see {data_dir}.log)")
        time.sleep(0.05)


# --- the baseline: SQS alone ---------------------------------------------------------------------


def raw_sqs_round_trips(samples: int, body: str) -> dict:
    """SendMessage of `body` → return of an already waiting ReceiveMessage long poll, on a fresh
    queue of the stack's moto."""
    import boto3  # the stack has pointed boto3 at its moto server through the environment

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"bench-raw-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arrivals: list[tuple[float, list]] = []
    arrived = threading.Semaphore(0)

    def receive() -> None:
        receiver = boto3.client("sqs")  # its own connection, as the worker's is
        for _ in range(samples):
            messages = receiver.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=LONG_POLL_SECONDS,
                                                VisibilityTimeout=30).get("Messages", [])
            arrivals.append((time.perf_counter(), messages))
            arrived.release()

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    trips = []
    for _ in range(samples):
        time.sleep(SETTLE_SECONDS)
        sent = time.perf_counter()
        sqs.send_message(QueueUrl=url, MessageBody=body)
        arrived.acquire()
        received_at, messages = arrivals[-1]
        if not messages:
            raise SystemExit("a raw long poll returned empty")
        trips.append(received_at - sent)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    thread.join()
    sqs.delete_queue(QueueUrl=url)
    return summary_ms(trips)
