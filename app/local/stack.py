"""The local stack: an embedded moto server (a child process, app.local.aws_server) standing in for
DynamoDB, SQS and KMS and keeping their state on disk, the API on uvicorn, the sweeper and
dead-letter consumer on timers, and one local worker registered as a shared runtime
(app.local.local_worker). The end-to-end tests start this same class.

Only endpoints and credentials differ from AWS; they are set in the process environment before
anything creates a boto3 client, so every code path is the deployed one.

One stack per data directory (app.local.stack_lock), everything under it private (app.files), and
no child outlives it (app.local.children).
"""

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app import companions, composition
from app.composition import Services
from app.domain.accounts import Workspace
from app.files import private_directory
from app.local.aws_server import AwsServerError, AwsServerProcess
from app.local.children import ChildStarter
from app.local.local_worker import REPORT_NAME, LocalWorker
from app.local.stack_lock import StackLock, StackRunning
from app.logs import get_logger, log_event

if TYPE_CHECKING:
    import uvicorn

logger = get_logger("berth.local")

PLATFORM_WORKSPACE = "ws_platform"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CannotStart(Exception):
    """The stack did not start, for a reason its message gives a person (another stack on the data
    directory, a port in use); nothing is left running."""


@dataclass
class StackOptions:
    data_dir: Path
    port: int = 7500
    moto_port: int = 7566
    fresh: bool = False
    worker: bool = True
    sweep_interval: float = 5.0
    # A change to the table is on disk this long after it is made (changes meanwhile join it).
    snapshot_interval: float = 1.0
    ttl_interval: float = 60.0  # how often expired items are deleted, standing in for DynamoDB TTL
    worker_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # extra BERTH_* settings for API and worker
    worker_restart_delay: float = 1.0  # the first restart's delay; each quick exit in a row doubles it
    worker_max_quick_exits: int = 5  # then the worker is reported as failed and left stopped
    worker_stop_seconds: float = 10.0  # a worker that has not stopped after SIGTERM by then is killed
    announce: Callable[[str], None] | None = None  # says what people must know (berth up: the console)


class LocalStack:
    def __init__(self, options: StackOptions):
        self.options = options
        self.state_dir = options.data_dir / "state"
        self.api_url = f"http://127.0.0.1:{options.port}"
        self.moto_url = f"http://127.0.0.1:{options.moto_port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = StackLock(options.data_dir)
        self._children: ChildStarter | None = None
        self._aws = AwsServerProcess(options.moto_port, self.state_dir, "us-east-1", PROJECT_ROOT)
        self._uvicorn: uvicorn.Server | None = None
        self._api_thread: threading.Thread | None = None
        self.local_worker: LocalWorker | None = None
        self.restored_items = 0
        self.restore_seconds = 0.0
        self._previous_environment: dict[str, str | None] = {}

    # --- environment ------------------------------------------------------------------------

    def aws_environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "berth-local",
            "AWS_SECRET_ACCESS_KEY": "berth-local",
            "AWS_DEFAULT_REGION": self._aws.region,
            "AWS_REGION": self._aws.region,
        }

    def berth_environment(self) -> dict[str, str]:
        return {
            "BERTH_MODE": "local",
            "BERTH_PORT": str(self.options.port),
            "BERTH_DATA_DIR": str(self.options.data_dir),
            **self.options.environment,
        }

    def _apply_environment(self) -> None:
        wanted = {**self.aws_environment(), **self.berth_environment()}
        # Remembered so stop() can put the process back as it was: a second stack in the same
        # process (the tests start several) must not inherit this one's settings.
        self._previous_environment = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        composition.reset()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> "LocalStack":
        """Start everything, or CannotStart; when another stack has the data directory, having
        changed nothing in it."""
        data_dir = self.options.data_dir
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if data_dir.stat().st_mode & stat.S_ISVTX:  # /tmp itself: its other users' files are not berth's
            raise CannotStart(f"{data_dir} is a shared directory: give berth a directory of its own in it")
        try:
            self._lock.acquire({"api_url": self.api_url, "moto_url": self.moto_url}, waiting=self._say)
        except StackRunning as exc:
            raise CannotStart(str(exc)) from None
        try:
            if self.options.fresh:
                _empty(data_dir, keep=self._lock.path)
            private_directory(data_dir)
            private_directory(self.state_dir)
            self._apply_environment()
            self._children = ChildStarter()
            self._aws.start(self._children.popen, keep_fds=self._held_lock())
            self._provision()
            self._start_api()
            self._start_timers()
            if self.options.worker:
                self.start_worker()
        except AwsServerError as exc:
            self.stop()
            raise CannotStart(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _held_lock(self) -> tuple[int, ...]:
        return (self._lock.descriptor,) if self._lock.descriptor is not None else ()

    def _say(self, message: str) -> None:
        (self.options.announce or (lambda text: log_event(logger, text)))(message)

    @property
    def services(self) -> Services:
        """The services of this process, which the stack's API, sweeper and timers use."""
        return composition.services()

    def _provision(self) -> None:
        from app.store.schema import ensure_table

        services = self.services
        settings = services.settings
        ensure_table(services.aws, settings.table_name)
        restored = self._aws.keep_table(settings.table_name, self.options.snapshot_interval)
        self.restored_items, self.restore_seconds = restored["restored"], restored["seconds"]
        services.queues.ensure_dead_letter_queue()
        services.objects.ensure_bucket()  # installations' files (FilesBucket in template.yaml)
        kms = services.aws.client("kms")
        aliases = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
        if settings.kms_key_alias not in aliases:
            key_id = kms.create_key(Description="berth provider credentials")["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=settings.kms_key_alias, TargetKeyId=key_id)
        for runtime in services.store.runtimes.all():  # queues are not in the snapshot: recreate them
            jobs_url, control_url = services.queues.create_runtime_queues(runtime.runtime_id, shared=runtime.shared)
            if (jobs_url, control_url) != (runtime.jobs_queue_url, runtime.control_queue_url):
                services.store.runtimes.move_queues(runtime, jobs_url, control_url)
        services.store.accounts.ensure_workspace(Workspace(workspace_id=PLATFORM_WORKSPACE, name="berth platform",
                                                           slug="platform", open_jobs=0))
        if self.restored_items:
            log_event(logger, "state restored", items=self.restored_items,
                      seconds=round(self.restore_seconds, 3))

    def _start_api(self) -> None:
        import uvicorn

        from app.main import create_app

        # Bound here, so a port taken by another program stops the start with that reason (uvicorn
        # would log it on its thread while the stack went on).
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
        try:
            listener.bind(("127.0.0.1", self.options.port))
        except OSError as exc:
            listener.close()
            raise CannotStart(f"cannot serve the API on 127.0.0.1:{self.options.port}: {exc.strerror}") from None
        # Open event streams get a second to end, not the 10 s stop() would otherwise wait for them.
        config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        server = self._uvicorn = uvicorn.Server(config)
        self._api_thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="api",
                                            daemon=True)
        self._api_thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self._api_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.api_url}")
            time.sleep(0.02)

    def stop_api(self) -> None:
        """Take the API down (the rest keeps running): what a worker sees in an outage."""
        if self._uvicorn is not None and self._api_thread is not None:
            self._uvicorn.should_exit = True
            self._api_thread.join(timeout=10)
            self._uvicorn = None

    def start_api(self) -> None:
        if self._uvicorn is None:
            self._start_api()

    def _start_timers(self) -> None:
        for name, interval, task in (
            ("sweeper", self.options.sweep_interval, self._sweep_once),
            ("dead-letters", min(self.options.sweep_interval, 2.0), self._drain_dead_letters),
            ("ttl", self.options.ttl_interval, self._delete_expired),
        ):
            thread = threading.Thread(target=self._every, args=(interval, task), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _every(self, interval: float, task) -> None:
        while not self._stop.wait(interval):
            try:
                task()
            except Exception:
                logger.exception("local timer task failed")

    def _sweep_once(self) -> None:
        self.services.sweeper.sweep()

    def _drain_dead_letters(self) -> None:
        queues = self.services.queues
        url = queues.dead_letter_queue_url()
        for message in queues.receive(url, max_messages=10, wait_seconds=0, visibility_seconds=30):
            try:  # one letter that fails stays for a later round; the others are handled now
                self.services.lifecycle.dead_letter(message.body, message.receive_count)
            except Exception:
                logger.exception("a dead letter failed; it is retried later")
                continue
            queues.delete(url, message.receipt)

    def _delete_expired(self) -> None:
        self.services.store.table.delete_expired()

    @property
    def aws_process(self) -> subprocess.Popen | None:
        """The AWS stand-in's process (benchmarks read its CPU time)."""
        return self._aws.process

    def save_state(self, whole: bool = False) -> dict:
        """Write the table now (it is written within `snapshot_interval` of each change anyway):
        `saved` items, `bytes`, `read` (the items read again: those changed, or all with `whole`),
        `seconds`, and `locked_seconds`, the part during which DynamoDB requests waited."""
        return self._aws.save(whole=whole)

    # --- the local worker -----------------------------------------------------------------

    def mint_shared_join_token(self, uses: int = 1) -> str:
        from app.auth.principal import Principal, Tier

        operator = Principal(kind="system", workspace_id=PLATFORM_WORKSPACE, subject_id="local-stack",
                             tier=Tier.admin, credential_digest="", operator=True)
        secret, _ = self.services.runtimes.mint_join_token(operator, name="local worker", uses=uses, ttl_seconds=3600,
                                                           shared=True, labels={})
        return secret

    def worker_command(self, data_dir: Path, *extra: str) -> list[str]:
        """A worker of this stack on `data_dir`; its join token goes in its environment (worker_environment)."""
        # A 1 s long poll: a stopping worker waits out the receive in flight (Ctrl-C's largest part).
        return [sys.executable, "-m", "workers", "--api", self.api_url, "--data-dir", str(data_dir),
                "--queue-mode", "sqs", "--name", "local-worker", "--poll-wait-seconds", "1",
                *self.options.worker_args, *extra]

    def worker_environment(self, join_token: str | None = None) -> dict[str, str]:
        environment = {**os.environ, **self.aws_environment(), **self.berth_environment()}
        environment.pop("BERTH_WORKER_JOIN_TOKEN", None)
        if join_token is not None:
            environment["BERTH_WORKER_JOIN_TOKEN"] = join_token
        return environment

    def start_worker(self) -> LocalWorker:
        """The stack's own worker (app.local.local_worker): dies with the stack, restarted when it dies."""
        assert self._children is not None, "start() the stack first"
        # It stops within about 3 s: sandboxes are released at once, other jobs after a second's
        # grace, and an API that cannot take its events within 2 s is gone (they stay spooled).
        # The API reaches it directly on loopback for sandbox control requests (the queue stays the
        # fallback); a --control-listen among the worker_args wins.
        direct = [] if "--control-listen" in self.options.worker_args else ["--control-listen", "127.0.0.1:0"]
        command = self.worker_command(self.options.data_dir / "worker", "--stop-grace-seconds", "1",
                                      "--flush-timeout-seconds", "2", *direct, "--die-with-parent")
        self.local_worker = LocalWorker(command, self.worker_environment, self.mint_shared_join_token,
                                        self._children.popen, keep_fds=self._held_lock(), announce=self._say,
                                        max_quick_exits=self.options.worker_max_quick_exits,
                                        first_delay=self.options.worker_restart_delay)
        companions.register(REPORT_NAME, self.local_worker.report)
        self.local_worker.start()
        return self.local_worker

    @property
    def worker(self) -> subprocess.Popen | None:
        """The local worker's current (or last) process."""
        return self.local_worker.process if self.local_worker is not None else None

    def stop(self) -> None:
        """Stop the worker (it releases its jobs), the API and the timers, then the AWS stand-in,
        which writes the last changes; then let go of the data directory."""
        if self.local_worker is not None:
            self.local_worker.stop(timeout=self.options.worker_stop_seconds)
            companions.unregister(REPORT_NAME)
        self._stop.set()
        self.stop_api()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._aws.stop() not in (0, None):
            logger.error("the AWS stand-in did not stop cleanly; the last second of changes may be lost")
        if self._children is not None:
            self._children.close()
        self._lock.release()
        self._restore_environment()

    def _restore_environment(self) -> None:
        for name, value in self._previous_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        composition.reset()


def _empty(directory: Path, keep: Path) -> None:
    """`--fresh`: everything under `directory` goes but `keep` (the lock this stack holds)."""
    for entry in directory.iterdir():
        if entry == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
