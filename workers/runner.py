"""The runtime worker: registers, heartbeats, takes jobs from its queue, runs them, reports back.

One job: receive the message (only while a slot is free), claim it (a duplicate delivery is
refused and its message deleted), run the executor until it returns, fails, is cancelled or
passes `expires_at`, post the final event through the spool, and delete the message once that
event is delivered. Meanwhile a keeper renews the claim lease and keeps the message invisible.

The message is always kept invisible for longer than the claim lease (`VISIBILITY_MARGIN_SECONDS`),
so if this worker dies, the redelivery finds the lease lapsed and claims the job, rather than
seeing it still claimed and dropping it.

On SIGTERM/SIGINT the worker stops receiving, lets running jobs finish for `stop_grace_seconds`
(a second signal ends the grace at once), then stops the rest and releases their messages so
another runtime takes them promptly, flushes the spool and exits 0.
"""

import asyncio
import functools
import hashlib
import importlib.metadata
import logging
import math
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Awaitable, TypeVar

from pydantic import ValidationError

from app.contract.messages import (FINAL_JOB_STATUSES, ClaimRequest, ClaimResponse, ControlMessage, ControlReply,
    EventStatus, HeartbeatRequest, JobMessage, LeaseRenewal, QueueEnvelope, RegisterRequest)
from workers.api_client import (
    ApiError,
    ApiUnavailable,
    Backoff,
    RequestRejected,
    RuntimeApiClient,
    StaleClaim,
    Unauthorized,
)
from app.contract.logs import log
from workers.config import RuntimeIdentity, WorkerConfig, configure_logging, safe_path_component, split_host_port
from workers import ec2_metadata
from workers.control_server import ControlServer
from workers.executors import registry
from workers.executors.base import Executor, ExecutorError, JobContext
from workers.spool import EventSender, EventSpool, SpoolClaim, SpoolClosed
from workers.transport import LeaseTransport, QueueError, QueueTransport, ReceivedMessage, SqsTransport

VISIBILITY_MARGIN_SECONDS = 2
RELEASE_LEASE_SECONDS = 5  # the shortest claim lease the API grants
POISON_VISIBILITY_SECONDS = 2  # an unreadable message comes back soon, and reaches the DLQ after maxReceiveCount
MAX_CLAIM_LEASE_SECONDS = 3600
RESERVED_JOB_STATUSES = frozenset({EventStatus.start.value, *(status.value for status in FINAL_JOB_STATUSES)})

logger = logging.getLogger("berth.worker")
_Message = TypeVar("_Message", JobMessage, ControlMessage)


def run_worker(config: WorkerConfig) -> int:
    """Run until stopped by SIGTERM/SIGINT (0) or until the runtime cannot go on (1)."""
    configure_logging(config.log_level)
    return asyncio.run(_serve(config))


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


async def _serve(config: WorkerConfig) -> int:
    shutdown = ShutdownSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    executors = await asyncio.to_thread(registry.available)
    control: ControlServer | None = None
    if config.control_listen:
        try:
            advertised_host = None
            if config.control_host_from_ec2_metadata:
                advertised_host = await asyncio.to_thread(ec2_metadata.private_ipv4)
            control = ControlServer(*split_host_port(config.control_listen), config.control_url, advertised_host)
        except ec2_metadata.MetadataUnavailable as exc:
            log(logger, logging.ERROR, "cannot tell the API where to reach this worker", error=str(exc))
            return 1
        except OSError as exc:
            log(logger, logging.ERROR, "cannot listen for control requests", address=config.control_listen,
                error=str(exc))
            return 1
        await control.start()
        log(logger, logging.INFO, "serving control requests", address=control.address, url=control.url)
    try:
        return await _serve_registrations(config, executors, shutdown, control)
    finally:
        if control is not None:
            await control.stop()


async def _serve_registrations(
    config: WorkerConfig, executors: dict[str, Executor], shutdown: ShutdownSignal, control: ControlServer | None
) -> int:
    control_url = control.url if control is not None else None
    reuse_saved = True
    while True:
        api = RuntimeApiClient(config.api_url)
        try:
            identity = await _registration(config, api, executors, shutdown, reuse_saved, control_url)
            if identity is None:
                return 0 if shutdown.requested.is_set() else 1
            api.runtime_token = identity.runtime_token
            worker = Worker(config, identity, api, executors, control_url)
            if control is not None:
                control.endpoint.attach(worker.proxy_key, worker._answer)
            try:
                outcome = await worker.run(shutdown)
            finally:
                if control is not None:
                    control.endpoint.detach()
        finally:
            await api.aclose()
        if outcome is Outcome.stopped:
            return 0
        if outcome is Outcome.failed:
            return 1
        if config.join_token is None:
            log(logger, logging.ERROR, "runtime token revoked and no join token to register again; exiting")
            return 1
        log(logger, logging.WARNING, "runtime token revoked; registering again with the join token")
        reuse_saved = False


async def _registration(
    config: WorkerConfig,
    api: RuntimeApiClient,
    executors: dict[str, Executor],
    shutdown: ShutdownSignal,
    reuse_saved: bool,
    control_url: str | None = None,
) -> RuntimeIdentity | None:
    """The saved registration for this API, else a new one made with the join token."""
    try:
        saved = RuntimeIdentity.load(config.runtime_file) if reuse_saved else None
    except ValueError as exc:
        log(logger, logging.ERROR, "saved registration unreadable; ignoring it", error=_describe(exc))
        saved = None
    if saved is not None and saved.api_url == config.api_url:
        log(logger, logging.INFO, "using saved registration", runtime_id=saved.runtime_id, queue_mode=saved.queue_mode)
        return saved
    if config.join_token is None:
        log(logger, logging.ERROR, "not registered with this API and no join token given", api=config.api_url)
        return None
    try:
        request = await asyncio.to_thread(_register_request, config, executors, control_url)
    except ValidationError as exc:
        # Without the inputs: one of them is the join token.
        problems = exc.errors(include_input=False, include_url=False)
        log(logger, logging.ERROR, "invalid registration settings", errors=problems)
        return None
    backoff = Backoff(config.retry_max_seconds)
    while not shutdown.requested.is_set():
        try:
            response = await api.register(request)
        except ApiUnavailable as exc:
            log(logger, logging.WARNING, "API unreachable; will retry registering", error=str(exc))
            await _wait_first(backoff.wait(), shutdown.requested.wait())
            continue
        except Unauthorized:
            log(logger, logging.ERROR, "join token rejected (invalid, used up or expired)")
            return None
        except ApiError as exc:
            log(logger, logging.ERROR, "registration refused", error=str(exc))
            return None
        identity = RuntimeIdentity(**response.model_dump(), api_url=config.api_url, queue_mode=config.queue_mode)
        identity.save(config.runtime_file)
        log(logger, logging.INFO, "registered", runtime_id=identity.runtime_id, capabilities=request.capabilities)
        return identity
    return None


def _register_request(
    config: WorkerConfig, executors: dict[str, Executor], control_url: str | None = None
) -> RegisterRequest:
    return RegisterRequest(
        join_token=config.join_token.get_secret_value(),
        name=config.name,
        capabilities=sorted(executors),
        runtimes=registry.detect_runtimes(),
        # Facts, so they win over given labels: the API's dispatch reads the sandbox driver.
        labels={**config.labels, **registry.sandbox_labels(config.allow_unisolated_sandboxes)},
        gpus=registry.detect_gpus(),
        max_concurrent_jobs=config.max_concurrent_jobs,
        free_disk_bytes=registry.free_disk_bytes(config.data_dir),
        version=_version(),
        queue_mode=config.queue_mode,
        control_url=control_url,
    )


def _version() -> str:
    try:
        return importlib.metadata.version("berth")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class StopReason(Enum):
    cancelled = "cancelled"  # a user asked: final event `cancelled`
    expired = "expired"  # past expires_at: final event `expired`
    stale = "stale"  # another worker owns the job: no event, message left alone
    released = "released"  # this worker is stopping: no final event, message released


class _Slot:
    """One of the worker's `max_concurrent_jobs`, given back exactly once."""

    def __init__(self, semaphore: asyncio.Semaphore):
        self._semaphore = semaphore
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()


@dataclass
class JobRun:
    received: ReceivedMessage
    message: JobMessage
    claim_id: str
    slot: _Slot
    lease_deadline: float  # monotonic time the claim lease lapses unless renewed
    ctx: JobContext | None = None
    stop_reason: StopReason | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    executed: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self, reason: StopReason) -> None:
        # The first reason wins, except that a stale claim overrides all: its events are unwanted.
        if self.stop_reason is None or reason is StopReason.stale:
            self.stop_reason = reason
        self.ctx.cancelled.set()
        self.stopped.set()


@dataclass(frozen=True)
class FinalEvent:
    status: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Worker:
    """One registration's worth of work: the loops, the running jobs and their delivery."""

    def __init__(
        self,
        config: WorkerConfig,
        identity: RuntimeIdentity,
        api: RuntimeApiClient,
        executors: dict[str, Executor],
        control_url: str | None = None,
    ):
        self.config = config
        self.control_url = control_url  # where the API reaches our control endpoint; None: queue only
        self.identity = identity
        self.api = api
        self.executors = executors
        self.worker_id = str(uuid.uuid4())
        # The API signs proxy tokens with the digest of our runtime token; we derive the same key.
        self.proxy_key = hashlib.sha256(identity.runtime_token.encode()).hexdigest()
        # One period for both the claim lease and message visibility (plus the margin).
        visibility = config.visibility_seconds or identity.visibility_seconds
        self.lease_seconds = min(max(visibility, RELEASE_LEASE_SECONDS), MAX_CLAIM_LEASE_SECONDS)
        self.heartbeat_seconds = config.heartbeat_interval_seconds or identity.heartbeat_interval_seconds
        self.transport: QueueTransport = (
            SqsTransport(identity.jobs_queue_url, identity.control_queue_url)
            if identity.queue_mode == "sqs"
            else LeaseTransport(api)
        )
        self.spool = EventSpool(config.spool_dir)
        self.sender = EventSender(
            self.spool,
            api,
            config.retry_max_seconds,
            on_dropped=lambda claim_id: self._stop_run(claim_id, StopReason.stale),
            on_cancel_requested=lambda claim_id: self._stop_run(claim_id, StopReason.cancelled),
        )
        self.slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self.runs: dict[str, JobRun] = {}  # by claim id
        self.job_tasks: set[asyncio.Task] = set()
        self.control_tasks: set[asyncio.Task] = set()
        self.draining = asyncio.Event()
        self.revoked = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self, shutdown: ShutdownSignal) -> Outcome:
        log(logger, logging.INFO, "worker started", runtime_id=self.identity.runtime_id, worker_id=self.worker_id,
            queue_mode=self.identity.queue_mode, max_concurrent_jobs=self.config.max_concurrent_jobs,
            capabilities=sorted(self.executors))
        background = [
            asyncio.create_task(self.sender.run(), name="event-sender"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._control_loop(), name="control-loop"),
        ]
        job_loop: asyncio.Task | None = None
        try:
            # Events left by a previous run go first: their claims may still be live.
            await _wait_first(self.sender.flush(None), shutdown.requested.wait(), self.revoked.wait(), *background)
            if not (shutdown.requested.is_set() or self.revoked.is_set()):
                job_loop = asyncio.create_task(self._job_loop(), name="job-loop")
                await _wait_first(shutdown.requested.wait(), self.revoked.wait(), job_loop, *background)
            crashed = [
                task
                for task in [*background, job_loop]
                if task is not None and task.done() and not task.cancelled() and task.exception() is not None
            ]
            for task in crashed:
                log(logger, logging.CRITICAL, "worker task failed", task=task.get_name(), exc_info=task.exception())
            await self._shut_down(job_loop, shutdown, revoked=self.revoked.is_set())
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if self.revoked.is_set():
            return Outcome.revoked
        return Outcome.failed if crashed else Outcome.stopped

    async def _shut_down(self, job_loop: asyncio.Task | None, shutdown: ShutdownSignal, revoked: bool) -> None:
        self.draining.set()
        if job_loop is not None and not job_loop.done():
            await job_loop  # it ends after its in-flight receive, releasing whatever that returned
        executing = [run for run in self.runs.values() if not run.executed.is_set()]
        if executing and not revoked:
            log(logger, logging.INFO, "waiting for running jobs", jobs=len(executing),
                grace_seconds=self.config.stop_grace_seconds)
            await _wait_first(
                asyncio.gather(*(run.executed.wait() for run in executing)),
                shutdown.hurry.wait(),
                timeout=self.config.stop_grace_seconds,
            )
        for run in list(self.runs.values()):
            if not run.executed.is_set():
                log(logger, logging.INFO, "releasing job for another runtime", job_id=run.message.job_id)
                run.stop(StopReason.released)
        if self.job_tasks and not revoked:
            # Stopped executors get their grace; finished jobs get a chance to deliver and delete.
            patience = self.config.cancel_grace_seconds + self.config.flush_timeout_seconds
            await asyncio.wait(set(self.job_tasks), timeout=patience)
        if not revoked and not await self.sender.flush(self.config.flush_timeout_seconds):
            log(logger, logging.WARNING, "API unreachable; undelivered events stay spooled for the next start")
        for task in [*self.job_tasks, *self.control_tasks]:
            task.cancel()
        await asyncio.gather(*self.job_tasks, *self.control_tasks, return_exceptions=True)
        log(logger, logging.INFO, "worker stopped", runtime_id=self.identity.runtime_id)

    def _spawn(self, coroutine: Awaitable[None], tasks: set[asyncio.Task]) -> None:
        task = asyncio.ensure_future(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # --- heartbeat ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            request = HeartbeatRequest(
                active_jobs=sum(1 for run in self.runs.values() if not run.executed.is_set()),
                free_disk_bytes=registry.free_disk_bytes(self.config.data_dir),
                load=registry.load_average(),
                draining=self.draining.is_set(),
                control_url=self.control_url,
            )
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

    # --- jobs -----------------------------------------------------------------------------

    async def _job_loop(self) -> None:
        backoff = Backoff(self.config.retry_max_seconds)
        while await self._acquire_slot():
            slot = _Slot(self.slots)
            try:
                messages = await self.transport.receive(
                    "jobs", 1, self.config.poll_wait_seconds, self.lease_seconds + VISIBILITY_MARGIN_SECONDS
                )
            except QueueError as exc:
                slot.release()
                log(logger, logging.WARNING, "receiving jobs failed; backing off", error=str(exc))
                await _wait_first(backoff.wait(), self.draining.wait())
                continue
            backoff.reset()
            if not messages:
                slot.release()
                continue
            self._spawn(self._handle_job_message(messages[0], slot), self.job_tasks)

    async def _acquire_slot(self) -> bool:
        """Wait for a free slot; False once the worker is draining."""
        acquire = asyncio.ensure_future(self.slots.acquire())
        await _wait_first(acquire, self.draining.wait())
        if not acquire.done():
            acquire.cancel()
            return False
        if self.draining.is_set():
            self.slots.release()
            return False
        return True

    async def _handle_job_message(self, received: ReceivedMessage, slot: _Slot) -> None:
        try:
            try:
                message = _parse(received, JobMessage)
                safe_path_component(message.job_id)  # it names the work directory
            except ValueError as exc:
                await self._set_aside_unreadable(received, exc)
                return
            if self.draining.is_set():
                await self._change_visibility(received, 0)  # not claimed: anyone may take it now
                return
            claim = await self._claim(received, message)
            if claim is not None:
                await self._run_claimed(received, message, claim, slot)
        except Exception:
            log(logger, logging.ERROR, "job handling failed; its message will be redelivered", exc_info=True)
        finally:
            slot.release()

    async def _claim(self, received: ReceivedMessage, message: JobMessage) -> ClaimResponse | None:
        request = ClaimRequest(dispatch=message.dispatch, worker_id=self.worker_id, lease_seconds=self.lease_seconds,
                               attempt=received.receive_count, start_seq=message.start_seq)
        try:
            claim = await self.api.claim(message.workspace_id, message.job_id, request)
        except RequestRejected as exc:
            if exc.status == 404:  # no such job (it was never created, or is gone): nothing can run it
                log(logger, logging.INFO, "claimed job does not exist; dropping its message", job_id=message.job_id)
                await self._delete(received)
                return None
            log(logger, logging.ERROR, "API refused the claim; treating the message as unprocessable",
                job_id=message.job_id, error=str(exc))
            await self._change_visibility(received, POISON_VISIBILITY_SECONDS)
            return None
        except ApiError as exc:
            # Unreachable (or 401/409): the claim may still have been granted with the answer lost,
            # so the message stays hidden until such a lease would have lapsed.
            log(logger, logging.WARNING, "could not claim job; leaving its message", job_id=message.job_id,
                error=str(exc))
            await self._change_visibility(received, self.lease_seconds + VISIBILITY_MARGIN_SECONDS)
            return None
        if not claim.claimed:
            log(logger, logging.INFO, "job not claimed; dropping its message", job_id=message.job_id,
                status=claim.status.value, reason=claim.reason)
            await self._delete(received)
            return None
        return claim

    async def _run_claimed(
        self, received: ReceivedMessage, message: JobMessage, claim: ClaimResponse, slot: _Slot
    ) -> None:
        # Extended while the job starts (the receive already hid it for a lease), settled before any delete.
        extending = asyncio.create_task(
            self._change_visibility(received, self.lease_seconds + VISIBILITY_MARGIN_SECONDS))
        run = JobRun(
            received=received,
            message=message,
            claim_id=claim.claim_id,
            slot=slot,
            lease_deadline=time.monotonic() + self.lease_seconds,
        )
        work_dir = self.config.job_work_dir(message.job_id)
        run.ctx = JobContext(
            job_id=message.job_id,
            workspace_id=message.workspace_id,
            job_type=message.type.value,
            payload=message.payload,
            expires_at=message.expires_at,
            emit=functools.partial(self._emit_for_executor, run),
            work_dir=str(work_dir),
            policy=message.policy,
            proxy_key=self.proxy_key,
            sandbox_tool_dirs=tuple(str(d) for d in self.config.sandbox_tool_dirs),
            allow_unisolated_sandboxes=self.config.allow_unisolated_sandboxes,
        )
        spool_claim = SpoolClaim(claim_id=claim.claim_id, workspace_id=message.workspace_id, job_id=message.job_id)
        await asyncio.to_thread(self.spool.open, spool_claim, claim.next_seq)
        self.runs[claim.claim_id] = run
        keeper = asyncio.create_task(self._keep(run), name=f"keeper-{message.job_id}")
        log(logger, logging.INFO, "job claimed", job_id=message.job_id, type=message.type.value,
            attempt=received.receive_count, next_seq=claim.next_seq)
        try:
            await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
            final = await self._execute(run)
            await extending
            run.executed.set()
            slot.release()
            if final is not None:
                await self._append(run, "job", final.status, final.message, final.data)
            elif run.stop_reason is StopReason.stale:
                await self.sender.drop(run.claim_id)
            if run.stop_reason is StopReason.released:
                # Record the progress so far (so the next claimant continues after it), then let go.
                await _wait_first(self.sender.finish(run.claim_id), timeout=self.config.flush_timeout_seconds)
                keeper.cancel()
                await self._release(run)
                return
            delivered = await self.sender.finish(run.claim_id)
            keeper.cancel()
            if delivered and final is not None:
                await self._delete(received)
                log(logger, logging.INFO, "job finished", job_id=message.job_id, status=final.status)
            else:
                log(logger, logging.WARNING, "job's claim is no longer ours; its message is left alone",
                    job_id=message.job_id)
        finally:
            keeper.cancel()
            await asyncio.wait({extending})
            run.executed.set()
            self.runs.pop(claim.claim_id, None)
            await asyncio.to_thread(shutil.rmtree, work_dir, True)

    async def _execute(self, run: JobRun) -> FinalEvent | None:
        """Run the executor to its end, or stop it; the final event it earned (None: no final event)."""
        message = run.message  # the claim recorded the job's `start` event
        executor = self.executors.get(message.type.value)
        if executor is None:
            return FinalEvent("error", f"this runtime cannot run {message.type.value} jobs")
        if message.expires_at <= time.time():
            run.stop(StopReason.expired)
            return _final_for(run, None)
        task = asyncio.create_task(executor(run.ctx), name=f"executor-{message.job_id}")
        try:
            # The deadline may move while the job runs (a sandbox's TTL is changed): re-arm then.
            while (remaining := run.ctx.expires_at - time.time()) > 0:
                run.ctx.deadline_changed.clear()
                await _wait_first(task, run.stopped.wait(), run.ctx.deadline_changed.wait(), timeout=remaining)
                if task.done() or run.stopped.is_set():
                    break
            if not task.done():
                run.stop(StopReason.expired)  # no-op if a stop reason came first
                await self._wind_down(task)
            return _final_for(run, task)
        finally:
            task.cancel()  # only matters when this job's own task is being cancelled

    async def _wind_down(self, task: asyncio.Task) -> None:
        """ctx.cancelled is set: give the executor its grace to return, then cancel it."""
        await asyncio.wait({task}, timeout=self.config.cancel_grace_seconds)
        if not task.done():
            log(logger, logging.WARNING, "executor ignored ctx.cancelled; cancelling it", task=task.get_name())
            task.cancel()
            await asyncio.wait({task}, timeout=self.config.cancel_grace_seconds)

    async def _emit_for_executor(
        self, run: JobRun, step: str, status: str, message: str = "", data: dict | None = None
    ) -> None:
        if step == "job" and status in RESERVED_JOB_STATUSES:
            raise ValueError(f"the job's {status!r} event is the worker's to emit")
        await self._append(run, step, status, message, data)

    async def _append(self, run: JobRun, step: str, status: str, message: str = "", data: dict | None = None) -> None:
        try:
            await asyncio.to_thread(self.spool.append, run.claim_id, step, status, message, data)
        except SpoolClosed:
            return  # the claim went stale: this job's events are no longer wanted
        self.sender.notify()

    async def _keep(self, run: JobRun) -> None:
        """Renew the claim lease, then keep the message invisible past it, every third of a lease."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            renewal = LeaseRenewal(claim_id=run.claim_id, lease_seconds=self.lease_seconds)
            try:
                renewed = await self.api.renew_lease(run.message.workspace_id, run.message.job_id, renewal)
            except (StaleClaim, RequestRejected) as exc:
                await self._lost_claim(run, str(exc))
                return
            except ApiError as exc:
                # Nobody can claim the job while the API is down either, so keep the message hidden.
                log(logger, logging.WARNING, "lease renewal failed", job_id=run.message.job_id, error=str(exc))
            else:
                if not renewed.ok:
                    await self._lost_claim(run, "lease not renewed")
                    return
                run.lease_deadline = time.monotonic() + self.lease_seconds
                if renewed.cancel_requested:
                    self._stop_run(run.claim_id, StopReason.cancelled)
            await self._change_visibility(run.received, self.lease_seconds + VISIBILITY_MARGIN_SECONDS)

    async def _lost_claim(self, run: JobRun, reason: str) -> None:
        log(logger, logging.WARNING, "claim is stale; stopping the job", job_id=run.message.job_id, reason=reason)
        run.stop(StopReason.stale)
        await self.sender.drop(run.claim_id)

    async def _release(self, run: JobRun) -> None:
        """Shorten the claim lease and make the message visible right after it lapses."""
        renewal = LeaseRenewal(claim_id=run.claim_id, lease_seconds=RELEASE_LEASE_SECONDS)
        try:
            await self.api.renew_lease(run.message.workspace_id, run.message.job_id, renewal)
            run.lease_deadline = time.monotonic() + RELEASE_LEASE_SECONDS
        except ApiError as exc:
            log(logger, logging.WARNING, "could not shorten the claim lease", job_id=run.message.job_id, error=str(exc))
        lease_left = max(0, math.ceil(run.lease_deadline - time.monotonic()))
        await self._change_visibility(run.received, lease_left + VISIBILITY_MARGIN_SECONDS)

    def _stop_run(self, claim_id: str, reason: StopReason) -> None:
        run = self.runs.get(claim_id)
        if run is not None and not run.executed.is_set():
            log(logger, logging.INFO, "stopping job", job_id=run.message.job_id, reason=reason.value)
            run.stop(reason)

    # --- control --------------------------------------------------------------------------

    async def _control_loop(self) -> None:
        backoff = Backoff(self.config.retry_max_seconds)
        while True:
            try:
                messages = await self.transport.receive(
                    "control", 10, self.config.poll_wait_seconds, self.lease_seconds
                )
            except QueueError as exc:
                log(logger, logging.WARNING, "receiving control messages failed; backing off", error=str(exc))
                await backoff.wait()
                continue
            backoff.reset()
            for received in messages:
                self._spawn(self._handle_control_message(received), self.control_tasks)

    async def _handle_control_message(self, received: ReceivedMessage) -> None:
        try:
            message = _parse(received, ControlMessage)
        except ValueError as exc:
            await self._set_aside_unreadable(received, exc)
            return
        time_left = message.deadline - time.time()
        if time_left <= 0:
            log(logger, logging.INFO, "control message past its deadline; dropped", action=message.action,
                job_id=message.job_id)
            await self._delete(received)
            return
        try:
            reply = await asyncio.wait_for(self._answer(message), timeout=time_left)
        except TimeoutError:
            log(logger, logging.WARNING, "control action outlived its deadline; nobody awaits the answer",
                action=message.action, job_id=message.job_id)
            await self._delete(received)
            return
        try:
            await self.api.reply_control(message.workspace_id, message.request_id, reply)
        except (ApiUnavailable, Unauthorized) as exc:
            # Left for redelivery: answered again if still within its deadline.
            log(logger, logging.WARNING, "control reply failed", action=message.action, error=str(exc))
            return
        except ApiError as exc:
            log(logger, logging.WARNING, "API refused the control reply", action=message.action, error=str(exc))
        await self._delete(received)

    async def _answer(self, message: ControlMessage) -> ControlReply:
        handler = self._cancel if message.action == "cancel" else registry.control_handler(message.action)
        if handler is None:
            return ControlReply(ok=False, error=f"unsupported action {message.action!r} on this runtime")
        try:
            return ControlReply(ok=True, result=await handler(message))
        except ExecutorError as exc:
            return ControlReply(ok=False, error=str(exc), code=exc.code)
        except Exception as exc:
            log(logger, logging.ERROR, "control action failed", action=message.action, exc_info=True)
            return ControlReply(ok=False, error=f"{message.action} failed unexpectedly ({type(exc).__name__})")

    async def _cancel(self, message: ControlMessage) -> dict[str, Any]:
        runs = [
            run
            for run in self.runs.values()
            if run.message.job_id == message.job_id
            and run.message.workspace_id == message.workspace_id
            and not run.executed.is_set()
        ]
        if not runs:
            raise ExecutorError(f"job {message.job_id} is not running on this runtime", code="not_running")
        for run in runs:
            self._stop_run(run.claim_id, StopReason.cancelled)
        return {"job_id": message.job_id, "cancelled": True}

    # --- queue helpers --------------------------------------------------------------------

    async def _set_aside_unreadable(self, received: ReceivedMessage, error: Exception) -> None:
        # Not deleted: it comes back shortly and, after maxReceiveCount, lands in the DLQ where
        # the API's dead-letter consumer ends its job with a reason.
        log(logger, logging.ERROR, "unreadable queue message", queue=received.queue,
            attempt=received.receive_count, error=_describe(error))
        await self._change_visibility(received, POISON_VISIBILITY_SECONDS)

    async def _delete(self, received: ReceivedMessage) -> None:
        try:
            await self.transport.delete(received.queue, received.receipt)
        except QueueError as exc:
            # A redelivery is harmless: the claim refuses it, or the deadline has passed.
            log(logger, logging.WARNING, "deleting a message failed", queue=received.queue, error=str(exc))

    async def _change_visibility(self, received: ReceivedMessage, seconds: int) -> None:
        try:
            await self.transport.change_visibility(received.queue, received.receipt, seconds)
        except QueueError as exc:
            log(logger, logging.WARNING, "changing message visibility failed", queue=received.queue, error=str(exc))


def _parse(received: ReceivedMessage, kind: type[_Message]) -> _Message:
    """The queue message of the kind this queue carries; ValueError for anything else."""
    message = QueueEnvelope.model_validate_json(received.body).message
    if not isinstance(message, kind):
        raise ValueError(f"a {message.kind} message on the {received.queue} queue")
    return message


def _describe(error: Exception) -> str:
    """Why a message did not parse, without quoting it (a payload may carry credentials)."""
    if isinstance(error, ValidationError):
        problems = error.errors(include_input=False, include_url=False)
        return "; ".join(f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems)[:1000]
    return str(error)[:1000]


def _final_for(run: JobRun, task: asyncio.Task | None) -> FinalEvent | None:
    if run.stop_reason in (StopReason.stale, StopReason.released):
        return None
    if run.stop_reason is StopReason.cancelled:
        return FinalEvent("cancelled", "cancelled on request")
    if run.stop_reason is StopReason.expired:
        return FinalEvent("expired", "the job passed its expiry time")
    if task.cancelled():
        return FinalEvent("error", "the executor was cancelled unexpectedly")
    error = task.exception()
    if error is None:
        return FinalEvent("complete", "", {"result": task.result()})
    if isinstance(error, ExecutorError):
        return FinalEvent("error", str(error))
    log(logger, logging.ERROR, "executor failed", job_id=run.message.job_id, exc_info=error)
    return FinalEvent("error", f"the executor failed unexpectedly ({type(error).__name__})")


async def _wait_first(*awaitables: Awaitable[Any], timeout: float | None = None) -> None:
    """Return when the first awaitable completes (or at `timeout`). Coroutines given here are
    cancelled afterwards; tasks and futures given here are left running."""
    owned = [asyncio.ensure_future(a) for a in awaitables if not asyncio.isfuture(a)]
    shared = [a for a in awaitables if asyncio.isfuture(a)]
    try:
        await asyncio.wait([*owned, *shared], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
