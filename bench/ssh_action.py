"""An infra SSH action through berth beside a direct asyncssh run of it (issue 15).

Measured on one asyncssh server on loopback (tests.support.ssh_server, on a thread of its own), in
the same run, the same command, each sample on a new connection (every `ssh.run` job makes one);
the legs take turns sample by sample, so load on the machine falls on all of them alike:

  direct    asyncssh.connect with the pinned host key and the client key, `conn.run(command)`,
            close: the floor any SSH runner pays
  executor  workers.executors.ssh.run_action on a JobContext as the worker builds it: payload and
            secrets validated, the action checked against the host, parameters rendered, connect
            with the pinned host key, the command under its timeout and output cap, digests, the
            result document (events go to a list): the runtime's share
  berth     the whole path on the local stack, lease active: `POST /api/infra/ssh/actions/echo/run`
            with a bounded wait (the checks, the lease, the client key, the job stored, sealed and
            sent on SQS) → a worker process (`--queue-mode sqs`, long poll parked) claims and runs
            it → its events and result back through the API → the run view (outcome and audit
            written as the job ends) answered

Reported: p50 and p95 per leg and each leg ÷ direct. The issue's goal: berth ≤ 1.5× direct at p50
and p95 on the local stack.

Usage: python bench/ssh_action.py [--samples 200]
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import asyncssh  # noqa: E402
import httpx  # noqa: E402

from app.contract.ssh.actions import SshAction, render  # noqa: E402
from bench._stack import running_stack, running_worker, summary_ms  # noqa: E402
from tests.e2e.conftest import new_account  # noqa: E402
from tests.support.ssh_jobs import recorded_job, run_payload  # noqa: E402
from tests.support.ssh_server import USER, SshTestServer, ThreadedSshServer  # noqa: E402
from workers.executors.ssh import run_action  # noqa: E402

TARGET_RATIO = 1.5
WARM_UP_SAMPLES = 5  # per leg: imports, key parsing caches, the server's first subprocesses
ACTION = {"name": "echo", "hosts": ["test-host"], "command": ["printf", "%s", "{text}"],
          "parameters": {"text": {"type": "string", "pattern": "[a-z ]+", "max_length": 100}}}
PARAMETERS = {"text": "hello from the bench"}

Leg = Callable[[], None]


def local_legs(server: SshTestServer, loop: asyncio.AbstractEventLoop) -> dict[str, Leg]:
    """The direct and executor legs, each run to its end on `loop` (the client's, in this thread)."""
    command = render(SshAction.model_validate(ACTION), PARAMETERS).command  # the very command the executor sends
    host_key = asyncssh.import_public_key(server.known_hosts_line.split(" ", 1)[1])
    client_key = asyncssh.import_private_key(server.client_private_key)
    job = run_payload(server, ACTION, PARAMETERS)

    async def direct() -> None:
        async with asyncssh.connect("127.0.0.1", server.port, username=USER, known_hosts=([host_key], [], []),
                                    client_keys=[client_key], agent_path=None, config=None) as connection:
            completed = await connection.run(command, check=True)
        assert completed.stdout == "hello from the bench"

    async def executor() -> None:
        result = await run_action(recorded_job("ssh.run", job).ctx)
        assert result["exit_status"] == 0 and result["stdout"] == "hello from the bench"

    return {"direct": lambda: loop.run_until_complete(direct()),
            "executor": lambda: loop.run_until_complete(executor())}


@contextmanager
def berth_leg(server: SshTestServer, scratch: Path) -> Iterator[Leg]:
    """The local stack reading an inventory of the test server, an account whose admin key acts for
    a person under a lease that person began, and a worker of its workspace."""
    key_file = scratch / "id_ed25519"
    key_file.write_text(server.client_private_key)
    key_file.chmod(0o600)
    inventory = scratch / "inventory.yaml"  # JSON is YAML
    inventory.write_text(json.dumps({"hosts": [server.host_entry(client_key=f"file:{key_file}")],
                                     "actions": [ACTION]}))
    with running_stack(scratch, environment={"BERTH_SSH_INVENTORY": str(inventory)}) as stack, \
            httpx.Client(base_url=stack.api_url, timeout=60) as client:
        account = new_account(client)
        key = account.post("/api/auth/keys/generate", json={"name": "bench", "tier": "admin"}).json()["key"]
        began = account.post("/api/infra/ssh/admin-session", json={"reason": "bench", "ttl_seconds": 3600})
        assert began.status_code == 201, began.text
        with running_worker(stack, account, scratch / "worker"):
            headers = {"X-API-Key": key, "X-User-Id": "bench@berth"}

            def berth() -> None:
                answer = client.post("/api/infra/ssh/actions/echo/run", headers=headers,
                                     json={"host": "test-host", "parameters": PARAMETERS, "wait_seconds": 25})
                run = answer.json()
                assert answer.status_code == 200 and run["outcome"] == "ok", answer.text
                assert run["stdout"] == "hello from the bench"

            yield berth


def measure(samples: int, scratch: Path) -> dict[str, list[float]]:
    loop = asyncio.new_event_loop()
    with ThreadedSshServer(scratch / "host") as ssh, berth_leg(ssh.server, scratch) as berth:
        timed = {**local_legs(ssh.server, loop), "berth": berth}
        for leg in timed.values():
            for _ in range(WARM_UP_SAMPLES):
                leg()
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(samples):
            for name, leg in timed.items():
                started = time.perf_counter()
                leg()
                seconds[name].append(time.perf_counter() - started)
    loop.close()
    return seconds


def report(seconds: dict[str, list[float]]) -> None:
    floor = summary_ms(seconds["direct"])
    print("| leg | n | p50 ms | p95 ms | mean ms | ÷ direct p50 | ÷ direct p95 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, values in seconds.items():
        figures = summary_ms(values)
        print(f"| {name} | {figures['n']} | {figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | "
              f"{figures['mean_ms']:.1f} | {figures['p50_ms'] / floor['p50_ms']:.2f}× | "
              f"{figures['p95_ms'] / floor['p95_ms']:.2f}× |")
    berth = summary_ms(seconds["berth"])
    met = berth["p50_ms"] <= TARGET_RATIO * floor["p50_ms"] and berth["p95_ms"] <= TARGET_RATIO * floor["p95_ms"]
    print(f"\ngoal: berth ≤ {TARGET_RATIO:g}× direct at p50 and p95: {'met' if met else 'NOT met'} "
          "(the executor leg is the runtime's share of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per leg (default 200)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        seconds = measure(options.samples, Path(scratch))
    print(f"infra SSH action, {options.samples} samples per leg, asyncssh {asyncssh.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after, {time.monotonic() - started:.0f} s\n")
    report(seconds)


if __name__ == "__main__":
    main()
