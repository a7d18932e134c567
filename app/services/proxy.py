"""The runtime proxy: HTTP to a sandbox's streamable-HTTP server, through the runtime that runs it,
with a short-lived token (signed with the runtime's signing key, app.services.keyring) that the
runtime verifies."""

import base64

from app.auth.principal import Principal
from app.clock import Clock
from app.contract.messages import ProxyRequest, ProxyResponse
from app.contract.signing import proxy_token_claims, sign_proxy_token
from app.domain.jobs import Job
from app.domain.runtimes import Runtime
from app.errors import Conflict, NotFound
from app.services.control import ControlChannel
from app.services.keyring import RuntimeKeyring
from app.services.sandboxes import SandboxService
from app.settings import Settings
from app.store import Store

PROXY_TOKEN_SECONDS = 300


class RuntimeProxy:
    def __init__(self, store: Store, settings: Settings, sandboxes: SandboxService, control: ControlChannel,
                 keyring: RuntimeKeyring, clock: Clock):
        self.store = store
        self.keyring = keyring
        self.settings = settings
        self.sandboxes = sandboxes
        self.control = control
        self.clock = clock

    def _runtime(self, job: Job) -> Runtime | None:
        if not (job.runtime_id and job.runtime_workspace):
            return None
        return self.store.runtimes.get(job.runtime_workspace, job.runtime_id)

    def route(self, principal: Principal, sandbox_id: str) -> tuple[Job, Runtime | None]:
        """A sandbox and the runtime it runs on (None before it is assigned)."""
        job = self.sandboxes.get(principal, sandbox_id)
        return job, self._runtime(job)

    def token(self, principal: Principal, sandbox_id: str, method: str) -> tuple[str, float]:
        """A proxy token for one request of `method` to a running sandbox, and when it expires."""
        job = self.sandboxes.running(principal, sandbox_id)
        runtime = self._runtime(job)
        if runtime is None:
            raise NotFound(f"sandbox {sandbox_id} has no runtime")
        claims = proxy_token_claims(sandbox_id, job.workspace_id, runtime.runtime_id, method, self.clock.now(),
                                    PROXY_TOKEN_SECONDS)
        return sign_proxy_token(self.keyring.signing_key(runtime), claims), claims["exp"]

    def forward(self, principal: Principal, sandbox_id: str, *, method: str, path: str, query: str,
                headers: dict[str, str], body: bytes, token: str | None) -> ProxyResponse:
        job = self.sandboxes.running(principal, sandbox_id)
        if job.payload.get("transport") != "http":
            raise Conflict("this sandbox's server speaks stdio; only streamable-HTTP servers can be proxied")
        request = ProxyRequest(token=token or self.token(principal, sandbox_id, method)[0], method=method, path=path,
                               query=query, headers=headers, body_b64=base64.b64encode(body).decode())
        result = self.control.call(job, "proxy", request.model_dump(), timeout=self.settings.tool_call_timeout_seconds)
        return ProxyResponse(**result)
