"""A worker process is alone on its data directory and, when asked, ends with its parent
(workers.lifetime), with real processes and signals."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.runtime_api import FakeRuntimeApi
from workers.lifetime import DataDirInUse, DataDirLock, ParentGone, die_with_parent

ROOT = Path(__file__).resolve().parents[2]


def _environment(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return {**clean, "PYTHONPATH": str(ROOT), **extra}


def gone(pid: int) -> bool:
    """Exited (a zombie counts: the parent that would reap it may be gone too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


def test_a_second_holder_of_a_data_directory_is_refused_naming_the_first(tmp_path):
    first, second = DataDirLock(tmp_path / "worker"), DataDirLock(tmp_path / "worker")
    first.acquire()
    with pytest.raises(DataDirInUse, match=f"process {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()  # free again once the holder lets go
    second.release()


def test_the_lock_goes_with_its_process_even_on_sigkill(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from workers.lifetime import DataDirLock
            DataDirLock(Path({str(tmp_path)!r})).acquire()
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env=_environment())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirInUse, match=f"process {holder.pid}"):
            DataDirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = DataDirLock(tmp_path)
    lock.acquire()  # the stale file names a dead pid; the kernel released its lock
    lock.release()


def test_a_worker_started_on_a_data_directory_in_use_exits_saying_which_process_holds_it(tmp_path):
    lock = DataDirLock(tmp_path / "worker")
    lock.acquire()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "workers", "--api", "http://127.0.0.1:9", "--data-dir", str(tmp_path / "worker")],
            capture_output=True, text=True, timeout=60, env=_environment())
    finally:
        lock.release()
    assert second.returncode == 1
    assert f"another worker (process {os.getpid()}) is running on {tmp_path / 'worker'}" in second.stderr


def test_asking_to_die_with_a_parent_that_is_already_gone_says_so():
    with pytest.raises(ParentGone):
        die_with_parent(parent_pid=os.getppid() + 1_000_000)


def test_a_worker_asked_to_die_with_its_parent_stops_when_the_parent_is_killed(tmp_path):
    with FakeRuntimeApi() as api:
        worker_command = [sys.executable, "-m", "workers", "--api", api.url, "--data-dir", str(tmp_path / "worker"),
                          "--queue-mode", "lease", "--die-with-parent", "--heartbeat-interval-seconds", "1",
                          "--poll-wait-seconds", "1", "--flush-timeout-seconds", "2"]
        log = tmp_path / "worker.log"
        # A parent that starts the worker (the join token in its environment, not on its command
        # line) and then waits: a stand-in for the local stack.
        parent = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import subprocess, sys, time
                worker = subprocess.Popen({worker_command!r}, stderr=open({str(log)!r}, "w"))
                print(worker.pid, flush=True)
                time.sleep(600)
            """)], stdout=subprocess.PIPE, text=True,
            env=_environment(BERTH_WORKER_JOIN_TOKEN="bjt_test-join-token"), start_new_session=True)
        try:
            worker_pid = int(parent.stdout.readline())
            api.wait_for(lambda: api.heartbeats)
            assert "bjt_" not in Path(f"/proc/{worker_pid}/cmdline").read_text()
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait()
            wait_until(lambda: gone(worker_pid))
        finally:
            if not gone(parent.pid):
                parent.kill()
            try:
                os.kill(worker_pid, signal.SIGKILL)
            except (ProcessLookupError, UnboundLocalError):
                pass
        text = log.read_text()
        assert "stop requested" in text and "worker stopped" in text  # a graceful stop, as on Ctrl-C
        assert api.heartbeats[-1].exiting
