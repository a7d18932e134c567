"""The `ssh.run` and `ssh.forward` executors (infra SSH) and the `ssh.proxy` control action.

`ssh.run` checks the action against the host and renders its parameters (those in the payload and
the secret ones from the job's sealed secrets) before it connects (the runtime enforces exactly
what it received, as it does the sandbox policy), connects with the pinned host key and the job's
client key (`SshSecrets`, from `ctx.secrets`), runs the command and completes with an `SshRunResult`
however the command ended. A job whose command never started fails, after an `ssh` error event
carrying an `SshFailureReport` (see app.contract.ssh.jobs).

`ssh.forward` holds a forward to an allowed target until the job is cancelled or expires (never
past the forward's `max_ttl_seconds`), and answers `ssh.proxy` with HTTP through it for requests
whose token the API signed for this forward and this method, each token once.
"""

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import asyncssh
from pydantic import BaseModel, ValidationError

from app.contract.messages import ControlMessage, ProxyRequest
from app.contract.policy import SandboxRejected
from app.contract.signing import verify_proxy_token
from app.contract.ssh.actions import ParametersInvalid, render
from app.contract.ssh.jobs import (
    FORWARD_EVENT_STEP,
    FORWARD_PROXY_ACTION,
    FORWARD_TOKEN_MAX_SECONDS,
    SSH_EVENT_STEP,
    ForwardOpened,
    ForwardTokenClaims,
    SshFailure,
    SshFailureReport,
    SshForwardPayload,
    SshRunPayload,
    SshRunResult,
    SshSecrets,
)
from workers.executors.base import ExecutorError, JobContext
from workers.sandbox.proxy import SeenNonces
from workers.ssh.command import run_command
from workers.ssh.connection import ConnectFailed, connect
from workers.ssh.forward import OpenForward, ProxyFailed, open_forward

_T = TypeVar("_T")
_Payload = TypeVar("_Payload", bound=BaseModel)


class _Attempt:
    """One job's attempt on a host: its clock, and how it reports a failure before its command ran."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        host = ctx.payload.get("host")
        self.host = str(host.get("name", ""))[:100] if isinstance(host, dict) else ""
        self.started = time.monotonic()

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    async def fail(self, failure: SshFailure, message: str) -> NoReturn:
        report = SshFailureReport(failure=failure, message=message, host=self.host, duration_ms=self.elapsed_ms())
        await self.ctx.emit(SSH_EVENT_STEP, "error", message, report.model_dump(mode="json"))
        raise ExecutorError(message)

    async def payload(self, model: type[_Payload]) -> _Payload:
        return await self._validated(model, self.ctx.payload, "payload")

    async def secrets(self) -> SshSecrets:
        return await self._validated(SshSecrets, self.ctx.secrets, "secrets")

    async def _validated(self, model: type[_Payload], data: dict[str, Any], what: str) -> _Payload:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            # Without the input: the secrets carry the client key and secret parameters.
            first = error.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or what
            await self.fail(SshFailure.invalid_request, f"invalid {self.ctx.job_type} {what}: {where}: {first['msg']}")

    async def until_cancelled(self, work: Awaitable[_T]) -> _T | None:
        """`work`'s result, or None as soon as the job is cancelled (`work` is then cancelled)."""
        task, stop = asyncio.ensure_future(work), asyncio.ensure_future(self.ctx.cancelled.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def connect(self, payload: SshRunPayload | SshForwardPayload,
                      secrets: SshSecrets) -> asyncssh.SSHClientConnection | None:
        """The connection, None if the job was cancelled meanwhile; a failure ends the job."""
        try:
            return await self.until_cancelled(connect(payload.host, secrets.client_private_key.get_secret_value(),
                                                      payload.connect_timeout_seconds))
        except ConnectFailed as error:
            await self.fail(error.failure, str(error))


async def _close(connection: asyncssh.SSHClientConnection) -> None:
    connection.close()
    await connection.wait_closed()


# --- ssh.run -----------------------------------------------------------------------------------


async def run_action(ctx: JobContext) -> dict[str, Any]:
    attempt = _Attempt(ctx)
    payload = await attempt.payload(SshRunPayload)
    secrets = await attempt.secrets()
    host, action = payload.host, payload.action
    if not action.may_run_on(host):
        await attempt.fail(SshFailure.not_allowed, f"action {action.name} may not run on host {host.name}")
    try:
        rendered = render(action, {**payload.parameters, **secrets.secret_parameters})
    except ParametersInvalid as error:
        await attempt.fail(SshFailure.invalid_request, f"parameters refused: {error}")
    connection = await attempt.connect(payload, secrets)
    if connection is None:
        return {}  # cancelled before the command was sent; the worker records the cancellation
    connect_ms = attempt.elapsed_ms()
    try:
        await ctx.emit(SSH_EVENT_STEP, "running", f"{action.name} started on {host.name}",
                       {"command": rendered.audit_command})
        try:
            run = await run_command(connection, rendered.command, timeout=action.timeout_seconds,
                                    output_cap=action.output_cap_bytes, cancelled=ctx.cancelled)
        except (asyncssh.Error, OSError) as error:  # the session channel was refused, or the connection dropped
            await attempt.fail(SshFailure.ssh_error, f"{action.name} could not start on {host.name}: {error}")
    finally:
        await _close(connection)
    result = SshRunResult(
        host=host.name, action=action.name, command=rendered.audit_command, parameters=rendered.audit_parameters,
        ended=run.ended, exit_status=run.exit_status, exit_signal=run.exit_signal,
        stdout=run.stdout.text, stderr=run.stderr.text, stdout_bytes=run.stdout.total, stderr_bytes=run.stderr.total,
        stdout_truncated=run.stdout.truncated, stderr_truncated=run.stderr.truncated,
        stdout_sha256=run.stdout.sha256, stderr_sha256=run.stderr.sha256,
        connect_ms=connect_ms, duration_ms=attempt.elapsed_ms())
    if run.ended == "cancelled":
        await ctx.emit(SSH_EVENT_STEP, "cancelled", f"{action.name} on {host.name} stopped: the job was cancelled",
                       result.summary())
    return result.model_dump(mode="json")


# --- ssh.forward and ssh.proxy -----------------------------------------------------------------


@dataclass
class LiveForward:
    ctx: JobContext
    forward: OpenForward
    nonces: SeenNonces


FORWARDS: dict[str, LiveForward] = {}  # job id -> the forward it holds on this worker


async def hold_forward(ctx: JobContext) -> dict[str, Any]:
    attempt = _Attempt(ctx)
    payload = await attempt.payload(SshForwardPayload)
    secrets = await attempt.secrets()
    host, allowed = payload.host, payload.forward
    if not allowed.may_run_on(host):
        await attempt.fail(SshFailure.not_allowed, f"forward {allowed.name} may not be opened to host {host.name}")
    ctx.extend(min(ctx.expires_at, time.time() + allowed.max_ttl_seconds))  # the worker closes it then
    connection = await attempt.connect(payload, secrets)
    if connection is None:
        return {}
    target = f"{allowed.target_host}:{allowed.target_port}"
    try:
        opened = await open_forward(connection, allowed.target_host, allowed.target_port)
    except (OSError, asyncssh.Error) as error:
        await _close(connection)
        await attempt.fail(SshFailure.ssh_error, f"forward {allowed.name} to {target} could not open: {error}")
    FORWARDS[ctx.job_id] = LiveForward(ctx, opened, SeenNonces())
    try:
        details = ForwardOpened(host=host.name, forward=allowed.name, target=target, expires_at=ctx.expires_at)
        await ctx.emit(FORWARD_EVENT_STEP, "running", f"forward {allowed.name} to {target} open through {host.name}",
                       details.model_dump())
        await attempt.until_cancelled(connection.wait_closed())
        if not ctx.cancelled.is_set():
            message = f"the SSH connection to {host.name} closed; forward {allowed.name} is gone"
            await ctx.emit(FORWARD_EVENT_STEP, "error", message)
            raise ExecutorError(message)
        return {"host": host.name, "forward": allowed.name, "open_seconds": round(attempt.elapsed_ms() / 1000, 3)}
    finally:
        FORWARDS.pop(ctx.job_id, None)
        await opened.close()


async def proxy(message: ControlMessage) -> dict[str, Any]:
    live = FORWARDS.get(message.job_id)
    if live is None or live.ctx.workspace_id != message.workspace_id:
        raise ExecutorError(f"forward {message.job_id} is not open on this runtime", code="not_running")
    try:
        request = ProxyRequest.model_validate(message.arguments)
    except ValidationError as error:
        raise ExecutorError(f"invalid {message.action} arguments: {error.errors()[0]['msg']}",
                            code="bad_request") from None
    now = time.time()
    try:
        claims = ForwardTokenClaims.model_validate(verify_proxy_token(live.ctx.proxy_key, request.token, now))
    except SandboxRejected as error:
        raise ExecutorError(str(error), code="forbidden") from None
    except ValidationError:
        raise ExecutorError("the proxy token is not a forward's token", code="forbidden") from None
    if claims.forward_id != message.job_id or claims.workspace_id != message.workspace_id:
        raise ExecutorError("the proxy token was not signed for this forward", code="forbidden")
    if claims.method != request.method or claims.exp > now + FORWARD_TOKEN_MAX_SECONDS:
        raise ExecutorError("the proxy token was signed for another method, or for too long", code="forbidden")
    if not live.nonces.first_use(claims.nonce, claims.exp, now):
        raise ExecutorError("the proxy token was already used", code="forbidden")
    try:
        return (await live.forward.request(request)).model_dump()
    except ProxyFailed as error:
        raise ExecutorError(str(error)) from None


EXECUTORS = {"ssh.run": run_action, "ssh.forward": hold_forward}
LONG_LIVED = frozenset({"ssh.forward"})  # held until stopped: a stopping worker releases it at once
CONTROL_HANDLERS = {FORWARD_PROXY_ACTION: proxy}
