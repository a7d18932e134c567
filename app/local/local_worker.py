"""The stack's own worker, a shared runtime on this machine, kept running or reported as failed.

- Each start gets a freshly minted shared join token in its environment (BERTH_WORKER_JOIN_TOKEN),
  never on its command line, where other users of the machine can read it. With a valid saved
  registration the token goes unused and expires; when the API refuses the saved one (the table
  lost it, or the runtime was deleted) the worker registers again with it on its own.
- It dies with the stack: `--die-with-parent`, started from the stack's starter thread
  (app.local.children), and it holds the stack's lock while it lives, so the next stack on the
  data directory starts only once it has gone.
- When it exits while the stack runs it is started again, after 1, 2, 4, ... s. After
  `max_quick_exits` exits in a row, each within STABLE_SECONDS of its start, it is left stopped
  and reported as failed, on the console and in `/status` (app.companions), rather than restarted
  for ever while every job waits.
"""

import signal
import subprocess
import threading
import time
from collections.abc import Callable

from app.companions import CompanionReport, CompanionState
from app.logs import get_logger, log_event

logger = get_logger("berth.local")

REPORT_NAME = "local_worker"
STABLE_SECONDS = 60.0  # a run this long was not a crash loop: the count of quick exits starts again


class LocalWorker:
    def __init__(self, command: list[str], environment: Callable[[], dict[str, str]],
                 mint_join_token: Callable[[], str], popen: Callable[..., subprocess.Popen], *,
                 keep_fds: tuple[int, ...] = (),
                 announce: Callable[[str], None] | None = None, max_quick_exits: int = 5, first_delay: float = 1.0):
        self.command = command
        self._environment = environment
        self._mint_join_token = mint_join_token
        self._popen = popen
        self._keep_fds = keep_fds
        self._announce = announce or (lambda message: log_event(logger, message))
        self.max_quick_exits = max_quick_exits
        self.first_delay = first_delay
        self._lock = threading.Lock()  # the process and the state, against stop()
        self._stopping = threading.Event()
        self._first_attempt = threading.Event()
        self._process: subprocess.Popen | None = None
        self._state: CompanionState = "starting"
        self._detail = "starting"
        self._restarts = 0
        self._thread = threading.Thread(target=self._supervise, name="local-worker", daemon=True)

    def start(self) -> None:
        """Start it; returns once the first process is started (or could not be)."""
        self._thread.start()
        self._first_attempt.wait()

    @property
    def process(self) -> subprocess.Popen | None:
        """The current process, or the last one."""
        return self._process

    def report(self) -> CompanionReport:
        with self._lock:
            process = self._process
            return CompanionReport(name=REPORT_NAME, state=self._state, healthy=self._state in ("starting", "running"),
                                   detail=self._detail, pid=process.pid if process and process.poll() is None else None,
                                   restarts=self._restarts)

    def stop(self, timeout: float) -> int | None:
        """SIGTERM (it releases its jobs and says it is leaving), SIGKILL after `timeout`; its exit code."""
        with self._lock:
            self._stopping.set()
            process = self._process
            self._set("stopped", "stopped with the stack")
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log_event(logger, "the local worker did not stop in time; killing it", seconds=timeout)
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join()
        return process.returncode if process is not None else None

    def _supervise(self) -> None:
        quick_exits = 0
        while True:
            started = time.monotonic()
            ended = self._run_once()
            if ended is None:  # the stack is stopping
                return
            quick_exits = quick_exits + 1 if time.monotonic() - started < STABLE_SECONDS else 1
            if quick_exits >= self.max_quick_exits:
                message = (f"the local worker {ended}, {quick_exits} times in a row within {STABLE_SECONDS:g} s of "
                           "its start, and is not started again: jobs will wait in the queue. Its log is above; "
                           "fix the cause and start berth again.")
                with self._lock:
                    self._set("failed", message)
                self._announce(message)
                return
            delay = self.first_delay * 2 ** (quick_exits - 1)
            message = f"the local worker {ended}; starting it again in {delay:g} s"
            with self._lock:
                self._set("restarting", message)
            self._announce(message)
            if self._stopping.wait(delay):
                return
            self._restarts += 1

    def _run_once(self) -> str | None:
        """Start one process and wait for it: how it ended, or None when the stack is stopping."""
        try:
            environment = {**self._environment(), "BERTH_WORKER_JOIN_TOKEN": self._mint_join_token()}
            with self._lock:
                if self._stopping.is_set():
                    return None
                process = self._process = self._popen(self.command, env=environment, start_new_session=True,
                                                      pass_fds=self._keep_fds)
                self._set("running", f"running as process {process.pid}")
        except Exception as exc:  # counts towards a crash loop like an exit
            logger.exception("could not start the local worker")
            return f"could not be started ({type(exc).__name__}: {exc})"
        finally:
            self._first_attempt.set()
        code = process.wait()
        if self._stopping.is_set():
            return None
        return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"

    def _set(self, state: CompanionState, detail: str) -> None:
        if self._state != "stopped":
            self._state, self._detail = state, detail
