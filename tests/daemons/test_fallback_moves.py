"""The packing fallback's moves as objects: agents in process answering the movable-task
probe and the move orders (a real origin agent, a real or refusing target), and the
window's order of answers around the moves (a scripted solver, a gated move step)."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from dodoor.cache import N_STATE
from dodoor.messages import MessageCounter
from dodoor.packing import PackingResult, PackingSettings
from dodoor.service.http import BackgroundTasks
from dodoor.service.peers import PeerClient
from dodoor.wire import ProbeReply
from node_agent.app import create_app
from node_agent.settings import AgentSettings
from scheduler.fallback import (MOVE_FAILED, FallbackStats, FallbackWindow, ProposedMove)
from scheduler.fallback_moves import AgentMoveOrders, Movable, probe_movable, queued_excess
from tests.agent.conftest import GatedExecutor, enqueue, make_task, wait_for
from tests.daemons.test_fallback import FakeTime, Scripted, _settle, _task, _view


def _settings(tmp_path, node: str) -> AgentSettings:
    return AgentSettings(node_id=node, cores=4.0, memory_mb=1000.0, disk_mb=0.0, slots=1,
                         journal_path=str(tmp_path / f"{node}.sqlite"))


def _url(client) -> str:
    return str(client.make_url("")).rstrip("/")


async def _origin(aiohttp_client, tmp_path):
    """A 1-slot agent running ``run`` with ``low`` (class 0), ``mid`` (class 1) queued."""
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(_settings(tmp_path, "node-a"), executor=ex))
    for task in (make_task("run", priority=0), make_task("low", cores=2.0, priority=0),
                 make_task("mid", priority=1)):
        assert (await enqueue(client, task)).status == 202
    await wait_for(lambda: ex.started == ["run"])
    return client


class RefusingTarget:
    """An agent's enqueue endpoint that refuses every hand-over (422: never fits)."""

    def __init__(self) -> None:
        self.got = 0
        self.app = web.Application()
        self.app.router.add_post("/internal/enqueue", self._enqueue)

    async def _enqueue(self, request: web.Request) -> web.Response:
        await request.read()
        self.got += 1
        return web.Response(status=422)


@pytest.fixture
async def peers():
    async with aiohttp.ClientSession() as session:
        yield PeerClient(session, MessageCounter(), 2000.0, {})


async def _state(client, task_id: str) -> str:
    return (await (await client.get(f"/v1/tasks/{task_id}")).json())["state"]


async def test_the_probe_lists_queued_tasks_below_the_class_and_never_a_running_one(
        aiohttp_client, tmp_path, peers):
    origin = await _origin(aiohttp_client, tmp_path)
    url = _url(origin)
    movable = await probe_movable(peers, "s", [url, "http://127.0.0.1:1"], np.array([0.5, 0.1]),
                                  below=2)
    assert movable.ids == ("low", "mid")  # lowest class first; "run" started
    assert movable.node.tolist() == [0, 0]
    assert movable.demand.tolist() == [[2.0, 100.0, 0.0], [1.0, 100.0, 0.0]]
    assert list(movable.rows) == [0]  # the unreachable node offered nothing
    assert movable.rows[0][3] == 3.0  # its state row: one running, two queued
    only_low = await probe_movable(peers, "s", [url], np.array([0.5]), below=1)
    assert only_low.ids == ("low",)
    # class 0 has nothing below it, and a node where nothing must wait is not asked
    assert (await probe_movable(peers, "s", [url], np.array([0.5]), below=0)).ids == ()
    assert (await probe_movable(peers, "s", [url], np.array([0.0]), below=3)).rows == {}
    assert peers.counter.by_direction["sent"]["probe"] == 3


async def _order_move(aiohttp_client, tmp_path, peers, task_id: str):
    """Order ``task_id`` moved from the origin agent to a fresh one; returns the two
    agents' clients, the stats and the order's outcome."""
    origin = await _origin(aiohttp_client, tmp_path)
    target = await aiohttp_client(create_app(_settings(tmp_path, "node-b"),
                                             executor=GatedExecutor()))
    stats = FallbackStats()
    orders = AgentMoveOrders(peers, lambda url: "", stats)
    done = await orders.order([ProposedMove(task_id, ("node-a", _url(origin)),
                                            ("node-b", _url(target)))])
    return origin, target, stats, done


async def test_a_move_order_that_succeeds_hands_the_task_over_once(
        aiohttp_client, tmp_path, peers):
    origin, target, stats, done = await _order_move(aiohttp_client, tmp_path, peers, "low")
    assert done == [True]
    assert (stats.moves_proposed, stats.moves_done, stats.moves_failed) == (1, 1, 0)
    assert await _state(origin, "low") == "moved"
    assert await _state(target, "low") in ("queued", "running")
    assert peers.counter.by_direction["sent"]["cancel"] == 1  # an order costs a cancel


async def test_a_task_that_started_meanwhile_is_not_moved_and_the_move_fails(
        aiohttp_client, tmp_path, peers):
    origin, target, stats, done = await _order_move(aiohttp_client, tmp_path, peers, "run")
    assert done == [False]
    assert (stats.moves_done, stats.moves_failed) == (0, 1)
    assert await _state(origin, "run") == "running"
    assert (await target.get("/v1/tasks/run")).status == 404


async def test_a_refusing_target_leaves_the_task_queued_on_its_agent_and_the_move_fails(
        aiohttp_client, tmp_path, peers):
    origin = await _origin(aiohttp_client, tmp_path)
    refusing = RefusingTarget()
    target = await aiohttp_client(refusing.app)
    unreachable = ("node-c", "http://127.0.0.1:1")
    stats = FallbackStats()
    orders = AgentMoveOrders(peers, lambda url: "", stats)
    done = await orders.order([ProposedMove("low", ("node-a", _url(origin)),
                                            ("node-b", _url(target))),
                               ProposedMove("mid", unreachable, ("node-b", _url(target)))])
    assert done == [False, False]
    assert refusing.got == 1
    assert (stats.moves_done, stats.moves_failed) == (0, 2)
    assert await _state(origin, "low") == "queued"


def test_only_nodes_committed_beyond_their_capacity_or_slots_hold_queued_tasks():
    capacity = np.array([[8.0, 8192.0, 0.0]] * 4)
    state = np.zeros((4, N_STATE))
    state[:, 0] = (10.0, 8.0, 4.0, 2.0)  # cores committed
    state[:, 3] = (2.0, 1.0, 3.0, 1.0)  # entries, of 2 slots
    assert queued_excess(capacity, np.full(4, 2.0), state).tolist() == [0.25, 0.0, 0.5, -0.5]


class GatedMoves:
    """A move step that answers when the test says, with the test's outcomes."""

    def __init__(self) -> None:
        self.asked: list[list[ProposedMove]] = []
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()

    async def order(self, moves):
        self.asked.append(list(moves))
        return await self.answer


def _moving_window(bg, solver, moves, time, movable):
    async def prober(urls, entries, below):
        prober.asked.append((list(urls), entries.tolist(), below))
        return movable

    prober.asked = []
    stats = FallbackStats()
    fw = FallbackWindow(PackingSettings(time_limit_s=1.0), 0.01, _view((6.0, 6.0, 6.0, 6.0)),
                        bg, stats, moves, solver, time.timer, prober)
    return fw, stats, prober


@pytest.mark.parametrize("moved", [True, False])
async def test_a_task_that_needs_a_move_is_answered_only_after_it(moved):
    """Window: ``needs`` goes where the move makes room (a), ``free`` needs none (b)."""
    time = FakeTime()
    movable = Movable(np.array([0]), ("low",), np.array([[2.0, 100.0, 0.0]]), {})
    solver = Scripted(PackingResult((0, 1), ((0, 0, 2),), "optimal", 2.0, 0.01))
    async with BackgroundTasks() as bg:
        moves = GatedMoves()
        fw, stats, prober = _moving_window(bg, solver, moves, time, movable)
        needs, free = _task("needs", 4.0, priority=2), _task("free", 1.0, priority=1)
        futs = [asyncio.ensure_future(fw.place(t, t.demand())) for t in (needs, free)]
        await _settle()
        time.pass_time()
        v_free = await futs[1]
        assert v_free.target == ("b", "http://b") and not futs[0].done()
        await _settle()
        assert moves.asked == [[ProposedMove("low", ("a", "http://a"), ("c", "http://c"))]]
        moves.answer.set_result([moved])
        v_needs = await futs[0]
    # every node 6 of 8 cores and 1 of 4 slots: no excess (the live prober asks none)
    assert prober.asked == [(["http://a", "http://b", "http://c", "http://d"],
                             [-0.25, -0.25, -0.25, -0.25], 2)]
    problem = solver.problems[0]
    assert problem.movable_node.tolist() == [0]
    if moved:
        assert (v_needs.target, v_needs.reason) == (("a", "http://a"), None)
        assert (stats.placed, stats.move_failed) == (2, 0)
    else:
        assert (v_needs.target, v_needs.reason) == (None, MOVE_FAILED)
        assert (stats.placed, stats.move_failed) == (1, 1)


async def test_the_real_solver_moves_a_queued_low_task_to_make_room_for_a_high_one():
    """Every node has 2 of 8 cores free; a queued 2-core low task on a leaves room for
    the 4-core high task there once it moves."""
    time = FakeTime()
    movable = Movable(np.array([0]), ("low",), np.array([[2.0, 256.0, 0.0]]), {})
    async with BackgroundTasks() as bg:
        moves = GatedMoves()
        moves.answer.set_result([True])
        from dodoor.packing import solve
        fw, stats, _ = _moving_window(bg, solve, moves, time, movable)
        high = _task("high", 4.0, priority=2)
        fut = asyncio.ensure_future(fw.place(high, high.demand()))
        await _settle()
        time.pass_time()
        verdict = await fut
    assert verdict.target == ("a", "http://a")
    [[move]] = moves.asked
    assert (move.task_id, move.origin[0]) == ("low", "a") and move.dest[0] != "a"
    assert (stats.placed, stats.moves_proposed) == (1, 0)  # the gated step counts none


class ListingPeers:
    """Agents answering the probe with 20 queued tasks each, of classes 1, 0, 1, 0, ..."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def send(self, url, msg, expect=None, **kw):
        assert url.endswith("/internal/probe") and msg.movable_below == 2
        node = url.removesuffix("/internal/probe")
        self.asked.append(node)
        ids = tuple(f"{node}/t{i}" for i in range(20))
        rows = np.array([[1.0, 100.0, 0.0, float((i + 1) % 2)] for i in range(20)])
        return ProbeReply(node, np.zeros(N_STATE), ids, rows)


async def test_at_most_8_nodes_are_probed_and_the_model_gets_at_most_32_tasks_lowest_first():
    peers = ListingPeers()
    urls = [f"http://n{i}" for i in range(12)]
    excess = np.array([0.1 * i for i in range(12)])  # n0 has none; n4..n11 the most
    movable = await probe_movable(peers, "s", urls, excess, below=2)
    assert sorted(peers.asked) == sorted(urls[4:])
    assert len(movable.ids) == 32
    # 8 nodes × 10 class-0 tasks (odd positions): the 32 kept are all of class 0
    assert all(int(i.rsplit("t", 1)[1]) % 2 == 1 for i in movable.ids)
    assert movable.node.tolist() == sorted(movable.node.tolist())
    assert set(movable.rows) == set(range(4, 12))
