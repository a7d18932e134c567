"""How long a worker process lives: alone on its data directory, and (when asked) no longer than the
process that started it.

One process per data directory: the directory holds one registration, one event spool and the
jobs' work directories, and two processes sharing them would serve one runtime twice (each
deleting the other's messages, posting under each other's claims). The lock is an `flock` on
`worker.lock` in the data directory, held by an open descriptor for the process's life, so the
kernel releases it however the process ends (SIGKILL included) and a stale lock file is harmless.
The file names the holder's pid for the refusal message. The descriptor is not inherited by
children (PEP 446), so a sandbox that outlived its worker could not keep the lock.

Dying with the parent (`die_with_parent`): on Linux the kernel sends SIGTERM when the parent goes
(`prctl(PR_SET_PDEATHSIG)`), and the worker stops as it would on Ctrl-C. The local stack asks for
this so a SIGKILLed stack leaves no worker behind to join the next one. The kernel's "parent" is
the thread that started the worker, so a parent must start it from a thread that lives as long as
it does. The worker's own children die with it by their own means: bubblewrap's
`--die-with-parent` for sandboxes, `setpriv --pdeathsig` for serving engines.
"""

import ctypes
import errno
import fcntl
import os
import signal
import sys
from pathlib import Path

LOCK_FILE_NAME = "worker.lock"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class DataDirInUse(Exception):
    """Another live process holds this data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path):
        self.path = data_dir / LOCK_FILE_NAME
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Hold the lock until `release` or the end of the process; DataDirInUse naming the holder
        when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(descriptor)
            os.close(descriptor)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            who = f"process {holder}" if holder else "another process"
            raise DataDirInUse(f"another worker ({who}) is running on {self.path.parent}; stop it first, "
                               "or give this one a data directory of its own") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the flock
            self._descriptor = None


def _holder(descriptor: int) -> int | None:
    text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


class ParentGone(Exception):
    """The parent had already exited when the worker asked to die with it."""


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent exits. `parent_pid` is the parent
    as first seen (os.getppid() at start): if it is already gone, ParentGone, since the signal
    would never come. OSError where the platform has no parent-death signal."""
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "a parent-death signal needs Linux")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}")
    # The parent may have exited between the start and the prctl: then we were re-parented already.
    if os.getppid() != parent_pid:
        raise ParentGone(f"the parent process {parent_pid} has already exited")
