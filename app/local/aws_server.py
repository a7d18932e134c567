"""The local stack's stand-in for AWS: moto's server (DynamoDB, SQS, KMS) in a process of its own,
which also keeps the table and the KMS keys on disk.

A process of its own because moto handles each request in pure Python: sharing one interpreter
lock with the API, every AWS call waited for the API's threads and every API request for moto's
(the dispatch benchmark's p50 halved when it moved out; docs/decisions.md). It keeps the state
because only it sees every write as it happens (app.local.snapshot) and holds the KMS key
material (app.local.kms_state).

The stack talks to it over its stdin and stdout, one JSON object a line: the server first says
`{"listening": PORT}`; `{"keep": TABLE, "interval": S}` restores the table's snapshot and keeps it
from then on (`{"restored": N, "seconds": S}`); `{"save": true, "whole": BOOL}` writes it now
(`{"saved": N, ...}`; `whole` reads every item again rather than those that changed);
a failure answers `{"error": "..."}`. When stdin closes (the stack stopped, or died: the kernel
closes its end) or SIGTERM comes (the stack is gone: PR_SET_PDEATHSIG), it stops serving, writes
what is not yet on disk and exits, so it never outlives the stack and never loses what it
acknowledged to a stack that stopped.
"""

import argparse
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.local.snapshot import TableSnapshot  # imports moto: only the server's side loads it

FORGET_INTERVAL_SECONDS = 5.0
POLL_SECONDS = 0.1  # how soon a stop request is noticed: part of Ctrl-C's time


# --- the stack's side ------------------------------------------------------------------------------


class AwsServerError(RuntimeError):
    """The AWS stand-in could not start or answer."""


class AwsServerProcess:
    """The stack's handle on the AWS stand-in."""

    def __init__(self, port: int, state_dir: Path, region: str, cwd: Path):
        self.port = port
        self.state_dir = state_dir
        self.region = region
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._talking = threading.Lock()  # one request and its answer at a time

    def start(self, popen: Callable[..., subprocess.Popen], keep_fds: tuple[int, ...] = (),
              timeout: float = 60.0) -> None:
        """Start it with `popen` (the stack's long-lived starter thread) and wait until it listens.
        `keep_fds` stay open in it (the stack's lock: held until the state is written)."""
        command = [sys.executable, "-m", "app.local.aws_server", "--port", str(self.port),
                   "--state-dir", str(self.state_dir), "--region", self.region]
        # Its own session, so a Ctrl-C meant for the stack does not stop it before the stack has
        # stopped everything that writes to it.
        self.process = popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.cwd,
                             start_new_session=True, pass_fds=keep_fds, text=True)
        self._answer(timeout)

    def keep_table(self, table_name: str, interval: float, timeout: float = 600.0) -> dict[str, Any]:
        """Restore `table_name` from its snapshot, then keep the snapshot current."""
        return self._request({"keep": table_name, "interval": interval}, timeout)

    def save(self, whole: bool = False, timeout: float = 600.0) -> dict[str, Any]:
        return self._request({"save": True, "whole": whole}, timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Close its stdin (it writes the table and exits); killed after `timeout`."""
        process = self.process
        if process is None:
            return None
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        with self._talking:
            assert self.process is not None and self.process.stdin is not None, "start() it first"
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            return self._answer(timeout)

    def _answer(self, timeout: float) -> dict[str, Any]:
        process = self.process
        assert process is not None and process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if not line:
            if not ready:
                raise AwsServerError(f"the AWS stand-in did not answer within {timeout:g} s")
            raise AwsServerError(f"the AWS stand-in exited ({process.wait()}); its error is above")
        answer = json.loads(line)
        if "error" in answer:
            raise AwsServerError(answer["error"])
        return answer


# --- the server's side -----------------------------------------------------------------------------


def forget_tracked_instances() -> None:
    """moto records every model object it ever creates (for its dashboard): without this the
    process keeps every item of every transaction. Nothing reads those records."""
    from moto.core.base_backend import model_data

    for models in model_data.values():
        for model in models.values():
            model.instances_tracked.clear()  # type: ignore[attr-defined]  # moto's BaseModel metaclass sets it


def main() -> int:
    parent = os.getppid()  # first thing: the parent as it was when this process started
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="where the table and the KMS keys are kept")
    parser.add_argument("--region", default="us-east-1")
    options = parser.parse_args()

    # Answers go to the stack on what was stdout; anything moto prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    _die_with_parent(parent, stopping)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from app.local import kms_state, moto_fidelity, snapshot

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
    moto_fidelity.install()
    keys_file = options.state_dir / kms_state.STATE_FILE
    kms_state.restore(keys_file, options.region)
    kms_state.save_on_change(keys_file, options.region)
    table = _KeptTable(options.state_dir / snapshot.SNAPSHOT_FILE, options.region)
    snapshot.track_changes(table)
    try:
        # Made here rather than with ThreadedMotoServer, whose thread would swallow a port in use.
        server = make_server("127.0.0.1", options.port, DomainDispatcherApplication(create_backend_app), threaded=True,
                             request_handler=MotoRequestHandler)
    except OSError as exc:
        _say(answers, {"error": f"cannot serve AWS on 127.0.0.1:{options.port}: {exc.strerror}"})
        return 1
    threading.Thread(target=server.serve_forever, args=(POLL_SECONDS,), name="moto", daemon=True).start()
    threading.Thread(target=_forget_periodically, args=(stopping,), name="moto-tracking", daemon=True).start()
    _say(answers, {"listening": options.port})
    threading.Thread(target=_serve_requests, args=(sys.stdin, answers, table, stopping), name="requests",
                     daemon=True).start()
    while not stopping.wait(POLL_SECONDS):
        pass
    server.shutdown()
    table.close()
    answers.flush()
    os._exit(0)  # the state is written; tearing down moto's objects one by one would only delay the stack's exit


class _KeptTable:
    """The table's snapshot once the stack names the table (changes before that are the restore's own)."""

    def __init__(self, path: Path, region: str):
        self.path = path
        self.region = region
        self.snapshot: TableSnapshot | None = None

    def item_changed(self, table_name: str, key: Any) -> None:
        if self.snapshot is not None:
            self.snapshot.item_changed(table_name, key)

    def anything_changed(self) -> None:
        if self.snapshot is not None:
            self.snapshot.anything_changed()

    def keep(self, table_name: str, interval: float) -> dict[str, Any]:
        from app.local.snapshot import TableSnapshot

        kept = TableSnapshot(self.path, table_name, self.region, interval)
        started = time.perf_counter()
        restored = kept.restore()
        seconds = time.perf_counter() - started
        kept.start()
        self.snapshot = kept
        return {"restored": restored, "seconds": seconds}

    def save(self, whole: bool) -> dict[str, Any]:
        if self.snapshot is None:
            raise ValueError("no table is kept yet")
        saved = self.snapshot.save(whole=whole)
        return {"saved": saved.items, "bytes": saved.bytes, "read": saved.read, "whole": saved.whole,
                "seconds": saved.seconds, "locked_seconds": saved.locked_seconds}

    def close(self) -> None:
        if self.snapshot is not None:
            self.snapshot.close()


def _serve_requests(requests: IO[str], answers: IO[str], table: _KeptTable, stopping: threading.Event) -> None:
    for line in requests:
        try:
            request = json.loads(line)
            if "keep" in request:
                answer = table.keep(request["keep"], float(request["interval"]))
            elif request.get("save"):
                answer = table.save(whole=bool(request.get("whole")))
            else:
                answer = {"error": f"unknown request {line.strip()!r}"}
        except Exception as exc:  # answered, so the stack can say what went wrong
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _say(answers, answer)
    stopping.set()  # stdin closed: the stack is stopping, or gone


def _say(answers: IO[str], answer: dict[str, Any]) -> None:
    try:
        answers.write(json.dumps(answer) + "\n")
    except BrokenPipeError:  # the stack is gone; the state is still written
        pass


def _forget_periodically(stopping: threading.Event) -> None:
    while not stopping.wait(FORGET_INTERVAL_SECONDS):
        forget_tracked_instances()


def _die_with_parent(parent: int, stopping: threading.Event) -> None:
    from workers.lifetime import ParentGone, die_with_parent

    try:
        die_with_parent(parent)
    except ParentGone:
        stopping.set()
    except OSError as exc:  # not Linux: stdin's end still stops it
        print(f"the AWS stand-in cannot ask for a parent-death signal: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
