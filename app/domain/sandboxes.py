"""Sandboxes: jobs of type `mcp.test` (or long-lived `mcp.run`) that run one MCP server, whose state
the worker reports in `sandbox` events."""

import re
import shlex
from dataclasses import dataclass

from app.contract.messages import ControlAction, JobStatus
from app.domain.jobs import Job, JobEvent

SANDBOX_STEP = "sandbox"  # the step of the worker's reports on the server (starting, running, stopped, ...)
# What may be done to a sandbox's server, and the control action that does it; the sandbox (its
# job) lives on.
SERVER_ACTIONS: dict[str, ControlAction] = {"start": "sandbox.start", "stop": "sandbox.stop",
                                            "restart": "sandbox.restart"}
ACTIONS = tuple(SERVER_ACTIONS)


@dataclass(frozen=True, slots=True)
class Sandbox:
    job: Job
    state: str  # the server's: starting, running, stopping, stopped, failed; ending once deleted; ended with its job
    isolation: str | None = None  # as the worker reported it (bwrap, rlimits)


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
    """The sandbox as its latest `sandbox` report (if any) describes it."""
    ended = state_of_ended(job)
    if ended is not None:
        return Sandbox(job, ended)
    if job.cancel_requested:  # deleted; its worker is stopping it
        return Sandbox(job, "ending", report.data.get("isolation") if report else None)
    if report is None:
        return Sandbox(job, "starting")
    return Sandbox(job, report.data.get("state", "starting"), report.data.get("isolation"))
