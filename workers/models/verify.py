"""Verifying each file of a pull while it downloads, so that the check costs the pull no time.

Hashing a 5 GB shard takes seconds; done after the download, it would add the last shards' hashing
to every pull. Instead a verifier follows each file as huggingface_hub writes it — its temporary
file in the cache (`blobs/<etag>.<id>.incomplete`), which becomes `blobs/<etag>` by a rename once
it is complete — and hashes the bytes as they arrive. When the blob has landed and the verifier
has read all of it, the digest is compared with the hub's. The verifier reads through its own file
handle, so the rename does not disturb it; a download that starts a file over (a server that
ignored the Range of a resume) truncates it, and the verifier starts over too. Should the temporary
file be named differently in some huggingface_hub release, the verifier simply finds the blob
when it lands and hashes it then: slower, never wrong.
"""

import glob
import io
import os
import threading
from pathlib import Path

from workers.models.files import RepoFile, expected_digest
from workers.models.progress import PullAborted

POLL_SECONDS = 0.05
READ_BYTES = 4 * 1024 * 1024


class StreamingVerifier:
    def __init__(self, blobs: Path, abort: threading.Event):
        self.blobs = blobs
        self.abort = abort

    def verify(self, file: RepoFile) -> str | None:
        """None when `file` landed in the cache intact; otherwise what is wrong with it. Raises
        PullAborted when the pull stops first."""
        digest, want, kind = expected_digest(file)
        blob = self.blobs / file.etag
        handle: io.BufferedReader | None = None
        position = 0
        buffer = bytearray(READ_BYTES)
        try:
            while True:
                if self.abort.is_set():
                    raise PullAborted()
                if handle is None:
                    handle = self._open(file, blob)
                    if handle is None:
                        self._wait()
                        continue
                read = handle.readinto(buffer)
                if read:
                    digest.update(memoryview(buffer)[:read])
                    position += read
                    continue
                if os.fstat(handle.fileno()).st_size < position:  # the download started the file over
                    handle.seek(0)
                    digest, position = expected_digest(file)[0], 0
                    continue
                if _is(blob, handle):  # landed: written, closed and renamed; read what came last
                    while read := handle.readinto(buffer):
                        digest.update(memoryview(buffer)[:read])
                        position += read
                    break
                self._wait()
        finally:
            if handle is not None:
                handle.close()
        if position != file.size:
            return f"{file.path} has {position} bytes, the hub says {file.size}"
        if digest.hexdigest() != want:
            return f"{file.path}: {kind} {digest.hexdigest()[:12]}… does not match the hub's {want[:12]}…"
        return None

    def _open(self, file: RepoFile, blob: Path) -> io.BufferedReader | None:
        candidates = [blob] if blob.exists() else sorted(self.blobs.glob(f"{glob.escape(file.etag)}.*.incomplete"))
        for candidate in candidates:
            try:
                return open(candidate, "rb")
            except FileNotFoundError:  # renamed or removed since it was listed
                continue
        return None

    def _wait(self) -> None:
        if self.abort.wait(POLL_SECONDS):
            raise PullAborted()


def _is(path: Path, handle: io.BufferedReader) -> bool:
    try:
        landed = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (landed.st_dev, landed.st_ino) == (held.st_dev, held.st_ino)
