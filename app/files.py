"""Files only this user may read: written 0600 inside a 0700 directory, whole or not at all.

What berth keeps on a disk (the mail outbox with its reset links, the local stack's table snapshot
and KMS key material) holds secrets, so no other user of the machine may read it, nor see a file
half written.
"""

import os
import threading
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700


def private_directory(directory: Path) -> Path:
    """`directory`, made if missing and narrowed to 0700 if it was wider (it is berth's own)."""
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY_MODE)
    if directory.stat().st_mode & 0o777 != PRIVATE_DIRECTORY_MODE:
        directory.chmod(PRIVATE_DIRECTORY_MODE)
    return directory


def write_private(path: Path, content: str | bytes) -> None:
    """Write `path` with mode 0600 in a 0700 directory: to a temporary file created with that mode
    (never readable by others, not even for a moment), synced, then renamed over `path`."""
    private_directory(path.parent)
    data = content.encode() if isinstance(content, str) else content
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, PRIVATE_FILE_MODE)  # O_CREAT's mode is narrowed by the umask, never widened
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
