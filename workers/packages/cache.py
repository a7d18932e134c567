"""The package cache: packages installed once per exact version, run read-only by sandboxes.

Layout under the cache root (one per runtime; several worker processes may share it):

    installed/<registry>/<name>/<version>/receipt.json   what was installed, its entry point, size
    installed/<registry>/<name>/<version>/files/         the install; a sandbox sees only this, read-only
    locks/<registry>/<name>/<version>.install            held while the version is installed or evicted
    locks/<registry>/<name>/<version>.lease              held shared by every user of the version
    staging/<registry>/<name>/<version>/<random>/        an install under way, or one being deleted

(`<name>` is the registry's canonical name with `/` as `+`; names and versions are validated by
`app.contract.packages`, so each is one safe path component.)

- Atomic: an install is built in staging and renamed into `installed/` as a whole, its receipt
  written last inside it; a version directory that exists is complete. A crash leaves only
  staging debris, removed under the version's lock the next time anyone installs or evicts.
- Once: in this process, concurrent ensures of one version share one install task (and its
  progress); across processes, the `.install` lock makes the second wait and then find the
  version installed.
- In use: `ensure` returns holding a shared lock on the version's `.lease` until `release()`;
  a lock dies with its process, so a crashed worker leaves no version pinned.
- Eviction: after an install, while the cache is over its cap, the least recently used
  versions (receipt mtime, touched on each use) are deleted — only those whose `.lease` and
  `.install` locks can be taken exclusively at that moment, so a version in use is never
  removed. The cap can be exceeded while everything over it is in use.
"""

import asyncio
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.contract.packages import OCI, CachedPackage, PackageCacheUsage, PackageSpec
from workers.packages.errors import PackageInstallFailed, PackageRefused
from workers.packages.installers import Installer, installers, missing_tool_message, refuse_unsupported
from workers.packages.locks import FileLock
from workers.packages.process import Command, InstallerTimedOut, Outcome, run
from workers.packages.progress import InstallProgress, Listeners, ProgressCallback, StageTracker

logger = logging.getLogger("berth.worker.packages")

DEFAULT_INSTALL_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class PackageKey:
    registry_type: str
    name: str  # canonical
    version: str

    @property
    def parts(self) -> tuple[str, str, str]:
        return self.registry_type, self.name.replace("/", "+"), self.version

    def __str__(self) -> str:
        separator = "==" if self.registry_type == "pypi" else "@"
        return f"{self.registry_type} {self.name}{separator}{self.version}"


@dataclass
class InstalledPackage:
    """A version ready to run, held in use until `release()`."""

    key: PackageKey
    argv: list[str]  # entry point and package arguments, absolute paths
    readonly_dirs: tuple[str, ...]  # what the sandbox must see (read-only) for argv to run
    env: dict[str, str]  # what the entry point's runtime needs; the server's own env is the caller's
    installed_now: bool  # whether this ensure ran the installer
    _lease: FileLock
    _touch: Callable[[], None]

    def release(self) -> None:
        """The sandbox that ran it has stopped; safe to call more than once."""
        if self._lease.held:
            self._touch()
            self._lease.release()


class PackageCache:
    def __init__(self, root: Path, max_bytes: int, registry_urls: dict[str, str], *,
                 available: dict[str, Installer] | None = None,
                 install_timeout: float = DEFAULT_INSTALL_TIMEOUT_SECONDS):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.registry_urls = dict(registry_urls)
        self.installers = installers(self.registry_urls) if available is None else available
        self.install_timeout = install_timeout
        self.installer_runs = 0  # installs this process has run (the tests read it)
        # Installs under way in this process: one task per version, and who listens to it.
        self._installing: dict[PackageKey, tuple[asyncio.Task, Listeners]] = {}

    # --- the API ------------------------------------------------------------------------------

    async def ensure(self, spec: PackageSpec, progress: ProgressCallback | None = None) -> InstalledPackage:
        """The package installed (now, or already) and leased; raises PackageRefused,
        PackageInstallFailed or PackageSpecError (an argument without a value)."""
        installer = self._installer_for(spec)
        arguments = spec.command_arguments()  # before any work: a missing value fails fast
        listeners = Listeners()
        listeners.add(progress)
        version = spec.version or await self._resolve_latest(installer, spec, listeners)
        key = PackageKey(spec.registry_type, spec.canonical_name, version)
        lease = FileLock(self._lock_path(key, "lease"))
        await lease.acquire(shared=True)  # from here on, no one can evict this version
        try:
            installed_now = False
            receipt = self._receipt(key)
            if receipt is None:
                receipt, installed_now = await self._install_once(key, spec, installer, progress)
            else:
                await listeners(InstallProgress("done", str(key), f"{key} is cached", cached=True))
            self._touch(key)
            launch = installer.launch(self._entry_dir(key) / "files", receipt["entry"])
        except BaseException:
            lease.release()
            raise
        return InstalledPackage(key, launch.argv + arguments, launch.readonly_dirs, launch.env, installed_now,
                                lease, lambda: self._touch(key))

    def summary(self) -> PackageCacheUsage:
        """What `/v1/system/storage` shows of the cache, least recently used first."""
        entries = [CachedPackage(registry_type=key.registry_type, identifier=receipt["identifier"], version=key.version,
                                 size_bytes=receipt["size_bytes"], installed_at=receipt["installed_at"],
                                 last_used_at=last_used, in_use=self._in_use(key))
                   for key, receipt, last_used in sorted(self._entries(), key=lambda entry: entry[2])]
        return PackageCacheUsage(entries=entries, total_bytes=sum(entry.size_bytes for entry in entries),
                                 max_bytes=self.max_bytes, free_disk_bytes=shutil.disk_usage(self.root).free)

    def evict(self) -> list[PackageKey]:
        """Delete least recently used versions not in use until the cache fits its cap."""
        self._clean_staging()
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(receipt["size_bytes"] for _, receipt, _ in entries)
        evicted = []
        for key, receipt, _ in entries:
            if total <= self.max_bytes:
                break
            if self._remove_unless_busy(key):
                total -= receipt["size_bytes"]
                evicted.append(key)
        if total > self.max_bytes:
            logger.info("package cache over its cap while in use: %d of %d bytes", total, self.max_bytes)
        return evicted

    # --- installing ---------------------------------------------------------------------------

    def _installer_for(self, spec: PackageSpec) -> Installer:
        if spec.registry_type == OCI:
            raise PackageRefused("oci packages run in a container engine, and this runtime advertises none; "
                                 "use the server's npm or pypi package, or a remote")
        installer = self.installers.get(spec.registry_type)
        if installer is None:
            raise PackageRefused(missing_tool_message(spec.registry_type))
        refuse_unsupported(spec, self.registry_urls[spec.registry_type])
        return installer

    async def _resolve_latest(self, installer: Installer, spec: PackageSpec, announce: Listeners) -> str:
        await announce(InstallProgress("resolving", spec.describe(),
                                       f"resolving the latest version of {spec.identifier}"))
        resolving = self.root / "resolving"
        resolving.mkdir(exist_ok=True)
        workdir = tempfile.mkdtemp(dir=resolving)
        try:
            outcome = await self._run(installer.latest_command(spec, Path(workdir)), workdir, _ignore)
            if outcome.returncode != 0:
                raise PackageInstallFailed(f"cannot resolve {spec.describe()}: {outcome.tail}")
            return installer.parse_latest(spec, outcome)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _install_once(self, key: PackageKey, spec: PackageSpec, installer: Installer,
                            progress: ProgressCallback | None) -> tuple[dict, bool]:
        """Join the install of `key` under way in this process, or start it; (receipt, whether
        this caller's install ran the installer)."""
        started_here = key not in self._installing
        if started_here:
            listeners = Listeners()
            task = asyncio.create_task(self._install(key, spec, installer, listeners))
            self._installing[key] = task, listeners
            task.add_done_callback(lambda _: self._installing.pop(key, None))
        task, listeners = self._installing[key]
        listeners.add(progress)
        receipt, ran = await asyncio.shield(task)  # one waiter's cancel leaves the install to the others
        return receipt, ran and started_here

    async def _install(self, key: PackageKey, spec: PackageSpec, installer: Installer,
                       announce: Listeners) -> tuple[dict, bool]:
        lock = FileLock(self._lock_path(key, "install"))
        if not lock.try_acquire(shared=False):
            await announce(InstallProgress("resolving", str(key), f"waiting for another install of {key}"))
            await lock.acquire(shared=False)
        try:
            receipt = self._receipt(key)
            if receipt is not None:  # another process installed it while we waited
                await announce(InstallProgress("done", str(key), f"{key} is cached", cached=True))
                return receipt, False
            self._remove_staging(key)
            receipt = await self._build(key, spec, installer, announce)
        finally:
            lock.release()
        evicted = await asyncio.to_thread(self.evict)
        if evicted:
            logger.info("evicted %s to fit the package cache's cap", ", ".join(map(str, evicted)))
        return receipt, True

    async def _build(self, key: PackageKey, spec: PackageSpec, installer: Installer, announce: Listeners) -> dict:
        """Install into staging, then rename the finished version into place."""
        staging = self._staging_dir(key)
        staging.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(dir=staging))
        entry_dir, scratch = workdir / "entry", workdir / "scratch"
        files = entry_dir / "files"
        files.mkdir(parents=True)
        scratch.mkdir()
        stages = StageTracker(str(key), installer.stage_markers, announce)
        try:
            await stages.advance("resolving", f"resolving the dependencies of {key}")
            self.installer_runs += 1
            for command in installer.install_commands(spec, key.version, files, scratch):
                outcome = await self._run(command, str(scratch), stages.on_line)
                if outcome.returncode != 0:
                    raise PackageInstallFailed(f"installing {key} failed: {outcome.tail}")
            await stages.advance("installing", f"finishing {key}")
            entry = installer.entry_point(spec, files)
            size = await asyncio.to_thread(_prepare_for_sandboxes, entry_dir)
            receipt = {"registry_type": key.registry_type, "identifier": spec.identifier, "version": key.version,
                       "entry": entry, "size_bytes": size, "installed_at": time.time()}
            _write_json(entry_dir / "receipt.json", receipt)
            target = self._entry_dir(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry_dir, target)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        await stages.advance("done", f"installed {key} ({size / 1e6:.1f} MB)")
        return receipt

    async def _run(self, command: Command, cwd: str, on_line: Callable[[str], Awaitable[None]]) -> Outcome:
        try:
            return await run(command, cwd, on_line, self.install_timeout)
        except InstallerTimedOut as error:
            raise PackageInstallFailed(str(error)) from None

    # --- the files ----------------------------------------------------------------------------

    def _entry_dir(self, key: PackageKey) -> Path:
        return self.root.joinpath("installed", *key.parts)

    def _staging_dir(self, key: PackageKey) -> Path:
        return self.root.joinpath("staging", *key.parts)

    def _lock_path(self, key: PackageKey, kind: str) -> Path:
        registry, name, version = key.parts
        return self.root / "locks" / registry / name / f"{version}.{kind}"

    def _receipt(self, key: PackageKey) -> dict | None:
        try:
            return json.loads((self._entry_dir(key) / "receipt.json").read_text())
        except FileNotFoundError:
            return None

    def _touch(self, key: PackageKey) -> None:
        # An explicit time: the kernel's own "now" for utime is coarse (a tick), which would tie
        # uses a few milliseconds apart.
        now = time.time_ns()
        try:
            os.utime(self._entry_dir(key) / "receipt.json", ns=(now, now))
        except FileNotFoundError:
            pass

    def _entries(self) -> list[tuple[PackageKey, dict, float]]:
        entries = []
        for receipt_path in self.root.glob("installed/*/*/*/receipt.json"):
            try:
                receipt = json.loads(receipt_path.read_text())
                last_used = receipt_path.stat().st_mtime
            except (FileNotFoundError, ValueError):
                continue  # evicted while we looked
            registry, name, version = receipt_path.parts[-4:-1]
            entries.append((PackageKey(registry, name.replace("+", "/"), version), receipt, last_used))
        return entries

    def _in_use(self, key: PackageKey) -> bool:
        probe = FileLock(self._lock_path(key, "lease"))
        if probe.try_acquire(shared=False):
            probe.release()
            return False
        return True

    def _remove_unless_busy(self, key: PackageKey) -> bool:
        install, lease = FileLock(self._lock_path(key, "install")), FileLock(self._lock_path(key, "lease"))
        if not install.try_acquire(shared=False):
            return False
        try:
            if not lease.try_acquire(shared=False):
                return False
            try:
                doomed = self._staging_dir(key) / f"evicted-{os.getpid()}-{time.monotonic_ns()}"
                doomed.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self._entry_dir(key), doomed)  # gone for everyone at once
            finally:
                lease.release()
        finally:
            install.release()
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def _remove_staging(self, key: PackageKey) -> None:
        """Debris of a crashed install or eviction of `key`; the caller holds its install lock."""
        shutil.rmtree(self._staging_dir(key), ignore_errors=True)

    def _clean_staging(self) -> None:
        for version_dir in self.root.glob("staging/*/*/*"):
            registry, name, version = version_dir.parts[-3:]
            lock = FileLock(self.root / "locks" / registry / name / f"{version}.install")
            if lock.try_acquire(shared=False):
                try:
                    shutil.rmtree(version_dir, ignore_errors=True)
                finally:
                    lock.release()


async def _ignore(line: str) -> None:
    pass


def _prepare_for_sandboxes(entry_dir: Path) -> int:
    """Readable (and traversable) by a sandbox's unprivileged uid, writable by no one else;
    returns the bytes it takes on disk (hard links counted once). Installers leave most modes
    right already, so a mode is changed only where it is not."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for directory, subdirs, names in os.walk(entry_dir):
        for name in subdirs + names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                size += info.st_blocks * 512
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                wanted = 0o755
            elif stat.S_ISREG(info.st_mode):
                wanted = (mode | 0o444 | (0o111 if mode & 0o100 else 0)) & ~0o022
            else:
                continue  # a symlink: its target's mode is what counts
            if mode != wanted:
                os.chmod(path, wanted)
    os.chmod(entry_dir, 0o755)  # made by mkdtemp: 0700
    return size


def _write_json(path: Path, value: dict) -> None:
    with open(path, "w") as file:
        json.dump(value, file)
        file.flush()
        os.fsync(file.fileno())
