"""The sandbox policy: limits and command rules, set by the API from its settings and enforced by
the worker exactly as received with each job.

The defaults here are the only ones: the API's settings (`BERTH_SANDBOX_*`, `BERTH_COMMAND_*`,
`BERTH_DEFAULT_TTL_SECONDS`) take theirs from this model, and a worker handed a sandbox job without
a policy enforces these same values.
"""

import os
import shlex

from pydantic import BaseModel, Field

# Labels a runtime reports about how it confines sandboxes (facts from the worker: they win over
# labels given at registration). `sandbox`: `bubblewrap`, `rlimits` (no bubblewrap, and its owner
# accepts unisolated sandboxes) or `none` (runs no sandbox). `sandbox_network`: `pasta` where a
# networked sandbox gets a network namespace of its own, else `none`.
SANDBOX_DRIVER_LABEL = "sandbox"
SANDBOX_NETWORK_LABEL = "sandbox_network"

# A job's life when its request names none; a sandbox's life is its job's.
DEFAULT_TTL_SECONDS = 600


class SandboxRejected(Exception):
    """A request breaks the sandbox policy; the message says how, for the user to fix."""


def placement_refusal(labels: dict[str, str], *, own_runtime: bool, network: bool) -> str | None:
    """Why a runtime with these labels may not run a sandbox, or None when it may. `own_runtime`:
    the runtime belongs to the sandbox's workspace (a shared runtime does not); `network`: the
    sandbox's policy allows network access."""
    driver = labels.get(SANDBOX_DRIVER_LABEL, "none")
    if driver == "none":
        return "the runtime cannot isolate sandboxes, so it runs none"
    if driver != "bubblewrap" and not own_runtime:
        return f"the runtime does not isolate sandboxes ({driver} only), so it runs only its own workspace's"
    if network and labels.get(SANDBOX_NETWORK_LABEL) != "pasta":
        return "the runtime cannot give a networked sandbox a network namespace of its own"
    return None


class SandboxPolicy(BaseModel):
    memory_mb: int = Field(default=512, gt=0, description="private memory per process (RLIMIT_DATA)")
    cpu_seconds: int = Field(default=120, gt=0, description="CPU time per process (RLIMIT_CPU)")
    max_processes: int = Field(default=64, gt=0, description="processes of the sandbox (RLIMIT_NPROC)")
    max_open_files: int = Field(default=256, gt=0, description="descriptors per process (RLIMIT_NOFILE)")
    max_file_mb: int = Field(default=64, gt=0, description="size of any one file a process writes (RLIMIT_FSIZE)")
    disk_mb: int = Field(default=256, gt=0, description="what may be written under /sandbox (a tmpfs of this size)")
    sandbox_memory_mb: int = Field(
        default=1024, gt=0, description="memory of the sandbox's processes together (cgroup memory.max, if delegated)")
    cpu_cores: float = Field(
        default=1.0, gt=0, le=256, description="CPU of the sandbox's processes together (cgroup cpu.max, if delegated)")
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
    ttl_seconds: int = Field(default=DEFAULT_TTL_SECONDS, gt=0, description="wall-clock life of a session")

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


