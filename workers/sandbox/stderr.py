"""A sandboxed server's stderr: kept to a bounded tail, and read for why a start failed."""

import asyncio
import os

STDERR_KEEP_BYTES = 64 * 1024
# With no network, package managers are told to work offline, so that a package missing from
# their cache fails at once instead of retrying the registry for a minute (npm, uv, pip).
OFFLINE_ENVIRONMENT = {"npm_config_offline": "true", "UV_OFFLINE": "1", "PIP_NO_INDEX": "1"}
# What a server's stderr says when it tried to reach the network (npm, uv, pip, Node, Python).
_NETWORK_SIGNS = (
    "ENOTCACHED", "only-if-cached", "EAI_AGAIN", "ENOTFOUND", "ENETUNREACH", "getaddrinfo",
    "Network is unreachable", "Temporary failure in name resolution", "network was disabled",
    "network is disabled", "offline mode", "No matching distribution found",
)


class StderrTail:
    """The end of a server's stderr, through a pipe the worker drains as it is written: a
    chatty server costs the worker at most `keep` bytes of memory and no disk."""

    def __init__(self, keep: int = STDERR_KEEP_BYTES) -> None:
        self.keep = keep
        self.total_bytes = 0
        self._tail = bytearray()
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        self.writer = os.fdopen(write, "w")  # the spawned process's stderr
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read, self._drain)
        self._reading = True

    @property
    def kept_bytes(self) -> int:
        return len(self._tail)

    def spawned(self) -> None:
        """The process has its copy of the write end; ours would keep the pipe from ending."""
        self.writer.close()

    def text(self, limit: int) -> str:
        self._drain()
        tail = bytes(self._tail[-limit:]).decode(errors="replace").strip()
        return tail or "(no output on stderr)"

    def close(self) -> None:
        self._drain()
        self._stop_reading()
        if not self.writer.closed:
            self.writer.close()

    def _drain(self) -> None:
        while self._reading:
            try:
                chunk = os.read(self._read, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self._stop_reading()
                return
            self.total_bytes += len(chunk)
            self._tail += chunk
            if len(self._tail) > self.keep:
                del self._tail[: len(self._tail) - self.keep]

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._read)
            os.close(self._read)


def offline_hint(stderr: str) -> str | None:
    """Why a server without network access likely failed to start, when its stderr shows it."""
    if any(sign in stderr for sign in _NETWORK_SIGNS):
        return ("the sandbox has no network access (its policy has network: false) and the server tried to "
                "fetch something, e.g. a package npx or uvx does not have: pre-install it in a tool directory "
                "(berth worker --sandbox-tool-dir) or allow network access")
    return None
