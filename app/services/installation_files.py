"""Files an installation's server reads: kept in the files bucket, listed on the installation,
and handed to the runtime as presigned URLs when the server starts (app.contract.sandbox_files).

Names are refused unless they are plain file names, so no upload can name a place outside the
server's files directory; a file of the same name replaces the one before.
"""

import hashlib
from dataclasses import dataclass

from app.clock import Clock
from app.contract.sandbox_files import SandboxFile, file_name_problem
from app.domain.installations import Installation, InstalledFile, file_key
from app.errors import PayloadTooLarge, Unprocessable
from app.objects import ObjectStore
from app.settings import Settings
from app.store import Store

# A presigned URL outlives the job it is given to by this much (a job re-dispatched late fetches too).
URL_MARGIN_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Upload:
    name: str
    body: bytes
    content_type: str


class InstallationFiles:
    def __init__(self, store: Store, settings: Settings, objects: ObjectStore, clock: Clock):
        self.store = store
        self.settings = settings
        self.objects = objects
        self.clock = clock

    def check(self, uploads: list[Upload]) -> None:
        """422 for a name that is not plain or repeated, 413 for a file over the limit."""
        if not uploads:
            raise Unprocessable("no files: send one or more `files` parts")
        names = [upload.name for upload in uploads]
        for upload in uploads:
            problem = file_name_problem(upload.name)
            if problem:
                raise Unprocessable(f"file name refused: {problem}")
            if len(upload.body) > self.settings.installation_file_max_bytes:
                raise PayloadTooLarge(f"{upload.name} is {len(upload.body)} bytes; the limit is "
                                      f"{self.settings.installation_file_max_bytes} bytes a file")
        if len(set(names)) != len(names):
            raise Unprocessable("the same file name is given twice")

    def store_all(self, installation: Installation, uploads: list[Upload]) -> list[InstalledFile]:
        """Put the files in the bucket; the installation's file list as it becomes (the caller
        records it). 422 past the number of files an installation may hold."""
        self.check(uploads)
        kept = {file.name: file for file in installation.files}
        for upload in uploads:
            kept[upload.name] = InstalledFile(name=upload.name, size_bytes=len(upload.body),
                                              sha256=hashlib.sha256(upload.body).hexdigest(),
                                              uploaded_at=self.clock.iso())
        if len(kept) > self.settings.installation_max_files:
            raise Unprocessable(f"an installation holds at most {self.settings.installation_max_files} files")
        for upload in uploads:
            self.objects.put(file_key(installation.workspace_id, installation.installation_id, upload.name),
                             upload.body, content_type=upload.content_type or "application/octet-stream")
        return sorted(kept.values(), key=lambda file: file.name)

    def remove_all(self, installation: Installation) -> None:
        self.objects.delete([file_key(installation.workspace_id, installation.installation_id, file.name)
                             for file in installation.files])

    def delivered(self, installation: Installation, job_seconds: int) -> list[SandboxFile]:
        """The files as a sandbox payload carries them: each with a URL the runtime fetches it from."""
        seconds = job_seconds + URL_MARGIN_SECONDS
        return [SandboxFile(name=file.name, size_bytes=file.size_bytes, sha256=file.sha256,
                            url=self.objects.presigned_get(
                                file_key(installation.workspace_id, installation.installation_id, file.name), seconds))
                for file in installation.files]
