"""Profiles: which berth API to talk to and the key to use, kept in the user's config directory.

`profiles.json` lives in `$BERTH_CONFIG_DIR`, else the platform's config directory for berth
(`$XDG_CONFIG_HOME/berth`, by default `~/.config/berth`, on Linux). The file holds API keys, so
it is written 0600 in a 0700 directory, atomically (a temporary file renamed over it) under a
lock, and refused when other users can read it. `BERTH_API_URL` and `BERTH_API_KEY` override the
profile, for scripts and CI that keep no file at all.
"""

import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import typer

from berth_cli.errors import NotConfigured, ProfileFileError

DEFAULT_PROFILE = "default"
FILE_NAME = "profiles.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Profile:
    api_url: str
    api_key: str
    email: str | None = None
    # Set when `berth login` minted the key, so that `berth logout` revokes it.
    key_id: str | None = None
    key_name: str | None = None
    tier: str | None = None

    @property
    def minted(self) -> bool:
        return self.key_id is not None

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        known = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})


@dataclass(frozen=True)
class Connection:
    """Where a command's requests go, and why there (for `whoami` and error messages)."""

    api_url: str
    api_key: str
    source: str


def config_dir() -> Path:
    override = os.environ.get("BERTH_CONFIG_DIR")
    return Path(override) if override else Path(typer.get_app_dir("berth"))


class ProfileStore:
    def __init__(self, directory: Path | None = None):
        self.directory = directory or config_dir()
        self.path = self.directory / FILE_NAME

    def load(self) -> dict[str, Profile]:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            return {}
        if mode & 0o077:
            raise ProfileFileError(
                f"{self.path} is readable by other users (mode {mode:04o}), so its keys may have leaked: "
                f"`chmod 600 {self.path}`, and consider revoking its keys")
        try:
            document = json.loads(self.path.read_text())
            return {name: Profile.from_json(data) for name, data in document["profiles"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ProfileFileError(
                f"{self.path} is not a berth profile file ({error}); move it aside and log in again") from None

    def get(self, name: str) -> Profile | None:
        return self.load().get(name)

    def save(self, name: str, profile: Profile) -> None:
        def put(profiles: dict[str, Profile]) -> None:
            profiles[name] = profile

        self._update(put)

    def remove(self, name: str) -> Profile | None:
        removed: list[Profile] = []

        def drop(profiles: dict[str, Profile]) -> None:
            if name in profiles:
                removed.append(profiles.pop(name))

        self._update(drop)
        return removed[0] if removed else None

    def _update(self, change: Callable[[dict[str, Profile]], None]) -> None:
        """Read, change and write back under an exclusive lock, so that two logins at once (to two
        profiles) both survive."""
        with self._locked():
            profiles = self.load()
            change(profiles)
            document = {"version": _FORMAT_VERSION,
                        "profiles": {name: _without_nones(asdict(profile)) for name, profile in profiles.items()}}
            _write_atomically(self.path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        _ensure_private_directory(self.directory)
        descriptor = os.open(self.directory / ".profiles.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


def resolve(name: str, store: ProfileStore | None = None) -> Connection:
    """The API URL and key for a command: the environment's where set, else the profile's."""
    env_url = os.environ.get("BERTH_API_URL") or None
    env_key = os.environ.get("BERTH_API_KEY") or None
    if env_url and env_key:
        return Connection(env_url, env_key, "BERTH_API_URL and BERTH_API_KEY")
    store = store or ProfileStore()
    profile = store.get(name)
    api_url = env_url or (profile.api_url if profile else None)
    api_key = env_key or (profile.api_key if profile else None)
    if api_url is None and env_key:
        raise NotConfigured(f"BERTH_API_KEY is set but no API URL: set BERTH_API_URL, or `berth login` "
                            f"to profile '{name}'")
    if api_url is None or api_key is None:
        raise NotConfigured(f"not logged in: no profile '{name}' in {store.path}; run `berth login --api URL` "
                            f"(or set BERTH_API_URL and BERTH_API_KEY)")
    overridden = [variable for variable, value in (("BERTH_API_URL", env_url), ("BERTH_API_KEY", env_key)) if value]
    source = f"profile '{name}'" + (f" with {' and '.join(overridden)}" if overridden else "")
    return Connection(api_url, api_key, source)


def _without_nones(data: dict) -> dict:
    return {name: value for name, value in data.items() if value is not None}


def _ensure_private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode applies only to a directory it creates; one that was there is tightened too.
    if stat.S_IMODE(directory.stat().st_mode) != 0o700:
        directory.chmod(0o700)


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a torn one: write a temporary file beside
    it (mkstemp creates it 0600), flush it to disk, rename it over the old one, then flush the
    directory entry."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".profiles-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
