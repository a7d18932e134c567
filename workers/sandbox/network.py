"""A networked sandbox's own network namespace: egress to the internet, nothing local.

Sharing the worker's network namespace would let a sandbox reach the worker's loopback (other
sandboxes' HTTP servers, the control endpoint, the local API), the instance metadata service
and the private network. Instead each networked sandbox gets a namespace of its own:

1. A holder process (`unshare --net`, then `setpriv` drops every capability, then `sleep`) owns
   the namespace. It dies with the worker (parent-death signal).
2. `pasta` (package passt) attaches to it and gives it user-mode networking: the namespace's
   packets become ordinary sockets of the pasta process on the host. Options: no port
   forwarding in either direction (`-t/-u/-T/-U none`; by default pasta forwards every port
   the namespace binds and maps the host's listening ports into it), no mapping of the gateway
   address to the host's loopback (`--no-map-gw`), and DNS to one address inside the namespace
   (DNS_FORWARD) that pasta forwards to the host's resolver. An HTTP-transport server gets one
   forwarded port, bound on the host's loopback only, for the worker to reach it. pasta runs
   as root (`--runas 0`) because, dropping to nobody first, it could not enter a namespace
   made by root; it keeps only the capabilities it needs and isolates itself.
3. Routing rules inside the namespace (evaluated before any route, so they hold whatever the
   copied routes say) make every blocked destination unreachable: loopback, link-local (the
   metadata service at 169.254.169.254), private and shared ranges, multicast, and every
   address and gateway of the host itself. UDP port 53 to DNS_FORWARD is the one exception.
   The worker sets them after pasta has configured the namespace (the kernel checks a new
   route's gateway against the rules) and before the sandbox exists; the sandbox never holds
   CAP_NET_ADMIN over the namespace, so it cannot change them.
4. The sandbox's argv is prefixed with `nsenter --net=<the holder's namespace>`; bubblewrap then
   runs without `--unshare-net`, and binds a resolv.conf naming DNS_FORWARD.

The namespace's own loopback is the sandbox's: a server inside can listen on 127.0.0.1 and no
other sandbox can reach it. This needs a root worker (namespaces made without a user namespace).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

DNS_FORWARD = "169.254.1.53"
BLOCKED_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
)
BLOCKED_V6 = ("::/127", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "64:ff9b:1::/48")
ALLOW_PREF, BLOCK_PREF = 100, 200  # `ip rule` priorities: both before the main table (32766)
SETUP_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.002
_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


class NetworkUnavailable(Exception):
    """A networked sandbox cannot be given its own namespace here; the message says why."""


def network_driver() -> str | None:
    """`pasta` when this worker can give networked sandboxes their own namespace, else None."""
    return "pasta" if unavailable_reason() is None else None


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "a networked sandbox gets its own network namespace, which needs a worker running as root"
    missing = [tool for tool in ("pasta", "ip", "nsenter", "unshare", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"a networked sandbox needs {', '.join(missing)} on the worker's host (apt-get install passt iproute2)"
    return None


@dataclass
class SandboxNetwork:
    """A live namespace: enter it with `enter_argv`, bind `resolv_conf`, close it when done."""

    holder: asyncio.subprocess.Process
    directory: str
    pasta: asyncio.subprocess.Process | None = None
    blocked: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def resolv_conf(self) -> str:
        return os.path.join(self.directory, "resolv.conf")

    def enter_argv(self) -> list[str]:
        return [shutil.which("nsenter") or "nsenter", f"--net={self.namespace}", "--"]

    def listening(self, port: int) -> bool:
        """Whether a TCP socket listens on `port` inside the namespace."""
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.holder.pid}/net/{table}") as file:
                    next(file)  # the header
                    for line in file:
                        local, state = line.split()[1], line.split()[3]
                        if state == _TCP_LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                            return True
            except FileNotFoundError:
                pass
        return False

    async def close(self) -> None:
        for process in (self.pasta, self.holder):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


async def open_network(forward_port: int | None = None) -> SandboxNetwork:
    """A new namespace with egress only (and `forward_port` reachable on the host's loopback).
    Raises NetworkUnavailable when this host cannot make one."""
    reason = unavailable_reason()
    if reason:
        raise NetworkUnavailable(reason)
    holder = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--", "unshare", "--net", "--",
        "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--", "sleep", "infinity",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    network = SandboxNetwork(holder, tempfile.mkdtemp(prefix="berth-net-"))
    try:
        async with asyncio.timeout(SETUP_TIMEOUT_SECONDS):
            await _wait_for_holder(holder)
            with open(network.resolv_conf, "w") as file:
                file.write(f"nameserver {DNS_FORWARD}\n")
            os.chmod(network.resolv_conf, 0o644)
            network.blocked = await _blocked_destinations()
            network.pasta = await _start_pasta(network, forward_port)
            # After pasta's routes: the kernel checks a route's gateway against the rules, and the
            # host's gateways are blocked destinations themselves.
            await _set_rules(network)
    except BaseException as error:
        await network.close()
        if isinstance(error, TimeoutError):
            raise NetworkUnavailable(f"setting up the sandbox's network took over {SETUP_TIMEOUT_SECONDS:g}s") from None
        raise
    return network


async def _wait_for_holder(holder: asyncio.subprocess.Process) -> None:
    """Until the holder has made its namespace and dropped its capabilities (it is `sleep` by
    then): pasta must never attach to the worker's own namespace."""
    while True:
        if holder.returncode is not None:
            raise NetworkUnavailable(f"could not create a network namespace (exit status {holder.returncode})")
        try:
            with open(f"/proc/{holder.pid}/comm") as file:
                if file.read().strip() == "sleep":
                    return
        except FileNotFoundError:
            pass
        await asyncio.sleep(_POLL_SECONDS)


async def _blocked_destinations() -> list[str]:
    """The fixed ranges plus the host's own addresses and gateways."""
    addresses, routes4, routes6 = await asyncio.gather(
        _ip_json("addr", "show"), _ip_json("-4", "route", "show", "default"),
        _ip_json("-6", "route", "show", "default"),
    )
    host = {info["local"] for link in addresses for info in link.get("addr_info", []) if "local" in info}
    host |= {route["gateway"] for route in routes4 + routes6 if "gateway" in route}
    blocked = [ipaddress.ip_network(cidr) for cidr in BLOCKED_V4 + BLOCKED_V6]
    # An address already inside a blocked range needs no rule of its own.
    extra = sorted(address for address in host
                   if not any(ipaddress.ip_address(address) in network for network in blocked))
    return [str(network) for network in blocked] + [str(ipaddress.ip_network(address)) for address in extra]


async def _set_rules(network: SandboxNetwork) -> None:
    for version in (4, 6):
        lines = [f"rule add unreachable to {cidr} pref {BLOCK_PREF}"
                 for cidr in network.blocked if ipaddress.ip_network(cidr).version == version]
        if version == 4:
            lines.insert(0, f"rule add to {DNS_FORWARD}/32 ipproto udp dport 53 lookup main pref {ALLOW_PREF}")
        elif not os.path.exists("/proc/net/if_inet6"):
            continue  # a kernel without IPv6: nothing to block
        await _run("nsenter", f"--net={network.namespace}", "--", "ip", f"-{version}", "-batch", "-",
                   stdin="\n".join(lines) + "\n")


async def _start_pasta(network: SandboxNetwork, forward_port: int | None) -> asyncio.subprocess.Process:
    pid_file = os.path.join(network.directory, "pasta.pid")
    log_file = os.path.join(network.directory, "pasta.log")
    inbound = f"127.0.0.1/{forward_port}" if forward_port else "none"
    with open(log_file, "w") as log:  # a file, not a pipe nobody reads once pasta runs
        pasta = await asyncio.create_subprocess_exec(
            "setpriv", "--pdeathsig", "KILL", "--",
            "pasta", "--foreground", "--quiet", "--runas", "0", "--pid", pid_file, "--config-net",
            "--tcp-ports", inbound, "--udp-ports", "none", "--tcp-ns", "none", "--udp-ns", "none",
            "--no-map-gw", "--dns-forward", DNS_FORWARD, "--netns", network.namespace, "--netns-only",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
    # pasta writes its pid file once the namespace is configured.
    while not os.path.exists(pid_file):
        if pasta.returncode is not None:
            with open(log_file, errors="replace") as log:
                errors = log.read(4000)
            detail = " ".join(line for line in errors.splitlines() if "syslog" not in line)
            raise NetworkUnavailable(f"pasta could not set up the sandbox's network: {detail or pasta.returncode}")
        await asyncio.sleep(_POLL_SECONDS)
    return pasta


async def _ip_json(*args: str) -> list[dict]:
    return json.loads(await _run("ip", "-j", *args) or "[]")


async def _run(*argv: str, stdin: str | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
    if process.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv[:4])} failed: {err.decode(errors='replace').strip()}")
    return out.decode()
