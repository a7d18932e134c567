"""Fixtures for the sandbox tests: sandboxes of the real test servers, and direct clients of
the same servers without a sandbox, to compare against."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from app.contract.policy import SandboxPolicy
from workers.sandbox.isolation import bubblewrap_available, bubblewrap_path
from workers.sandbox.session import ARGUMENT_CHECKS, SandboxSession

MCP_SERVERS = Path(__file__).parent / "mcp_servers"
ECHO_SERVER = MCP_SERVERS / "echo_server.py"
# A server published by others, from the npm registry; pinned so results stay comparable.
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything@2026.8.31"
EVERYTHING_ENTRY = "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
NPM_PREFIX = Path(__file__).parents[2] / ".cache" / "sandbox-npm"  # gitignored; kept between runs

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the worker runs on asyncio; sessions use asyncio tasks


@pytest.fixture
def require_bubblewrap() -> None:
    assert bubblewrap_available(), (
        "bubblewrap (bwrap) is not installed, so sandboxes are not isolated: "
        "install it (apt-get install -y bubblewrap) to run the isolation tests"
    )


@pytest.fixture
def without_bubblewrap(tmp_path, monkeypatch) -> Iterator[None]:
    """A host without bubblewrap: PATH holds every tool of this one but bwrap."""
    tools = tmp_path / "path-without-bwrap"
    tools.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for tool in Path(directory).glob("*") if os.path.isdir(directory) else ():
            if tool.name != "bwrap" and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(tools))
    bubblewrap_path.cache_clear()
    yield
    monkeypatch.undo()
    bubblewrap_path.cache_clear()


@pytest.fixture(scope="session")
def everything_server() -> Path:
    """server-everything installed from npm (a no-op when already there); its node_modules dir."""
    assert shutil.which("npm"), "npm is needed to install the published test server"
    subprocess.run(
        ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--prefer-offline",
         EVERYTHING_PACKAGE],
        check=True, capture_output=True, timeout=300,
    )
    return NPM_PREFIX / "node_modules"


@pytest.fixture
async def start_sandbox(tmp_path: Path):
    """start_sandbox(command, policy=..., env=..., files=[...], name=..., **start_options) -> a
    started session whose work directory holds `files`; every session is stopped after the test."""
    sessions: list[SandboxSession] = []

    async def start(
        command: str = "python echo_server.py",
        policy: SandboxPolicy | None = None,
        env: dict[str, str] | None = None,
        files: tuple[Path, ...] = (ECHO_SERVER,),
        name: str = "sandbox",
        transport: str = "stdio",
        **start_options,
    ) -> SandboxSession:
        workdir = tmp_path / name
        workdir.mkdir()
        for source in files:
            # cp, not shutil.copytree: a node_modules tree has thousands of files.
            subprocess.run(["cp", "-r", str(source), str(workdir / source.name)], check=True)
        session = SandboxSession()
        sessions.append(session)
        await session.start(command, env or {}, str(workdir), policy or SandboxPolicy(), transport=transport,
                            **start_options)
        return session

    yield start
    for session in sessions:
        await session.stop()
    await ARGUMENT_CHECKS.close()  # its checker processes belong to this test's event loop


async def call_directly(command: list[str], calls: list[tuple[str, dict]]) -> list[dict]:
    """Call tools on a server run without any sandbox; results in the shape SandboxSession gives."""
    params = StdioServerParameters(command=command[0], args=command[1:])
    results = []
    async with stdio_client(params) as (read_stream, write_stream):
        async with ClientSession(read_stream, write_stream) as client:
            await client.initialize()
            for tool, arguments in calls:
                result = await client.call_tool(tool, arguments)
                results.append(result.model_dump(
                    mode="json", by_alias=True, exclude_none=True, include={"content", "structured_content", "is_error"}
                ))
    return results


def python_command(script: Path) -> list[str]:
    return [sys.executable, str(script)]


def running(pid: int) -> bool:
    """Whether a process still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
