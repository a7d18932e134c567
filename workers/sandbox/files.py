"""Fetching the files a sandbox payload names (app.contract.sandbox_files) into the job's work
directory, before the server starts: each from its presigned URL, no larger than declared, checked
against its SHA-256, then read-only. The sandbox binds what is in its work directory read-only
(workers/sandbox/isolation.py), so the server finds them under `/sandbox/files`.

A file is written under a temporary name and renamed only once it checks out, so a failed fetch
leaves nothing half-written where the server would read it.
"""

import hashlib
import os
from pathlib import Path

import httpx

from app.contract.sandbox_files import SandboxFile, file_name_problem

FETCH_TIMEOUT_SECONDS = 60.0
_CHUNK = 65_536


class FileFetchFailed(Exception):
    """A file could not be fetched, or was not what the payload said; the message names it."""


async def fetch_files(files: list[SandboxFile], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # a job claimed again finds it read-only from the last time
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client:
        for file in files:
            await _fetch(client, file, directory)
    directory.chmod(0o555)


async def _fetch(client: httpx.AsyncClient, file: SandboxFile, directory: Path) -> None:
    problem = file_name_problem(file.name)  # the contract checked it; a path is built from it here
    if problem:
        raise FileFetchFailed(problem)
    target = directory / file.name
    partial = directory / f".{file.name}.partial"
    digest, size = hashlib.sha256(), 0
    try:
        async with client.stream("GET", file.url) as response:
            if response.status_code != 200:
                raise FileFetchFailed(f"{file.name}: HTTP {response.status_code} from the file store")
            with open(partial, "wb") as out:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > file.size_bytes:
                        raise FileFetchFailed(f"{file.name}: larger than the {file.size_bytes} bytes declared")
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as error:
        partial.unlink(missing_ok=True)
        raise FileFetchFailed(f"{file.name}: {type(error).__name__}: {error}") from error
    except FileFetchFailed:
        partial.unlink(missing_ok=True)
        raise
    if size != file.size_bytes or digest.hexdigest() != file.sha256:
        partial.unlink(missing_ok=True)
        raise FileFetchFailed(f"{file.name}: its size or SHA-256 is not the one declared")
    partial.chmod(0o444)
    os.replace(partial, target)
