"""`model.pull`, `model.preload` and `model.attach` (app.contract.models), and the control actions of
a model job: `model.status`, `model.proxy` (buffered here; streamed through `STREAM_HANDLERS` by the
direct control endpoint) and `model.evict`.

Each job runs one `Installation`: the snapshot is obtained (pulled and verified, or a mounted
directory checked) and reported `attached`; a serving job then hands it to a `Supervisor`, which
reports `ready` and, for `model.attach`, keeps the engine up until the job is cancelled or expires.
Failures are reported as a `failed` event with a `FailureCode` before the job ends in error.
"""

import asyncio
from typing import Any

from pydantic import BaseModel, ValidationError

from app.contract.messages import ControlMessage
from app.contract.models import (
    CacheEviction,
    EngineRequest,
    FailureCode,
    InstallationStatus,
    InstallMode,
    ModelPullPayload,
    ModelServePayload,
)
from workers.executors.base import ExecutorError, JobContext, WorkerHost
from workers.models import cache, engines, proxy
from workers.models.files import VolumeRefused, check_volume
from workers.models.host import ModelHost
from workers.models.hub import PullFailed
from workers.models.installation import LIVE, Installation, live
from workers.models.progress import PullAborted
from workers.models.pull import run_pull
from workers.models.supervisor import EngineFailed, Supervisor


async def pull(ctx: JobContext) -> dict[str, Any]:
    return await _run(ctx, ModelPullPayload, keep_serving=None)


async def preload(ctx: JobContext) -> dict[str, Any]:
    return await _run(ctx, ModelServePayload, keep_serving=False)


async def attach(ctx: JobContext) -> dict[str, Any]:
    return await _run(ctx, ModelServePayload, keep_serving=True)


EXECUTORS = {"model.pull": pull, "model.preload": preload, "model.attach": attach}
LONG_LIVED = frozenset({"model.attach"})  # serves until stopped: a stopping worker releases it at once


async def _run(ctx: JobContext, kind: type[ModelPullPayload], keep_serving: bool | None) -> dict[str, Any]:
    payload = _validated(kind, ctx.payload, f"{ctx.job_type} payload")
    host = ctx.host.models
    if host is None:
        raise ExecutorError("this worker has no model cache configured")
    if ctx.cancelled.is_set():
        return {"cancelled": True}
    installation = Installation(ctx, payload)
    LIVE[ctx.job_id] = installation
    try:
        command: list[str] = []
        if isinstance(payload, ModelServePayload):
            command = host.engine_commands.get(payload.engine.engine.value, [])
            if not engines.command_available(command):
                raise await installation.fail(FailureCode.engine_unavailable, f"this runtime cannot start"
                                              f" {payload.engine.engine.value}: {' '.join(command) or 'no command'}"
                                              " is not installed here")
        result = await _obtain(installation, payload, host)
        if result is None:
            return {"cancelled": True}
        if keep_serving is None:
            return result
        assert isinstance(payload, ModelServePayload)
        engine = engines.ENGINES[payload.engine.engine]
        supervisor = Supervisor(installation, engine, command, result["local_path"], payload.engine, host.gpus,
                                ctx.cancelled)
        try:
            served = await supervisor.serve(keep_serving=keep_serving)
        except EngineFailed as failure:
            raise await installation.fail(failure.code, str(failure), log_tail=failure.log_tail) from failure
        return {**result, **served}
    finally:
        LIVE.pop(ctx.job_id, None)
        await installation.close()


async def _obtain(installation: Installation, payload: ModelPullPayload,
                  host: ModelHost) -> dict[str, Any] | None:
    """Put the model on this runtime and report it `attached`: the job's result so far, or None
    when the job was cancelled first."""
    if payload.install_mode is InstallMode.mount_volume:
        return await _mount(installation, payload.local_path or "", host)
    assert payload.model is not None
    token = payload.token.get_secret_value() if payload.token is not None else None
    try:
        outcome = await run_pull(host, payload.model, payload.revision, token, installation,
                                 installation.ctx.cancelled)
    except PullFailed as failure:
        raise await installation.fail(failure.code, str(failure)) from failure
    except PullAborted:
        return None
    if outcome is None:
        return None
    how = "already cached here" if outcome.cached else "pulled and verified"
    await installation.report("attached", "ok", f"{outcome.model}@{outcome.commit[:12]} {how}: {outcome.local_path}",
                              status=InstallationStatus.attached, local_path=outcome.local_path, cached=outcome.cached)
    return {"model": outcome.model, "commit": outcome.commit, "local_path": outcome.local_path,
            "files": outcome.files_total, "bytes_total": outcome.bytes_total,
            "bytes_downloaded": outcome.bytes_downloaded, "cached": outcome.cached,
            "installation_id": payload.installation_id}


async def _mount(installation: Installation, local_path: str, host: ModelHost) -> dict[str, Any]:
    await installation.report("checking", "running", f"checking {local_path}", status=InstallationStatus.checking)
    try:
        directory, files, total = await asyncio.to_thread(check_volume, local_path, host.volume_roots)
    except VolumeRefused as refusal:
        raise await installation.fail(FailureCode.volume_invalid, str(refusal)) from refusal
    await installation.report("attached", "ok", f"{directory}: {files} files, nothing to download",
                              status=InstallationStatus.attached, local_path=str(directory), bytes_total=total,
                              bytes_done=total, files_total=files, files_done=files, cached=True)
    return {"local_path": str(directory), "files": files, "bytes_total": total, "bytes_downloaded": 0,
            "cached": True, "installation_id": installation.payload.installation_id}


def _validated(model: type[BaseModel], data: dict, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        # Without the input: a payload may carry a token.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in error.errors(include_input=False, include_url=False))
        raise ExecutorError(f"invalid {what}: {problems}", code="bad_request") from error


# --- control actions -------------------------------------------------------------------------


async def status(message: ControlMessage) -> dict[str, Any]:
    return live(message).state().model_dump(mode="json", exclude_none=True)


async def proxy_request(message: ControlMessage) -> dict[str, Any]:
    request = _validated(EngineRequest, message.arguments, "model.proxy arguments")
    answer = await proxy.forward(live(message, ready=True), request, message.deadline)
    return answer.model_dump()


async def stream_request(message: ControlMessage, send: proxy.Send) -> None:
    try:
        request = _validated(EngineRequest, message.arguments, "model.proxy arguments")
        await proxy.stream(live(message, ready=True), request, message.deadline, send)
    except ExecutorError as error:
        await proxy.send_reply(send, error)


async def evict(message: ControlMessage, host: WorkerHost) -> dict[str, Any]:
    target = _validated(CacheEviction, message.arguments, "model.evict arguments")
    if host.models is None:
        raise ExecutorError("this worker has no model cache configured", code="not_found")
    users = [job_id for job_id, installation in LIVE.items()
             if installation.payload.model == target.model and installation.facts.get("commit") == target.commit]
    if users:
        return {"evicted": False, "freed_bytes": 0, "reason": f"in use by model job {users[0]} on this runtime"}
    result = await asyncio.to_thread(cache.evict, host.models, target.model, target.commit)
    return result.model_dump()


CONTROL_HANDLERS = {"model.status": status, "model.proxy": proxy_request}
# About the runtime's model cache, not one running job: answered with the worker's host.
HOST_CONTROL_HANDLERS = {"model.evict": evict}
# Actions the direct control endpoint may answer as a stream (POST /control/stream); see proxy.py.
STREAM_HANDLERS = {"model.proxy": stream_request}
