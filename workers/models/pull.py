"""Pulling a revision into the runtime's Hugging Face cache, checked before and verified after.

Checking: the revision is pinned to its commit; the files an engine needs are chosen; a gated repo's
access is tried with the job's token; their sizes, less what the cache already holds, must fit the
free disk of the cache's filesystem. Downloading: `snapshot_download` at the commit with exactly
those files, its bars feeding a `DownloadMeter`. Each file is hashed while it downloads (sha256 for
LFS files, the git blob id for the rest: `StreamingVerifier`) and checked when it lands, so the
check adds only the hashing of the last bytes; a mismatch stops the pull and removes the bad file.
Only a pull whose every file checked out records its snapshot as verified (`VerifiedSnapshot`),
and only a recorded snapshot is ever reused.

Resuming: huggingface_hub resumes a broken connection within a pull with a Range request. A pull
that stopped (cancelled, hub gone, worker stopped) keeps every finished file; huggingface_hub 2.x
discards partial ones (process-unique temporary files), so the next pull fetches only the files
that had not finished — at most `DOWNLOAD_WORKERS` of them were in flight.

One pull per repo at a time in this worker (a lock), so a second attach of the same revision
waits for the first and then reuses its snapshot.
"""

import asyncio
import glob
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from app.contract.models import FailureCode, InstallationStatus
from workers.models import hub
from workers.models.cache import (
    RepoLock,
    cached_ref,
    is_cached,
    is_commit,
    remember_ref,
    remove_partial_files,
    repo_dir,
)
from workers.models.files import RepoFile, VerifiedSnapshot, remove_cached_file, select_engine_files
from workers.models.host import ModelHost
from workers.models.installation import Installation
from workers.models.progress import DownloadMeter, ProgressThrottle, PullAborted
from workers.models.verify import StreamingVerifier

DOWNLOAD_WORKERS = 8  # huggingface_hub's default: what a pull without berth would use
DISK_HEADROOM_BYTES = 256 * 1024 * 1024  # left free after the pull, for the engine's logs and caches
# Pulls block a thread each for as long as they run (or wait for their repo's lock): they get their
# own, so that many pulls never starve the worker's other `asyncio.to_thread` work (its event spool).
_PULL_THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="model-pull")


@dataclass(frozen=True)
class Phase:
    """A step of the pull, for the job to report (sent from the pulling thread)."""

    step: str
    step_status: str
    message: str
    status: InstallationStatus
    facts: dict


@dataclass(frozen=True)
class PullOutcome:
    model: str
    commit: str
    local_path: str
    files_total: int
    bytes_total: int
    bytes_downloaded: int
    cached: bool


class SnapshotPull:
    """One pull, run in a thread (`run`); `abort` stops it from outside."""

    def __init__(self, host: ModelHost, model: str, revision: str, token: str | None,
                 on_phase: Callable[[Phase], object]):
        self.host, self.model, self.revision, self.token = host, model, revision, token
        self._on_phase = on_phase  # called in the pulling thread
        self.abort = threading.Event()
        self.meter = DownloadMeter(self.abort)
        self.bytes_total = 0
        self.bytes_cached = 0  # of the needed files, already in the cache when the pull began
        self.present: list[RepoFile] = []
        self._snapshot = Path()
        self._problems: list[str] = []
        self._lock = threading.Lock()

    def run(self) -> PullOutcome:
        self._phase("checking", "running", f"resolving {self.model}@{self.revision}", InstallationStatus.checking)
        try:
            revision = hub.resolve(self.model, self.revision, self.token)
        except hub.PullFailed as failure:
            if failure.code is not FailureCode.hub_unreachable:
                raise
            return self._offline_reuse(failure)
        needed = select_engine_files(revision.files)
        if not any(file.path.endswith((".safetensors", ".bin")) for file in needed):
            raise hub.PullFailed(FailureCode.invalid, f"{self.model} has no safetensors or .bin weights to serve")
        if revision.gated:
            probe = next((file for file in needed if file.path == "config.json"), needed[0])
            hub.check_access(revision, probe.path, self.token)
        with RepoLock(repo_dir(self.host, self.model), self.abort, lambda: self._phase(
                "checking", "running", "waiting for another pull of this repo to finish", InstallationStatus.checking)):
            return self._pull(revision.commit, needed, revision.gated, revision.private)

    # --- steps ----------------------------------------------------------------------------

    def _pull(self, commit: str, needed: list[RepoFile], gated: bool, private: bool) -> PullOutcome:
        self.bytes_total = sum(file.size for file in needed)
        self._snapshot = repo_dir(self.host, self.model) / "snapshots" / commit
        record = VerifiedSnapshot.load(self.host.state_dir, self.model, commit)
        if record is not None and {f["path"] for f in record.files} >= {f.path for f in needed} \
                and record.intact(self._snapshot):
            return self._reuse(commit, "already on this runtime, verified")
        remove_partial_files(repo_dir(self.host, self.model))
        present = [file for file in needed if is_cached(self._snapshot / file.path, file.size)]
        self.present, self.bytes_cached = present, sum(file.size for file in present)
        to_fetch = len(needed) - len(present)
        self._check_disk(self.bytes_total - self.bytes_cached, to_fetch)
        self._phase("checking", "ok", f"{self.model}@{commit[:12]}: {len(needed)} files, {_size(self.bytes_total)};"
                    f" {to_fetch} to download ({_size(self.bytes_total - self.bytes_cached)})",
                    InstallationStatus.checking, commit=commit, bytes_total=self.bytes_total,
                    files_total=len(needed), bytes_done=self.bytes_cached, files_done=len(present))
        verifier = StreamingVerifier(repo_dir(self.host, self.model) / "blobs", self.abort)
        # One verifier per file a download thread may be writing, in the order they are fetched.
        with ThreadPoolExecutor(max_workers=DOWNLOAD_WORKERS + 1, thread_name_prefix="verify") as verifiers:
            in_fetch_order = sorted(needed, key=lambda file: file.path)
            verifying = [verifiers.submit(self._verify, verifier, file) for file in in_fetch_order]
            try:
                self._download(commit, needed)
            except BaseException:
                self.abort.set()  # the verifiers waiting for files that will not come
                raise
            self._phase("verifying", "running", "checking the last bytes' hashes", InstallationStatus.verifying)
            for future in verifying:
                future.result()
        if self._problems:
            raise hub.PullFailed(FailureCode.verification_failed, "verification failed: " + "; ".join(
                self._problems[:3]) + " (the bad files were removed; pull again to fetch them anew)")
        VerifiedSnapshot.of(self.model, commit, needed, gated, private).save(self.host.state_dir)
        remember_ref(repo_dir(self.host, self.model), self.revision, commit)
        bytes_downloaded = self.meter.sample()[0]
        return PullOutcome(self.model, commit, str(self._snapshot), len(needed), self.bytes_total, bytes_downloaded,
                           cached=False)

    def _download(self, commit: str, needed: list[RepoFile]) -> None:
        self._phase("downloading", "running", f"downloading {_size(self.bytes_total - self.bytes_cached)}",
                    InstallationStatus.downloading)
        try:
            snapshot_download(
                self.model, revision=commit, cache_dir=self.host.hub_cache, endpoint=hub.endpoint(),
                token=self.token or False, allow_patterns=[glob.escape(file.path) for file in needed],
                max_workers=DOWNLOAD_WORKERS, tqdm_class=self.meter.bar_class(),
            )
        except PullAborted:
            if self._problems:
                return  # a landed file failed verification: reported below, with the others
            raise
        except Exception as error:
            raise hub.describe(error, self.model, commit, self.token) from error
        self._phase("downloading", "ok", f"downloaded {_size(self.meter.sample()[0])}",
                    InstallationStatus.downloading, fraction=1.0, bytes_done=self.bytes_total,
                    files_done=len(needed))

    def _verify(self, verifier: StreamingVerifier, file: RepoFile) -> None:
        try:
            problem = verifier.verify(file)
        except PullAborted:
            return
        if problem is None:
            return
        with self._lock:
            self._problems.append(problem)
        remove_cached_file(self._snapshot.parent.parent, self._snapshot.name, file)
        self.abort.set()  # no point fetching the rest of a snapshot that cannot be used as it is

    def _check_disk(self, needed_bytes: int, files: int) -> None:
        self.host.hub_cache.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.host.hub_cache).free
        if needed_bytes + DISK_HEADROOM_BYTES > free:
            raise hub.PullFailed(FailureCode.disk_full, f"not enough disk: {files} file(s) need {_size(needed_bytes)}"
                                 f" (+{_size(DISK_HEADROOM_BYTES)} to spare) and {self.host.hub_cache} has"
                                 f" {_size(free)} free")

    def _reuse(self, commit: str, why: str) -> PullOutcome:
        record = VerifiedSnapshot.load(self.host.state_dir, self.model, commit)
        assert record is not None
        snapshot = repo_dir(self.host, self.model) / "snapshots" / commit
        self._phase("checking", "ok", f"{self.model}@{commit[:12]}: {why}; nothing to download",
                    InstallationStatus.checking, commit=commit, bytes_total=record.total_bytes,
                    bytes_done=record.total_bytes, files_total=len(record.files), files_done=len(record.files),
                    cached=True)
        return PullOutcome(self.model, commit, str(snapshot), len(record.files), record.total_bytes, 0, cached=True)

    def _offline_reuse(self, failure: hub.PullFailed) -> PullOutcome:
        """The hub is unreachable: a verified snapshot of a public repo may still serve. (A gated or
        private one may not: this job's token could not be checked against it.)"""
        commit = self.revision if is_commit(self.revision) else cached_ref(repo_dir(self.host, self.model),
                                                                              self.revision)
        record = VerifiedSnapshot.load(self.host.state_dir, self.model, commit) if commit else None
        snapshot = repo_dir(self.host, self.model) / "snapshots" / (commit or "-")
        if commit is None or record is None or record.gated or record.private or not record.intact(snapshot):
            raise failure
        return self._reuse(commit, f"the hub is unreachable ({failure}); using the snapshot verified here")

    def _phase(self, step: str, step_status: str, message: str, status: InstallationStatus, fraction: float = 0.0,
               **facts) -> None:
        self._on_phase(Phase(step, step_status, message, status, {"fraction": fraction, **facts}))


# --- the async side ----------------------------------------------------------------------------

SAMPLE_SECONDS = 0.25


async def run_pull(host: ModelHost, model: str, revision: str, token: str | None, installation: Installation,
                   cancelled: asyncio.Event) -> PullOutcome | None:
    """Pull in a thread, reporting its phases and (throttled) its bytes; None when `cancelled`
    stopped it first. A stopped pull ends in its thread at its next chunk, deleting its partial
    files and never recording the snapshot as verified."""
    loop = asyncio.get_running_loop()
    phases: asyncio.Queue[Phase] = asyncio.Queue()
    pull = SnapshotPull(host, model, revision, token, lambda phase: loop.call_soon_threadsafe(phases.put_nowait, phase))
    task = asyncio.ensure_future(loop.run_in_executor(_PULL_THREADS, pull.run))
    stop: asyncio.Future[Any] = asyncio.ensure_future(cancelled.wait())
    throttle: ProgressThrottle | None = None
    try:
        while True:
            await asyncio.wait({task, stop}, timeout=SAMPLE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            while not phases.empty():
                phase = phases.get_nowait()
                await installation.report(phase.step, phase.step_status, phase.message, status=phase.status,
                                          **phase.facts)
                if phase.status is InstallationStatus.downloading and phase.step_status == "running":
                    throttle = ProgressThrottle(pull.bytes_total, time.monotonic())
            if cancelled.is_set():
                pull.abort.set()
                task.add_done_callback(lambda done: done.cancelled() or done.exception())
                return None
            if task.done():
                return task.result()
            if throttle is not None and installation.status is InstallationStatus.downloading:
                written, files = pull.meter.sample()
                done = min(pull.bytes_cached + written, pull.bytes_total)
                if throttle.due(done, time.monotonic()):
                    await installation.report(
                        "downloading", "running", f"{_size(done)} of {_size(pull.bytes_total)}",
                        status=InstallationStatus.downloading, fraction=done / max(pull.bytes_total, 1),
                        bytes_done=done, files_done=files + len(pull.present))
    finally:
        stop.cancel()


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
