"""An agent hands a queued task over to another (node_agent.handover), in process.

The real-process cases (a store-driven move, a refusing target, a SIGKILL
mid-move) are in tests/faults/test_rebalance.py; here, on fakes: which task moves,
bad orders, and each answer a target can give to an unsure hand-over.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dodoor.service.peers import PeerClient
from dodoor.wire import Lookup, MoveOrder, decode
from node_agent.app import STATE, create_app
from node_agent.handover import HANDOVER
from tests.agent.conftest import GatedExecutor, enqueue, make_task, post, wait_for


class FakeTarget:
    """An agent's enqueue endpoint answering from a script: each entry is an HTTP status,
    or ``"hang"`` (no answer before the hand-over's timeout)."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.got: list = []
        self.app = web.Application()
        self.app.router.add_post("/internal/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.Response:
        self.got.append(decode(await request.read()))
        answer = self.script.pop(0) if self.script else 202
        if answer == "hang":
            await asyncio.sleep(5)
            answer = 202
        return web.Response(status=answer)


async def victim_with_queue(aiohttp_client, agent_settings, **kw):
    """A 1-slot agent running ``a`` with ``big`` (3 cores) and ``c`` queued behind it."""
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1, **kw), executor=ex))
    for task in (make_task("a"), make_task("big", cores=3.0), make_task("c")):
        assert (await enqueue(client, task)).status == 202
    await wait_for(lambda: ex.started == ["a"])
    return client, ex


def short_timeout(client, ms: float = 300.0) -> None:
    handover = client.app[HANDOVER]
    handover.peers = PeerClient(client.app[STATE].session, client.app[STATE].counter, ms, {})
    handover.retry_s = 0.05


async def status_of(client, task_id: str) -> dict:
    resp = await client.get(f"/v1/tasks/{task_id}")
    return await resp.json()


async def test_the_first_queued_task_that_fits_moves_and_the_victim_names_where(
        aiohttp_client, agent_settings, tmp_path):
    client, _ = await victim_with_queue(aiohttp_client, agent_settings)
    target = await aiohttp_client(create_app(agent_settings(
        node_id="node-b", journal_path=str(tmp_path / "b.sqlite")), executor=GatedExecutor()))
    placed = (await status_of(client, "c"))["queued_ms"]
    order = MoveOrder("node-b", str(target.make_url("")).rstrip("/"), room=(2.0, 500.0, 0.0))
    resp = await post(client, "/internal/move", order)
    assert resp.status == 202
    mine = await status_of(client, "c")
    assert (mine["state"], mine["reason"]) == ("moved", "moved to node node-b")
    theirs = await status_of(target, "c")
    assert theirs["state"] in ("queued", "running") and theirs["queued_ms"] == placed
    assert (await status_of(client, "big"))["state"] == "queued"  # 3 cores: no room there
    # the batch status a scheduler reads names the new agent
    resp = await post(client, "/internal/status", Lookup("s", ("c",)))
    [st] = decode(await resp.read()).statuses
    assert (st.state, st.moved_to) == ("moved", "node-b")
    # a running task never moves; nothing else fits the room now: 204
    assert (await post(client, "/internal/move", MoveOrder(
        "node-b", str(target.make_url("")), task_id="a"))).status == 204
    assert (await post(client, "/internal/move", order)).status == 204
    handover = client.app[HANDOVER]
    assert (handover.orders, handover.moves, handover.misses) == (3, 1, 2)


async def test_bad_orders_are_refused_naming_the_field(aiohttp_client, agent_settings):
    client, _ = await victim_with_queue(aiohttp_client, agent_settings)
    for order, field in ((MoveOrder("", "http://x"), "target_node"),
                         (MoveOrder("node-t", "http://x"), "target_node"),
                         (MoveOrder("node-b", "http://x", room=(1.0,)), "room")):
        resp = await post(client, "/internal/move", order)
        assert resp.status == 400
        assert (await resp.json())["error"]["field"] == field
    assert (await status_of(client, "c"))["state"] == "queued"


async def test_a_refusal_on_the_first_attempt_keeps_the_task_here(aiohttp_client, agent_settings):
    client, ex = await victim_with_queue(aiohttp_client, agent_settings)
    fake = FakeTarget([503])
    target = await aiohttp_client(fake.app)
    order = MoveOrder("node-b", str(target.make_url("")).rstrip("/"), task_id="c")
    assert (await post(client, "/internal/move", order)).status == 204
    assert (await status_of(client, "c"))["state"] == "queued"
    assert client.app[HANDOVER].returned == 1
    ex.release("a")
    await wait_for(lambda: "big" in ex.started)
    ex.release("big")
    await wait_for(lambda: "c" in ex.started)  # it runs here, once


async def test_an_unsure_hand_over_is_asked_again_until_the_target_answers(
        aiohttp_client, agent_settings):
    client, ex = await victim_with_queue(aiohttp_client, agent_settings)
    short_timeout(client)
    fake = FakeTarget(["hang", 503, 202])
    target = await aiohttp_client(fake.app)
    order = MoveOrder("node-b", str(target.make_url("")).rstrip("/"), "life-b", task_id="c")
    assert (await post(client, "/internal/move", order)).status == 202  # on its way
    st = await status_of(client, "c")
    assert (st["state"], st["reason"]) == ("queued", "being handed over to node node-b")
    await wait_for(lambda: client.app[HANDOVER].moves == 1)
    assert (await status_of(client, "c"))["state"] == "moved"
    # the same id, body, life and placement time each time
    assert len({(m.task.task_id, m.incarnation, m.queued_ms) for m in fake.got}) == 1
    assert len(fake.got) == 3
    ex.release("a")
    ex.release("big")
    await asyncio.sleep(0.1)
    assert "c" not in ex.started  # never run here


async def test_unsure_then_gone_life_ends_lost_and_unsure_then_422_comes_back(
        aiohttp_client, agent_settings):
    client, ex = await victim_with_queue(aiohttp_client, agent_settings)
    short_timeout(client)
    fenced = await aiohttp_client(FakeTarget(["hang", 410]).app)
    small = await aiohttp_client(FakeTarget(["hang", 422]).app)
    await post(client, "/internal/move", MoveOrder(
        "node-b", str(fenced.make_url("")).rstrip("/"), task_id="c"))
    await post(client, "/internal/move", MoveOrder(
        "node-c", str(small.make_url("")).rstrip("/"), task_id="big"))
    handover = client.app[HANDOVER]
    await wait_for(lambda: handover.lost == 1 and handover.returned == 1)
    lost = await status_of(client, "c")
    assert lost["state"] == "lost" and "node-b" in lost["reason"]
    assert (await status_of(client, "big"))["state"] == "queued"
    ex.release("a")
    await wait_for(lambda: "big" in ex.started)
    assert "c" not in ex.started


async def test_a_task_handed_back_to_an_agent_that_had_handed_it_over_runs_there(
        aiohttp_client, agent_settings, tmp_path):
    client, ex = await victim_with_queue(aiohttp_client, agent_settings)
    ex_b = GatedExecutor()
    target = await aiohttp_client(create_app(agent_settings(
        node_id="node-b", slots=1, journal_path=str(tmp_path / "b.sqlite")), executor=ex_b))
    assert (await enqueue(target, make_task("b-busy"))).status == 202  # c waits there
    await wait_for(lambda: ex_b.started == ["b-busy"])
    url_a, url_b = (str(c.make_url("")).rstrip("/") for c in (client, target))
    assert (await post(client, "/internal/move", MoveOrder("node-b", url_b, task_id="c"))
            ).status == 202
    assert (await post(target, "/internal/move", MoveOrder("node-t", url_a, task_id="c"))
            ).status == 202
    assert (await status_of(client, "c"))["state"] == "queued"  # back, not a duplicate
    assert (await status_of(target, "c"))["state"] == "moved"
    # the placing scheduler's retry of its first enqueue is still a duplicate at B
    assert (await enqueue(target, make_task("c"))).status == 202
    assert (await status_of(target, "c"))["state"] == "moved"
    ex.release("a")
    await wait_for(lambda: "big" in ex.started)
    ex.release("big")
    await wait_for(lambda: "c" in ex.started)
    ex_b.release("b-busy")
    await asyncio.sleep(0.1)
    assert ex_b.started == ["b-busy"]


async def test_a_fence_leaves_a_hand_over_to_its_target(aiohttp_client, agent_settings):
    """The fenced life's hand-over under way: the target's 202 makes it moved (alive
    there, never lost); a refusal ends it lost, since the fenced life runs nothing."""
    client, ex = await victim_with_queue(aiohttp_client, agent_settings)
    short_timeout(client)
    took = await aiohttp_client(FakeTarget(["hang", "hang", 202]).app)
    refused = await aiohttp_client(FakeTarget(["hang", "hang", 422]).app)
    await post(client, "/internal/move", MoveOrder(
        "node-b", str(took.make_url("")).rstrip("/"), task_id="c"))
    await post(client, "/internal/move", MoveOrder(
        "node-c", str(refused.make_url("")).rstrip("/"), task_id="big"))
    agent = client.app[STATE].agent
    assert await agent.fence() == 1  # only "a", which ran: the hand-overs wait
    handover = client.app[HANDOVER]
    await wait_for(lambda: handover.moves == 1 and handover.lost == 1, timeout=10)
    assert (await status_of(client, "c"))["state"] == "moved"
    lost = await status_of(client, "big")
    assert lost["state"] == "lost" and "declared dead while it handed" in lost["reason"]
    assert ex.started == ["a"]
