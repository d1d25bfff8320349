"""PeerError tells a definite refusal from an unknown outcome, against real sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from dodoor.messages import MessageCounter
from dodoor.resources import Task
from dodoor.wire import Enqueue, ProbeReply
from dodoor.service.peers import PeerClient, PeerError
from tests.daemons.conftest import free_port

MSG = Enqueue(Task("t", 1.0, 1.0), "s")


@pytest.fixture
async def client():
    async with aiohttp.ClientSession() as session:
        yield PeerClient(session, MessageCounter(), timeout_ms=200, headers={})


async def answering(aiohttp_server, status: int = 202, delay_s: float = 0.0,
                    body: bytes = b"") -> str:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay_s)
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_post("/x", handle)
    server = await aiohttp_server(app, host="127.0.0.1", port=free_port())
    return str(server.make_url("/x"))


async def failure(client: PeerClient, url: str, expect: type | None = None) -> PeerError:
    with pytest.raises(PeerError) as err:
        await client.send(url, MSG, expect=expect)
    return err.value


@pytest.mark.parametrize("status", [400, 404, 409, 422, 503])
async def test_4xx_and_503_are_definite_refusals(client, aiohttp_server, status):
    err = await failure(client, await answering(aiohttp_server, status))
    assert err.status == status and err.refused and not err.outcome_unknown
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_other_5xx_leave_the_outcome_unknown(client, aiohttp_server, status):
    err = await failure(client, await answering(aiohttp_server, status))
    assert err.status == status and err.outcome_unknown and not err.refused


async def test_a_timeout_leaves_the_outcome_unknown(client, aiohttp_server):
    err = await failure(client, await answering(aiohttp_server, delay_s=1.0))
    assert err.status is None and err.outcome_unknown
    assert isinstance(err.__cause__, asyncio.TimeoutError)


async def test_no_connection_is_a_definite_refusal(client):
    err = await failure(client, f"http://127.0.0.1:{free_port()}/x")  # nothing listens
    assert err.refused and isinstance(err.__cause__, aiohttp.ClientConnectorError)


async def test_a_connection_dropped_after_the_request_leaves_the_outcome_unknown(client):
    got = asyncio.Event()

    async def read_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await reader.readuntil(b"\r\n\r\n")  # the request arrived
        got.set()
        writer.close()

    server = await asyncio.start_server(read_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        err = await failure(client, f"http://127.0.0.1:{port}/x")
    finally:
        server.close()
        await server.wait_closed()
    assert got.is_set() and err.outcome_unknown
    assert isinstance(err.__cause__, aiohttp.ServerDisconnectedError)


async def test_an_unreadable_accepting_reply_leaves_the_outcome_unknown(client, aiohttp_server):
    err = await failure(client, await answering(aiohttp_server, 200, body=b"\xc1junk"),
                        expect=ProbeReply)
    assert err.outcome_unknown and "bad reply" in str(err)


def test_constructed_errors_are_refusals_unless_said_otherwise():
    assert PeerError("x").refused
    assert PeerError("x", 500, outcome_unknown=True).outcome_unknown
