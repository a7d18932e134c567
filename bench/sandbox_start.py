"""Sandbox start to tools listed, on the local stack (issue 4, benchmark 2).

Measured, `--rounds` times: `POST /v1/sandbox/sessions` for the echo server, then one
`GET /v1/sandbox/sessions/{id}/tools?wait_seconds=20` — a readiness wait: the API holds the
request until the server has left `starting` (woken by the worker's `sandbox` event), then answers
with the tools that event carries (the worker's listing as the server came up) — wall time from
the POST to its 200. Only a 409 while the sandbox is still `starting`
is retried (another wait); the requests are counted. One worker (`--queue-mode sqs`, long polls
parked, serving `--control-listen 127.0.0.1:0` as a sandbox worker does locally) runs the
sandboxes; each is deleted, and its job final, before the
next round.

Baseline, in the same run: a direct `mcp` client start of the same server script on the same
interpreter — `stdio_client` spawn, `ClientSession.initialize()`, `list_tools()`. Target: berth
median ≤ 1.2× the direct median. For understanding, the in-process `SandboxSession.start()`
(bubblewrap, no API; it lists the tools as the server comes up, as in the worker) is timed too:
the isolation's share apart from the pipeline's.
The three run in a rotating order each round, so drift on the machine falls on all alike.

The API's round is split along the timestamps berth stores (the job's `created_at` and
`started_at` — the claim, which also records the `start` event —, the `at` of the worker's
`sandbox`/`running` event; milliseconds, the API's clock, which is this process's) and the
moments the bench took around its requests.

Usage: python bench/sandbox_start.py [--rounds 10]
"""

import argparse
import asyncio
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
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from app.contract.messages import SandboxPolicy  # noqa: E402
from bench._stack import epoch, running_stack, running_worker  # noqa: E402
from bench.sandbox_tool_calls import (ECHO_COMMAND, ECHO_WORKER_ARGS, STACK_SETTINGS, create_sandbox,  # noqa: E402
                                      end_sandboxes)
from tests.e2e.conftest import Account, new_account  # noqa: E402
from tests.support.sandbox_fixtures import ECHO_SERVER, python_command  # noqa: E402
from workers.sandbox.session import SandboxSession  # noqa: E402

TARGET_RATIO = 1.2
START_TIMEOUT_SECONDS = 60
WAIT_SECONDS = 20  # the readiness wait each GET .../tools asks for (the API allows up to 25)


# --- the three ways to start a server ---------------------------------------------------------


def through_api(account: Account) -> dict:
    """POST a sandbox, then wait for its tools with the API's readiness wait; the moments of the
    round (epoch seconds) and the number of GET .../tools it took."""
    posting = time.time()
    session_id = create_sandbox(account)
    posted = time.time()
    requests = 0
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        requests += 1
        response = account.get(f"/v1/sandbox/sessions/{session_id}/tools", params={"wait_seconds": WAIT_SECONDS})
        if response.status_code == 200:
            break
        state = account.get(f"/v1/sandbox/sessions/{session_id}").json()["state"] if response.status_code == 409 \
            else None
        if state != "starting":  # only a server still starting is worth another wait
            raise SystemExit(f"listing tools failed: {response.status_code} {response.text} (state {state})")
        if time.monotonic() > deadline:
            raise SystemExit(f"sandbox {session_id} listed no tools within {START_TIMEOUT_SECONDS} s")
    listed = time.time()
    moments = {"posting": posting, "posted": posted, "listed": listed, "requests": requests,
               **server_moments(account, session_id)}
    end_sandboxes(account, [session_id])
    return moments


def server_moments(account: Account, session_id: str) -> dict:
    from app.composition import services  # the API runs in this process: read what it stored

    jobs = services().store.jobs
    job = jobs.get(account.workspace_id, session_id)
    running = jobs.latest_event(account.workspace_id, session_id, step="sandbox")
    return {"created": epoch(job.created_at), "claimed": epoch(job.started_at), "running_event": epoch(running.at)}


async def direct_start() -> float:
    """Spawn the server, initialize an `mcp` session and list its tools; torn down untimed."""
    command = python_command(ECHO_SERVER)
    params = StdioServerParameters(command=command[0], args=command[1:])
    started = time.perf_counter()
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        await client.list_tools()
        return time.perf_counter() - started


async def sandbox_session_start(scratch: Path) -> float:
    """What the worker does for a sandbox, without the API: bubblewrap, initialize, list tools."""
    workdir = tempfile.mkdtemp(prefix="sandbox-", dir=scratch)
    session = SandboxSession()
    started = time.perf_counter()
    await session.start(ECHO_COMMAND, {}, workdir, SandboxPolicy(), readonly_dirs=(str(ECHO_SERVER.parent),))
    elapsed = time.perf_counter() - started  # start() lists the tools as the server comes up
    assert session.tools_at_start
    await session.stop()
    return elapsed


# --- the run -----------------------------------------------------------------------------------


# Consecutive moments of an API round, and what happens between them.
LEGS = (
    ("posting", "created", "POST in: auth (credential cached), policy check"),
    ("created", "posted", "one transaction (job, `queued` event, counters, audit, usage, runtime slot), "
                          "SQS send of the job, the answer"),
    ("posted", "claimed", "the worker's job long poll returns, claim POST until `started_at`"),
    ("claimed", "running_event", "claim transaction (with the `start` event); work dir, bubblewrap spawn, "
                                 "initialize, list_tools, `sandbox` event POST"),
    ("running_event", "listed", "the readiness wait of the GET .../tools?wait_seconds wakes on the stored event "
                                "and answers 200 with the tools it carries"),
)


def measure(rounds: int, scratch: Path) -> dict:
    samples = {"api": [], "direct": [], "sandbox_session": []}
    with running_stack(scratch, environment=STACK_SETTINGS) as stack, \
            httpx.Client(base_url=stack.api_url, timeout=60) as client:
        account = new_account(client)
        with running_worker(stack, account, scratch / "worker", direct_control=True, extra_args=ECHO_WORKER_ARGS):
            through_api(account)  # warm-up: first imports and connections on every hop
            asyncio.run(direct_start())
            asyncio.run(sandbox_session_start(scratch))
            runs = {"api": lambda: through_api(account),
                    "direct": lambda: asyncio.run(direct_start()),
                    "sandbox_session": lambda: asyncio.run(sandbox_session_start(scratch))}
            order = list(runs)
            for index in range(rounds):
                for name in order[index % 3:] + order[:index % 3]:
                    samples[name].append(runs[name]())
                print(f"round {index + 1}/{rounds}: done", file=sys.stderr, flush=True)
    return samples


def median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 1)


def report(samples: dict, rounds: int) -> None:
    api = samples["api"]
    figures = {"api": [s["listed"] - s["posting"] for s in api], "direct": samples["direct"],
               "sandbox_session": samples["sandbox_session"]}
    direct = median_ms(figures["direct"])
    print("| path | n | median ms | min ms | max ms | ÷ direct median |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, label in (("direct", "direct `mcp` client: spawn, initialize, list_tools (baseline)"),
                       ("sandbox_session", "in-process `SandboxSession.start()`, tools listed (bubblewrap)"),
                       ("api", "berth API: POST session → GET .../tools?wait_seconds answers 200")):
        values = figures[key]
        print(f"| {label} | {len(values)} | {median_ms(values):.1f} | {min(values) * 1000:.1f} | "
              f"{max(values) * 1000:.1f} | {median_ms(values) / direct:.2f} |")
    ratio = median_ms(figures["api"]) / direct
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"\nberth ÷ direct = {ratio:.2f}× (target ≤ {TARGET_RATIO:g}×: {verdict}); "
          f"bubblewrap alone {median_ms(figures['sandbox_session']) / direct:.2f}×; "
          f"GET .../tools?wait_seconds={WAIT_SECONDS} per round: median "
          f"{statistics.median(s['requests'] for s in api):g}, max {max(s['requests'] for s in api)}")
    print(f"\nwhere an API round's time goes ({rounds} rounds; medians of each leg on its own):\n")
    print("| leg | median ms | min ms | max ms | what happens |")
    print("| --- | ---: | ---: | ---: | --- |")
    for a, b, what in LEGS:
        values = [s[b] - s[a] for s in api]
        print(f"| {a} → {b} | {median_ms(values):.1f} | {min(values) * 1000:.1f} | {max(values) * 1000:.1f} | "
              f"{what} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="starts per path (default 10)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        samples = measure(options.rounds, Path(scratch))
    print(f"sandbox start, {options.rounds} rounds, readiness wait (wait_seconds={WAIT_SECONDS}), direct control, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after, {time.monotonic() - started:.0f} s\n")
    report(samples, options.rounds)


if __name__ == "__main__":
    main()
