"""One job on this worker, from its queue message to its final event.

Claim it (a duplicate delivery is refused and its message deleted), open its sealed secrets, run
the executor until it returns, fails, is cancelled or passes `expires_at`, post the final event
through the spool, and delete the message once that event is delivered. Meanwhile a keeper renews
the claim lease and keeps the message invisible. A job the stopping worker cannot finish is
released: its progress is delivered, the API is told (`LeaseRenewal.release`, with the lease
shortened) and its message made visible right after, for another runtime.

The message is always kept invisible for longer than the claim lease (`VISIBILITY_MARGIN_SECONDS`),
so if this worker dies, the redelivery finds the lease lapsed and claims the job, rather than
seeing it still claimed and dropping it. (One module past 400 lines: claim, lease keeping, release
and the final event share one job's state, and split apart they would pass it around whole.)
"""

import asyncio
import functools
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from app.contract.logs import log
from app.contract.messages import (
    FINAL_JOB_STATUSES,
    ClaimRequest,
    ClaimResponse,
    ControlMessage,
    EventStatus,
    JobMessage,
    LeaseRenewal,
    RunningJob,
)
from workers.api_client import ApiError, RequestRejected, RuntimeApiClient, StaleClaim
from workers.concurrency import Slot, TaskSet, wait_first
from workers.config import WorkerConfig, safe_path_component
from workers.event_sender import EventSender
from workers.executors.base import ExecutorError, JobContext
from workers.executors.registry import ExecutorRegistry
from workers.mailbox import POISON_VISIBILITY_SECONDS, Mailbox, parse
from workers.retry import Retry
from workers.sealed import open_secrets
from workers.spool import EventSpool, SpoolClaim, SpoolClosed
from workers.transport import ReceivedMessage

VISIBILITY_MARGIN_SECONDS = 2
RELEASE_LEASE_SECONDS = 5  # the shortest claim lease the API grants
MAX_CLAIM_LEASE_SECONDS = 3600
RESERVED_JOB_STATUSES = frozenset({EventStatus.start.value, *(status.value for status in FINAL_JOB_STATUSES)})

logger = logging.getLogger("berth.worker")


def lease_period(visibility_seconds: int) -> int:
    """One period for both the claim lease and message visibility (plus the margin)."""
    return min(max(visibility_seconds, RELEASE_LEASE_SECONDS), MAX_CLAIM_LEASE_SECONDS)


class StopReason(Enum):
    cancelled = "cancelled"  # a user asked: final event `cancelled`
    expired = "expired"  # past expires_at: final event `expired`
    stale = "stale"  # another worker owns the job: no event, message left alone
    released = "released"  # this worker is stopping: no final event, message released


@dataclass
class JobRun:
    received: ReceivedMessage
    message: JobMessage
    claim_id: str
    slot: Slot
    ctx: JobContext
    lease_deadline: float  # monotonic time the claim lease lapses unless renewed
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


class JobRunner:
    """The jobs this worker runs, and the spool and sender that deliver their events."""

    def __init__(
        self,
        config: WorkerConfig,
        api: RuntimeApiClient,
        mailbox: Mailbox,
        executors: ExecutorRegistry,
        retry: Retry,
        *,
        worker_id: str,
        lease_seconds: int,
        proxy_key: str,
        sealing_key: bytes | None,
        draining: asyncio.Event,
    ):
        self._config = config
        self._api = api
        self._mailbox = mailbox
        self._executors = executors
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._proxy_key = proxy_key
        self._sealing_key = sealing_key
        self._draining = draining
        self.spool = EventSpool(config.spool_dir)
        self.sender = EventSender(
            self.spool,
            api,
            retry,
            on_dropped=lambda claim_id: self.stop(claim_id, StopReason.stale),
            on_cancel_requested=lambda claim_id: self.stop(claim_id, StopReason.cancelled),
        )
        self.runs: dict[str, JobRun] = {}  # by claim id
        self.tasks = TaskSet()

    def start(self, received: ReceivedMessage, slot: Slot) -> None:
        """Handle a received job message in a task of its own; the slot is given back when it ends."""
        self.tasks.spawn(self._handle(received, slot))

    def executing(self) -> list[JobRun]:
        return [run for run in self.runs.values() if not run.executed.is_set()]

    def stop(self, claim_id: str, reason: StopReason) -> None:
        run = self.runs.get(claim_id)
        if run is not None and not run.executed.is_set():
            log(logger, logging.INFO, "stopping job", job_id=run.message.job_id, reason=reason.value)
            run.stop(reason)

    def held(self) -> list[RunningJob]:
        """Every job this worker holds a claim on, as its heartbeat reports them."""
        return [RunningJob(workspace_id=run.message.workspace_id, job_id=run.message.job_id, claim_id=run.claim_id)
                for run in self.runs.values()]

    def release(self, runs: list[JobRun]) -> None:
        """Stop these jobs, to be released for another runtime."""
        for run in runs:
            if not run.executed.is_set():
                log(logger, logging.INFO, "releasing job for another runtime", job_id=run.message.job_id,
                    type=run.message.type.value)
                run.stop(StopReason.released)

    def release_all(self) -> None:
        self.release(self.executing())

    def long_lived(self) -> list[JobRun]:
        """The executing jobs that run until stopped (sandboxes): waiting for them to finish is futile."""
        return [run for run in self.executing() if run.message.type.value in self._executors.long_lived]

    def replace_secrets(self, message: ControlMessage) -> None:
        """A control message's secrets become its running job's `ctx.secrets` (ExecutorError when
        they do not open); nothing changes for a message without secrets or a job not running here."""
        if message.secrets is None:
            return
        secrets = open_secrets(self._sealing_key, message.secrets, message.job_id)
        for run in self.executing():
            if run.message.job_id == message.job_id and run.message.workspace_id == message.workspace_id:
                run.ctx.secrets = secrets

    async def cancel(self, message: ControlMessage) -> dict[str, Any]:
        """The `cancel` control action."""
        runs = [
            run
            for run in self.executing()
            if run.message.job_id == message.job_id and run.message.workspace_id == message.workspace_id
        ]
        if not runs:
            raise ExecutorError(f"job {message.job_id} is not running on this runtime", code="not_running")
        for run in runs:
            self.stop(run.claim_id, StopReason.cancelled)
        return {"job_id": message.job_id, "cancelled": True}

    # --- from message to claim --------------------------------------------------------------

    async def _handle(self, received: ReceivedMessage, slot: Slot) -> None:
        try:
            try:
                message = parse(received, JobMessage)
                safe_path_component(message.job_id)  # it names the work directory
            except ValueError as exc:
                await self._mailbox.set_aside_unreadable(received, exc)
                return
            if self._draining.is_set():
                await self._mailbox.change_visibility(received, 0)  # not claimed: anyone may take it now
                return
            claim = await self._claim(received, message)
            if claim is not None:
                await self._run_claimed(received, message, claim, slot)
        except Exception:
            log(logger, logging.ERROR, "job handling failed; its message will be redelivered", exc_info=True)
        finally:
            slot.release()

    async def _claim(self, received: ReceivedMessage, message: JobMessage) -> ClaimResponse | None:
        request = ClaimRequest(dispatch=message.dispatch, worker_id=self._worker_id, lease_seconds=self._lease_seconds,
                               attempt=received.receive_count, start_seq=message.start_seq)
        try:
            claim = await self._api.claim(message.workspace_id, message.job_id, request)
        except RequestRejected as exc:
            if exc.status == 404:  # no such job (it was never created, or is gone): nothing can run it
                log(logger, logging.INFO, "claimed job does not exist; dropping its message", job_id=message.job_id)
                await self._mailbox.delete(received)
                return None
            log(logger, logging.ERROR, "API refused the claim; treating the message as unprocessable",
                job_id=message.job_id, error=str(exc))
            await self._mailbox.change_visibility(received, POISON_VISIBILITY_SECONDS)
            return None
        except ApiError as exc:
            # Unreachable (or 401/409): the claim may still have been granted with the answer lost,
            # so the message stays hidden until such a lease would have lapsed.
            log(logger, logging.WARNING, "could not claim job; leaving its message", job_id=message.job_id,
                error=str(exc))
            await self._mailbox.change_visibility(received, self._lease_seconds + VISIBILITY_MARGIN_SECONDS)
            return None
        if not claim.claimed:
            log(logger, logging.INFO, "job not claimed; dropping its message", job_id=message.job_id,
                status=claim.status.value, reason=claim.reason)
            await self._mailbox.delete(received)
            return None
        return claim

    # --- the claimed job --------------------------------------------------------------------

    async def _run_claimed(
        self, received: ReceivedMessage, message: JobMessage, claim: ClaimResponse, slot: Slot
    ) -> None:
        # Extended while the job starts (the receive already hid it for a lease), settled before any delete.
        extending = asyncio.create_task(
            self._mailbox.change_visibility(received, self._lease_seconds + VISIBILITY_MARGIN_SECONDS))
        work_dir = self._config.job_work_dir(message.job_id)
        ctx = JobContext(
            job_id=message.job_id,
            workspace_id=message.workspace_id,
            job_type=message.type.value,
            payload=message.payload,
            expires_at=message.expires_at,
            emit=functools.partial(self._emit_for_executor, claim.claim_id),
            work_dir=str(work_dir),
            policy=message.policy,
            proxy_key=self._proxy_key,
            sandbox_tool_dirs=tuple(str(d) for d in self._config.sandbox_tool_dirs),
            allow_unisolated_sandboxes=self._config.allow_unisolated_sandboxes,
            host=self._executors.host,
        )
        run = JobRun(received=received, message=message, claim_id=claim.claim_id, slot=slot, ctx=ctx,
                     lease_deadline=time.monotonic() + self._lease_seconds)
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
                await self._append(run.claim_id, "job", final.status, final.message, final.data)
            elif run.stop_reason is StopReason.stale:
                await self.sender.drop(run.claim_id)
            if run.stop_reason is StopReason.released:
                # Record the progress so far (so the next claimant continues after it), then let go.
                await wait_first(self.sender.finish(run.claim_id), timeout=self._config.flush_timeout_seconds)
                keeper.cancel()
                await self._release(run)
                return
            delivered = await self.sender.finish(run.claim_id)
            keeper.cancel()
            if delivered and final is not None:
                await self._mailbox.delete(received)
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
        executor = self._executors.executor(message.type.value)
        if executor is None:
            return FinalEvent("error", f"this runtime cannot run {message.type.value} jobs")
        try:
            run.ctx.secrets = open_secrets(self._sealing_key, message.secrets, message.job_id)
        except ExecutorError as exc:
            return FinalEvent("error", str(exc))
        if message.expires_at <= time.time():
            run.stop(StopReason.expired)  # a stale claim, if one came first, stays the reason
            return _final_for_stop(run.stop_reason)
        task: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(executor(run.ctx))
        task.set_name(f"executor-{message.job_id}")
        try:
            # The deadline may move while the job runs (a sandbox's TTL is changed): re-arm then.
            while (remaining := run.ctx.expires_at - time.time()) > 0:
                run.ctx.deadline_changed.clear()
                await wait_first(task, run.stopped.wait(), run.ctx.deadline_changed.wait(), timeout=remaining)
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
        await asyncio.wait({task}, timeout=self._config.cancel_grace_seconds)
        if not task.done():
            log(logger, logging.WARNING, "executor ignored ctx.cancelled; cancelling it", task=task.get_name())
            task.cancel()
            await asyncio.wait({task}, timeout=self._config.cancel_grace_seconds)

    async def _emit_for_executor(
        self, claim_id: str, step: str, status: str, message: str = "", data: dict | None = None
    ) -> None:
        if step == "job" and status in RESERVED_JOB_STATUSES:
            raise ValueError(f"the job's {status!r} event is the worker's to emit")
        await self._append(claim_id, step, status, message, data)

    async def _append(self, claim_id: str, step: str, status: str, message: str = "", data: dict | None = None) -> None:
        try:
            await asyncio.to_thread(self.spool.append, claim_id, step, status, message, data)
        except SpoolClosed:
            return  # the claim went stale: this job's events are no longer wanted
        self.sender.notify(claim_id)

    # --- the claim lease and the message's visibility ---------------------------------------

    async def _keep(self, run: JobRun) -> None:
        """Renew the claim lease, then keep the message invisible past it, every third of a lease."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            renewal = LeaseRenewal(claim_id=run.claim_id, lease_seconds=self._lease_seconds)
            try:
                renewed = await self._api.renew_lease(run.message.workspace_id, run.message.job_id, renewal)
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
                run.lease_deadline = time.monotonic() + self._lease_seconds
                if renewed.cancel_requested:
                    self.stop(run.claim_id, StopReason.cancelled)
            await self._mailbox.change_visibility(run.received, self._lease_seconds + VISIBILITY_MARGIN_SECONDS)

    async def _lost_claim(self, run: JobRun, reason: str) -> None:
        log(logger, logging.WARNING, "claim is stale; stopping the job", job_id=run.message.job_id, reason=reason)
        run.stop(StopReason.stale)
        await self.sender.drop(run.claim_id)

    async def _release(self, run: JobRun) -> None:
        """Tell the API the job is let go (an API that does not act on that still shortens the claim
        lease), and make the message visible right after the lease lapses."""
        renewal = LeaseRenewal(claim_id=run.claim_id, lease_seconds=RELEASE_LEASE_SECONDS, release=True)
        try:
            await self._api.renew_lease(run.message.workspace_id, run.message.job_id, renewal)
            run.lease_deadline = time.monotonic() + RELEASE_LEASE_SECONDS
        except ApiError as exc:
            log(logger, logging.WARNING, "could not shorten the claim lease", job_id=run.message.job_id, error=str(exc))
        lease_left = max(0, math.ceil(run.lease_deadline - time.monotonic()))
        await self._mailbox.change_visibility(run.received, lease_left + VISIBILITY_MARGIN_SECONDS)


def _final_for_stop(reason: StopReason | None) -> FinalEvent | None:
    """The final event a stop earns: None for one that must not end the job here."""
    if reason is StopReason.cancelled:
        return FinalEvent("cancelled", "cancelled on request")
    if reason is StopReason.expired:
        return FinalEvent("expired", "the job passed its expiry time")
    return None


def _final_for(run: JobRun, task: asyncio.Task[dict[str, Any]]) -> FinalEvent | None:
    if run.stop_reason is not None:
        return _final_for_stop(run.stop_reason)
    if task.cancelled():
        return FinalEvent("error", "the executor was cancelled unexpectedly")
    error = task.exception()
    if error is None:
        return FinalEvent("complete", "", {"result": task.result()})
    if isinstance(error, ExecutorError):
        return FinalEvent("error", str(error))
    log(logger, logging.ERROR, "executor failed", job_id=run.message.job_id, exc_info=error)
    return FinalEvent("error", f"the executor failed unexpectedly ({type(error).__name__})")
