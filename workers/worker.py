"""One registration's worth of work: heartbeats, receiving from the two queues, and stopping well.

Jobs are received only while a slot is free (`max_concurrent_jobs`) and run by the JobRunner;
control messages are answered by ControlHandling. Each heartbeat reports the jobs this process
holds and what the runtime offers. On SIGTERM/SIGINT the worker stops receiving and releases at
once the jobs that run until stopped (sandboxes: waiting for them would only delay the stop),
lets the others finish for `stop_grace_seconds` (a second signal ends the grace at once), then
stops the rest and releases them so another runtime takes them promptly, flushes the spool,
sends a last heartbeat saying it is exiting, and returns.
"""

import asyncio
import logging
import uuid
from enum import Enum

from app.contract.logs import log
from app.contract.messages import HeartbeatRequest
from app.contract.packages import MAX_REPORTED_PACKAGES, PackageCacheUsage
from workers.api_client import ApiError, RuntimeApiClient, Unauthorized
from workers.concurrency import Slots, TaskSet, wait_first
from workers.config import WorkerConfig
from workers.control import ControlHandling
from workers.executors import registry
from workers.executors.registry import ExecutorRegistry
from workers.job_run import VISIBILITY_MARGIN_SECONDS, JobRunner, lease_period
from workers.mailbox import Mailbox
from workers.registration import RuntimeIdentity
from workers.retry import Retry, RetryStopped
from workers.transport import LeaseTransport, QueueError, QueueName, QueueTransport, ReceivedMessage, SqsTransport

logger = logging.getLogger("berth.worker")


class ShutdownSignal:
    """The first SIGTERM/SIGINT asks for a graceful stop; a second one ends the grace period."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()

    def __call__(self) -> None:
        if self.requested.is_set():
            self.hurry.set()
        else:
            log(logger, logging.INFO, "stop requested; finishing running jobs")
            self.requested.set()


class Outcome(Enum):
    stopped = 0
    revoked = 1
    failed = 2


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        identity: RuntimeIdentity,
        api: RuntimeApiClient,
        executors: ExecutorRegistry,
        retry: Retry,
        control_url: str | None = None,
    ):
        self.config = config
        self.control_url = control_url  # where the API reaches our control endpoint; None: queue only
        self.identity = identity
        self.api = api
        self.executors = executors
        self.retry = retry
        self.worker_id = str(uuid.uuid4())
        # Verifies what the API signs for this runtime: control requests and proxy tokens.
        self.signing_key = identity.signing_key()
        keys = identity.runtime_keys()
        self.offers = executors.offers(config.sandbox_tool_dirs, config.allow_unisolated_sandboxes)
        self.lease_seconds = lease_period(config.visibility_seconds or identity.visibility_seconds)
        self.heartbeat_seconds = config.heartbeat_interval_seconds or identity.heartbeat_interval_seconds
        self.transport: QueueTransport = (
            SqsTransport(identity.jobs_queue_url, identity.control_queue_url)
            if identity.queue_mode == "sqs"
            else LeaseTransport(api)
        )
        self.draining = asyncio.Event()
        self.revoked = asyncio.Event()
        mailbox = Mailbox(self.transport)
        self.jobs = JobRunner(config, api, mailbox, executors, retry, worker_id=self.worker_id,
                              lease_seconds=self.lease_seconds, proxy_key=self.signing_key,
                              sealing_key=keys.sealing if keys else None, draining=self.draining)
        self.control = ControlHandling(executors, self.jobs, api, mailbox)
        self.control_tasks = TaskSet()
        self.slots = Slots(config.max_concurrent_jobs)

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, shutdown: ShutdownSignal) -> Outcome:
        log(logger, logging.INFO, "worker started", runtime_id=self.identity.runtime_id, worker_id=self.worker_id,
            queue_mode=self.identity.queue_mode, max_concurrent_jobs=self.config.max_concurrent_jobs,
            capabilities=sorted(self.executors.executors),
            verifies_with="runtime key" if self.identity.runtime_key else "runtime token digest (no runtime key)")
        sender = self.jobs.sender
        heartbeats = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        background = [
            asyncio.create_task(sender.run(), name="event-sender"),
            heartbeats,
            asyncio.create_task(self._control_loop(), name="control-loop"),
        ]
        job_loop: asyncio.Task | None = None
        try:
            # Events left by a previous run go first: their claims may still be live.
            await wait_first(sender.flush(None), shutdown.requested.wait(), self.revoked.wait(), *background)
            if not (shutdown.requested.is_set() or self.revoked.is_set()):
                job_loop = asyncio.create_task(self._job_loop(), name="job-loop")
                await wait_first(shutdown.requested.wait(), self.revoked.wait(), job_loop, *background)
            crashed = [
                task
                for task in [*background, job_loop]
                if task is not None and task.done() and not task.cancelled() and task.exception() is not None
            ]
            for task in crashed:
                log(logger, logging.CRITICAL, "worker task failed", task=task.get_name(), exc_info=task.exception())
            await self._shut_down(job_loop, shutdown, heartbeats, revoked=self.revoked.is_set())
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if self.revoked.is_set():
            return Outcome.revoked
        return Outcome.failed if crashed else Outcome.stopped

    async def _shut_down(self, job_loop: asyncio.Task | None, shutdown: ShutdownSignal, heartbeats: asyncio.Task,
                         revoked: bool) -> None:
        self.draining.set()
        self.jobs.release(self.jobs.long_lived())
        if job_loop is not None and not job_loop.done():
            await job_loop  # it ends after its in-flight receive, releasing whatever that returned
        executing = [run for run in self.jobs.executing() if run.stop_reason is None]  # not released already
        if executing and not revoked:
            log(logger, logging.INFO, "waiting for running jobs", jobs=len(executing),
                grace_seconds=self.config.stop_grace_seconds)
            await wait_first(
                asyncio.gather(*(run.executed.wait() for run in executing)),
                shutdown.hurry.wait(),
                timeout=self.config.stop_grace_seconds,
            )
        self.jobs.release_all()
        if not revoked:
            # Stopped executors get their grace; finished jobs get a chance to deliver and delete.
            await self.jobs.tasks.wait(self.config.cancel_grace_seconds + self.config.flush_timeout_seconds)
            if not await self.jobs.sender.flush(self.config.flush_timeout_seconds):
                log(logger, logging.WARNING, "API unreachable; undelivered events stay spooled for the next start")
            heartbeats.cancel()  # so no regular heartbeat follows the last one
            await asyncio.gather(heartbeats, return_exceptions=True)
            await self._last_heartbeat()
        await self.jobs.tasks.cancel()
        await self.control_tasks.cancel()
        log(logger, logging.INFO, "worker stopped", runtime_id=self.identity.runtime_id)

    # --- heartbeat ------------------------------------------------------------------------

    def _heartbeat(self, exiting: bool = False) -> HeartbeatRequest:
        return HeartbeatRequest(
            active_jobs=len(self.jobs.executing()),
            free_disk_bytes=registry.free_disk_bytes(self.config.data_dir),
            load=registry.load_average(),
            draining=self.draining.is_set(),
            control_url=self.control_url,
            jobs=self.jobs.held(),
            offers=self.offers,
            package_cache=self._package_cache(),
            exiting=exiting,
        )

    def _package_cache(self) -> PackageCacheUsage | None:
        packages = self.executors.host.packages
        if packages is None:
            return None
        usage = packages.summary()  # least recently used first: a heartbeat carries the newest
        return usage.model_copy(update={"entries": usage.entries[-MAX_REPORTED_PACKAGES:]})

    async def _last_heartbeat(self) -> None:
        """Tell the API this process is exiting, so it need not wait for missed heartbeats to know."""
        try:
            await asyncio.wait_for(self.api.heartbeat(self._heartbeat(exiting=True)),
                                   timeout=self.config.flush_timeout_seconds)
        except (ApiError, TimeoutError) as exc:
            log(logger, logging.WARNING, "last heartbeat failed", error=str(exc))

    async def _heartbeat_loop(self) -> None:
        while True:
            request = self._heartbeat()
            try:
                response = await self.api.heartbeat(request)
            except Unauthorized:
                log(logger, logging.ERROR, "runtime token revoked: the API refused the heartbeat",
                    runtime_id=self.identity.runtime_id)
                self.revoked.set()
                return
            except ApiError as exc:
                log(logger, logging.WARNING, "heartbeat failed", error=str(exc))
            else:
                if self.config.heartbeat_interval_seconds is None:
                    self.heartbeat_seconds = response.heartbeat_interval_seconds
            await asyncio.sleep(self.heartbeat_seconds)

    # --- receiving ------------------------------------------------------------------------

    async def _job_loop(self) -> None:
        while (slot := await self.slots.acquire(unless=self.draining)) is not None:
            try:
                messages = await self._receive("jobs", 1, self.lease_seconds + VISIBILITY_MARGIN_SECONDS)
            except RetryStopped:
                slot.release()
                return
            if messages:
                self.jobs.start(messages[0], slot)
            else:
                slot.release()

    async def _control_loop(self) -> None:
        while True:
            for received in await self._receive("control", 10, self.lease_seconds):
                self.control_tasks.spawn(self.control.handle_queued(received))

    async def _receive(self, queue: QueueName, max_messages: int, visibility_seconds: int) -> list[ReceivedMessage]:
        """The next messages (none after a long poll's wait), retried while the queue is unreachable;
        the job queue stops retrying once the worker drains."""

        def failed(error: Exception, delay: float) -> None:
            log(logger, logging.WARNING, f"receiving from the {queue} queue failed; backing off", error=str(error),
                retry_in_seconds=round(delay, 2))

        return await self.retry.until_done(
            lambda: self.transport.receive(queue, max_messages, self.config.poll_wait_seconds, visibility_seconds),
            retry_on=QueueError,
            on_failure=failed,
            stop=self.draining if queue == "jobs" else None,
        )
