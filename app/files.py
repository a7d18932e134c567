"""Files only this user may read: berth's local state (the table snapshot, KMS key material, the
mail outbox with its reset links) holds secrets or what guards them.

`write_private` is the one way berth writes such a file: mode 0600, in a directory of mode 0700,
replaced whole (a crash leaves the old file or the new one, never half of either) and flushed to
disk with its directory entry. `private_directory` makes a directory berth owns private, for the
owner of a directory that may predate these rules (a data directory written 0755 before).
"""

import contextlib
import os
import stat
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def write_private(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (str as UTF-8), readable and writable by this user alone.

    Missing directories on the way are created 0700; an existing directory is left as it is
    (narrowing one is its owner's call: `private_directory`)."""
    directory = path.parent
    _make_directories(directory)
    content = data.encode() if isinstance(data, str) else data
    # A name of its own per write: two threads saving the same file must not share a temporary.
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, FILE_MODE)  # mkstemp's mode already, stated here since it is the point
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def private_directory(path: Path) -> Path:
    """`path` as a directory only this user can enter: created 0700 (with any missing parents), or
    narrowed to 0700 with the files directly in it narrowed to 0600. Only for directories berth
    owns: a shared one (sticky, as /tmp is) is refused with PermissionError."""
    _make_directories(path)
    mode = path.stat().st_mode
    if mode & stat.S_ISVTX:
        raise PermissionError(f"{path} is a shared directory (like /tmp): give berth a directory of its own in it")
    if stat.S_IMODE(mode) != DIRECTORY_MODE:
        os.chmod(path, DIRECTORY_MODE)
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False) and stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o077:
            os.chmod(entry.path, FILE_MODE)
    return path


def _make_directories(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:  # made meanwhile by another thread or process
            continue


def _sync_directory(directory: Path) -> None:
    """Flush the rename itself: without it, a power cut can bring back the old file."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

