"""Limits for a whole sandbox (every process in it together) with cgroup v2, where the host
delegates it.

rlimits bound each process on its own: a server that forks N children gets N times the memory
and CPU. A cgroup bounds the sandbox as one: memory.max, pids.max and cpu.max. The worker
needs a cgroup v2 subtree it may write, with the memory, pids and cpu controllers: the
unified hierarchy mounted at /sys/fs/cgroup (not a hybrid host's v1 controllers), and the
worker's own cgroup writable (root in a container with its own cgroup namespace, or a systemd
unit with `Delegate=yes`). cgroup v2 allows controllers for children only in a cgroup without
processes of its own, so the worker first moves itself into a leaf `worker` child; sandboxes
then get siblings under `sandboxes/`. Anything missing: sandboxes run with rlimits only, and
`unavailable_reason()` says why, for the limits a sandbox reports.

A process is placed in its cgroup before it runs anything of the sandbox: the spawned argv
starts with `sh -c 'echo $$ > …/cgroup.procs; exec "$@"'`, so bubblewrap and all it starts
inherit the cgroup.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory", "pids")
CPU_PERIOD_MICROSECONDS = 100_000


@functools.cache
def _setup() -> tuple[Path | None, str | None]:
    """(the directory sandboxes' cgroups go in, None) or (None, why there is none)."""
    if not (CGROUP_MOUNT / "cgroup.controllers").exists():
        return None, "cgroup v2 is not mounted at /sys/fs/cgroup (a v1 or hybrid host)"
    own = _own_cgroup()
    if own is None:
        return None, "this process is in no cgroup v2 group"
    base = CGROUP_MOUNT / own.lstrip("/")
    available = set((base / "cgroup.controllers").read_text().split())
    missing = [name for name in CONTROLLERS if name not in available]
    if missing:
        return None, f"the worker's cgroup lacks the {', '.join(missing)} controller(s)"
    try:
        if own != "/":
            # No process may stay in a cgroup whose children have controllers: move every one
            # (the worker, and an init or parent process sharing its cgroup) into a leaf.
            worker = base / "worker"
            worker.mkdir(exist_ok=True)
            for pid in (base / "cgroup.procs").read_text().split():
                try:
                    (worker / "cgroup.procs").write_text(pid)
                except ProcessLookupError:
                    pass  # exited meanwhile
        enable = " ".join(f"+{name}" for name in CONTROLLERS)
        (base / "cgroup.subtree_control").write_text(enable)
        sandboxes = base / "sandboxes"
        sandboxes.mkdir(exist_ok=True)
        (sandboxes / "cgroup.subtree_control").write_text(enable)
    except OSError as error:
        return None, f"the worker's cgroup is not delegated to it ({error.strerror})"
    return sandboxes, None


def unavailable_reason() -> str | None:
    return _setup()[1]


def _own_cgroup() -> str | None:
    with open("/proc/self/cgroup") as file:
        for line in file:
            hierarchy, _, path = line.strip().split(":", 2)
            if hierarchy == "0":
                return path
    return None


class SandboxCgroup:
    """One sandbox's cgroup, with its limits written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def enter_argv(self) -> list[str]:
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs")]

    def kill_all(self) -> None:
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            pass  # kernels before 5.14 have no cgroup.kill; the session kills by process

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (bounded: a stuck one leaves it)."""
        deadline = time.monotonic() + 2
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)


def create(name: str, memory_mb: int, max_processes: int, cpu_cores: float) -> SandboxCgroup | None:
    """A cgroup for one sandbox, or None where cgroups are not delegated to this worker."""
    parent, _ = _setup()
    if parent is None:
        return None
    cgroup = SandboxCgroup(parent / name)
    try:
        cgroup.path.mkdir(exist_ok=True)
        (cgroup.path / "memory.max").write_text(str(memory_mb * 1024 * 1024))
        if (cgroup.path / "memory.swap.max").exists():
            (cgroup.path / "memory.swap.max").write_text("0")
        (cgroup.path / "pids.max").write_text(str(max_processes))
        (cgroup.path / "cpu.max").write_text(f"{round(cpu_cores * CPU_PERIOD_MICROSECONDS)} {CPU_PERIOD_MICROSECONDS}")
    except OSError:
        cgroup.remove()  # rlimits alone, as on a host without delegation
        return None
    return cgroup
