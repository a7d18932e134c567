"""Health, readiness, version, policies, storage and capabilities."""

import os
import shutil
from pathlib import Path

from app import __version__, aws
from app.contract.messages import RUNTIME_KINDS
from app.contract.policy import SandboxPolicy
from app.settings import Settings, get_settings


def policies(settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    return {
        "limits": {
            "max_ttl_seconds": settings.max_ttl_seconds,
            "default_ttl_seconds": settings.default_ttl_seconds,
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "max_body_bytes": settings.max_body_bytes,
            "tool_call_timeout_seconds": settings.tool_call_timeout_seconds,
        },
        "sandbox": {
            "memory_mb": settings.sandbox_memory_mb,
            "cpu_seconds": settings.sandbox_cpu_seconds,
            "max_processes": settings.sandbox_max_processes,
            "max_open_files": settings.sandbox_max_open_files,
            "network": settings.sandbox_network,
        },
        "commands": {"allow": settings.command_allowlist, "deny": settings.command_denylist},
        "matrixshell": {"enabled": settings.matrixshell_enabled},
    }


def sandbox_policy(ttl_seconds: int | None = None, settings: Settings | None = None) -> SandboxPolicy:
    """The policy every sandbox runs under, as the worker receives it with the job."""
    settings = settings or get_settings()
    return SandboxPolicy(
        memory_mb=settings.sandbox_memory_mb, cpu_seconds=settings.sandbox_cpu_seconds,
        max_processes=settings.sandbox_max_processes, max_open_files=settings.sandbox_max_open_files,
        network=settings.sandbox_network, command_allowlist=settings.command_allowlist,
        command_denylist=settings.command_denylist, ttl_seconds=ttl_seconds or settings.default_ttl_seconds,
    )


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


def storage() -> dict:
    data_dir = get_settings().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    used, files = _directory_bytes(data_dir)
    disk = shutil.disk_usage(data_dir)
    return {
        "data_dir": str(data_dir),
        "used_bytes": used,
        "files": files,
        "disk": {"total_bytes": disk.total, "used_bytes": disk.used, "free_bytes": disk.free},
    }


def _check(name: str, probe) -> dict:
    try:
        detail = probe()
        return {"name": name, "ok": True, "detail": detail or ""}
    except Exception as error:  # a readiness probe reports failures, it does not raise them
        return {"name": name, "ok": False, "detail": f"{type(error).__name__}: {error}"}


def core_checks() -> list[dict]:
    settings = get_settings()
    return [
        _check("table", lambda: aws.client("dynamodb").describe_table(TableName=settings.table_name)["Table"]["TableStatus"]),
        _check("dead_letter_queue", lambda: aws.client("sqs").get_queue_url(QueueName=settings.dead_letter_queue_name)["QueueUrl"]),
        _check("kms_key", lambda: aws.client("kms").describe_key(KeyId=settings.kms_key_alias)["KeyMetadata"]["KeyState"]),
        _check("storage", lambda: f"{shutil.disk_usage(_ensure_dir(settings.data_dir)).free} bytes free"),
    ]


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_runtimes(load_runtimes, warnings: list[str]) -> list[dict]:
    try:
        return load_runtimes()
    except Exception as error:  # reported as a warning; the table check says why
        warnings.append(f"could not list runtimes: {type(error).__name__}")
        return []


def readiness(load_runtimes) -> tuple[bool, dict]:
    checks = core_checks()
    warnings: list[str] = []
    runtimes = _load_runtimes(load_runtimes, warnings)
    if not any(r["status"] == "online" for r in runtimes):
        warnings.append("no runtime is online: jobs will wait in the queue until one registers")
    ready = all(check["ok"] for check in checks)
    return ready, {"ready": ready, "checks": checks, "warnings": warnings}


def sandbox_driver(runtimes: list[dict]) -> dict:
    """What isolates sandboxes: as the online runtimes report it."""
    drivers = sorted({r.get("labels", {}).get("sandbox", "unknown") for r in runtimes if r["status"] == "online"})
    if not drivers:
        return {"driver": "none", "detail": "no runtime online"}
    return {"driver": drivers[0] if len(drivers) == 1 else "mixed", "runtimes": drivers}


def status_report(load_runtimes) -> dict:
    checks = {check["name"]: check for check in core_checks()}
    warnings: list[str] = []
    runtimes = _load_runtimes(load_runtimes, warnings)
    return {
        "success": True,
        "service": {"name": "berth", "version": __version__, "mode": get_settings().mode, "status": "ok"},
        "sandbox": sandbox_driver(runtimes),
        "table": checks["table"],
        "queues": {"dead_letter": checks["dead_letter_queue"], "runtimes": len(runtimes)},
        "kms": checks["kms_key"],
        "storage": storage(),
        "warnings": warnings,
    }


def capabilities(runtimes: list[dict]) -> dict:
    settings = get_settings()
    online = [r for r in runtimes if r["status"] == "online"]
    kinds = {kind: any(r.get("runtimes", {}).get(kind) for r in online) for kind in RUNTIME_KINDS}
    capability_set = sorted({c for r in online for c in r.get("capabilities", [])})
    return {
        "capabilities": capability_set,
        "runtimes": kinds,
        "limits": {
            "max_ttl_seconds": settings.max_ttl_seconds,
            "max_concurrent_jobs": min(settings.max_concurrent_jobs,
                                       sum(r.get("max_concurrent_jobs", 0) for r in online)) if online else 0,
        },
        "online_runtimes": len(online),
    }
