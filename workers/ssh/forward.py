"""A port forward over SSH to an allowed `target_host:target_port`, and HTTP through it.

The forward's local end is a Unix socket in a private (0700) directory of its own, not a TCP
port: a TCP port on the runtime's loopback would let any local process (a networked sandbox on
the same host, say) reach the forwarded service without a token. Only the worker's own proxy
requests, each checked against a token the API signed, go through it.

What goes through is what the sandbox proxy lets through (workers.sandbox.proxy), for the same
reason: the API serves the answer on its own origin. The request asks for an uncompressed answer
and carries no cookie; the response keeps only allowed headers and is neutralised
(`Content-Security-Policy: sandbox`, `nosniff`, active content as an attachment), so a dashboard's
page cannot act as the API in a browser.
"""

import base64
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx

from app.contract.messages import ProxyRequest, ProxyResponse
from workers.sandbox.proxy import request_headers, response_headers

PROXY_TIMEOUT_SECONDS = 20  # the API waits less than API Gateway's 29 s for the whole call
# The reply is stored (base64) as one item when it travels through the queue path: 400 KB at most.
PROXY_BODY_MAX_BYTES = 262144


class ProxyFailed(Exception):
    """The forwarded service did not answer usefully; the message says why."""


@dataclass
class OpenForward:
    connection: asyncssh.SSHClientConnection
    listener: asyncssh.SSHListener
    directory: Path
    http: httpx.AsyncClient
    origin: str  # http://target_host:target_port: the Host the forwarded service sees

    async def close(self) -> None:
        self.listener.close()
        await self.http.aclose()
        self.connection.close()
        await self.connection.wait_closed()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def request(self, request: ProxyRequest) -> ProxyResponse:
        url = f"{self.origin}/{request.path}" + (f"?{request.query}" if request.query else "")
        body = bytearray()
        try:
            async with self.http.stream(request.method, url, headers=request_headers(request.headers),
                                        content=base64.b64decode(request.body_b64)) as answer:
                # Decoded bytes: the response goes back without a Content-Encoding.
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > PROXY_BODY_MAX_BYTES:
                        raise ProxyFailed(f"the forwarded service's response is over {PROXY_BODY_MAX_BYTES} bytes")
        except httpx.HTTPError as error:
            raise ProxyFailed(f"the forwarded service did not answer: {error or type(error).__name__}") from None
        return ProxyResponse(status=answer.status_code, headers=response_headers(answer.headers.multi_items()),
                             body_b64=base64.b64encode(body).decode())


async def open_forward(connection: asyncssh.SSHClientConnection, target_host: str, target_port: int) -> OpenForward:
    """Listen on a private Unix socket and forward each connection to `target_host:target_port`
    as the SSH host sees it. The target is reached only when a request arrives, so a refused
    target shows in the proxied response (502 from the API), not here."""
    directory = Path(tempfile.mkdtemp(prefix="berth-forward-"))  # 0700, and a short socket path
    socket_path = str(directory / "socket")
    try:
        listener = await connection.forward_local_path_to_port(socket_path, target_host, target_port)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket_path), timeout=PROXY_TIMEOUT_SECONDS)
    host = f"[{target_host}]" if ":" in target_host else target_host
    return OpenForward(connection, listener, directory, http, origin=f"http://{host}:{target_port}")
