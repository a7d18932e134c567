"""The stack's child processes start from one thread that lives as long as the stack.

The AWS stand-in and the worker ask the kernel for a signal when their parent goes
(PR_SET_PDEATHSIG), so a SIGKILLed stack leaves neither behind. For the kernel the parent is the
*thread* that forked the child, not its process: a child started from a thread that ends first (a
request thread, a test's fixture thread, a restart timer) would be told its parent died while the
stack runs on. So every child is started here.
"""

import queue
import subprocess
import threading
from concurrent.futures import Future
from typing import Any

_Start = tuple[tuple[Any, ...], dict[str, Any], Future]


class ChildStarter:
    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_Start | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._start_requested, name="child-starter", daemon=True)
        self._thread.start()

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        """subprocess.Popen(*args, **kwargs), run on the starter thread."""
        started: Future[subprocess.Popen] = Future()
        self._requests.put((args, kwargs, started))
        return started.result()

    def close(self) -> None:
        """End the thread: only once its children have exited (their death signal would fire)."""
        self._requests.put(None)
        self._thread.join()

    def _start_requested(self) -> None:
        while (request := self._requests.get()) is not None:
            args, kwargs, started = request
            try:
                started.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, who raises it
                started.set_exception(exc)
