"""MCP servers from packages: cold and warm start through the package cache and the sandbox,
beside the baselines a user would compare with, measured in the same run (issue 13).

For each package (`mcp-server-time` from PyPI, `@modelcontextprotocol/server-everything` from
npm), every round runs each leg once, in a rotating order so drift on the machine falls on all:

cold (the package not cached anywhere):
- `cache+sandbox`: a fresh cache directory; `PackageCache.ensure()` (uv / npm install) and then
  `SandboxSession.start()` (bubblewrap, network off, the cache read-only) until the tools are
  listed — what the worker will do for a sandbox job with a package.
- `uvx`/`npx` (baseline): the same package started directly by `uvx NAME==V` / `npx -y NAME@V`,
  each with a fresh, empty download cache (`UV_CACHE_DIR`, `npm_config_cache`), through an `mcp`
  stdio client until the tools are listed.

warm (the package cached):
- `cache+sandbox`: `ensure()` finds the version, `SandboxSession.start()` lists the tools.
- `direct` (baseline): an `mcp` stdio client spawning the same installed entry point (the argv
  the cache returns) with no sandbox: spawn, initialize, list_tools. Target: ≤ 1.2×.

Legs are async functions in `LEGS`, keyed by (temperature, name).

through the installations API (the local stack, one worker of the account's own with its control
endpoint, the curated catalog's entries for the same two packages), after a first start filled
the worker's cache:
- `installation API` (warm): `POST /api/marketplace/tools/:id/install` (not timed), then
  `GET /api/installations/:id/tools?wait_seconds=25` until it answers 200: the server started as an
  `mcp.run` sandbox from the cached package, and its tools listed. The installation is deleted (its
  server stopped) before the next round.
- `direct (baseline)`: an `mcp` stdio client spawning the entry point the worker's own cache holds
  for that version (the same installed server). Target: ≤ 1.2×.
- tool calls: `POST /api/installations/:id/tools/call` of server-everything's `echo`, one after
  another on a running installation, beside a direct stdio `call_tool` on the same installed
  server. Target: overhead ≤ 25 ms at p50.

Usage: python bench/package_start.py [--cold-rounds 3] [--warm-rounds 10] [--installation-rounds 10]
       [--calls 200]   (0 rounds or calls leaves a part out)
"""

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: import app, workers and tests from the project root

import httpx  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from app.contract.packages import PYPI, PackageSpec  # noqa: E402
from app.contract.policy import SandboxPolicy  # noqa: E402
from bench._stack import epoch, running_stack, running_worker, summary_ms  # noqa: E402
from tests.e2e.conftest import Account, new_account, parse_sse  # noqa: E402
from tests.support.package_fixtures import EVERYTHING_SPEC, TIME_SPEC, public_cache, start_command  # noqa: E402
from workers.packages import PackageCache  # noqa: E402
from workers.packages.installers import uv_binary  # noqa: E402
from workers.sandbox.session import SandboxSession  # noqa: E402

TARGET_WARM_RATIO = 1.2
TARGET_CALL_OVERHEAD_MS = 25.0
PACKAGES = {"pypi mcp-server-time": TIME_SPEC, "npm server-everything": EVERYTHING_SPEC}

Leg = Callable[[PackageSpec, Path], Awaitable[dict[str, float]]]


async def seconds_to_tools(argv: list[str], env: dict[str, str]) -> float:
    """Spawn a stdio server, initialize, list its tools: the seconds that took (the shutdown after
    is not counted, as the sandbox legs do not count stop())."""
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    started = time.perf_counter()
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        assert (await client.list_tools()).tools
        return time.perf_counter() - started


async def sandbox_start(cache: PackageCache, spec: PackageSpec, scratch: Path) -> dict[str, float]:
    """ensure() then SandboxSession.start(); stop and release are not timed."""
    started = time.perf_counter()
    installed = await cache.ensure(spec)
    ensured = time.perf_counter()
    session = SandboxSession()
    try:
        await session.start(start_command(spec), installed.env, tempfile.mkdtemp(dir=scratch), SandboxPolicy(),
                            readonly_dirs=installed.readonly_dirs, argv=installed.argv)
        listed = time.perf_counter()
        assert session.tools_at_start and session.isolation == "bubblewrap"
    finally:
        await session.stop()
        installed.release()
    return {"total": listed - started, "ensure": ensured - started, "start": listed - ensured}


async def cold_cache_and_sandbox(spec: PackageSpec, scratch: Path) -> dict[str, float]:
    return await sandbox_start(public_cache(Path(tempfile.mkdtemp(dir=scratch))), spec, scratch)


async def cold_uvx_or_npx(spec: PackageSpec, scratch: Path) -> dict[str, float]:
    downloads = tempfile.mkdtemp(dir=scratch)
    if spec.registry_type == PYPI:
        uvx = str(Path(uv_binary() or "uv").with_name("uvx"))
        argv = [uvx, f"{spec.identifier}=={spec.version}", *spec.command_arguments()]
        env = {**os.environ, "UV_CACHE_DIR": downloads}
    else:
        argv = ["npx", "-y", f"{spec.identifier}@{spec.version}", *spec.command_arguments()]
        env = {**os.environ, "npm_config_cache": downloads, "npm_config_update_notifier": "false"}
    return {"total": await seconds_to_tools(argv, env)}


def warm_legs(cache: PackageCache) -> dict[str, Leg]:
    async def cache_and_sandbox(spec: PackageSpec, scratch: Path) -> dict[str, float]:
        return await sandbox_start(cache, spec, scratch)

    async def direct(spec: PackageSpec, scratch: Path) -> dict[str, float]:
        installed = await cache.ensure(spec)  # untimed: only the installed argv is wanted
        installed.release()
        return {"total": await seconds_to_tools(installed.argv, {**os.environ, **installed.env})}

    return {"cache+sandbox": cache_and_sandbox, "direct (baseline)": direct}


LEGS: dict[str, Callable[[PackageCache], dict[str, Leg]]] = {
    "cold": lambda cache: {"cache+sandbox": cold_cache_and_sandbox, "uvx/npx (baseline)": cold_uvx_or_npx},
    "warm": warm_legs,
}
BASELINES = {"cold": "uvx/npx (baseline)", "warm": "direct (baseline)", "warm (stack)": "direct (baseline)"}


async def measure(rounds: dict[str, int], scratch: Path) -> dict[tuple[str, str, str], list[dict[str, float]]]:
    samples: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    warm_cache = public_cache(scratch / "warm-cache")
    for package, spec in PACKAGES.items():
        await sandbox_start(warm_cache, spec, scratch)  # fills the warm cache; first imports and spawns
        for temperature, count in rounds.items():
            legs = LEGS[temperature](warm_cache)
            order = list(legs)
            for index in range(count):
                for name in order[index % len(order):] + order[:index % len(order)]:
                    samples.setdefault((package, temperature, name), []).append(await legs[name](spec, scratch))
                print(f"{package} {temperature} round {index + 1}/{count}: done", file=sys.stderr, flush=True)
    return samples


# --- through the installations API ---------------------------------------------------------------

INSTALLATIONS = {"pypi mcp-server-time": "io.github.modelcontextprotocol/time",
                 "npm server-everything": "io.github.modelcontextprotocol/server-everything"}
CALLED = ("npm server-everything", "echo", {"message": "hi"})
WAIT_SECONDS = 25  # the readiness wait of each GET …/tools (the API's most)


def installation_started(account: Account, entry_id: str) -> tuple[str, dict[str, float]]:
    """Install (not timed), then GET its tools until 200: the installation, and the seconds that
    took with their split along the job's stored moments (created, claimed, the worker's `running`
    report; the API's clock is this process's)."""
    installed = account.post(f"/api/marketplace/tools/{entry_id}/install", json={"config": {}})
    if installed.status_code != 201:
        raise SystemExit(f"install {entry_id}: {installed.text}")
    installation_id = installed.json()["id"]
    asked, started = time.time(), time.perf_counter()
    while True:
        listed = account.get(f"/api/installations/{installation_id}/tools", params={"wait_seconds": WAIT_SECONDS})
        if listed.status_code == 200:
            break
        if listed.status_code != 409:
            raise SystemExit(f"tools of {entry_id}: {listed.text}")
    total, answered = time.perf_counter() - started, time.time()
    job_id = account.get(f"/api/installations/{installation_id}").json()["sandbox_id"]
    job = account.job(job_id)
    with account.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=account.headers) as response:
        running = next(frame["data"] for frame in parse_sse(response.iter_lines())
                       if frame["data"]["step"] == "sandbox" and frame["data"]["data"].get("state") == "running")
    created, claimed, reported = epoch(job["created_at"]), epoch(job["started_at"]), epoch(running["at"])
    return installation_id, {"total": total, "API to job": created - asked, "job to claim": claimed - created,
                             "claim to running": reported - claimed, "running to answer": answered - reported}


def installed_argv(cache: PackageCache, spec: PackageSpec) -> tuple[list[str], dict[str, str]]:
    installed = asyncio.run(cache.ensure(spec))
    installed.release()
    return installed.argv, {**os.environ, **installed.env}


async def direct_calls(argv: list[str], env: dict[str, str], calls: int) -> list[float]:
    _, tool, arguments = CALLED
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
    async with stdio_client(params) as (read_stream, write_stream), ClientSession(read_stream, write_stream) as client:
        await client.initialize()
        for _ in range(5):
            await client.call_tool(tool, arguments)
        timed = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool(tool, arguments)
            timed.append(time.perf_counter() - started)
        return timed


def berth_calls(account: Account, installation_id: str, calls: int) -> list[float]:
    _, tool, arguments = CALLED
    timed = []
    for index in range(calls + 5):
        started = time.perf_counter()
        answer = account.post(f"/api/installations/{installation_id}/tools/call",
                              json={"name": tool, "arguments": arguments})
        if answer.status_code != 200 or not answer.json()["ok"]:
            raise SystemExit(f"call: {answer.text}")
        if index >= 5:  # the first few warm the caches and connections
            timed.append(time.perf_counter() - started)
    return timed


def measure_installations(scratch: Path, rounds: int, calls: int) -> tuple[dict, dict]:
    """Warm starts through the installations API beside direct starts, and tool calls beside direct calls."""
    starts: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    call_times: dict[str, list[float]] = {}
    with running_stack(scratch) as stack, httpx.Client(base_url=stack.api_url, timeout=120) as client:
        account = new_account(client)
        worker_dir = scratch / "installations-worker"
        with running_worker(stack, account, worker_dir, direct_control=True):
            cache = public_cache(worker_dir / "packages")  # the worker's own: the same installed servers
            for package, entry_id in INSTALLATIONS.items():
                spec = PACKAGES[package]
                first, _ = installation_started(account, entry_id)  # installs into the worker's cache
                account.delete(f"/api/installations/{first}")
                argv, env = installed_argv(cache, spec)
                legs = {"installation API": lambda entry_id=entry_id: installation_started(account, entry_id),
                        "direct (baseline)": lambda argv=argv, env=env: (
                            "", {"total": asyncio.run(seconds_to_tools(argv, env))})}
                order = list(legs)
                for index in range(rounds):
                    for name in order[index % len(order):] + order[:index % len(order)]:
                        installation_id, seconds = legs[name]()
                        if installation_id:
                            account.delete(f"/api/installations/{installation_id}")
                        starts.setdefault((package, "warm (stack)", name), []).append(seconds)
                    print(f"{package} installation round {index + 1}/{rounds}: done", file=sys.stderr, flush=True)
            if calls:
                package, _, _ = CALLED
                installation_id, _ = installation_started(account, INSTALLATIONS[package])
                call_times["installation API"] = berth_calls(account, installation_id, calls)
                call_times["direct stdio (baseline)"] = asyncio.run(direct_calls(*installed_argv(
                    cache, PACKAGES[package]), calls))
                account.delete(f"/api/installations/{installation_id}")
    return starts, call_times


def report_calls(call_times: dict[str, list[float]]) -> None:
    package, tool, _ = CALLED
    baseline = summary_ms(call_times["direct stdio (baseline)"])
    print(f"\n{package} `{tool}`, calls one after another:\n")
    print("| path | n | p50 ms | p95 ms | mean ms | p50 − baseline p50 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds in call_times.items():
        figures = summary_ms(seconds)
        print(f"| {name} | {figures['n']} | {figures['p50_ms']} | {figures['p95_ms']} | {figures['mean_ms']} | "
              f"{figures['p50_ms'] - baseline['p50_ms']:+.1f} |")
    overhead = summary_ms(call_times["installation API"])["p50_ms"] - baseline["p50_ms"]
    verdict = "met" if overhead <= TARGET_CALL_OVERHEAD_MS else "NOT met"
    print(f"\ntool call overhead at p50: {overhead:+.1f} ms (target ≤ {TARGET_CALL_OVERHEAD_MS:g} ms: {verdict})")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(samples: dict[tuple[str, str, str], list[dict[str, float]]]) -> None:
    print("| package | start | path | n | median ms | min ms | max ms | ÷ baseline | of which |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    verdicts = []
    for (package, temperature, name), runs in samples.items():
        totals = [run["total"] for run in runs]
        baseline = statistics.median(run["total"] for run in samples[package, temperature, BASELINES[temperature]])
        ratio = statistics.median(totals) / baseline
        parts = ", ".join(f"{part} {ms(statistics.median(run[part] for run in runs))}"
                          for part in runs[0] if part != "total")
        print(f"| {package} | {temperature} | {name} | {len(runs)} | {ms(statistics.median(totals))} | "
              f"{ms(min(totals))} | {ms(max(totals))} | {ratio:.2f} | {parts} |")
        if temperature.startswith("warm") and name != BASELINES[temperature]:
            verdicts.append(f"{package}: {temperature} {name} {ratio:.2f}× direct "
                            f"(target ≤ {TARGET_WARM_RATIO:g}×: {'met' if ratio <= TARGET_WARM_RATIO else 'NOT met'})")
    print("\n" + "\n".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold starts per path and package (default 3)")
    parser.add_argument("--warm-rounds", type=int, default=10, help="warm starts per path and package (default 10)")
    parser.add_argument("--installation-rounds", type=int, default=10,
                        help="warm starts through the installations API per package (default 10)")
    parser.add_argument("--calls", type=int, default=200, help="tool calls through an installation (default 200)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    rounds = {temperature: count for temperature, count in (("cold", options.cold_rounds),
                                                            ("warm", options.warm_rounds)) if count}
    with tempfile.TemporaryDirectory(prefix="berth-bench-packages-") as scratch:
        samples = asyncio.run(measure(rounds, Path(scratch))) if rounds else {}
        call_times: dict[str, list[float]] = {}
        if options.installation_rounds or options.calls:
            starts, call_times = measure_installations(Path(scratch), options.installation_rounds, options.calls)
            samples.update(starts)
    print(f"package start, {options.cold_rounds} cold, {options.warm_rounds} warm and {options.installation_rounds} "
          f"installation rounds, {options.calls} calls, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after, "
          f"{time.monotonic() - started:.0f} s; installs from the public registries\n")
    report(samples)
    if call_times:
        report_calls(call_times)


if __name__ == "__main__":
    main()
