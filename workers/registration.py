"""Who this worker is to the API: the registration saved in `runtime.json`, or a new one made with
the join token, and a new one again when the API revoked the saved one.

The registration holds the runtime token and the runtime key, so its file is written with mode
0600 and only ever read back by this process; no token or key is ever logged.
"""

import asyncio
import hashlib
import importlib.metadata
import logging
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from app.contract.logs import log
from app.contract.messages import RegisterRequest, RegisterResponse
from app.contract.sealing import RuntimeKeys
from workers.api_client import ApiError, ApiUnavailable, RuntimeApiClient, Unauthorized
from workers.config import WorkerConfig
from workers.executors import registry
from workers.executors.registry import ExecutorRegistry
from workers.mailbox import describe_invalid
from workers.retry import Retry, RetryStopped

RUNTIME_FILE_MODE = 0o600

logger = logging.getLogger("berth.worker")


class RuntimeIdentity(RegisterResponse):
    """A registration as saved in `runtime.json`: the API's answer plus where and how it was made."""

    api_url: str
    queue_mode: Literal["sqs", "lease"]

    def runtime_keys(self) -> RuntimeKeys | None:
        """The keys derived from the runtime key; None when the API issued none."""
        return RuntimeKeys.derive(self.runtime_key) if self.runtime_key else None

    def signing_key(self) -> str:
        """The key that verifies what the API signs for this runtime (control requests, proxy
        tokens): the runtime key's signing key. Until the API issues runtime keys, the digest of
        the runtime token, which is what that API signs with; that fallback goes once it does."""
        keys = self.runtime_keys()
        return keys.signing if keys else hashlib.sha256(self.runtime_token.encode()).hexdigest()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, RUNTIME_FILE_MODE)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode != RUNTIME_FILE_MODE:
            raise PermissionError(f"{path} has mode {oct(mode)}, expected {oct(RUNTIME_FILE_MODE)}")

    @classmethod
    def load(cls, path: Path) -> "RuntimeIdentity | None":
        if not path.exists():
            return None
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode != RUNTIME_FILE_MODE:
            # Someone widened it; the token inside is still ours, so narrow it back and say so.
            log(logger, logging.WARNING, "runtime file had a wider mode; narrowed it", mode=oct(mode),
                now=oct(RUNTIME_FILE_MODE))
            os.chmod(path, RUNTIME_FILE_MODE)
        return cls.model_validate_json(path.read_text())


class Registration:
    """Finds this worker's identity for each of its working lives (one per runtime token)."""

    def __init__(self, config: WorkerConfig, executors: ExecutorRegistry, retry: Retry,
                 control_url: str | None = None):
        self._config = config
        self._executors = executors
        self._retry = retry
        self._control_url = control_url  # where the API reaches our control endpoint; None: queue only
        self._reuse_saved = True

    async def identity(self, api: RuntimeApiClient, stop: asyncio.Event) -> RuntimeIdentity | None:
        """The saved registration for this API, else a new one made with the join token; None when
        there is neither (the reason is logged) or `stop` was set while the API was unreachable."""
        config = self._config
        saved = self._saved() if self._reuse_saved else None
        if saved is not None and saved.api_url == config.api_url:
            log(logger, logging.INFO, "using saved registration", runtime_id=saved.runtime_id,
                queue_mode=saved.queue_mode)
            return saved
        if config.join_token is None:
            log(logger, logging.ERROR, "not registered with this API and no join token given", api=config.api_url)
            return None
        try:
            request = await asyncio.to_thread(self._request, config.join_token.get_secret_value())
        except ValidationError as exc:
            # Without the inputs: one of them is the join token.
            problems = exc.errors(include_input=False, include_url=False)
            log(logger, logging.ERROR, "invalid registration settings", errors=problems)
            return None
        return await self._register(api, request, stop)

    def revoked(self) -> bool:
        """The API refused this registration's token: True when a new one can be made (and the saved
        one is not used again), False when there is no join token to make it with."""
        if self._config.join_token is None:
            log(logger, logging.ERROR, "runtime token revoked and no join token (BERTH_WORKER_JOIN_TOKEN) to register "
                                       "again; exiting")
            return False
        log(logger, logging.WARNING, "runtime token revoked; registering again with the join token")
        self._reuse_saved = False
        return True

    def _saved(self) -> RuntimeIdentity | None:
        try:
            return RuntimeIdentity.load(self._config.runtime_file)
        except ValueError as exc:
            log(logger, logging.ERROR, "saved registration unreadable; ignoring it", error=describe_invalid(exc))
            return None

    async def _register(self, api: RuntimeApiClient, request: RegisterRequest,
                        stop: asyncio.Event) -> RuntimeIdentity | None:
        def unreachable(error: Exception, delay: float) -> None:
            log(logger, logging.WARNING, "API unreachable; will retry registering", error=str(error),
                retry_in_seconds=round(delay, 2))

        try:
            response = await self._retry.until_done(lambda: api.register(request), retry_on=ApiUnavailable,
                                                    on_failure=unreachable, stop=stop)
        except RetryStopped:
            return None
        except Unauthorized:
            log(logger, logging.ERROR, "join token rejected (invalid, used up or expired)")
            return None
        except ApiError as exc:
            log(logger, logging.ERROR, "registration refused", error=str(exc))
            return None
        config = self._config
        identity = RuntimeIdentity(**response.model_dump(), api_url=config.api_url, queue_mode=config.queue_mode)
        identity.save(config.runtime_file)
        log(logger, logging.INFO, "registered", runtime_id=identity.runtime_id, capabilities=request.capabilities)
        return identity

    def _request(self, join_token: str) -> RegisterRequest:
        """What this host offers (detecting it runs programs: call it off the event loop)."""
        config = self._config
        return RegisterRequest(
            join_token=join_token,
            name=config.name,
            capabilities=self._executors.job_types,
            runtimes=registry.detect_runtimes(self._executors.host.models),
            # Facts, so they win over given labels: the API's dispatch reads the sandbox driver.
            labels={**config.labels, **registry.sandbox_labels(config.allow_unisolated_sandboxes)},
            gpus=registry.detect_gpus(),
            max_concurrent_jobs=config.max_concurrent_jobs,
            free_disk_bytes=registry.free_disk_bytes(config.data_dir),
            version=_version(),
            queue_mode=config.queue_mode,
            control_url=self._control_url,
            offers=self._executors.offers(config.sandbox_tool_dirs, config.allow_unisolated_sandboxes),
        )


def _version() -> str:
    try:
        return importlib.metadata.version("berth")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
