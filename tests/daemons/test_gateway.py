"""dodoor/tools/gateway.py: per-connection round robin over the backend's addresses,
skipping one that refuses, as Swarm's routing mesh does (docs/swarm.md)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dodoor.tools.gateway import Backends, serve


def _free_port_on_all(hosts: list[str]) -> int:
    """A port free on every one of these loopback addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        ok = True
        for host in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no common free port")


class FixedBackends(Backends):
    """Backends whose "DNS" answers a fixed list (the test's loopback addresses)."""

    def __init__(self, addresses: list[str], port: int) -> None:
        super().__init__("replicas", port)
        self.fixed = addresses

    async def addresses(self) -> list[str]:
        return self.fixed


async def _name_server(host: str, port: int) -> asyncio.AbstractServer:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(host.encode() + b" " + line)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(answer, host, port)


async def _ask(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.decode()


@pytest.fixture
async def gateway():
    tasks = []

    async def start(backends: Backends) -> int:
        port = _free_port_on_all(["127.0.0.1"])
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(serve("127.0.0.1", port, backends, ready)))
        await asyncio.wait_for(ready.wait(), 5)
        return port

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_connections_take_turns_and_skip_a_refusing_replica(gateway):
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = _free_port_on_all(hosts)
    servers = [await _name_server(h, port) for h in hosts[:2]]  # 127.0.0.4 refuses
    try:
        gw = await gateway(FixedBackends(hosts, port))
        answers = [await _ask(gw) for _ in range(6)]
    finally:
        for server in servers:
            server.close()
    assert all(a.endswith(" ping\n") for a in answers), answers
    who = [a.split()[0] for a in answers]
    assert set(who) == {"127.0.0.2", "127.0.0.3"}
    # consecutive connections reach different replicas (the refusing one's turn goes on)
    assert who.count("127.0.0.2") >= 2 and who.count("127.0.0.3") >= 2


async def test_no_replica_closes_the_client_connection(gateway):
    port = _free_port_on_all(["127.0.0.2"])
    gw = await gateway(FixedBackends(["127.0.0.2"], port))
    assert await _ask(gw) == ""


async def test_a_name_that_does_not_resolve_is_no_backend():
    backends = Backends("no-such-host.invalid", 1)
    with pytest.raises(OSError, match="no address"):
        await backends.connect()
