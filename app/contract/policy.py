"""The sandbox policy: limits and command rules, set by the API from its settings and enforced by
the worker exactly as received with each job.

The defaults here are the only ones: the API's settings (`BERTH_SANDBOX_*`, `BERTH_COMMAND_*`,
`BERTH_DEFAULT_TTL_SECONDS`) take theirs from this model, and a worker handed a sandbox job without
a policy enforces these same values.
"""

import os
import shlex

from pydantic import BaseModel, Field

# A job's life when its request names none; a sandbox's life is its job's.
DEFAULT_TTL_SECONDS = 600


class SandboxRejected(Exception):
    """A request breaks the sandbox policy; the message says how, for the user to fix."""


class SandboxPolicy(BaseModel):
    memory_mb: int = Field(512, gt=0, description="private memory per process (RLIMIT_DATA)")
    cpu_seconds: int = Field(120, gt=0, description="CPU time per process (RLIMIT_CPU)")
    max_processes: int = Field(64, gt=0, description="processes of the sandbox (RLIMIT_NPROC)")
    max_open_files: int = Field(256, gt=0, description="descriptors per process (RLIMIT_NOFILE)")
    network: bool = False
    command_allowlist: list[str] = Field(
        default_factory=lambda: ["node", "npx", "python", "python3", "uv", "uvx", "bash", "sh"],
        description="executable names a start command may run",
    )
    command_denylist: list[str] = Field(
        default_factory=lambda: ["rm -rf /", "mkfs", "shutdown", "reboot", "dd if=", ":(){", "curl", "wget", "sudo",
                                 "/dev/tcp"],
        description="substrings no command may contain",
    )
    ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, gt=0, description="wall-clock life of a session")

    def check_command(self, command: str) -> list[str]:
        """Split a start command into argv, or raise SandboxRejected saying what is not allowed."""
        argv = self.check_denylist(command)
        executable = argv[0]
        if "/" in executable:
            # A path could name any binary that merely shares an allowed basename.
            raise SandboxRejected(f"give the executable by name, not by path: {os.path.basename(executable)!r}")
        if executable not in self.command_allowlist:
            allowed = ", ".join(self.command_allowlist) or "none"
            raise SandboxRejected(f"executable {executable!r} is not allowed in a sandbox (allowed: {allowed})")
        return argv

    def check_denylist(self, command: str) -> list[str]:
        """Split any command (a shell line for MatrixShell too) and refuse denied substrings."""
        try:
            argv = shlex.split(command)
        except ValueError as error:
            raise SandboxRejected(f"command cannot be parsed: {error}") from None
        if not argv:
            raise SandboxRejected("command is empty")
        for denied in self.command_denylist:
            if denied and denied in command:
                raise SandboxRejected(f"command contains {denied!r}, which the sandbox policy denies")
        return argv


