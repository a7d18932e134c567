"""The workspace's OpenAI-compatible endpoint (`/openai/v1`): the models it serves are its ready
installations, by served name; a request goes to an installation of the model it names.

An installation on a runtime is reached through its job's worker (`model.proxy`, app.contract.models):
buffered in a ControlReply (the control queue, or the worker's `/control` endpoint), or, for a
request that asks for a stream and a runtime the API reaches directly, streamed as the engine
answers (`/control/stream`). An external endpoint is called by the API itself, with its key.
Several ready installations of one name share its requests, taken in turn.
"""

import base64
import itertools
import threading
from collections.abc import Iterator
from typing import Any

from app.auth.principal import Principal
from app.contract.messages import ProxyResponse
from app.contract.models import EngineRequest
from app.domain.models import ModelInstallation
from app.errors import Conflict, NotFound
from app.services.control import ControlChannel, StreamedAnswer
from app.services.external_endpoints import ExternalEndpoints
from app.services.providers import ProviderCredentials
from app.settings import Settings
from app.store import Store

ROUTED_PATHS = ("chat/completions", "completions", "embeddings")
# What the client sent that the engine may need; its credentials and hop-by-hop headers stay here.
_FORWARDED_HEADERS = ("content-type", "accept", "openai-organization", "openai-project", "x-request-id")


class OpenAiGateway:
    def __init__(self, store: Store, settings: Settings, control: ControlChannel, providers: ProviderCredentials,
                 endpoints: ExternalEndpoints):
        self.store = store
        self.settings = settings
        self.control = control
        self.providers = providers
        self.endpoints = endpoints
        self._turns = itertools.count()
        self._lock = threading.Lock()

    def models(self, principal: Principal) -> list[ModelInstallation]:
        """One ready installation per served name, oldest first (the listing's `created`)."""
        by_name: dict[str, ModelInstallation] = {}
        for installation in sorted(self.store.models.routable(principal.workspace_id), key=lambda i: i.created_at):
            by_name.setdefault(installation.model_name, installation)
        return list(by_name.values())

    def route(self, principal: Principal, model: str) -> ModelInstallation:
        ready = [installation for installation in self.store.models.routable(principal.workspace_id)
                 if installation.model_name == model]
        if not ready:
            served = sorted({installation.model_name for installation in self.store.models.routable(
                principal.workspace_id)})
            raise NotFound(f"the model {model!r} is not served in this workspace"
                           f" ({'it serves ' + ', '.join(served) if served else 'no installation is ready'})")
        with self._lock:
            turn = next(self._turns)
        return ready[turn % len(ready)]

    def forward(self, principal: Principal, path: str, body: bytes, headers: dict[str, str], *, model: str,
                stream: bool) -> StreamedAnswer:
        """The answer of the installation `model` routes to, for `POST {path}` with `body`."""
        installation = self.route(principal, model)
        kept = {name: value for name, value in headers.items() if name.lower() in _FORWARDED_HEADERS}
        timeout = self.settings.openai_request_timeout_seconds
        if installation.is_external:
            key = self.providers.open(principal.workspace_id, installation.sealed_key) \
                if installation.sealed_key else None
            return self.endpoints.forward(installation.endpoint_url or "", key, "POST", path, kept, body, timeout)
        job = self.store.jobs.running(principal.workspace_id, installation.job_id or "")
        if job is None or job.is_final:
            self.store.models.forget(principal.workspace_id)
            raise Conflict(f"the model {model!r} is not ready: its installation {installation.installation_id}"
                           " has stopped")
        request = EngineRequest(method="POST", path=f"v1/{path}", headers=kept,
                                body_b64=base64.b64encode(body).decode(), timeout_seconds=timeout)
        arguments: dict[str, Any] = request.model_dump()
        if stream:
            streamed = self.control.stream(job, "model.proxy", arguments, timeout)
            if streamed is not None:
                return streamed
        answer = ProxyResponse(**self.control.call(job, "model.proxy", arguments, timeout=timeout))
        return StreamedAnswer(answer.status, answer.headers, _once(base64.b64decode(answer.body_b64)))


def _once(body: bytes) -> Iterator[bytes]:
    yield body
