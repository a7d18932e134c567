"""The worker's logs are its own JSON lines: the HTTP clients it uses (httpx for the API, httpx2
under huggingface_hub 2.x) do not add a line per request."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import httpx2
import pytest

from app.contract.logs import log
from workers.config import configure_logging


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args) -> None:  # the server's own lines are not under test
        pass


@pytest.fixture
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("restored_logging")
def test_requests_of_the_http_clients_log_no_line_of_their_own(server_url, capsys):
    configure_logging("INFO")

    assert httpx.get(server_url).status_code == 200
    assert httpx2.get(server_url).status_code == 200
    log(logging.getLogger("berth.worker"), logging.INFO, "worker started")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["message"] for line in lines] == ["worker started"]
