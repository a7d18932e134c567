"""Test hosts for what crosses a network: each a network namespace of its own, joined to this
machine by a veth pair, serving HTTP on one address. The machine has no internet, so a "public"
host is one of these with a documentation address (TEST-NET-2); private and link-local hosts
stand for the private network and the instance metadata service. Every address is on this
machine; nothing leaves it. Needs root and iproute2."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

HTTP_PORT = 80
# Answers every GET with one line naming the host, so a test can tell who answered.
_SERVER = """
import http.server, sys
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"test host {sys.argv[1]}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Hello).serve_forever()
"""


@dataclass
class Host:
    address: str
    port: int = HTTP_PORT

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    @property
    def greeting(self) -> str:
        return f"test host {self.address}"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def network_host(tag: str, address: str, gateway: str, prefix: int) -> Iterator[Host]:
    """A namespace holding `address`/`prefix`, reached from this machine's `gateway` on a veth."""
    namespace, outside, inside = f"berth-{tag}-{os.getpid()}", f"bh{tag}{os.getpid()}"[:15], "eth0"
    _ip("netns", "add", namespace)
    server = None
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", namespace)
        _ip("addr", "add", f"{gateway}/{prefix}", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{prefix}", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", _SERVER, address,
                                   str(HTTP_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_serving(address, server)
        yield Host(address)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)  # takes the veth pair along


def _wait_until_serving(address: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the test host's server at {address} exited"
        try:
            socket.create_connection((address, HTTP_PORT), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the test host at {address} did not serve")
