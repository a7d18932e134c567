"""Sandboxes: jobs of type `mcp.test` (or long-lived `mcp.run`) that run one MCP server, whose state
the worker reports in `sandbox` events."""

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any

from app.contract.messages import ControlAction, JobStatus
from app.domain.jobs import Job, JobEvent

SANDBOX_STEP = "sandbox"  # the step of the worker's reports on the server (starting, running, stopped, ...)
# What may be done to a sandbox's server, and the control action that does it; the sandbox (its
# job) lives on.
SERVER_ACTIONS: dict[str, ControlAction] = {"start": "sandbox.start", "stop": "sandbox.stop",
                                            "restart": "sandbox.restart"}
ACTIONS = tuple(SERVER_ACTIONS)
# What every sandbox sees of a host without a tool directory (workers/sandbox/isolation.py binds
# the system directories read-only and makes /proc, /dev, /tmp and /sandbox its own): a path under
# one of these needs nothing more from the runtime. Its /tmp starts empty, though: a file there is
# one the server makes (an option's value, `--db=/tmp/x`), while a script or program given as an
# argument (`python3 /tmp/server.py`) is the host's, and needs a tool directory holding it.
SANDBOX_BASE_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/dev", "/tmp",
                      "/sandbox")
SANDBOX_EMPTY_PATHS = ("/tmp",)


def _under(path: str, directory: str) -> bool:
    directory = posixpath.normpath(directory)
    return directory == "/" or path == directory or path.startswith(directory + "/")


def tool_paths(payload: dict[str, Any]) -> list[str]:
    """The host paths a sandbox's server needs from a tool directory: each absolute path in its start
    command (as an argument, or an option's `=/value`) outside what every sandbox sees, and the
    directories its payload names in `tool_dirs`."""
    try:
        words = shlex.split(str(payload.get("start_command", "")))
    except ValueError:
        words = []  # the policy refuses such a command before it is stored
    arguments = [posixpath.normpath(word) for word in words[1:] if word.startswith("/")]
    values = [word.partition("=")[2] for word in words[1:] if not word.startswith("/")]
    named = [*values, *(payload.get("tool_dirs") or ())]
    paths = [posixpath.normpath(path) for path in named if path.startswith("/")]
    needed = {path for path in paths if not any(_under(path, base) for base in SANDBOX_BASE_PATHS)}
    needed |= {path for path in arguments if not any(_under(path, base) for base in SANDBOX_BASE_PATHS)
               or any(_under(path, empty) for empty in SANDBOX_EMPTY_PATHS)}
    return sorted(needed)


def uncovered_paths(needed: list[str], tool_dirs: list[str]) -> list[str]:
    """The needed paths that none of a runtime's tool directories holds."""
    return [path for path in needed if not any(_under(path, directory) for directory in tool_dirs)]


@dataclass(frozen=True, slots=True)
class Sandbox:
    job: Job
    state: str  # the server's: starting, running, stopping, stopped, failed; ending once deleted; ended with its job
    isolation: str | None = None  # as the worker reported it (bubblewrap, rlimits)
    limits: dict[str, Any] | None = None  # the limits in force, as the worker reported them


_PYTHON_PROGRAMS = re.compile(r"^(python[0-9.]*|uv|uvx|pipx)$")


def server_runtime(start_command: str) -> str:
    """What runs a server started by `start_command`, when the request does not say: `python` for
    a Python interpreter or uv/uvx/pipx, `node` otherwise (node, npx, a script)."""
    try:
        words = shlex.split(start_command)
    except ValueError:
        words = start_command.split()
    program = words[0].rsplit("/", 1)[-1] if words else ""
    return "python" if _PYTHON_PROGRAMS.match(program) else "node"


def state_of_ended(job: Job) -> str | None:
    """The server's state when the job's status alone decides it (the job ended), else None."""
    if job.status == JobStatus.error:
        return "failed"
    return "ended" if job.is_final else None


def sandbox_of(job: Job, report: JobEvent | None) -> Sandbox:
    """The sandbox as its latest `sandbox` report (if any) describes it; the state of an ended one is
    its job's, and its isolation and limits are still those last reported (a failure reports them).
    A deleted one is `ending` while its worker stops it."""
    data = report.data if report is not None else {}
    state = state_of_ended(job) or ("ending" if job.cancel_requested else data.get("state", "starting"))
    limits = data.get("limits")
    return Sandbox(job, state, data.get("isolation"), limits if isinstance(limits, dict) else None)
