"""What the API sends a runtime to run an action (`ssh.run`) or hold a forward (`ssh.forward`),
and what comes back.

`ssh.run`: the job *completes* whenever the command was started on the host, however it ended
(exit status, signal, the action's timeout, the connection dropping); its result is an
`SshRunResult`. It *fails* only when the command never started; the worker then first emits an
`ssh` event with status `error` whose data is an `SshFailureReport` saying why (host key
mismatch, authentication, unreachable, ...). Every outcome maps to one audit outcome.

`ssh.forward`: the job runs until cancelled or expired, holding a local port forward over SSH;
it emits a `forward` event `running` once the forward is open (data: `ForwardOpened`), and
answers `ssh.proxy` control messages (a `ProxyRequest` whose token carries `ForwardTokenClaims`).

What is secret never rides in a payload: the client's private key and the values of the action's
secret parameters are the job's *secrets* (`SshSecrets`), sealed for the one runtime that runs it
(app.contract.sealing; the worker hands them to the executor as `ctx.secrets`).
"""

import secrets
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from app.contract.ssh.actions import SshAction
from app.contract.ssh.hosts import Document, SshForward, SshHost

SSH_EVENT_STEP = "ssh"
FORWARD_EVENT_STEP = "forward"
FORWARD_PROXY_ACTION = "ssh.proxy"
FORWARD_TOKEN_MAX_SECONDS = 300


class SshOutcome(str, Enum):
    """The audit outcome of an attempt; the API decides the first three, the runtime's report the rest."""

    ok = "ok"
    validation_failed = "validation_failed"
    approval_required = "approval_required"
    denied = "denied"
    failed = "failed"


class SshFailure(str, Enum):
    """Why an `ssh.run` or `ssh.forward` job failed before its command ran or its forward opened."""

    invalid_request = "invalid_request"  # the payload or the parameters were refused by the runtime
    not_allowed = "not_allowed"  # the action or forward may not run on this host
    unreachable = "unreachable"  # no TCP connection (refused, timed out, no such name)
    host_key_mismatch = "host_key_mismatch"  # the server's host key is not the pinned one: nothing was sent
    auth_failed = "auth_failed"  # the server refused the client key
    ssh_error = "ssh_error"  # any other SSH failure (protocol, channel refused, connection lost)

    @property
    def outcome(self) -> SshOutcome:
        return {SshFailure.invalid_request: SshOutcome.validation_failed,
                SshFailure.not_allowed: SshOutcome.denied}.get(self, SshOutcome.failed)


class _Payload(Document):
    host: SshHost
    connect_timeout_seconds: float = Field(default=10, gt=0, le=60)


class SshRunPayload(_Payload):
    action: SshAction
    parameters: dict[str, Any] = Field(default_factory=dict)  # the values of its parameters that are not secret


class SshForwardPayload(_Payload):
    forward: SshForward


class SshSecrets(Document):
    """An `ssh.run` or `ssh.forward` job's secrets (`ctx.secrets` on the runtime): never logged,
    never in an event or a result, never returned by the API."""

    client_private_key: SecretStr = Field(min_length=64, max_length=16384)  # OpenSSH or PEM text
    secret_parameters: dict[str, Any] = Field(default_factory=dict)  # values of the action's secret parameters


class ForwardTokenClaims(BaseModel):
    """What a proxy token for a forward says: one request of `method` through one forward, signed
    by the API with the runtime's signing key (app.contract.signing.sign_proxy_token) and honoured
    once (`nonce`) before `exp`."""

    model_config = ConfigDict(extra="ignore")

    forward_id: str = Field(min_length=1)  # the ssh.forward job
    workspace_id: str = Field(min_length=1)
    runtime_id: str = Field(min_length=1)
    method: str = Field(pattern=r"^[A-Z]{3,7}$")
    nonce: str = Field(min_length=16, max_length=200)
    exp: float

    @classmethod
    def issue(cls, forward_id: str, workspace_id: str, runtime_id: str, method: str, now: float,
              ttl_seconds: float) -> "ForwardTokenClaims":
        return cls(forward_id=forward_id, workspace_id=workspace_id, runtime_id=runtime_id, method=method.upper(),
                   nonce=secrets.token_urlsafe(18), exp=now + min(ttl_seconds, FORWARD_TOKEN_MAX_SECONDS))


class SshFailureReport(BaseModel):
    """Data of the `ssh` step's `error` event that precedes a failed job."""

    failure: SshFailure
    message: str
    host: str
    duration_ms: float


class SshRunResult(BaseModel):
    """An `ssh.run` job's result: the command ran; how it ended, what it said, how long it took."""

    host: str
    action: str
    command: str  # the audit form: words carrying secrets redacted
    parameters: dict[str, Any]  # the audit view: secret parameters redacted
    # "cancelled": the job was cancelled (its lease ended) while the command ran and the runtime
    # stopped the command; seen only in the `ssh` event's summary, the job itself ends cancelled.
    ended: Literal["exited", "signal", "timeout", "disconnected", "cancelled"]
    exit_status: int | None  # set when ended == "exited"
    exit_signal: str | None = None  # set when ended == "signal"
    stdout: str  # at most the action's output cap (UTF-8, undecodable bytes replaced)
    stderr: str
    stdout_bytes: int  # everything the command wrote, kept or not
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_sha256: str  # hex digest of all of stdout, beyond the cap too
    stderr_sha256: str
    connect_ms: float
    duration_ms: float  # from connecting to the end of the command

    @property
    def outcome(self) -> SshOutcome:
        return SshOutcome.ok if self.ended == "exited" and self.exit_status == 0 else SshOutcome.failed

    def summary(self) -> dict[str, Any]:
        """Everything but the output itself: what an audit record keeps (sizes and digests stand for it)."""
        return self.model_dump(mode="json", exclude={"stdout", "stderr"})


class ForwardOpened(BaseModel):
    """Data of the `forward` step's `running` event."""

    host: str
    forward: str
    target: str  # host:port as the SSH host sees it
    expires_at: float  # the forward closes then at the latest
