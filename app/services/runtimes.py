"""Runtimes: join tokens, registration, heartbeats, liveness and the runtime's view of queues."""

from app import clock, queues
from app.auth.principal import Principal
from app.errors import BadRequest, ConditionFailed, Forbidden, NotFound, Unauthorized
from app.ids import hash_secret, new_id, new_secret, secret_prefix
from app.contract.messages import HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse
from app.schemas.runtimes import JoinTokenCreate
from app.services import dispatch
from app.services.activity import audit
from app.settings import get_settings
from app.store import get_store
from app.store.runtimes import SHARED_WORKSPACE
from app.store.table import Condition, Write

_PUBLIC_FIELDS = ("runtime_id", "name", "shared", "capabilities", "runtimes", "labels", "gpus",
                  "max_concurrent_jobs", "active_jobs", "free_disk_bytes", "software_version", "queue_mode",
                  "registered_at", "last_heartbeat_at")


def effective_status(runtime: dict, now: float | None = None) -> str:
    """Online only while heartbeats keep coming: silent for two intervals means offline."""
    now = clock.now() if now is None else now
    if runtime.get("status") == "offline":
        return "offline"
    if now - runtime.get("last_heartbeat", 0) > 2 * get_settings().heartbeat_interval_seconds:
        return "offline"
    return runtime.get("status", "online")


def public_view(runtime: dict, now: float | None = None) -> dict:
    view = {field: runtime.get(field) for field in _PUBLIC_FIELDS}
    view["status"] = effective_status(runtime, now)
    return view


def visible_runtimes(workspace_id: str) -> list[dict]:
    """The workspace's own runtimes and the shared fleet, as API views."""
    store = get_store()
    now = clock.now()
    own = store.runtimes.in_workspace(workspace_id) if workspace_id != SHARED_WORKSPACE else []
    return [public_view(r, now) for r in own + store.runtimes.in_workspace(SHARED_WORKSPACE)]


def all_runtimes_for_status() -> list[dict]:
    now = clock.now()
    return [public_view(r, now) for r in get_store().runtimes.all()]


# --- join tokens ------------------------------------------------------------------------------


def mint_join_token(principal: Principal, request: JoinTokenCreate) -> tuple[str, dict]:
    if request.shared and not principal.operator:
        raise Forbidden("only the platform operator can mint join tokens for shared runtimes")
    store = get_store()
    token_id, secret = new_id("jt"), new_secret("bjt")
    digest = hash_secret(secret)
    expires = clock.now() + request.ttl_seconds
    record = store.runtimes.join_token_item(
        principal.workspace_id, token_id, name=request.name, prefix=secret_prefix(secret), uses=request.uses,
        uses_left=request.uses, shared=request.shared, labels=request.labels, created_at=clock.iso(),
        expires_at=clock.iso(expires), created_by=principal.subject_id, expires_epoch=int(expires),
    )
    credential = store.credentials.item(
        digest, "join", principal.workspace_id, token_id, expires_epoch=int(expires), uses_left=request.uses,
        attributes={"shared": request.shared, "labels": request.labels},
    )
    store.table.transact([Write.put(record, must_not_exist=True), store.credentials.put_write(credential)])
    audit(principal.workspace_id, "join_token.create", actor=principal.subject_id, target=token_id,
          detail={"uses": request.uses, "shared": request.shared})
    return secret, _join_token_view(record)


def _join_token_view(record: dict) -> dict:
    fields = ("token_id", "name", "prefix", "uses", "uses_left", "shared", "labels", "created_at", "expires_at")
    return {field: record.get(field) for field in fields}


def list_join_tokens(principal: Principal, *, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    page = get_store().runtimes.list_join_tokens(principal.workspace_id, limit=limit, cursor=cursor)
    active = [_join_token_view(r) for r in page.items if r.get("uses_left", 0) > 0]
    return active, page.cursor


# --- registration and heartbeats ----------------------------------------------------------------


def register(request: RegisterRequest) -> RegisterResponse:
    store = get_store()
    settings = get_settings()
    join = store.credentials.use(hash_secret(request.join_token), "join")
    if join is None:
        raise Unauthorized("invalid, used-up or expired join token")
    store.runtimes.spend_join_token(join.workspace_id, join.subject_id)
    shared = bool(join.attributes.get("shared"))
    workspace_id = SHARED_WORKSPACE if shared else join.workspace_id
    runtime_id = new_id("rt")
    jobs_url, control_queue_url = queues.create_runtime_queues(runtime_id)
    secret = new_secret("brt")
    now = clock.now()
    labels = {**join.attributes.get("labels", {}), **request.labels}
    runtime = store.runtimes.item(
        workspace_id, runtime_id, name=request.name, shared=shared, capabilities=[c.value for c in request.capabilities],
        runtimes={kind: bool(v) for kind, v in request.runtimes.items()}, labels=labels,
        gpus=[g.model_dump() for g in request.gpus], max_concurrent_jobs=request.max_concurrent_jobs,
        free_disk_bytes=request.free_disk_bytes, software_version=request.version, queue_mode=request.queue_mode,
        jobs_queue_url=jobs_url, control_queue_url=control_queue_url, registered_at=clock.iso(now),
        last_heartbeat=now, last_heartbeat_at=clock.iso(now), status="online", active_jobs=0,
        minted_by_workspace=join.workspace_id, token_digest=hash_secret(secret),
        control_url=request.control_url,  # the worker's direct control endpoint, if it serves one
    )
    credential = store.credentials.item(hash_secret(secret), "runtime", workspace_id, runtime_id,
                                        attributes={"shared": shared})
    store.table.transact([Write.put(runtime, must_not_exist=True), store.credentials.put_write(credential)])
    audit(join.workspace_id, "runtime.register", actor=join.subject_id, target=runtime_id,
          detail={"name": request.name, "shared": shared, "capabilities": runtime["capabilities"]})
    store.runtimes.forget(workspace_id)
    dispatch.dispatch_waiting(runtime)
    return RegisterResponse(
        runtime_id=runtime_id, runtime_token=secret, workspace_id=workspace_id, shared=shared,
        jobs_queue_url=jobs_url, control_queue_url=control_queue_url,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        visibility_seconds=settings.job_visibility_seconds,
    )


def runtime_of(principal: Principal) -> dict:
    runtime = get_store().runtimes.get(principal.workspace_id, principal.subject_id)
    if runtime is None:
        raise Unauthorized("this runtime is no longer registered")
    return runtime


def heartbeat(principal: Principal, request: HeartbeatRequest) -> HeartbeatResponse:
    store = get_store()
    runtime = runtime_of(principal)
    was_online = effective_status(runtime) == "online"
    now = clock.now()
    # control_url is set every time, None included: a worker restarted without its endpoint (or
    # on another port) must not be sent control requests at the old address.
    changes = {"last_heartbeat": now, "last_heartbeat_at": clock.iso(now),
               "status": "draining" if request.draining else "online", "reported_active_jobs": request.active_jobs,
               "control_url": request.control_url}
    if request.free_disk_bytes is not None:
        changes["free_disk_bytes"] = request.free_disk_bytes
    if request.load is not None:
        changes["load"] = request.load
    runtime = store.runtimes.update(principal.workspace_id, principal.subject_id, set=changes)
    if not was_online and not request.draining:
        store.runtimes.forget(principal.workspace_id)
        dispatch.dispatch_waiting(runtime)
    return HeartbeatResponse(ok=True, status=runtime["status"],
                             heartbeat_interval_seconds=get_settings().heartbeat_interval_seconds)


def mark_offline(runtime: dict) -> bool:
    """Record a silent runtime as offline; False when it heartbeated meanwhile."""
    try:
        get_store().runtimes.update(runtime["workspace_id"], runtime["runtime_id"], set={"status": "offline"},
                                    condition=Condition(equals={"last_heartbeat": runtime["last_heartbeat"]}))
    except ConditionFailed:
        return False
    get_store().runtimes.forget(runtime["workspace_id"])
    audit(runtime.get("minted_by_workspace", runtime["workspace_id"]), "runtime.offline", actor="sweeper",
          target=runtime["runtime_id"])
    return True


def queue_url(runtime: dict, queue: str) -> str:
    if queue not in ("jobs", "control"):
        raise BadRequest("queue must be 'jobs' or 'control'")
    return runtime["jobs_queue_url"] if queue == "jobs" else runtime["control_queue_url"]

