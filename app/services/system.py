"""Readiness, status, storage and capabilities: what berth and its runtimes can do right now."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import __version__, companions
from app.clock import Clock
from app.contract.messages import RUNTIME_KINDS
from app.domain.runtimes import Runtime
from app.kms import Kms
from app.queues import Queues
from app.schemas.runtimes import sandboxes_view
from app.services.runtimes import RuntimeService
from app.services.ssh_inventory import SshInventorySource
from app.settings import Settings
from app.store import Store


def _directory_bytes(root: Path) -> tuple[int, int]:
    total = files = 0
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
                files += 1
            except OSError:
                continue
    return total, files


def _check(name: str, probe: Callable[[], Any]) -> dict[str, Any]:
    try:
        detail = probe()
        return {"name": name, "ok": True, "detail": detail or ""}
    except Exception as error:  # a readiness probe reports failures, it does not raise them
        return {"name": name, "ok": False, "detail": f"{type(error).__name__}: {error}"}


class SystemService:
    def __init__(self, settings: Settings, store: Store, queues: Queues, kms: Kms, runtimes: RuntimeService,
                 ssh_inventory: SshInventorySource, clock: Clock):
        self.settings = settings
        self.store = store
        self.queues = queues
        self.kms = kms
        self.runtimes = runtimes
        self.ssh_inventory = ssh_inventory
        self.clock = clock

    def _data_dir(self) -> Path:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.data_dir

    def storage(self) -> dict[str, Any]:
        data_dir = self._data_dir()
        used, files = _directory_bytes(data_dir)
        disk = shutil.disk_usage(data_dir)
        return {
            "data_dir": str(data_dir),
            "used_bytes": used,
            "files": files,
            "disk": {"total_bytes": disk.total, "used_bytes": disk.used, "free_bytes": disk.free},
        }

    def runtime_storage(self, workspace_id: str) -> list[dict[str, Any]]:
        """The package caches of the workspace's own runtimes, as their heartbeats last reported
        them (the shared fleet's are the platform's)."""
        return [{"runtime_id": runtime.runtime_id, "name": runtime.name, "free_disk_bytes": runtime.free_disk_bytes,
                 "package_cache": runtime.package_cache}
                for runtime in self.runtimes.visible(workspace_id) if runtime.workspace_id == workspace_id]

    def core_checks(self) -> dict[str, dict[str, Any]]:
        """The table, the dead-letter queue, the KMS key and local storage, by name."""
        checks = [
            _check("table", self.store.table.status),
            _check("dead_letter_queue", self.queues.probe_dead_letter_queue),
            _check("kms_key", self.kms.key_state),
            _check("storage", lambda: f"{shutil.disk_usage(self._data_dir()).free} bytes free"),
        ]
        return {check["name"]: check for check in checks}

    def runtime_statuses(self, warnings: list[str]) -> list[tuple[Runtime, str]]:
        """Every runtime with its effective status; a failed listing is a warning, not an error."""
        try:
            runtimes = self.runtimes.all()
        except Exception as error:  # reported as a warning; the table check says why
            warnings.append(f"could not list runtimes: {type(error).__name__}")
            return []
        now = self.clock.now()
        return [(runtime, self.runtimes.status(runtime, now)) for runtime in runtimes]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks = list(self.core_checks().values())
        warnings: list[str] = []
        runtimes = self.runtime_statuses(warnings)
        if not any(status == "online" for _, status in runtimes):
            warnings.append("no runtime is online: jobs will wait in the queue until one registers")
        warnings += isolation_warnings(runtimes)
        ready = all(check["ok"] for check in checks)
        return ready, {"ready": ready, "checks": checks, "warnings": warnings}

    def status_report(self) -> dict[str, Any]:
        """The service, its sandbox driver, table, queues, key and storage (the control surface's /status)."""
        checks = self.core_checks()
        warnings: list[str] = []
        runtimes = self.runtime_statuses(warnings)
        warnings += isolation_warnings(runtimes)
        beside = companions.reports()  # what runs beside this API (the local stack's worker), if anything
        warnings += [f"{report.name}: {report.detail}" for report in beside if not report.healthy]
        healthy = all(report.healthy for report in beside)
        return {
            "service": {"name": "berth", "version": __version__, "mode": self.settings.mode,
                        "status": "ok" if healthy else "degraded"},
            **({"companions": [report.view() for report in beside]} if beside else {}),
            "sandbox": sandbox_driver(runtimes),
            "table": checks["table"],
            "queues": {"dead_letter": checks["dead_letter_queue"], "runtimes": len(runtimes)},
            "kms": checks["kms_key"],
            "storage": self.storage(),
            "infra_ssh": self._infra_ssh(warnings),
            "warnings": warnings,
        }

    def _infra_ssh(self, warnings: list[str]) -> dict[str, Any]:
        """Whether the SSH inventory loaded (a configured one that does not is a warning, with its problems)."""
        report = self.ssh_inventory.report()
        if report["configured"] and not report["ok"]:
            warnings.append("the infra SSH inventory cannot be used: " + "; ".join(report.get("problems", [])))
        return report

    def capabilities(self, workspace_id: str) -> dict[str, Any]:
        """Aggregated from the online runtimes that serve the workspace."""
        now = self.clock.now()
        online = [r for r in self.runtimes.visible(workspace_id) if self.runtimes.status(r, now) == "online"]
        kinds = {kind: any(r.runtimes.get(kind) for r in online) for kind in RUNTIME_KINDS}
        return {
            "capabilities": sorted({c for r in online for c in r.capabilities}),
            "runtimes": kinds,
            "sandboxes": {"runtimes": [{"runtime_id": r.runtime_id, "name": r.name, "shared": r.shared,
                                        **sandboxes_view(r)} for r in online],
                          "warnings": isolation_warnings([(r, "online") for r in online])},
            "limits": {
                "max_ttl_seconds": self.settings.max_ttl_seconds,
                "max_concurrent_jobs": min(self.settings.max_concurrent_jobs,
                                           sum(r.max_concurrent_jobs for r in online)) if online else 0,
            },
            "online_runtimes": len(online),
        }


def sandbox_driver(runtimes: list[tuple[Runtime, str]]) -> dict[str, Any]:
    """What isolates sandboxes, as the online runtimes report it, runtime by runtime."""
    online = [runtime for runtime, status in runtimes if status == "online"]
    if not online:
        return {"driver": "none", "detail": "no runtime online"}
    drivers = sorted({runtime.isolation for runtime in online})
    return {"driver": drivers[0] if len(drivers) == 1 else "mixed", "drivers": drivers,
            "runtimes": [{"runtime_id": r.runtime_id, "name": r.name, "shared": r.shared, **sandboxes_view(r)}
                         for r in online]}


def isolation_warnings(runtimes: list[tuple[Runtime, str]]) -> list[str]:
    """A warning for each online runtime that runs sandboxes without isolation."""
    return [warning for runtime, status in runtimes if status == "online"
            and (warning := runtime.isolation_warning) is not None]
