"""Runtimes: join tokens, registration, heartbeats, liveness, deletion, and a runtime's queues
leased through the API (for hosts without AWS credentials).

A runtime's credentials are its token (a bearer secret, stored as a digest) and its runtime key
(app.services.keyring). Deleting the runtime revokes both and its queues, and moves its unfinished
jobs elsewhere; deleting a join token stops it registering anything at once.

A heartbeat says what the runtime offers (kept for dispatch) and which jobs its process holds:
a job running there whose claim two heartbeats in a row leave out is lost (the process restarted,
or never knew it) and is ended (a sandbox: its state died with the process) or queued again. A
last heartbeat saying the process is exiting takes the runtime offline at once, and its jobs back.
"""

from dataclasses import dataclass

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import (
    EventStatus,
    HeartbeatRequest,
    HeartbeatResponse,
    JobStatus,
    LeasedMessage,
    LeaseRequest,
    ReceiptRequest,
    RegisterRequest,
    RegisterResponse,
    RunningJob,
)
from app.domain.accounts import Credential
from app.domain.jobs import JOB_STEP, Job
from app.domain.runtimes import SHARED_WORKSPACE, JoinToken, Runtime, RuntimeStatus
from app.errors import Conflict, Forbidden, NotFound, Unauthorized
from app.ids import hash_secret, new_id, new_secret, secret_prefix
from app.queues import Queues
from app.services.activity import ActivityLog
from app.services.control import ControlChannel
from app.services.dispatch import Dispatcher
from app.services.keyring import RuntimeKeyring
from app.services.lifecycle import CANCEL_DELIVERY_SECONDS, JobLifecycle, each_job
from app.services.trust import TrustPolicy
from app.settings import Settings
from app.store import Store
from app.store.table import Page


@dataclass(frozen=True)
class RuntimeRemoved:
    runtime_id: str
    requeued: int  # unfinished jobs sent to be dispatched again
    ended: int  # jobs that could not move (a sandbox that had started, a call pinned to it), ended


def _held_key(workspace_id: str, job_id: str) -> str:
    return f"{workspace_id}/{job_id}"


class RuntimeService:
    def __init__(self, store: Store, queues: Queues, settings: Settings, trust: TrustPolicy, keyring: RuntimeKeyring,
                 dispatcher: Dispatcher, lifecycle: JobLifecycle, control: ControlChannel, activity: ActivityLog,
                 clock: Clock):
        self.store = store
        self.queues = queues
        self.settings = settings
        self.trust = trust
        self.keyring = keyring
        self.dispatcher = dispatcher
        self.lifecycle = lifecycle
        self.control = control
        self.activity = activity
        self.clock = clock

    def status(self, runtime: Runtime, now: float | None = None) -> RuntimeStatus:
        return runtime.effective_status(self.clock.now() if now is None else now,
                                        self.settings.heartbeat_interval_seconds)

    def visible(self, workspace_id: str) -> list[Runtime]:
        """The workspace's own runtimes and the shared fleet."""
        own = self.store.runtimes.in_workspace(workspace_id) if workspace_id != SHARED_WORKSPACE else []
        return own + self.store.runtimes.in_workspace(SHARED_WORKSPACE)

    def all(self) -> list[Runtime]:
        return self.store.runtimes.all()

    # --- join tokens ------------------------------------------------------------------------------

    def mint_join_token(self, principal: Principal, *, name: str, uses: int, ttl_seconds: int, shared: bool,
                        labels: dict[str, str]) -> tuple[str, JoinToken]:
        """A join token and its secret (returned this once). Only an account that proved its address
        mints one (where that is required), and a shared one only the platform operator, as the
        account stands now."""
        self.trust.require_verified(principal, "mint join tokens")
        if shared:
            self.trust.require_operator(principal, "mint join tokens for shared runtimes")
        token_id, secret = new_id("jt"), new_secret("bjt")
        digest = hash_secret(secret)
        expires = self.clock.now() + ttl_seconds
        token = JoinToken(token_id=token_id, workspace_id=principal.workspace_id, name=name,
                          prefix=secret_prefix(secret), uses=uses, uses_left=uses, shared=shared, labels=labels,
                          created_at=self.clock.iso(), expires_at=self.clock.iso(expires),
                          created_by=principal.subject_id, expires_epoch=int(expires), digest=digest)
        # Who minted a shared token is checked again when it is used: a revoked operator's tokens die with the grant.
        minter = {"platform": True} if principal.operator else {"user_id": principal.user_id}
        credential = Credential(digest=digest, kind="join", workspace_id=principal.workspace_id,
                                subject_id=token_id, expires_epoch=int(expires), uses_left=uses,
                                attributes={"shared": shared, "labels": labels, **minter})
        self.store.table.transact([self.store.runtimes.add_join_token(token), self.store.credentials.add(credential)])
        self.activity.audit(principal.workspace_id, "join_token.create", actor=principal.subject_id, target=token_id,
                            detail={"uses": uses, "shared": shared})
        return secret, token

    def join_tokens(self, principal: Principal, *, limit: int, cursor: str | None) -> Page[JoinToken]:
        """Tokens with uses left (expired ones are gone), without secrets."""
        page = self.store.runtimes.join_tokens(principal.workspace_id, limit=limit, cursor=cursor)
        return Page([token for token in page.items if token.is_active], page.cursor)

    def delete_join_token(self, principal: Principal, token_id: str) -> JoinToken:
        """Revoke a join token: it registers nothing from now on (runtimes it registered stay)."""
        token = self.store.runtimes.join_token(principal.workspace_id, token_id)
        if token is None:
            raise NotFound(f"no join token {token_id}")
        if not token.digest:
            raise Conflict(f"join token {token_id} was minted before join tokens could be revoked; it stops "
                           f"working when it expires ({token.expires_at})")
        self.store.table.transact([self.store.runtimes.delete_join_token(token),
                                   self.store.credentials.remove(token.digest),
                                   self.activity.audit_write(principal.workspace_id, "join_token.delete",
                                                             actor=principal.subject_id, target=token_id)])
        self.activity.logged("join_token.delete", principal.subject_id, token_id)
        return token

    # --- registration and heartbeats ----------------------------------------------------------------

    def register(self, request: RegisterRequest) -> RegisterResponse:
        join = self.store.credentials.use(hash_secret(request.join_token), "join")
        if join is None:
            raise Unauthorized("invalid, used-up or expired join token")
        self.store.runtimes.spend_join_token(join.workspace_id, join.subject_id)
        shared = bool(join.attributes.get("shared"))
        if shared and not (join.attributes.get("platform")
                           or self.trust.is_operator_user(join.workspace_id, join.attributes.get("user_id", ""))):
            raise Forbidden("this shared join token's minter is no longer the platform operator")
        workspace_id = SHARED_WORKSPACE if shared else join.workspace_id
        runtime_id = new_id("rt")
        jobs_url, control_queue_url = self.queues.create_runtime_queues(runtime_id, shared=shared)
        secret = new_secret("brt")
        runtime_key = self.keyring.issue(workspace_id)
        now = self.clock.now()
        runtime = Runtime(
            runtime_id=runtime_id, workspace_id=workspace_id, name=request.name, shared=shared,
            capabilities=[c.value for c in request.capabilities],
            runtimes={kind: bool(v) for kind, v in request.runtimes.items()},
            labels={**join.attributes.get("labels", {}), **request.labels}, gpus=[g.model_dump() for g in request.gpus],
            max_concurrent_jobs=request.max_concurrent_jobs, free_disk_bytes=request.free_disk_bytes,
            software_version=request.version, queue_mode=request.queue_mode, jobs_queue_url=jobs_url,
            control_queue_url=control_queue_url, registered_at=self.clock.iso(now), last_heartbeat=now,
            last_heartbeat_at=self.clock.iso(now), status="online", active_jobs=0,
            minted_by_workspace=join.workspace_id, token_digest=hash_secret(secret), sealed_key=runtime_key.sealed,
            control_url=request.control_url,  # the worker's direct control endpoint, if it serves one
            offers=request.offers.model_dump() if request.offers else None,
        )
        credential = Credential(digest=hash_secret(secret), kind="runtime", workspace_id=workspace_id,
                                subject_id=runtime_id, attributes={"shared": shared})
        self.store.table.transact([self.store.runtimes.register(runtime), self.store.credentials.add(credential)])
        self.activity.audit(join.workspace_id, "runtime.register", actor=join.subject_id, target=runtime_id,
                            detail={"name": request.name, "shared": shared, "capabilities": runtime.capabilities})
        self.store.runtimes.forget(workspace_id)
        self.dispatcher.dispatch_waiting(runtime)
        return RegisterResponse(
            runtime_id=runtime_id, runtime_token=secret, runtime_key=runtime_key.key, workspace_id=workspace_id,
            shared=shared,
            jobs_queue_url=jobs_url, control_queue_url=control_queue_url,
            heartbeat_interval_seconds=self.settings.heartbeat_interval_seconds,
            visibility_seconds=self.settings.job_visibility_seconds,
        )

    def runtime_of(self, principal: Principal) -> Runtime:
        runtime = self.store.runtimes.get(principal.workspace_id, principal.subject_id)
        if runtime is None or runtime.removed_at:
            raise Unauthorized("this runtime is no longer registered")
        return runtime

    def heartbeat(self, principal: Principal, request: HeartbeatRequest) -> HeartbeatResponse:
        before = self.runtime_of(principal)
        was_online = self.status(before) == "online"
        now = self.clock.now()
        # control_url and offers are set every time, None included: a worker restarted without its
        # endpoint (or on another port, or with other tool directories) must be taken at its word.
        changes = {"last_heartbeat": now, "last_heartbeat_at": self.clock.iso(now),
                   "status": "offline" if request.exiting else "draining" if request.draining else "online",
                   "reported_active_jobs": request.active_jobs, "control_url": request.control_url,
                   "offers": request.offers.model_dump() if request.offers else None}
        if request.free_disk_bytes is not None:
            changes["free_disk_bytes"] = request.free_disk_bytes
        if request.load is not None:
            changes["load"] = request.load
        if request.package_cache is not None:
            changes["package_cache"] = request.package_cache.model_dump()
        lost: list[Job] = []
        if request.jobs is not None and not request.exiting:
            unreported, lost = self._unreported(before, request.jobs)
            if unreported != before.unreported:
                changes["unreported"] = unreported
        runtime = self.store.runtimes.record_heartbeat(principal.workspace_id, principal.subject_id, changes)
        if request.exiting:
            self._left(runtime)
        else:
            each_job(lost, lambda job: self._lost(runtime, job), "ending a lost job")
            if not was_online and not request.draining:
                self.store.runtimes.forget(principal.workspace_id)
                self.dispatcher.dispatch_waiting(runtime)
        return HeartbeatResponse(ok=True, status=runtime.status,
                                 heartbeat_interval_seconds=self.settings.heartbeat_interval_seconds)

    def _unreported(self, runtime: Runtime, held: list[RunningJob]) -> tuple[dict[str, str], list[Job]]:
        """The jobs running here (as the API knows) whose claims this heartbeat leaves out, and those
        of them the previous heartbeat left out too (under the same claim): lost. When the jobs held
        cover every slot the API counts and nothing was missing before, nothing is read."""
        claims = {_held_key(job.workspace_id, job.job_id): job.claim_id for job in held}
        if len(claims) >= runtime.active_jobs and not runtime.unreported:
            return {}, []
        missing: dict[str, str] = {}
        lost: list[Job] = []
        for job in self.store.jobs.on_runtime(runtime.runtime_id):
            key = _held_key(job.workspace_id, job.job_id)
            if job.status != JobStatus.running or not job.claim_id or claims.get(key) == job.claim_id:
                continue
            if runtime.unreported.get(key) == job.claim_id:
                lost.append(job)
            else:
                missing[key] = job.claim_id
        return missing, lost

    def _lost(self, runtime: Runtime, job: Job) -> bool:
        """A running job its runtime no longer has. A sandbox's server died with whatever held it,
        so it ends, saying so; any other job goes back to the queue."""
        if job.is_sandbox:
            return self.lifecycle.fail(job, f"runtime {runtime.name} ({runtime.runtime_id}) no longer runs this "
                                            "sandbox (its worker restarted without it); create a new sandbox",
                                       claim_id=job.claim_id)
        return self.lifecycle.requeue(job, f"runtime {runtime.runtime_id} no longer runs the job (its heartbeats "
                                           "leave it out); dispatching again", claim_id=job.claim_id)

    def _left(self, runtime: Runtime) -> None:
        """The runtime's process is exiting: offline now, its jobs taken back as the sweeper would."""
        self.store.runtimes.forget(runtime.workspace_id)
        self.activity.audit(runtime.minted_by_workspace or runtime.workspace_id, "runtime.offline",
                            actor=runtime.runtime_id, target=runtime.runtime_id, detail={"reason": "exiting"})
        each_job(self.store.jobs.on_runtime(runtime.runtime_id),
                 lambda job: self.lifecycle.take_back(job, f"runtime {runtime.runtime_id} stopped; dispatching again"),
                 "taking a job back from a runtime that stopped")

    def mark_offline(self, runtime: Runtime) -> bool:
        """Record a silent runtime as offline; False when it heartbeated meanwhile."""
        if not self.store.runtimes.mark_offline(runtime):
            return False
        self.store.runtimes.forget(runtime.workspace_id)
        self.activity.audit(runtime.minted_by_workspace or runtime.workspace_id, "runtime.offline", actor="sweeper",
                            target=runtime.runtime_id)
        return True

    # --- deletion ----------------------------------------------------------------------------------

    def delete(self, principal: Principal, runtime_id: str) -> RuntimeRemoved:
        """Delete a runtime of the caller's workspace (a shared one: the operator only). Its token and
        runtime key stop working, nothing more is placed on it, its unfinished jobs are dispatched
        again elsewhere (a sandbox that had started, or a call pinned to it, cannot move and is
        ended), then its queues and record go."""
        runtime = self.store.runtimes.get(principal.workspace_id, runtime_id)
        if runtime is None and principal.workspace_id != SHARED_WORKSPACE:
            runtime = self.store.runtimes.get(SHARED_WORKSPACE, runtime_id)
            if runtime is not None:
                self.trust.require_operator(principal, "delete shared runtimes")
        if runtime is None:
            raise NotFound(f"no runtime {runtime_id}")
        # First the token and the placements: from this transaction on it gets no new work.
        self.store.table.transact([self.store.runtimes.begin_removal(runtime, self.clock.iso()),
                                   self.store.credentials.remove(runtime.token_digest)])
        self.store.credentials.forget(runtime.token_digest)
        self.store.runtimes.forget(runtime.workspace_id)
        requeued = ended = 0
        for job in self.store.jobs.on_runtime(runtime.runtime_id):
            if self._pinned_to(job, runtime):
                ended += self._end_stranded(job, runtime)
            else:
                requeued += self.lifecycle.requeue(job, f"runtime {runtime.runtime_id} was deleted; dispatching again")
        self.queues.delete_queue(runtime.jobs_queue_url)
        self.queues.delete_queue(runtime.control_queue_url)
        self.store.runtimes.delete(runtime)  # its sealed runtime key goes with it
        self.store.runtimes.forget(runtime.workspace_id)
        self.activity.audit(principal.workspace_id, "runtime.delete", actor=principal.subject_id, target=runtime_id,
                            detail={"shared": runtime.shared, "requeued": requeued, "ended": ended})
        return RuntimeRemoved(runtime_id, requeued, ended)

    @staticmethod
    def _pinned_to(job: Job, runtime: Runtime) -> bool:
        """Whether a job can run only where it is: a sandbox whose server started (its state lives
        there), or a call on such a sandbox."""
        started = job.status == JobStatus.running or bool(job.claim_id)
        return (job.is_sandbox and started) or job.pinned_runtime_id == runtime.runtime_id

    def _end_stranded(self, job: Job, runtime: Runtime) -> bool:
        # Tell the worker to stop it while its key still signs (directly, else on the queue about to go).
        self.control.notify(job, "cancel", valid_seconds=CANCEL_DELIVERY_SECONDS)
        reason = f"its runtime {runtime.runtime_id} was deleted"
        event = self.lifecycle.next_event(job, JOB_STEP, EventStatus.error, reason)
        return self.lifecycle.finish(job, JobStatus.error, error=reason, event=event)

    # --- queues leased through the API ------------------------------------------------------------

    def _queue_url(self, principal: Principal, queue: str) -> str:
        runtime = self.runtime_of(principal)
        return runtime.jobs_queue_url if queue == "jobs" else runtime.control_queue_url

    def lease(self, principal: Principal, request: LeaseRequest) -> list[LeasedMessage]:
        """Long-poll the runtime's queue on its behalf."""
        return self.queues.receive(self._queue_url(principal, request.queue), max_messages=request.max_messages,
                                   wait_seconds=request.wait_seconds, visibility_seconds=request.visibility_seconds)

    def acknowledge(self, principal: Principal, request: ReceiptRequest) -> None:
        self.queues.delete(self._queue_url(principal, request.queue), request.receipt)

    def extend(self, principal: Principal, request: ReceiptRequest) -> None:
        self.queues.change_visibility(self._queue_url(principal, request.queue), request.receipt,
                                      request.visibility_seconds or 0)
