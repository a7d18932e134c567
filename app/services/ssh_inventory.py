"""The infra SSH inventory, from where `BERTH_SSH_INVENTORY` says: a YAML file (the local stack,
or one packaged with the function), an S3 object (`s3://bucket/key`) or an SSM parameter
(`ssm:/name`, a SecureString too), read through the app's AWS clients.

It is parsed and validated as a whole (app.contract.ssh.inventory): a bad inventory is never
partly used. Until a good one loads, the infra SSH routes answer 503 with the problems, each at its
line, and `/status` says the same; the rest of berth is unaffected. A file is read again when it
changes; an S3 object or SSM parameter every `BERTH_SSH_INVENTORY_REFRESH_SECONDS` (a failed read
is kept for as long, so a missing object is not fetched on every request).
"""

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.aws import AwsClients
from app.clock import Clock
from app.errors import ServiceUnavailable
from app.settings import Settings

if TYPE_CHECKING:
    from app.contract.ssh.inventory import SshInventory


class InventoryUnavailable(ServiceUnavailable):
    """No usable inventory: none is configured, it cannot be read, or it is invalid."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message + "".join(f"\n  - {problem}" for problem in problems))
        self.problems = problems


@dataclass
class _Loaded:
    inventory: "SshInventory | None"
    problems: list[str] = field(default_factory=list)
    loaded_at: float = 0.0
    version: Any = None  # the file's (mtime, size); None for a remote source


class SshInventorySource:
    def __init__(self, settings: Settings, aws: AwsClients, clock: Clock):
        self.location = settings.ssh_inventory.strip()
        self.refresh_seconds = settings.ssh_inventory_refresh_seconds
        self.aws = aws
        self.clock = clock
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.location)

    def inventory(self) -> "SshInventory":
        """The inventory, or InventoryUnavailable (503) saying what is wrong and where."""
        if not self.configured:
            raise InventoryUnavailable("infra SSH has no inventory", ["set BERTH_SSH_INVENTORY to a YAML file, "
                                       "an s3://bucket/key object or an ssm:/parameter name"])
        loaded = self._current()
        if loaded.inventory is None:
            raise InventoryUnavailable(f"the SSH inventory ({self.location}) cannot be used", loaded.problems)
        return loaded.inventory

    def report(self) -> dict[str, Any]:
        """What `/status` shows: where the inventory comes from, whether it loaded, what is in it."""
        if not self.configured:
            return {"configured": False, "ok": False, "detail": "BERTH_SSH_INVENTORY is not set"}
        loaded = self._current()
        report: dict[str, Any] = {"configured": True, "source": self.location, "ok": loaded.inventory is not None,
                                  "loaded_at": self.clock.iso(loaded.loaded_at)}
        if loaded.inventory is None:
            report["problems"] = loaded.problems
        else:
            report.update(hosts=len(loaded.inventory.hosts), actions=len(loaded.inventory.actions),
                          forwards=len(loaded.inventory.forwards))
        return report

    def _current(self) -> _Loaded:
        with self._lock:
            loaded = self._loaded
            version = self._file_version()
            stale = loaded is None or (
                version != loaded.version if self._is_file else
                self.clock.now() - loaded.loaded_at >= self.refresh_seconds)
            if stale:
                loaded = self._loaded = self._load(version)
            assert loaded is not None
            return loaded

    @property
    def _is_file(self) -> bool:
        return not self.location.startswith(("s3://", "ssm:"))

    def _file_version(self) -> Any:
        if not self._is_file:
            return None
        try:
            stat = os.stat(self.location)
        except OSError:
            return "missing"
        return (stat.st_mtime_ns, stat.st_size)

    def _load(self, version: Any) -> _Loaded:
        from app.contract.ssh.inventory import InventoryInvalid, parse_inventory

        now = self.clock.now()
        try:
            text = self._read()
        except _Unreadable as error:
            return _Loaded(None, [str(error)], now, version)
        try:
            return _Loaded(parse_inventory(text), [], now, version)
        except InventoryInvalid as invalid:
            return _Loaded(None, invalid.problems, now, version)

    def _read(self) -> str:
        location = self.location
        try:
            if location.startswith("s3://"):
                bucket, _, key = location.removeprefix("s3://").partition("/")
                if not bucket or not key:
                    raise _Unreadable(f"{location}: an S3 inventory is s3://bucket/key")
                body = self.aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
                return body.decode("utf-8")
            if location.startswith("ssm:"):
                name = location.removeprefix("ssm:")
                answer = self.aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
                return answer["Parameter"]["Value"]
            with open(location, encoding="utf-8") as file:
                return file.read()
        except _Unreadable:
            raise
        except UnicodeDecodeError:
            raise _Unreadable(f"{location} is not UTF-8 text") from None
        except OSError as error:
            raise _Unreadable(f"cannot read {location}: {error.strerror or error}") from None
        except Exception as error:  # botocore's ClientError and friends: say which, not a traceback
            raise _Unreadable(f"cannot read {location}: {_aws_reason(error)}") from None


class _Unreadable(Exception):
    pass


def _aws_reason(error: Exception) -> str:
    details = getattr(error, "response", {}).get("Error", {})
    return f"{details.get('Code', type(error).__name__)}: {details.get('Message', str(error))}"
