"""The load store's move orders (scheduler.loadstore.rebalance), against fake agents."""

from __future__ import annotations

import numpy as np
import pytest
from aiohttp import web

from dodoor.cache import PENDING, TASKS
from dodoor.errors import ValidationError
from dodoor.wire import MoveOrder, NodeState, decode, encode
from scheduler.loadstore.settings import LoadStoreSettings
from tests.daemons.conftest import free_port, wait_for
from tests.daemons import test_loadstore as base

MSGPACK = base.MSGPACK
loadstore = base.loadstore  # the fixture: a store app on a ManualClock


class FakeAgent:
    """Answers move orders with ``status`` and records them."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.orders: list[MoveOrder] = []
        self.app = web.Application()
        self.app.router.add_post("/internal/move", self._move)

    async def _move(self, request: web.Request) -> web.Response:
        self.orders.append(decode(await request.read(), MoveOrder))
        return web.Response(status=self.status)


def report(node: str, url: str, tasks: float, pending: float, life: str = "") -> bytes:
    return encode(NodeState(node, url, 1, np.array([2.0, 1000.0, 0.0]), 2,
                            np.array([min(tasks, 2.0), 0.0, 0.0, tasks, pending]),
                            incarnation=life))


async def test_a_report_with_free_slots_sends_one_order_per_slot_to_the_longest_queue(
        loadstore, aiohttp_server):
    client, ls, _ = await loadstore(rebalance=True)
    busy, other = FakeAgent(202), FakeAgent(204)
    urls = {}
    for name, fake in (("busy", busy), ("other", other)):
        server = await aiohttp_server(fake.app, host="127.0.0.1", port=free_port())
        urls[name] = str(server.make_url("")).rstrip("/")
    # busy: 6 tasks on 2 slots (4 queued, 6000 ms); other: 5 (3 queued, 1500 ms)
    for name, tasks, pending in (("busy", 6, 6000.0), ("other", 5, 1500.0)):
        assert (await client.post("/internal/node_state", data=report(
            name, urls[name], tasks, pending), headers=MSGPACK)).status == 200
    resp = await client.post("/internal/node_state", data=report(
        "idle", "http://127.0.0.1:9", 0, 0.0, life="life-1"), headers=MSGPACK)
    assert resp.status == 200
    await wait_for(lambda: len(busy.orders) == 2)
    assert busy.orders[0] == MoveOrder("idle", "http://127.0.0.1:9", "life-1", (2.0, 1000.0, 0.0))
    assert other.orders == []
    # both orders are charged to the store's rows until the nodes report again
    rows = {r["id"]: r["state"] for r in ls.store.describe()["nodes"]}
    assert rows["busy"][TASKS] == 4 and rows["busy"][PENDING] == 4000.0
    assert rows["idle"][TASKS] == 2 and rows["idle"][PENDING] == 2000.0
    await wait_for(lambda: ls.mover.moves == 2)
    text = await (await client.get("/metrics")).text()
    assert "dodoor_loadstore_move_orders_total 2.0" in text
    assert "dodoor_loadstore_moves_total 2.0" in text
    # the messages: each order a cancel
    assert ls.counter.by_direction["sent"]["cancel"] == 2


async def test_without_the_setting_no_order_is_sent(loadstore, aiohttp_server):
    client, ls, _ = await loadstore()
    busy = FakeAgent()
    server = await aiohttp_server(busy.app, host="127.0.0.1", port=free_port())
    await client.post("/internal/node_state", data=report(
        "busy", str(server.make_url("")).rstrip("/"), 6, 6000.0), headers=MSGPACK)
    await client.post("/internal/node_state", data=report("idle", "http://x", 0, 0.0),
                      headers=MSGPACK)
    assert ls.mover is None
    text = await (await client.get("/metrics")).text()
    assert "dodoor_loadstore_move_orders_total 0.0" in text


async def test_a_miss_and_an_unreachable_victim_are_counted_apart(loadstore, aiohttp_server):
    client, ls, _ = await loadstore(rebalance=True)
    miss = FakeAgent(204)
    server = await aiohttp_server(miss.app, host="127.0.0.1", port=free_port())
    await client.post("/internal/node_state", data=report(
        "miss", str(server.make_url("")).rstrip("/"), 5, 9000.0), headers=MSGPACK)
    await client.post("/internal/node_state", data=report(
        "gone", f"http://127.0.0.1:{free_port()}", 5, 8000.0), headers=MSGPACK)
    await client.post("/internal/node_state", data=report("idle", "http://x", 1, 0.0),
                      headers=MSGPACK)
    await wait_for(lambda: ls.mover.orders == 1)
    await wait_for(lambda: ls.mover.misses == 1)
    # the charge moved "miss" below the longest: the next free slot goes to "gone"
    await client.post("/internal/node_state", data=report("idle2", "http://y", 1, 0.0),
                      headers=MSGPACK)
    await wait_for(lambda: ls.mover.failures == 1)
    assert (ls.mover.orders, ls.mover.moves) == (2, 0)


def test_settings_name_a_bad_min_queue_or_least_wait():
    with pytest.raises(ValidationError) as err:
        LoadStoreSettings(rebalance=True, rebalance_min_queue=0)
    assert err.value.field == "rebalance_min_queue"
    with pytest.raises(ValidationError) as err:
        LoadStoreSettings(rebalance_least_wait_ms=-1.0)
    assert err.value.field == "rebalance_least_wait_ms"
