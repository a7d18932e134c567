"""A small MCP server for the sandbox tests: plain tools, plus tools that probe the sandbox.

Speaks stdio, or streamable HTTP on 127.0.0.1:$PORT when PORT is set.
"""

import asyncio
import gzip
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

server = MCPServer("echo")

# Every process forks forever; once the process limit stops it, it keeps trying.
FORK_BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def env_var(name: str) -> str:
    """Return the value of an environment variable of this server ('' when it is not set)."""
    return os.environ.get(name, "")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail() -> str:
    """Always fail with a tool error."""
    raise ToolError("this tool always fails")


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool()
def read_file(path: str) -> str:
    """Return a file's text."""
    try:
        with open(path) as file:
            return file.read()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc}") from None


@server.tool()
def net_probe(host: str, port: int) -> str:
    """Open a TCP connection to host:port."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return f"connected to {host}:{port}"
    except OSError as exc:
        raise ToolError(f"cannot connect to {host}:{port}: {exc}") from None


@server.tool()
def fork_bomb(seconds: float = 10.0) -> str:
    """Start a fork bomb, then report whether this server can still start a process."""
    subprocess.Popen([sys.executable, "-c", FORK_BOMB])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            subprocess.run(["true"], check=True)
        except OSError as exc:
            return f"process limit reached: {exc}"
        time.sleep(0.05)
    return "process limit never reached"


@server.tool()
def hog_memory(mb: int) -> str:
    """Allocate and touch mb megabytes."""
    try:
        block = bytearray(mb * 1024 * 1024)
    except MemoryError:
        raise ToolError(f"out of memory allocating {mb} MB") from None
    return f"allocated {len(block) // (1024 * 1024)} MB"


@server.tool()
def write_file(path: str, mb: int) -> str:
    """Write mb megabytes of zeros to path, one megabyte at a time."""
    written = 0
    try:
        with open(path, "wb") as file:
            for _ in range(mb):
                file.write(b"\0" * 1024 * 1024)
                file.flush()
                written += 1
    except OSError as exc:
        raise ToolError(f"write failed after {written} MB: {exc}") from None
    return f"wrote {written} MB"


@server.tool()
def spew_stderr(mb: int) -> str:
    """Write mb megabytes of lines to stderr, then a last line."""
    line = "x" * 1023 + "\n"
    for _ in range(mb * 1024):
        sys.stderr.write(line)
    sys.stderr.write("the last line\n")
    sys.stderr.flush()
    return f"wrote {mb} MB to stderr"


@server.tool()
def http_get(url: str) -> str:
    """GET a URL and return its body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()
    except OSError as exc:
        raise ToolError(f"cannot fetch {url}: {exc}") from None


@server.tool()
def match(text: Annotated[str, Field(pattern=r"^(a+)+$")]) -> str:
    """Accept a run of a's (the pattern backtracks badly on anything else: a test of the caller)."""
    return text


# Plain HTTP beside /mcp, for the runtime proxy's tests: what a server might answer a browser.
PAGE = b"<html><script>document.title = document.cookie</script>hello</html>"


@server.custom_route("/web/page", methods=["GET"])
async def web_page(request: Request) -> Response:
    """HTML with a script, a cookie for whoever serves it, and other headers that act on an origin."""
    return Response(PAGE, media_type="text/html", headers={
        "set-cookie": "session=stolen; Path=/", "clear-site-data": '"*"', "access-control-allow-origin": "*",
        "x-served-by": "echo"})


@server.custom_route("/web/compressed", methods=["GET"])
async def web_compressed(request: Request) -> Response:
    """A JSON body, gzip-encoded whenever the client accepts gzip."""
    body = b'{"text": "' + b"compressible " * 200 + b'"}'
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gzip.compress(body), media_type="application/json", headers={"content-encoding": "gzip"})
    return Response(body, media_type="application/json")


if __name__ == "__main__":
    if "PORT" in os.environ:
        server.run("streamable-http", host="127.0.0.1", port=int(os.environ["PORT"]))
    else:
        server.run()
