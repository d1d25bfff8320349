"""Live delta snapshots: load store state + scheduler view, and the real apps on loopback."""

from __future__ import annotations

import json

import numpy as np

from dodoor.clock import ManualClock
from dodoor.settings import PolicySettings
from dodoor.wire import CONTENT_TYPE, Deltas, NodeState, Snapshot, SnapshotDelta, encode
from scheduler.app import STATE, create_app
from scheduler.loadstore.state import LoadStoreState
from scheduler.loadstore.app import LOADSTORE, create_app as create_loadstore
from scheduler.settings import LoadStoreSettings, SchedulerSettings
from scheduler.view import ClusterView
from tests.daemons.conftest import FakeAgent, fake_agents, free_port, wait_for  # noqa: F401

TASK = {"cores": 1, "memory_mb": 256, "duration_ms": 1000, "image": "x", "command": ["true"]}


def _report(node: str, tasks: float = 0.0) -> NodeState:
    return NodeState(node, f"http://127.0.0.1:9/{node}", 1, np.array([8.0, 1024.0, 0.0]), 2,
                     np.array([0, 0, 0, tasks, 0.0]))


def _store_view(store: LoadStoreState) -> np.ndarray:
    return store.live_states()


def _deliver(store: LoadStoreState, view: ClusterView, sid: str = "s") -> type:
    msg = store.updates_for([sid])[sid]
    if isinstance(msg, Snapshot):
        view.apply(msg, 0.0)
    else:
        assert view.apply_delta(msg, 0.0)
    return type(msg)


def test_state_and_view_agree_through_reports_deltas_and_a_death():
    clock = ManualClock()
    store = LoadStoreState(b=4, dead_after_ms=1000, clock=clock, delta_snapshots=True, epoch="e1")
    for node in ("a", "b", "c"):
        store.report(_report(node))
    view = ClusterView("s", k=100)
    assert _deliver(store, view) is Snapshot  # first contact is full
    store.add_deltas(Deltas("s", 1, ("b",), np.array([[1.0, 10, 0, 1, 500]]), 1))
    msg = store.updates_for(["s"])["s"]
    assert isinstance(msg, SnapshotDelta) and msg.node_ids == ("b",) and msg.base_seq == 1
    assert view.apply_delta(msg, 0.0)
    np.testing.assert_array_equal(view.cache.state, _store_view(store))
    store.report(_report("c", tasks=2))
    assert _deliver(store, view) is SnapshotDelta
    np.testing.assert_array_equal(view.cache.state, _store_view(store))
    clock.advance(900)
    for node in ("a", "b"):
        store.report(_report(node))
    clock.advance(200)
    assert store.expire()  # c died: the node set changed, so the next update is full
    assert _deliver(store, view) is Snapshot
    assert view.node_ids == ("a", "b")
    np.testing.assert_array_equal(view.cache.state, _store_view(store))


def test_view_refuses_gaps_other_epochs_and_unknown_nodes():
    store = LoadStoreState(b=4, dead_after_ms=1000, clock=ManualClock(), delta_snapshots=True,
                           epoch="e1")
    store.report(_report("a"))
    view = ClusterView("s", k=100)
    _deliver(store, view)
    row = np.zeros((1, 5))
    assert not view.apply_delta(SnapshotDelta(3, 2, "e1", ("a",), row), 0.0)  # gap
    assert not view.apply_delta(SnapshotDelta(2, 1, "e2", ("a",), row), 0.0)  # restarted store
    assert not view.apply_delta(SnapshotDelta(2, 1, "e1", ("zz",), row), 0.0)  # unknown node
    assert view.apply_delta(SnapshotDelta(2, 1, "e1", ("a",), np.ones((1, 5))), 0.0)
    assert view.snapshot_seq == 2 and view.cache.state.tolist() == [[1.0] * 5]


async def test_live_scheduler_gets_deltas_and_resyncs_after_a_lost_push(
        aiohttp_server, aiohttp_client, fake_agents):  # noqa: F811
    agents = [FakeAgent(f"node-{i}") for i in range(4)]
    await fake_agents(*agents)
    ls_app = create_loadstore(LoadStoreSettings(b=4, delta_snapshots=True))
    ls_server = await aiohttp_server(ls_app, host="127.0.0.1", port=free_port())
    ls_url = str(ls_server.make_url("")).rstrip("/")
    for agent in agents:
        await agent.report(ls_url)
    port = free_port()
    app = create_app(SchedulerSettings(
        scheduler_id="sched-d", port=port, loadstore_url=ls_url, seed=1,
        policy_settings=PolicySettings(k=2), loadstore_check_ms=100, register_retry_ms=50))
    client = await aiohttp_client(await aiohttp_server(app, host="127.0.0.1", port=port))
    state, ls = app[STATE], ls_app[LOADSTORE]
    await wait_for(lambda: state.view.n_nodes == 4)
    assert state.view.epoch == ls.instance

    async def post(i: int) -> None:
        resp = await client.post("/v1/tasks", data=json.dumps({**TASK, "id": f"t{i}"}),
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 202

    def in_sync() -> bool:
        return (state.view.cache.unflushed_placements == 0
                and np.array_equal(state.view.cache.state, _store_view(ls.store)))

    for i in range(8):
        await post(i)
    await wait_for(lambda: ls.store.publisher.delta_sent >= 1 and in_sync())
    seq = state.view.snapshot_seq
    # a push lost on the way: the store moves on, the scheduler never sees it
    ls.store.updates_for(["sched-d"])
    fulls = ls.store.publisher.full_sent
    for i in range(8, 12):
        await post(i)
    # the next delta extends the lost one: refused with 409, then a full resync
    # (full_sent counts a snapshot when it is built, before it lands: wait for the view)
    await wait_for(lambda: ls.store.publisher.full_sent > fulls
                   and state.view.snapshot_seq > seq + 1 and in_sync())
    resp = await client.post("/internal/snapshot_delta",
                             data=encode(SnapshotDelta(999, 998, ls.instance, (), np.zeros((0, 5)))),
                             headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 409
    assert (await resp.json())["error"]["field"] == "base_seq"


def test_loadstore_command_flags_reach_the_settings():
    from dodoor.tools.cli import build_parser
    from scheduler.loadstore.command import loadstore_settings

    args = build_parser().parse_args(["loadstore", "--delta-snapshots",
                                      "--adaptive-b-target-ms", "25"])
    settings = loadstore_settings(args)
    assert settings.delta_snapshots and settings.adaptive_b_target_ms == 25.0
    plain = loadstore_settings(build_parser().parse_args(["loadstore"]))
    assert not plain.delta_snapshots and plain.adaptive_b_target_ms == 0.0
