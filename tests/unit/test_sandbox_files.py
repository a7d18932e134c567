"""The worker's fetch of a sandbox's files: what the payload declares is what lands, read-only,
and anything else leaves nothing behind."""

import hashlib
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from app.contract.sandbox_files import SandboxFile
from tests.support.sandbox_fixtures import anyio_backend  # noqa: F401 (a fixture: asyncio, as the worker)
from workers.sandbox.files import FileFetchFailed, fetch_files

BODIES = {"/notes.txt": b"remember the milk\n", "/other.txt": b"something else"}


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body = BODIES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def _file(server: str, path: str, *, name: str = "notes.txt", body: bytes = BODIES["/notes.txt"]) -> SandboxFile:
    return SandboxFile(name=name, url=f"{server}{path}", size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest())


@pytest.mark.anyio
async def test_a_declared_file_lands_read_only(server, tmp_path):
    await fetch_files([_file(server, "/notes.txt")], tmp_path / "files")

    landed = tmp_path / "files" / "notes.txt"
    assert landed.read_bytes() == BODIES["/notes.txt"]
    assert stat.S_IMODE(landed.stat().st_mode) == 0o444
    assert stat.S_IMODE((tmp_path / "files").stat().st_mode) == 0o555
    assert [path.name for path in (tmp_path / "files").iterdir()] == ["notes.txt"]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body", "why"), [
    ("/notes.txt", b"short", "larger than"),  # more bytes come than were declared
    ("/other.txt", b"something elsE", "SHA-256"),  # as long as declared, another content
    ("/missing.txt", BODIES["/notes.txt"], "HTTP 404"),
], ids=["too-large", "other-content", "missing"])
async def test_a_file_that_is_not_what_the_payload_declares_leaves_nothing(server, tmp_path, path, body, why):
    with pytest.raises(FileFetchFailed, match=why):
        await fetch_files([_file(server, path, body=body)], tmp_path / "files")

    assert list((tmp_path / "files").iterdir()) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "x\\y", "", "trailing."])
def test_a_name_that_is_not_a_plain_file_name_is_refused_by_the_contract(server, name):
    with pytest.raises(ValidationError):
        _file(server, "/notes.txt", name=name)
