"""The sandbox policy in force, from the settings, and the API's check of commands against it."""

from app.contract.policy import SandboxPolicy, SandboxRejected
from app.errors import Forbidden, Unprocessable
from app.settings import Settings


def sandbox_policy(settings: Settings, ttl_seconds: int | None = None) -> SandboxPolicy:
    """The policy every sandbox runs under, as the worker receives it with the job."""
    return SandboxPolicy(
        memory_mb=settings.sandbox_memory_mb, cpu_seconds=settings.sandbox_cpu_seconds,
        max_processes=settings.sandbox_max_processes, max_open_files=settings.sandbox_max_open_files,
        network=settings.sandbox_network, command_allowlist=settings.command_allowlist,
        command_denylist=settings.command_denylist, ttl_seconds=ttl_seconds or settings.default_ttl_seconds,
    )


def check_start_command(settings: Settings, start_command: str) -> None:
    """403 for a command the policy refuses, 422 for one that is empty (or a package that no
    start command runs: its registry type is not one a sandbox installs)."""
    try:
        sandbox_policy(settings).check_command(start_command)
    except SandboxRejected as error:
        if "empty" in str(error):
            raise Unprocessable(f"start_command: {error}") from error
        raise Forbidden(f"start_command refused by policy: {error}") from error


def check_shell_command(settings: Settings, command: str) -> None:
    """403 for a shell line containing what the policy denies."""
    try:
        sandbox_policy(settings).check_denylist(command)
    except SandboxRejected as error:
        raise Forbidden(f"command refused by policy: {error}") from error
