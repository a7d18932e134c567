"""The local stack: an embedded moto server (a child process) standing in for DynamoDB, SQS and
KMS, the API on uvicorn, the sweeper and dead-letter consumer on timers, and one local worker
registered as a shared runtime. The end-to-end tests start this same class.

Only endpoints and credentials differ from AWS; they are set in the process environment before
anything creates a boto3 client, so every code path is the deployed one.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app import composition
from app.composition import Services
from app.domain.accounts import Workspace
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


@dataclass
class StackOptions:
    data_dir: Path
    port: int = 7500
    moto_port: int = 7566
    fresh: bool = False
    worker: bool = True
    sweep_interval: float = 5.0
    snapshot_interval: float = 30.0
    ttl_interval: float = 60.0  # how often expired items are deleted, standing in for DynamoDB TTL
    worker_args: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # extra BERTH_* settings for API and worker


class LocalStack:
    def __init__(self, options: StackOptions):
        self.options = options
        self.state_dir = options.data_dir / "state"
        self.api_url = f"http://127.0.0.1:{options.port}"
        self.moto_url = f"http://127.0.0.1:{options.moto_port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: subprocess.Popen | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._api_thread: threading.Thread | None = None
        self.worker: subprocess.Popen | None = None
        self.restored_items = 0
        self.restore_seconds = 0.0
        self._previous_environment: dict[str, str | None] = {}

    # --- environment ------------------------------------------------------------------------

    def aws_environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "berth-local",
            "AWS_SECRET_ACCESS_KEY": "berth-local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
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
        if self.options.fresh and self.options.data_dir.exists():
            shutil.rmtree(self.options.data_dir)
        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        self._apply_environment()
        self._start_moto()
        self._provision()
        self._start_api()
        self._start_timers()
        if self.options.worker:
            self.start_worker()
        return self

    def _start_moto(self) -> None:
        # A process of its own: see app.local.aws_server. Fresh each time, so each stack starts
        # as an empty AWS and state comes back only from the snapshot. Its own session, so a
        # Ctrl-C meant for the stack does not stop it before the stack has saved its state.
        command = [sys.executable, "-m", "app.local.aws_server", "--port", str(self.options.moto_port),
                   "--state-dir", str(self.state_dir), "--region", self.aws_environment()["AWS_REGION"]]
        self._moto = subprocess.Popen(command, stdin=subprocess.PIPE, cwd=PROJECT_ROOT, start_new_session=True)
        _wait_for_port(self.options.moto_port, process=self._moto)

    @property
    def services(self) -> Services:
        """The services of this process, which the stack's API, sweeper and timers use."""
        return composition.services()

    def _provision(self) -> None:
        from app.local import snapshot
        from app.store.schema import ensure_table

        services = self.services
        settings = services.settings
        ensure_table(services.aws, settings.table_name)
        services.queues.ensure_dead_letter_queue()
        started = time.perf_counter()
        self.restored_items = snapshot.restore(services.aws, self.state_dir, settings.table_name)
        self.restore_seconds = time.perf_counter() - started
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

        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.options.port, log_level="warning",
                                access_log=False, lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._api_thread = threading.Thread(target=self._uvicorn.run, name="api", daemon=True)
        self._api_thread.start()
        _wait_for_port(self.options.port)

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
            ("snapshot", self.options.snapshot_interval, self.save_state),
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
            self.services.lifecycle.dead_letter(message.body, message.receive_count)
            queues.delete(url, message.receipt)

    def _delete_expired(self) -> None:
        self.services.store.table.delete_expired()

    def save_state(self) -> int:
        from app.local import snapshot

        services = self.services
        return snapshot.save(services.aws, self.state_dir, services.settings.table_name)

    # --- the local worker -----------------------------------------------------------------

    def mint_shared_join_token(self, uses: int = 1) -> str:
        from app.auth.principal import Principal, Tier

        operator = Principal(kind="system", workspace_id=PLATFORM_WORKSPACE, subject_id="local-stack",
                             tier=Tier.admin, credential_digest="", operator=True)
        secret, _ = self.services.runtimes.mint_join_token(operator, name="local worker", uses=uses, ttl_seconds=3600,
                                                           shared=True, labels={})
        return secret

    def worker_command(self, data_dir: Path, join_token: str | None, *extra: str) -> list[str]:
        # A 5 s long poll: prompt enough for jobs, and Ctrl-C does not wait out a 20 s receive.
        command = [sys.executable, "-m", "workers", "--api", self.api_url, "--data-dir", str(data_dir),
                   "--queue-mode", "sqs", "--name", "local-worker", "--poll-wait-seconds", "5",
                   *self.options.worker_args, *extra]
        if join_token:
            command += ["--join-token", join_token]
        return command

    def worker_environment(self) -> dict[str, str]:
        return {**os.environ, **self.aws_environment(), **self.berth_environment()}

    def start_worker(self) -> subprocess.Popen:
        data_dir = self.options.data_dir / "worker"
        registered = (data_dir / "runtime.json").exists()
        token = None if registered else self.mint_shared_join_token()
        # The API reaches it directly on loopback for sandbox control requests (the queue stays the
        # fallback); a --control-listen among the worker_args wins.
        direct = [] if "--control-listen" in self.options.worker_args else ["--control-listen", "127.0.0.1:0"]
        self.worker = subprocess.Popen(self.worker_command(data_dir, token, *direct), env=self.worker_environment(),
                                       start_new_session=True)
        return self.worker

    def stop(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
        self._stop.set()
        try:
            self.save_state()
        except Exception:
            logger.exception("could not save the local state")
        self.stop_api()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._moto is not None and self._moto.stdin is not None:
            self._moto.stdin.close()
            try:
                self._moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._moto.kill()
        self._restore_environment()

    def _restore_environment(self) -> None:
        for name, value in self._previous_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        composition.reset()


def _wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process meant to listen on 127.0.0.1:{port} exited ({process.returncode})")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:g} s")
