"""Running an installer: its output line by line (for progress), the end of it kept (for
errors), and no way for it to outlive its deadline or a cancelled install."""

import asyncio
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

TAIL_LINES = 30
TAIL_CHARS = 3000

# Variables that would let the worker's environment change what an installer does behind the
# cache's back (another index or registry, a Python of its own choosing, a config file).
_INSTALLER_SETTINGS = ("UV_", "NPM_CONFIG_", "npm_config_", "PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA_")


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the worker's own, cleaned
    input: bytes | None = None


@dataclass
class Outcome:
    returncode: int
    lines: deque[str]

    @property
    def tail(self) -> str:
        return output_tail(self.lines)


class InstallerTimedOut(Exception):
    pass


def output_tail(lines: deque[str] | list[str]) -> str:
    text = "\n".join(list(lines)[-TAIL_LINES:])
    return text[-TAIL_CHARS:]


def installer_environment(extra: Mapping[str, str]) -> dict[str, str]:
    kept = {name: value for name, value in os.environ.items() if not name.startswith(_INSTALLER_SETTINGS)}
    return {**kept, "NO_COLOR": "1", **extra}


async def run(command: Command, cwd: str, on_line: Callable[[str], Awaitable[None]], timeout: float) -> Outcome:
    """Run to completion; stdout and stderr together, each line awaited in `on_line` in order."""
    process = await asyncio.create_subprocess_exec(
        *command.argv, cwd=cwd, env=installer_environment(command.env),
        stdin=asyncio.subprocess.PIPE if command.input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own group: killing it takes its children along
    )
    lines: deque[str] = deque(maxlen=TAIL_LINES * 4)
    try:
        async with asyncio.timeout(timeout):
            if command.input is not None:
                assert process.stdin is not None
                process.stdin.write(command.input)
                await process.stdin.drain()
                process.stdin.close()
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    lines.append(line)
                    await on_line(line)
            await process.wait()
    except TimeoutError:
        raise InstallerTimedOut(f"{os.path.basename(command.argv[0])} did not finish within {timeout:g}s: "
                                f"{output_tail(lines)}") from None
    finally:
        if process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
    assert process.returncode is not None  # waited for above
    return Outcome(process.returncode, lines)
