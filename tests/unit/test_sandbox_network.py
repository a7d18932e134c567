"""A networked sandbox has a network namespace of its own with egress only: it reaches a public
host, and never the worker's loopback, the private network, the metadata service's link-local
range or another sandbox (issue 9). Real hosts, each in a namespace of its own (test_hosts)."""

import asyncio
import os
import socket
from contextlib import ExitStack

import pytest

from app.contract.policy import SandboxPolicy
from tests.support.network_hosts import network_host
from tests.support.sandbox_fixtures import anyio_backend, require_bubblewrap, start_sandbox  # noqa: F401
from workers.executors import registry
from workers.sandbox import network, processes
from workers.sandbox.network import network_driver
from workers.sandbox.session import SandboxRefused

pytestmark = pytest.mark.anyio
NETWORKED = SandboxPolicy(network=True)


@pytest.fixture(scope="module")
def hosts():
    """A public host (TEST-NET-2), a private one and one at the metadata service's address."""
    with ExitStack() as stack:
        yield {
            "public": stack.enter_context(network_host("pub", "198.51.100.10", "198.51.100.1", 24)),
            "private": stack.enter_context(network_host("prv", "10.203.0.10", "10.203.0.1", 24)),
            "metadata": stack.enter_context(network_host("md", "169.254.169.254", "169.254.169.1", 24)),
        }


@pytest.fixture
def requires_network_driver():
    assert network_driver() == "pasta", "networked sandboxes need a root worker with passt (pasta) and iproute2"


async def test_a_networked_sandbox_reaches_a_public_host_and_nothing_local(
        start_sandbox, hosts, require_bubblewrap, requires_network_driver):
    # From the worker's own namespace every test host answers: they are real hosts.
    for host in hosts.values():
        socket.create_connection((host.address, host.port), timeout=3).close()
    # A worker service on every address (a control endpoint on 0.0.0.0, say).
    listener = await asyncio.start_server(lambda reader, writer: writer.close(), "0.0.0.0", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        session = await start_sandbox(policy=NETWORKED)

        public = await session.call_tool("http_get", {"url": hosts["public"].url})
        refused = {name: await session.call_tool("http_get", {"url": hosts[name].url})
                   for name in ("private", "metadata")}
        worker_loopback = await session.call_tool("net_probe", {"host": "127.0.0.1", "port": port})
        # This machine's own address on the public host's link: routable, and still the worker.
        worker_address = await session.call_tool("net_probe", {"host": "198.51.100.1", "port": port})

    assert public["ok"] is True and hosts["public"].greeting in str(public["result"])
    for name, answer in refused.items():
        assert answer["ok"] is False and "unreachable" in answer["error"], (name, answer)
    # 127.0.0.1 is the sandbox's own loopback: nothing of the worker's listens there.
    assert worker_loopback["ok"] is False and "Connection refused" in worker_loopback["error"]
    assert worker_address["ok"] is False and "unreachable" in worker_address["error"]
    assert session.limits["network"] == "egress-only"


async def test_a_networked_sandbox_cannot_reach_another_sandboxs_server(
        start_sandbox, hosts, require_bubblewrap, requires_network_driver):
    server = await start_sandbox(policy=NETWORKED, transport="http", name="server")
    prober = await start_sandbox(policy=NETWORKED, name="prober")

    # The worker reaches the HTTP server through its forwarded port...
    assert (await server.call_tool("add", {"a": 1, "b": 2}))["ok"] is True
    # ...another sandbox reaches nothing on that port: not its loopback, not the host's addresses.
    probes = [await prober.call_tool("net_probe", {"host": host, "port": server.port})
              for host in ("127.0.0.1", _default_source_address(), "198.51.100.1")]

    assert [probe["ok"] for probe in probes] == [False, False, False], probes


async def test_a_networked_sandbox_resolves_names_through_the_forwarder(
        start_sandbox, require_bubblewrap, requires_network_driver):
    session = await start_sandbox(policy=NETWORKED)

    resolv = await session.call_tool("read_file", {"path": "/etc/resolv.conf"})

    assert resolv["ok"] is True and "nameserver 169.254.1.53" in str(resolv["result"])


async def test_the_rules_outlive_a_sandbox_that_tries_to_drop_them(
        start_sandbox, hosts, require_bubblewrap, requires_network_driver):
    session = await start_sandbox("bash -c '/usr/sbin/ip rule flush; exec python echo_server.py'", policy=NETWORKED)

    private = await session.call_tool("http_get", {"url": hosts["private"].url})

    assert private["ok"] is False and "unreachable" in private["error"]


def _default_source_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.10", 9))
        return probe.getsockname()[0]


async def test_a_stopped_sandbox_leaves_no_network_behind(start_sandbox, require_bubblewrap, requires_network_driver):
    session = await start_sandbox(policy=NETWORKED)
    helpers = _network_helpers()
    assert len(helpers) == 2  # the namespace's holder and its pasta

    await session.stop()

    assert _network_helpers() == []


async def test_an_unprivileged_worker_refuses_networked_sandboxes(start_sandbox, require_bubblewrap, monkeypatch):
    monkeypatch.setattr(network.os, "geteuid", lambda: 10001)

    with pytest.raises(SandboxRefused, match="network access was asked for: .*needs a worker running as root"):
        await start_sandbox(policy=NETWORKED)

    assert registry.sandbox_labels(allow_unisolated=False)["sandbox_network"] == "none"


def _network_helpers() -> list[str]:
    """This process's children that serve a sandbox's network namespace."""
    names = []
    for pid in processes.children(os.getpid()):
        with open(f"/proc/{pid}/comm") as file:
            name = file.read().strip()
        if name in ("sleep", "pasta", "pasta.avx2", "passt.avx2"):
            names.append(name)
    return names
