"""Sandbox tool-call round trip on the local stack (issue 4, benchmark 1).

Measured: `POST /v1/sandbox/sessions/{id}/tools/call` of the echo server's `echo` tool, `--calls`
calls one after another on one running sandbox, per worker mode (`--modes`, each on a stack of
its own):

  direct  a worker reading SQS (`--queue-mode sqs`) that serves a control endpoint
          (`--control-listen 127.0.0.1:0`): the API POSTs each signed control message straight
          to it and the HTTP response is the reply (app.services.control, workers.control_server)
  sqs     a worker reading its queues from SQS, without a control endpoint: the control message
          goes through its control queue and the API polls the table for the reply it posts
  lease   the same queue path, for a worker leasing its messages through the API

Queue-path workers park their control long poll (`--poll-wait-seconds 20`).

Baseline, in the same run: a direct `mcp` ClientSession over stdio to the same server script on
the same interpreter, no sandbox and no API, timing `call_tool("echo", ...)` alike. Target, per
mode: berth p50 − baseline p50 ≤ 25 ms. For understanding, the in-process
`SandboxSession.call_tool` (the same server in bubblewrap, as the worker holds it, without the
API) is timed too.

Breakdown: the API runs in this process, so wrappers around the functions on its path stamp each
call (no berth code is edited). Every mode: when the request reached `sandboxes.call_tool`, when
`control.request` was entered and returned, and when `sandboxes.call_tool` returned the answer.
Direct mode adds the HTTP POST to the worker's control endpoint (the `post` of the API's
keep-alive client, `control._direct()`), which holds the worker's whole share. The queue modes
add the control message's SQS send, the worker's reply arriving at `control.store_reply`, and the
poll of `control.request` that found it. The legs between consecutive moments add up to the
call's mean. A call that took the other path (a direct-mode call that fell back to the queue, a
queue-mode call that was POSTed) stops the run.

Beside the breakdown, figures taken on the same stack: one DynamoDB GetItem; for the direct mode,
a bare HTTP round trip to the worker's control endpoint (`GET /control`, answered 405 without
any work: the worker's HTTP stack alone); for the queue modes, a raw SQS send → waiting
long-poll round trip and timed reply POSTs with the worker's runtime token.

Usage: python bench/sandbox_tool_calls.py [--calls 200] [--modes direct sqs lease]
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from app.contract.messages import SandboxPolicy  # noqa: E402
from bench._stack import raw_sqs_round_trips, running_stack, running_worker, summary_ms  # noqa: E402
from tests.e2e.conftest import Account, new_account  # noqa: E402
from tests.support.sandbox_fixtures import ECHO_SERVER, python_command  # noqa: E402
from workers.sandbox.session import SandboxSession  # noqa: E402

TARGET_OVERHEAD_MS = 25.0
QUEUE_MODES = ("sqs", "lease")  # control requests through the worker's control queue
MODES = ("direct", *QUEUE_MODES)  # direct: an sqs worker serving --control-listen
WARM_UP_CALLS = 5  # the first calls fill connection pools and caches on every hop: discarded
CONTEXT_SAMPLES = 100  # for the figures beside the breakdown: enough for a p50 and p95
# `python3` inside the sandbox is this interpreter (the sandbox's PATH starts with its prefix), so
# the direct baseline runs the very same program.
ECHO_COMMAND = f"python3 {ECHO_SERVER}"
ECHO_WORKER_ARGS = ("--sandbox-tool-dir", str(ECHO_SERVER.parent))  # the worker's sandboxes see the echo server
ECHO_CALL = {"name": "echo", "arguments": {"text": "hello from the bench"}}
# The workspace's cap on unfinished jobs (16 by default) would refuse the memory bench's 20 sandboxes.
STACK_SETTINGS = {"BERTH_MAX_CONCURRENT_JOBS": "1000"}


# --- sandboxes (the other sandbox benches use these too) -------------------------------------


def create_sandbox(account: Account) -> str:
    response = account.post("/v1/sandbox/sessions", json={"start_command": ECHO_COMMAND})
    if response.status_code != 202:
        raise SystemExit(f"creating a sandbox failed: {response.status_code} {response.text}")
    return response.json()["session_id"]


def wait_running(account: Account, session_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"]
        if state == "running":
            return
        if state in ("failed", "ended"):
            raise SystemExit(f"sandbox {session_id} {state}")
        time.sleep(0.05)
    raise SystemExit(f"sandbox {session_id} did not start within {timeout:g} s")


def end_sandboxes(account: Account, session_ids: list[str]) -> None:
    """Delete the sandboxes and wait until their jobs are final, so the next measurement runs alone."""
    for session_id in session_ids:
        account.delete(f"/v1/sandbox/sessions/{session_id}")
    for session_id in session_ids:
        account.wait_for_status(session_id, {"cancelled", "complete", "error", "expired"}, timeout=60)


# --- the timed calls -------------------------------------------------------------------------


def berth_calls(account: Account, session_id: str, calls: int, stamps: "ApiStamps") -> list[dict]:
    """Sequential tool calls through the API; each call's client-side start and end (perf_counter)."""
    path = f"/v1/sandbox/sessions/{session_id}/tools/call"
    for _ in range(WARM_UP_CALLS):
        account.post(path, json=ECHO_CALL).raise_for_status()
    samples = []
    with stamps:
        for _ in range(calls):
            started = time.perf_counter()
            response = account.post(path, json=ECHO_CALL)
            samples.append({"client_start": started, "client_end": time.perf_counter()})
            if response.status_code != 200 or not response.json()["ok"]:
                raise SystemExit(f"a tool call failed: {response.status_code} {response.text}")
    return samples


async def direct_calls(calls: int) -> list[float]:
    """The baseline: an `mcp` client of the same server over stdio, nothing in between."""
    command = python_command(ECHO_SERVER)
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        return await _timed(lambda: client.call_tool(ECHO_CALL["name"], ECHO_CALL["arguments"]), calls)


async def sandbox_session_calls(calls: int, workdir: Path) -> list[float]:
    """The same server in bubblewrap as the worker holds it (`SandboxSession`), without the API."""
    session = SandboxSession()
    await session.start(ECHO_COMMAND, {}, str(workdir), SandboxPolicy(), readonly_dirs=(str(ECHO_SERVER.parent),))
    try:
        return await _timed(lambda: session.call_tool(ECHO_CALL["name"], ECHO_CALL["arguments"]), calls)
    finally:
        await session.stop()


async def _timed(call, calls: int) -> list[float]:
    for _ in range(WARM_UP_CALLS):
        await call()
    durations = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        durations.append(time.perf_counter() - started)
    return durations


# --- where the time goes ------------------------------------------------------------------------


class ApiStamps:
    """Moments of each tool call inside the in-process API (perf_counter), from wrappers around the
    methods on its path: `sandboxes.call_tool` and `control.request` (every mode); the `post` of
    the API's client for control endpoints (the direct path); `queues.send`, the store's
    `replies.take` (the poll loop of `control.request`) and `runtime_protocol.store_reply` (the
    worker's reply POST) on the queue path. All are wrapped in every mode, so a call that took the other path is
    noticed."""

    def __init__(self, mode: str):
        from app.composition import services

        api = services()  # the in-process API's
        self.mode = mode
        self.calls: list[dict] = []
        self._by_request: dict[str, dict] = {}
        self._current: dict = {}
        self._client = api.control._direct()  # the API's one keep-alive client for control endpoints
        self._targets = [(api.sandboxes, "call_tool", self._call_tool), (api.control, "request", self._request),
                         (self._client, "post", self._post), (api.queues, "send", self._send),
                         (api.store.replies, "take", self._take_reply),
                         (api.runtime_protocol, "store_reply", self._store_reply)]
        self._originals = {name: getattr(owner, name) for owner, name, _ in self._targets}

    def __enter__(self):
        for owner, name, wrapper in self._targets:
            setattr(owner, name, wrapper)
        return self

    def __exit__(self, *exc):
        for owner, name, _ in self._targets:
            delattr(owner, name)  # the instance attribute set above: back to the class's method

    def wait_complete(self, timeout: float = 5) -> None:
        """Check each call took its mode's path. On the queue path, the reply handler's thread
        stamps `reply_stored` after the put returns, which can be after the polling request
        already answered: wait for the last one."""
        for index, call in enumerate(self.calls):
            if self.mode == "direct" and ("post_end" not in call or "send_start" in call):
                raise SystemExit(f"call {index} did not go straight to the worker's control endpoint "
                                 f"(a fallback to the queue?): {sorted(call)}")
            if self.mode != "direct" and ("post_start" in call or "send_end" not in call):
                raise SystemExit(f"call {index} did not go through the control queue: {sorted(call)}")
        if self.mode == "direct":
            return
        deadline = time.monotonic() + timeout
        while not all("reply_stored" in call for call in self.calls):
            if time.monotonic() > deadline:
                raise SystemExit("a tool call's reply was never stamped")
            time.sleep(0.01)

    def _call_tool(self, *args, **kwargs):
        self._current = {"api_in": time.perf_counter(), "polls": 0, "posts": 0}
        self.calls.append(self._current)
        try:
            return self._originals["call_tool"](*args, **kwargs)
        finally:
            self._current["api_out"] = time.perf_counter()

    def _request(self, job, action, arguments, timeout):
        if action != "tools.call":
            return self._originals["request"](job, action, arguments, timeout)
        record = self._current
        record["request_in"] = time.perf_counter()
        try:
            return self._originals["request"](job, action, arguments, timeout)
        finally:
            record["request_out"] = time.perf_counter()

    def _post(self, url, *args, **kwargs):
        content = kwargs.get("content") or b""
        if not url.endswith("/control") or b'"tools.call"' not in content:
            return self._originals["post"](url, *args, **kwargs)
        record = self._current
        record["posts"] += 1
        record["post_start"] = time.perf_counter()
        try:
            return self._originals["post"](url, *args, **kwargs)
        finally:
            record["post_end"] = time.perf_counter()

    def _send(self, queue_url, message):
        if getattr(message, "action", None) != "tools.call":  # e.g. a job the sweeper dispatches
            return self._originals["send"](queue_url, message)
        record = self._current
        record["send_start"] = time.perf_counter()
        self._by_request[message.request_id] = record
        self._originals["send"](queue_url, message)
        record["send_end"] = time.perf_counter()

    def _take_reply(self, workspace_id, request_id):
        reply = self._originals["take"](workspace_id, request_id)
        record = self._by_request.get(request_id)
        if record is not None:
            record["polls"] += 1
            if reply is not None:
                record["found"] = time.perf_counter()
        return reply

    def _store_reply(self, runtime, workspace_id, request_id, reply):
        record = self._by_request.get(request_id, {})
        record["reply_in"] = time.perf_counter()
        self._originals["store_reply"](runtime, workspace_id, request_id, reply)
        record["reply_stored"] = time.perf_counter()


# Consecutive moments of one call, and what happens between them, per path.
_API_IN = ("client_start", "api_in", "HTTP in, routing, session-token auth (credential cached), body validation")
_JOB_READ = ("api_in", "request_in", "read the job (cached in-process while it runs; a GetItem otherwise), check that it runs")
_API_OUT = (("request_out", "api_out", "the result as the answer"),
            ("api_out", "client_end", "serialise and HTTP out"))
DIRECT_LEGS = (
    _API_IN,
    _JOB_READ,
    ("request_in", "post_start", "the job's runtime (cached listing; a GetItem otherwise), build and sign the control message"),
    ("post_start", "post_end", "HTTP POST to the worker's control endpoint (keep-alive): the worker verifies the "
                               "signature, session.call_tool on the sandbox, the reply as the response"),
    ("post_end", "request_out", "check the status, parse the reply"),
    *_API_OUT,
)
QUEUE_LEGS = (
    _API_IN,
    _JOB_READ,
    ("request_in", "send_start", "the job's runtime (cached listing; a GetItem otherwise), build the control message"),
    ("send_start", "send_end", "SQS SendMessage of the control message"),
    ("send_end", "reply_in", "worker: control long poll returns, parse, session.call_tool, reply POST "
                             "until the API's handler runs (runtime-token auth)"),
    ("reply_in", "reply_stored", "store the reply (DynamoDB put)"),
    ("reply_stored", "found", "the API's reply poll finds it and deletes it (DynamoDB DeleteItem; the poll "
                              "sleeps 5 ms ×1.5 up to 50 ms)"),
    ("found", "request_out", "return the reply"),
    *_API_OUT,
)


def legs_of(mode: str) -> tuple:
    return DIRECT_LEGS if mode == "direct" else QUEUE_LEGS


def breakdown(samples: list[dict], stamps: ApiStamps) -> list[dict]:
    stamps.wait_complete()
    moments = [{**sample, **stamped} for sample, stamped in zip(samples, stamps.calls, strict=True)]
    return [{"from": a, "to": b, "what": what, **summary_ms([m[b] - m[a] for m in moments])}
            for a, b, what in legs_of(stamps.mode)]


def control_message_body() -> str:
    """A body the size and shape of a tools.call control message, for the raw SQS baseline."""
    return json.dumps({"kind": "control", "request_id": uuid.uuid4().hex, "action": "tools.call", **ECHO_CALL})


def job_reads(account: Account, session_id: str, samples: int) -> dict:
    """One DynamoDB GetItem on the stack's moto, as the API makes several of per call."""
    from app.composition import services

    jobs = services().store.jobs
    durations = []
    for _ in range(samples):
        started = time.perf_counter()
        jobs.get(account.workspace_id, session_id)
        durations.append(time.perf_counter() - started)
    return summary_ms(durations)


def reply_posts(client: httpx.Client, account: Account, worker_dir: Path, samples: int) -> dict:
    """The worker's reply POST as a client sees it: runtime-token auth and the stored reply."""
    token = json.loads((worker_dir / "runtime.json").read_text())["runtime_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"ok": True, "result": {"ok": True, "result": {"content": [{"type": "text", "text": "hello"}]}}}
    durations = []
    for index in range(WARM_UP_CALLS + samples):
        path = f"/v1/cloud/runtimes/control/{account.workspace_id}/ctl_bench{uuid.uuid4().hex}/reply"
        started = time.perf_counter()
        client.post(path, json=body, headers=headers).raise_for_status()
        if index >= WARM_UP_CALLS:
            durations.append(time.perf_counter() - started)
    return summary_ms(durations)


def control_url_of(account: Account, session_id: str) -> str | None:
    """The control endpoint the sandbox's runtime registered (None: it has none)."""
    from app.composition import services

    store = services().store
    job = store.jobs.get(account.workspace_id, session_id)
    runtime = store.runtimes.get(job.runtime_workspace, job.runtime_id)
    return runtime.control_url


def control_endpoint_trips(control_url: str, samples: int) -> dict:
    """A bare HTTP round trip to the worker's control endpoint on the API's own keep-alive client:
    `GET /control` is answered 405 before any verification or work (and not logged)."""
    from app.composition import services

    client = services().control._direct()
    url = f"{control_url.rstrip('/')}/control"
    durations = []
    for index in range(WARM_UP_CALLS + samples):
        started = time.perf_counter()
        response = client.get(url, timeout=5)
        if response.status_code != 405:
            raise SystemExit(f"GET {url} answered {response.status_code}, not 405")
        if index >= WARM_UP_CALLS:
            durations.append(time.perf_counter() - started)
    return summary_ms(durations)


# --- the run -----------------------------------------------------------------------------------


def measure_mode(mode: str, calls: int, scratch: Path) -> dict:
    """One mode on a stack of its own, so no mode runs on a table another filled."""
    direct = mode == "direct"
    with running_stack(scratch / mode, environment=STACK_SETTINGS) as stack, \
            httpx.Client(base_url=stack.api_url, timeout=60) as client:
        account = new_account(client)
        worker_dir = scratch / mode / "worker"
        with running_worker(stack, account, worker_dir, mode="sqs" if direct else mode, direct_control=direct,
                            extra_args=ECHO_WORKER_ARGS):
            session_id = create_sandbox(account)
            wait_running(account, session_id)
            control_url = control_url_of(account, session_id)
            if direct != bool(control_url):
                raise SystemExit(f"{mode} worker: its runtime's control_url is {control_url!r}")
            stamps = ApiStamps(mode)
            samples = berth_calls(account, session_id, calls, stamps)
            row = {"berth": summary_ms([s["client_end"] - s["client_start"] for s in samples]),
                   "breakdown": breakdown(samples, stamps),
                   "polls_per_call": round(statistics.fmean(c["polls"] for c in stamps.calls), 2),
                   "posts_per_call": round(statistics.fmean(c["posts"] for c in stamps.calls), 2),
                   "dynamodb_get": job_reads(account, session_id, CONTEXT_SAMPLES)}
            if direct:
                row["control_http"] = control_endpoint_trips(control_url, CONTEXT_SAMPLES)
            else:
                row["reply_post"] = reply_posts(client, account, worker_dir, CONTEXT_SAMPLES)
                row["raw_sqs"] = raw_sqs_round_trips(CONTEXT_SAMPLES, control_message_body())
            end_sandboxes(account, [session_id])
    return row


def measure(options) -> dict:
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        scratch = Path(scratch)
        results = {"direct_mcp": summary_ms(asyncio.run(direct_calls(options.calls))),
                   "sandbox_session": summary_ms(asyncio.run(sandbox_session_calls(options.calls, scratch / "sbx")))}
        print("baselines (mcp client, in-process session): done", file=sys.stderr, flush=True)
        for mode in options.modes:
            results[mode] = measure_mode(mode, options.calls, scratch)
            print(f"{mode} worker: done", file=sys.stderr, flush=True)
    return results


MODE_LABELS = {"direct": "direct worker (control endpoint)", "sqs": "sqs worker (control queue)",
               "lease": "lease worker (control queue)"}
SIDE_FIGURES = (
    ("dynamodb_get", "one DynamoDB GetItem (the job item) from the API's store"),
    ("control_http", "bare HTTP round trip to the worker's control endpoint (GET /control → 405, no work)"),
    ("raw_sqs", "raw SQS send → an already waiting long poll returns"),
    ("reply_post", "a control reply POST with the runtime token (auth + put)"),
)


def print_report(results: dict) -> None:
    baseline_p50 = results["direct_mcp"]["p50_ms"]
    modes = [mode for mode in MODES if mode in results]
    rows = [("`mcp` client over stdio, no sandbox (baseline)", results["direct_mcp"]),
            ("in-process `SandboxSession.call_tool` (bubblewrap, no API)", results["sandbox_session"]),
            *((f"berth API, {MODE_LABELS[mode]}", results[mode]["berth"]) for mode in modes)]
    print("| path | n | p50 ms | p95 ms | mean ms | p50 − baseline p50 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, figures in rows:
        print(f"| {label} | {figures['n']} | {figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | "
              f"{figures['mean_ms']:.1f} | {figures['p50_ms'] - baseline_p50:+.1f} |")
    print()
    for mode in modes:
        overhead = results[mode]["berth"]["p50_ms"] - baseline_p50
        verdict = "met" if overhead <= TARGET_OVERHEAD_MS else "NOT met"
        print(f"{MODE_LABELS[mode]}: berth p50 − baseline p50 = {overhead:.1f} ms "
              f"(target ≤ {TARGET_OVERHEAD_MS:g} ms: {verdict})")
    for mode in modes:
        row = results[mode]
        per_call = (f"{row['posts_per_call']:.2f} POSTs to the worker per call" if mode == "direct"
                    else f"{row['polls_per_call']:.2f} reply polls per call")
        print(f"\nwhere the time goes, {MODE_LABELS[mode]} (each leg's own p50/p95; the means add up to the "
              f"total mean {row['berth']['mean_ms']:.1f} ms; {per_call}):\n")
        print("| leg | p50 ms | p95 ms | mean ms | what happens |")
        print("| --- | ---: | ---: | ---: | --- |")
        for leg in row["breakdown"]:
            print(f"| {leg['from']} → {leg['to']} | {leg['p50_ms']:.1f} | {leg['p95_ms']:.1f} | "
                  f"{leg['mean_ms']:.1f} | {leg['what']} |")
        print("\nbeside it, on the same stack:\n")
        print("| operation | p50 ms | p95 ms |")
        print("| --- | ---: | ---: |")
        for key, label in SIDE_FIGURES:
            if key in row:
                print(f"| {label} | {row[key]['p50_ms']:.1f} | {row[key]['p95_ms']:.1f} |")
        if mode == "direct":
            post = next(leg for leg in row["breakdown"] if leg["from"] == "post_start")
            print(f"\nthe POST leg beyond the in-process `SandboxSession.call_tool` p50: "
                  f"{post['p50_ms'] - results['sandbox_session']['p50_ms']:+.1f} ms at p50 (HTTP, signature check, "
                  f"the worker's dispatch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per path (default 200)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="worker modes to measure (default: direct sqs lease)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = measure(options)
    print(f"sandbox tool calls, {options.calls} calls per path, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, "
          f"{time.monotonic() - started:.0f} s\n")
    print_report(results)


if __name__ == "__main__":
    main()
