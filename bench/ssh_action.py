"""An infra SSH action through the runtime's executor beside a direct asyncssh run (issue 15).

Measured on one asyncssh server on loopback (tests.support.ssh_server), in the same run, the same
command, each sample on a new connection (every `ssh.run` job makes one); the legs take turns
sample by sample, so load on the machine falls on all of them alike:

  direct    asyncssh.connect with the pinned host key and the client key, `conn.run(command)`,
            close: the floor any SSH runner pays
  executor  workers.executors.ssh.run_action on a JobContext as the worker builds it: payload
            validation, the action checked against the host, parameters rendered, connect with
            the pinned host key, the command under its timeout and output cap, digests, the
            result document (events go to a list)

Reported: p50 and p95 per leg and each leg ÷ direct. The issue's goal (≤ 1.5×) is for the whole
path through berth on the local stack; that leg (API route under an active lease → queue →
worker → SSH → result read back) joins LEGS once the API's infra SSH routes exist, and the
executor leg is the runtime's share of it.

Usage: python bench/ssh_action.py [--samples 200]
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import asyncssh  # noqa: E402

from app.contract.ssh.actions import SshAction, render  # noqa: E402
from bench._stack import summary_ms  # noqa: E402
from tests.support.ssh_jobs import recorded_job, run_payload  # noqa: E402
from tests.support.ssh_server import USER, SshTestServer  # noqa: E402
from workers.executors.ssh import run_action  # noqa: E402

TARGET_RATIO = 1.5
WARM_UP_SAMPLES = 5  # per leg: imports, key parsing caches, the server's first subprocesses
ACTION = {"name": "echo", "hosts": ["test-host"], "command": ["printf", "%s", "{text}"],
          "parameters": {"text": {"type": "string", "pattern": "[a-z ]+", "max_length": 100}}}
PARAMETERS = {"text": "hello from the bench"}

Leg = Callable[[], Awaitable[None]]


def legs(server: SshTestServer) -> dict[str, Leg]:
    command = render(SshAction.model_validate(ACTION), PARAMETERS).command  # the very command the executor sends
    host_key = asyncssh.import_public_key(server.known_hosts_line.split(" ", 1)[1])
    client_key = asyncssh.import_private_key(server.client_private_key)
    payload = run_payload(server, ACTION, PARAMETERS)

    async def direct() -> None:
        async with asyncssh.connect("127.0.0.1", server.port, username=USER, known_hosts=([host_key], [], []),
                                    client_keys=[client_key], agent_path=None, config=None) as connection:
            completed = await connection.run(command, check=True)
        assert completed.stdout == "hello from the bench"

    async def executor() -> None:
        result = await run_action(recorded_job("ssh.run", payload).ctx)
        assert result["exit_status"] == 0 and result["stdout"] == "hello from the bench"

    return {"direct": direct, "executor": executor}


async def measure(samples: int, scratch: Path) -> dict[str, list[float]]:
    async with SshTestServer(scratch / "host") as server:
        timed = legs(server)
        for leg in timed.values():
            for _ in range(WARM_UP_SAMPLES):
                await leg()
        seconds: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(samples):
            for name, leg in timed.items():
                started = time.perf_counter()
                await leg()
                seconds[name].append(time.perf_counter() - started)
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
    print(f"\ngoal for the whole path through berth: ≤ {TARGET_RATIO:g}× direct at p50 and p95 "
          "(the executor leg is the runtime's share of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per leg (default 200)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as scratch:
        seconds = asyncio.run(measure(options.samples, Path(scratch)))
    print(f"infra SSH action, {options.samples} samples per leg, asyncssh {asyncssh.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after, {time.monotonic() - started:.0f} s\n")
    report(seconds)


if __name__ == "__main__":
    main()
