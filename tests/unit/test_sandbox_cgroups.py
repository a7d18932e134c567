"""Whole-sandbox limits with cgroup v2: what the worker writes where the host delegates a
subtree, and why it falls back to rlimits where it does not. The kernel's cgroup filesystem is
stood in for by a directory (this project's machines have a hybrid v1 hierarchy, so the real
one cannot be written here); on such a host the fallback itself is what the sandbox tests see."""

from pathlib import Path

import pytest

from workers.sandbox import cgroups


@pytest.fixture
def cgroup_root(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(cgroups, "CGROUP_MOUNT", root)
    monkeypatch.setattr(cgroups, "_own_cgroup", lambda: "/")  # a container's own cgroup namespace
    cgroups._setup.cache_clear()
    yield root
    cgroups._setup.cache_clear()


def test_a_delegated_subtree_gets_the_sandboxs_limits_for_all_its_processes(cgroup_root: Path):
    (cgroup_root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")

    cgroup = cgroups.create("sandbox-1", memory_mb=1024, max_processes=66, cpu_cores=0.5)

    assert cgroups.unavailable_reason() is None and cgroup is not None
    assert (cgroup_root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert cgroup.path == cgroup_root / "sandboxes" / "sandbox-1"
    written = {name: (cgroup.path / name).read_text() for name in ("memory.max", "pids.max", "cpu.max")}
    assert written == {"memory.max": str(1024 * 1024 * 1024), "pids.max": "66", "cpu.max": "50000 100000"}
    assert cgroup.enter_argv()[-1] == str(cgroup.path / "cgroup.procs")


@pytest.mark.parametrize(("controllers", "reason"), [
    (None, "cgroup v2 is not mounted"),
    ("cpu pids", "lacks the memory controller"),
])
def test_without_delegation_sandboxes_keep_rlimits_and_say_why(cgroup_root: Path, controllers, reason):
    if controllers is not None:
        (cgroup_root / "cgroup.controllers").write_text(controllers)

    assert cgroups.create("sandbox-1", memory_mb=1024, max_processes=66, cpu_cores=1.0) is None
    assert reason in cgroups.unavailable_reason()
