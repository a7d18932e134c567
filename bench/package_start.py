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

Legs are async functions in `LEGS`, keyed by (temperature, name); a leg through the local
stack's installations API (`POST /api/marketplace/tools/:id/install`, then
`GET /api/installations/:id/tools`) belongs beside them once those routes exist, timed the same
way and reported by `report()` without changes.

Usage: python bench/package_start.py [--cold-rounds 3] [--warm-rounds 10]
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

from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from app.contract.packages import PYPI, PackageSpec  # noqa: E402
from app.contract.policy import SandboxPolicy  # noqa: E402
from tests.support.package_fixtures import EVERYTHING_SPEC, TIME_SPEC, public_cache, start_command  # noqa: E402
from workers.packages import PackageCache  # noqa: E402
from workers.packages.installers import uv_binary  # noqa: E402
from workers.sandbox.session import SandboxSession  # noqa: E402

TARGET_WARM_RATIO = 1.2
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
BASELINES = {"cold": "uvx/npx (baseline)", "warm": "direct (baseline)"}


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
        if temperature == "warm" and name != BASELINES[temperature]:
            verdicts.append(f"{package}: warm {ratio:.2f}× direct "
                            f"(target ≤ {TARGET_WARM_RATIO:g}×: {'met' if ratio <= TARGET_WARM_RATIO else 'NOT met'})")
    print("\n" + "\n".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold starts per path and package (default 3)")
    parser.add_argument("--warm-rounds", type=int, default=10, help="warm starts per path and package (default 10)")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-packages-") as scratch:
        samples = asyncio.run(measure({"cold": options.cold_rounds, "warm": options.warm_rounds}, Path(scratch)))
    print(f"package start, {options.cold_rounds} cold and {options.warm_rounds} warm rounds, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after, {time.monotonic() - started:.0f} s; installs from the public "
          f"registries\n")
    report(samples)


if __name__ == "__main__":
    main()
