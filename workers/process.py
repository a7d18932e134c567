"""The worker process: alone on its data directory (`lifetime`), signal handling (and, when asked,
stopping with its parent), the direct control endpoint, and one Worker for each registration (a
new one when the API revokes the runtime token and a join token can replace it).

Exits 0 when stopped by SIGTERM/SIGINT, 1 when the runtime cannot go on (no registration, a
crashed worker task, a control endpoint it cannot serve, another worker on its data directory).
"""

import asyncio
import logging
import os
import signal

from app.contract.logs import log
from workers import ec2_metadata
from workers.api_client import RuntimeApiClient
from workers.config import WorkerConfig, configure_logging, split_host_port
from workers.control_server import ControlServer
from workers.executors.base import WorkerHost
from workers.executors.registry import EXECUTOR_MODULES, ExecutorRegistry
from workers.lifetime import DataDirInUse, DataDirLock, ParentGone, die_with_parent
from workers.registration import Registration
from workers.retry import Retry
from workers.worker import Outcome, ShutdownSignal, Worker

logger = logging.getLogger("berth.worker")


def run_worker(config: WorkerConfig) -> int:
    """Run until stopped by SIGTERM/SIGINT (0) or until the runtime cannot go on (1)."""
    parent = os.getppid()  # first thing: the parent as it was when this process started
    configure_logging(config.log_level)
    lock = DataDirLock(config.data_dir)
    try:
        lock.acquire()
    except DataDirInUse as exc:
        log(logger, logging.ERROR, "refusing to start", reason=str(exc))
        return 1
    try:
        return asyncio.run(_main(config, parent))
    finally:
        lock.release()


async def _main(config: WorkerConfig, parent: int) -> int:
    shutdown = ShutdownSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown)
    if config.die_with_parent:
        _die_with_parent(parent, shutdown)
    host = await asyncio.to_thread(WorkerHost.from_config, config)
    executors = await asyncio.to_thread(ExecutorRegistry.load, EXECUTOR_MODULES, host)
    return await serve(config, executors, shutdown)


async def serve(config: WorkerConfig, executors: ExecutorRegistry, shutdown: ShutdownSignal) -> int:
    """Serve registrations until `shutdown` is requested (0) or the runtime cannot go on (1)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    control = None
    if config.control_listen:
        control = await _control_server(config, config.control_listen)
        if control is None:
            return 1
    try:
        return await _serve_registrations(config, executors, shutdown, control)
    finally:
        if control is not None:
            await control.stop()


def _die_with_parent(parent: int, shutdown: ShutdownSignal) -> None:
    try:
        die_with_parent(parent)
    except ParentGone as exc:
        log(logger, logging.WARNING, "stopping at once", reason=str(exc))
        shutdown()
    except OSError as exc:
        log(logger, logging.WARNING, "cannot stop with the parent process; running on without that", error=str(exc))


async def _control_server(config: WorkerConfig, listen: str) -> ControlServer | None:
    """The control endpoint, listening; None (the reason logged) when it cannot be served."""
    try:
        advertised_host = None
        if config.control_host_from_ec2_metadata:
            advertised_host = await asyncio.to_thread(ec2_metadata.private_ipv4)
        control = ControlServer(*split_host_port(listen), config.control_url, advertised_host)
    except ec2_metadata.MetadataUnavailable as exc:
        log(logger, logging.ERROR, "cannot tell the API where to reach this worker", error=str(exc))
        return None
    except OSError as exc:
        log(logger, logging.ERROR, "cannot listen for control requests", address=listen, error=str(exc))
        return None
    await control.start()
    log(logger, logging.INFO, "serving control requests", address=control.address, url=control.url)
    return control


async def _serve_registrations(
    config: WorkerConfig, executors: ExecutorRegistry, shutdown: ShutdownSignal, control: ControlServer | None
) -> int:
    control_url = control.url if control is not None else None
    retry = Retry(max_seconds=config.retry_max_seconds)
    registration = Registration(config, executors, retry, control_url)
    while True:
        api = RuntimeApiClient(config.api_url)
        try:
            identity = await registration.identity(api, shutdown.requested)
            if identity is None:
                return 0 if shutdown.requested.is_set() else 1
            api.runtime_token = identity.runtime_token
            worker = Worker(config, identity, api, executors, retry, control_url)
            if control is not None:
                control.endpoint.attach(worker.signing_key, worker.control.answer, executors.stream_handler)
            try:
                outcome = await worker.run(shutdown)
            finally:
                if control is not None:
                    control.endpoint.detach()
        finally:
            await api.aclose()
        if outcome is Outcome.stopped:
            return 0
        if outcome is Outcome.failed or not registration.revoked():
            return 1
