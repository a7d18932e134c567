"""The worker's settings, its saved registration, and its JSON-line logs.

Settings come from keyword arguments (the CLI) over `BERTH_WORKER_*` environment variables
over defaults. The registration (`runtime.json`) holds the runtime token, so it is written with
mode 0600 and only ever read back by this process; neither token is ever logged.
"""

import logging
import os
import re
import socket
import stat
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract.logs import JsonLineFormatter
from app.contract.messages import ControlUrl, RegisterResponse

RUNTIME_FILE_MODE = 0o600
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class WorkerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BERTH_WORKER_", extra="forbid")

    api_url: str
    join_token: SecretStr | None = None  # needed only when there is no saved registration
    name: str = Field(default_factory=lambda: socket.gethostname()[:100] or "runtime", min_length=1, max_length=100)
    data_dir: Path = Path.home() / ".berth" / "worker"
    max_concurrent_jobs: int = Field(default=2, ge=1, le=256)
    queue_mode: Literal["sqs", "lease"] = "lease"
    labels: dict[str, str] = Field(default_factory=dict)
    # Overrides of what registration returns; end-to-end tests set them small.
    heartbeat_interval_seconds: int | None = Field(default=None, ge=1)
    visibility_seconds: int | None = Field(default=None, ge=5, le=3600)
    poll_wait_seconds: int = Field(default=10, ge=0, le=20)  # long-poll wait on both queues
    stop_grace_seconds: float = Field(default=30.0, ge=0)  # running jobs may finish this long after SIGTERM
    cancel_grace_seconds: float = Field(default=10.0, ge=0)  # an executor has this long to honour ctx.cancelled
    flush_timeout_seconds: float = Field(default=10.0, ge=0)  # spool delivery attempts while stopping
    retry_max_seconds: float = Field(default=30.0, gt=0)  # cap of the backoff while the API is unreachable
    log_level: str = "INFO"
    # Host directories every sandbox sees read-only at the same path (pre-installed MCP servers).
    sandbox_tool_dirs: list[Path] = Field(default_factory=list)
    # Without bubblewrap a sandbox would run with rlimits only (no namespaces, the worker's network,
    # able to read what the worker's uid can): such a runtime runs no sandbox unless this is set.
    allow_unisolated_sandboxes: bool = False
    # The direct control endpoint (workers.control_server): HOST:PORT to listen on (port 0 picks a
    # free one; unset: control requests come through the queue only), and the URL the API should
    # use for it (default http://HOST:PORT as bound; required when HOST is a wildcard address).
    control_listen: str | None = None
    control_url: ControlUrl | None = None
    # Advertise http://<this EC2 instance's private IPv4>:<port> (host-networked ECS tasks).
    control_host_from_ec2_metadata: bool = False

    @field_validator("control_listen")
    @classmethod
    def _check_control_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @model_validator(mode="after")
    def _check_control_url(self) -> "WorkerConfig":
        if (self.control_url or self.control_host_from_ec2_metadata) and not self.control_listen:
            raise ValueError("a control URL is advertised only with control_listen")
        if self.control_url and self.control_host_from_ec2_metadata:
            raise ValueError("give control_url or control_host_from_ec2_metadata, not both")
        advertised = self.control_url or self.control_host_from_ec2_metadata
        if self.control_listen and not advertised and split_host_port(self.control_listen)[0] in WILDCARD_HOSTS:
            raise ValueError("listening on a wildcard address: give control_url (or control_host_from_ec2_metadata), "
                             "the address the API should use")
        return self

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def job_work_dir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / safe_path_component(job_id)


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def split_host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) as a host and a port; ValueError when it is neither."""
    host, separator, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, got {address!r}")
    if host not in WILDCARD_HOSTS and not re.fullmatch(r"[A-Za-z0-9.:\-]{1,253}", host):
        raise ValueError(f"not a host name or address: {host!r}")
    return host, int(port)


def safe_path_component(value: str) -> str:
    """`value` itself if it is safe as one file name (ids are); ValueError otherwise."""
    if not _SAFE_COMPONENT.match(value) or value in {".", ".."}:
        raise ValueError(f"not usable as a file name: {value!r}")
    return value


class RuntimeIdentity(RegisterResponse):
    """A registration as saved in `runtime.json`: the API's answer plus where and how it was made."""

    api_url: str
    queue_mode: Literal["sqs", "lease"]

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
            logging.getLogger("berth.worker").warning(
                "runtime file had mode %s; reset to %s", oct(mode), oct(RUNTIME_FILE_MODE)
            )
            os.chmod(path, RUNTIME_FILE_MODE)
        return cls.model_validate_json(path.read_text())


# --- logs -------------------------------------------------------------------------------------


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Their per-request lines would drown the worker's own.
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
