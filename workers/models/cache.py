"""The runtime's model cache: a Hugging Face cache (`models--org--name/{blobs,snapshots,refs}`)
under the worker's data directory, one lock per repo for the pulls of this worker, and eviction.

This worker owns its cache (one worker per data directory), so what a pull that died with its
process left behind (`blobs/*.incomplete`) can be removed by the next pull of that repo.
"""

import re
import threading
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import scan_cache_dir

from app.contract.models import EvictionResult
from workers.models.files import VerifiedSnapshot
from workers.models.host import ModelHost
from workers.models.progress import PullAborted

_repo_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()


def is_commit(revision: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{40}", revision) is not None


def repo_dir(host: ModelHost, model: str) -> Path:
    return host.hub_cache / f"models--{model.replace('/', '--')}"


class RepoLock:
    """The repo's lock in this worker, given up while waiting when `abort` is set."""

    def __init__(self, directory: Path, abort: threading.Event, on_wait: Callable[[], None] = lambda: None):
        with _repo_locks_guard:
            self._lock = _repo_locks.setdefault(str(directory), threading.Lock())
        self._abort, self._on_wait = abort, on_wait

    def __enter__(self) -> None:
        if self._lock.acquire(blocking=False):
            return
        self._on_wait()
        while not self._lock.acquire(timeout=0.2):
            if self._abort.is_set():
                raise PullAborted()

    def __exit__(self, *exc_info) -> None:
        self._lock.release()



def remove_partial_files(directory: Path) -> None:
    """Temporary files of pulls that died with their process (call it holding the repo's lock)."""
    for partial in (directory / "blobs").glob("*.incomplete"):
        partial.unlink(missing_ok=True)


def is_cached(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def cached_ref(directory: Path, revision: str) -> str | None:
    """The commit a branch or tag named when it was last pulled here."""
    try:
        commit = (directory / "refs" / revision).read_text().strip()
    except (OSError, ValueError):
        return None
    return commit if is_commit(commit) else None


def remember_ref(directory: Path, revision: str, commit: str) -> None:
    """Record which commit a branch or tag named, as huggingface_hub does (`refs/<revision>`), so a
    verified snapshot can still be found by that name while the hub is unreachable."""
    if is_commit(revision) or ".." in revision.split("/"):
        return
    ref = directory / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def evict(host: ModelHost, model: str, commit: str) -> EvictionResult:
    """Remove `commit` of `model` from the cache: its snapshot, the blobs no other cached revision
    links to, its refs and its verified record. Blocking; waits for a pull of the repo to end."""
    with RepoLock(repo_dir(host, model), threading.Event()):
        VerifiedSnapshot.path(host.state_dir, model, commit).unlink(missing_ok=True)
        if not host.hub_cache.is_dir():
            return EvictionResult(evicted=False, reason="nothing is cached on this runtime")
        cache = scan_cache_dir(host.hub_cache)
        cached = any(repo.repo_id == model and any(revision.commit_hash == commit for revision in repo.revisions)
                     for repo in cache.repos)
        if not cached:
            return EvictionResult(evicted=False, reason=f"{model}@{commit[:12]} is not cached on this runtime")
        strategy = cache.delete_revisions(commit)
        strategy.execute()
        return EvictionResult(evicted=True, freed_bytes=strategy.expected_freed_size)
