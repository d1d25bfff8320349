"""Load store: b-counting, deltas, dead-node expiry on a ManualClock, pushes, auth."""

from __future__ import annotations

import dataclasses

import msgpack
import numpy as np
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dodoor.clock import ManualClock
from dodoor.wire import (
    CONTENT_TYPE, Deltas, NodeState, Register, ReportAck, Snapshot, decode, encode,
)
from scheduler.loadstore.state import LoadStoreState
from scheduler.loadstore.app import LOADSTORE, create_app, expire_now, refresh_now
from scheduler.loadstore.settings import LoadStoreSettings
from tests.daemons.conftest import free_port, wait_for

MSGPACK = {"Content-Type": CONTENT_TYPE}


def node_state(node_id: str, seq: int = 1, tasks: float = 0.0, cores: float = 8.0) -> NodeState:
    return NodeState(node_id, f"http://127.0.0.1:9/{node_id}", seq,
                     np.array([cores, 1024.0, 0.0]), 2, np.array([0, 0, 0, tasks, 0.0]))


def deltas(nodes: tuple[str, ...], placements: int, per_node: float = 1.0) -> Deltas:
    rows = np.array([[per_node, 0, 0, per_node, 10.0 * per_node]] * len(nodes))
    return Deltas("s", 1, nodes, rows.reshape(len(nodes), 5), placements)


def test_b_counting_across_batches():
    store = LoadStoreState(b=10, dead_after_ms=1000, clock=ManualClock())
    store.report(node_state("n1"))
    due = [store.add_deltas(deltas(("n1",), 3)) for _ in range(7)]
    # 3, 6, 9, 12 -> push; then 3, 6, 9
    assert due == [False, False, False, True, False, False, False]
    assert store.placements == 21


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), max_size=40),
       st.integers(min_value=1, max_value=50))
def test_pushes_never_lag_more_than_b_placements(batches, b):
    store = LoadStoreState(b=b, dead_after_ms=1000, clock=ManualClock())
    since = 0
    for n in batches:
        since += n
        if store.add_deltas(deltas((), n)):
            assert since >= b
            since = 0
        assert since < b


def test_deltas_add_to_the_report_and_a_new_report_resets_them():
    store = LoadStoreState(b=80, dead_after_ms=1000, clock=ManualClock())
    store.report(node_state("n1", tasks=2))
    store.add_deltas(deltas(("n1", "unknown"), 2, per_node=1.0))
    store.add_deltas(deltas(("n1",), 1, per_node=2.0))
    snap = store.snapshot()
    assert snap.node_ids == ("n1",)
    np.testing.assert_array_equal(snap.state[0], [3, 0, 0, 5, 30.0])
    store.report(node_state("n1", seq=2, tasks=4))
    np.testing.assert_array_equal(store.snapshot().state[0], [0, 0, 0, 4, 0.0])


def test_dead_nodes_expire_and_come_back():
    clock = ManualClock()
    store = LoadStoreState(b=80, dead_after_ms=3000, clock=clock)
    assert store.report(node_state("a")) is True
    assert store.report(node_state("b")) is True
    assert store.report(node_state("a", seq=2)) is False  # same node, same size
    clock.advance(2000)
    store.report(node_state("b", seq=2))
    clock.advance(1000)
    assert store.expire() is False  # a is exactly at the deadline
    clock.advance(1)
    assert store.expire() is True
    assert store.snapshot().node_ids == ("b",)
    assert store.expire() is False
    clock.advance(5000)
    assert store.expire() is True
    assert store.snapshot().node_ids == ()
    assert store.report(node_state("a", seq=3)) is True  # revived
    assert store.snapshot().node_ids == ("a",)


def test_resized_node_changes_the_node_set():
    store = LoadStoreState(b=80, dead_after_ms=3000, clock=ManualClock())
    store.report(node_state("a"))
    assert store.report(node_state("a", seq=2, cores=16)) is True


@pytest.mark.parametrize("bad", [
    NodeState("x", "u", 1, np.zeros(2), 1, np.zeros(5)),
    NodeState("x", "u", 1, np.zeros(3), 0, np.zeros(5)),
    NodeState("x", "u", 1, np.array([1.0, np.nan, 0]), 1, np.zeros(5)),
    NodeState("x", "u", 1, np.array([-1.0, 1, 0]), 1, np.zeros(5)),
])
def test_bad_reports_rejected(bad):
    store = LoadStoreState(b=80, dead_after_ms=3000, clock=ManualClock())
    with pytest.raises(ValueError):
        store.report(bad)
    assert store.nodes == {}


class FakeScheduler:
    """Records snapshot pushes; can be told to fail."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.fail = False
        self.app = web.Application()
        self.app.router.add_post("/internal/snapshot", self._snapshot)

    async def _snapshot(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.Response(status=500)
        self.snapshots.append(decode(await request.read(), Snapshot))
        return web.Response(status=204)


@pytest.fixture
async def loadstore(aiohttp_server, aiohttp_client):
    async def build(token=None, **kw):
        clock = ManualClock()
        app = create_app(LoadStoreSettings(token=token, **kw), clock=clock, expiry_loop=False)
        client = await aiohttp_client(await aiohttp_server(app, host="127.0.0.1",
                                                           port=free_port()))
        return client, app[LOADSTORE], clock

    return build


async def start_scheduler(aiohttp_server) -> tuple[FakeScheduler, str]:
    fake = FakeScheduler()
    server = await aiohttp_server(fake.app, host="127.0.0.1", port=free_port())
    return fake, str(server.make_url("")).rstrip("/")


async def test_register_pushes_snapshot_then_every_b_and_on_expiry(loadstore, aiohttp_server):
    client, ls, clock = await loadstore(b=4, dead_after_ms=1000)
    s1, url1 = await start_scheduler(aiohttp_server)
    s2, url2 = await start_scheduler(aiohttp_server)
    for nid in ("n1", "n2"):
        assert (await client.post("/internal/node_state", data=encode(node_state(nid)),
                                  headers=MSGPACK)).status == 200
    for sid, url in (("s1", url1), ("s2", url2)):
        resp = await client.post("/internal/register", data=encode(Register("scheduler", sid, url)),
                                 headers=MSGPACK)
        assert resp.status == 204
    await wait_for(lambda: len(s1.snapshots) == 1 and len(s2.snapshots) == 1)
    assert s1.snapshots[0].node_ids == ("n1", "n2")
    for _ in range(3):
        await client.post("/internal/deltas", data=encode(deltas(("n1",), 1)), headers=MSGPACK)
    await client.post("/internal/deltas", data=encode(deltas(("n2",), 1)), headers=MSGPACK)
    await wait_for(lambda: len(s1.snapshots) == 2 and len(s2.snapshots) == 2)
    np.testing.assert_array_equal(s2.snapshots[1].state[:, 3], [3.0, 1.0])
    clock.advance(600)
    await client.post("/internal/node_state", data=encode(node_state("n2", seq=2)),
                      headers=MSGPACK)
    clock.advance(600)
    assert await expire_now(ls) is True
    await wait_for(lambda: len(s1.snapshots) == 3 and len(s2.snapshots) == 3)
    assert s1.snapshots[2].node_ids == ("n2",)
    assert ls.counter.counts["snapshot"] == 6
    nodes = await (await client.get("/v1/nodes")).json()
    assert [(n["id"], n["alive"]) for n in nodes["nodes"]] == [("n1", False), ("n2", True)]


async def test_a_failing_scheduler_does_not_block_the_others(loadstore, aiohttp_server):
    client, ls, _ = await loadstore(b=1, forget_after_failures=2)
    ok, ok_url = await start_scheduler(aiohttp_server)
    bad, bad_url = await start_scheduler(aiohttp_server)
    bad.fail = True
    await client.post("/internal/node_state", data=encode(node_state("n1")), headers=MSGPACK)
    for sid, url in (("ok", ok_url), ("bad", bad_url)):
        await client.post("/internal/register", data=encode(Register("scheduler", sid, url)),
                          headers=MSGPACK)
    await wait_for(lambda: len(ok.snapshots) == 1 and ls.pusher.failures.get("bad") == 1)
    await client.post("/internal/deltas", data=encode(deltas(("n1",), 1)), headers=MSGPACK)
    await wait_for(lambda: len(ok.snapshots) == 2 and "bad" not in ls.pusher.schedulers)
    await client.post("/internal/deltas", data=encode(deltas(("n1",), 1)), headers=MSGPACK)
    await wait_for(lambda: len(ok.snapshots) == 3)
    assert bad.snapshots == []


@pytest.mark.parametrize("path, data", [
    ("/internal/node_state", b"\x93garbage"),
    ("/internal/deltas", encode(Deltas("s", 1, ("a", "b"), np.zeros((1, 5)), 1))),
    ("/internal/deltas", encode(node_state("n"))),
    ("/internal/register", encode(Register("agent", "x", "u"))),
])
async def test_bad_messages_are_400(loadstore, path, data):
    client, ls, _ = await loadstore()
    resp = await client.post(path, data=data, headers=MSGPACK)
    assert resp.status == 400
    assert "error" in await resp.json()
    assert ls.store.placements == 0


async def test_token(loadstore):
    client, ls, _ = await loadstore(token="tok")
    assert (await client.get("/healthz")).status == 200
    data = encode(node_state("n1"))
    assert (await client.post("/internal/node_state", data=data, headers=MSGPACK)).status == 401
    resp = await client.post("/internal/node_state", data=data,
                             headers={**MSGPACK, "Authorization": "Bearer tok"})
    assert resp.status == 200
    assert [r.node_id for r in ls.store.live()] == ["n1"]


async def test_metrics(loadstore):
    client, _, _ = await loadstore()
    await client.post("/internal/node_state", data=encode(node_state("n1")), headers=MSGPACK)
    text = await (await client.get("/metrics")).text()
    assert 'dodoor_messages_total{direction="received",type="node_state"} 1.0' in text
    assert "dodoor_loadstore_live_nodes 1.0" in text
    assert "dodoor_loadstore_placements_total 0.0" in text
    assert "# TYPE dodoor_loadstore_placements_total counter" in text
    assert f"dodoor_loadstore_placements_per_push {LoadStoreSettings().b:.1f}" in text  # was _batch_b
    assert "dodoor_loadstore_batch_b" not in text
    assert "process_cpu_seconds_total" in text


async def test_heartbeats_update_the_node_but_are_not_scheduling_messages(loadstore):
    client, ls, _ = await loadstore()
    await client.post("/internal/node_state", data=encode(node_state("n1")), headers=MSGPACK)
    beat = dataclasses.replace(node_state("n1", seq=2, tasks=3), heartbeat=True)
    assert (await client.post("/internal/node_state", data=encode(beat), headers=MSGPACK)).status == 200
    assert (ls.counter.counts["node_state"], ls.counter.counts["heartbeat"]) == (1, 1)
    assert ls.counter.scheduling_total == 1
    assert ls.store.live_states()[:, 3].tolist() == [3.0]


async def test_reports_are_wanted_only_while_a_scheduler_scores_from_load(loadstore, aiohttp_server):
    client, ls, _ = await loadstore(forget_after_failures=1)

    async def answer(seq: int) -> bool:
        resp = await client.post("/internal/node_state", data=encode(node_state("n1", seq=seq)),
                                 headers=MSGPACK)
        assert resp.status == 200
        return decode(await resp.read(), ReportAck).wants_load

    async def register(sid: str, url: str, wants_load: bool) -> None:
        resp = await client.post("/internal/register", headers=MSGPACK,
                                 data=encode(Register("scheduler", sid, url, wants_load)))
        assert resp.status == 204

    assert await answer(1) is True  # nobody registered yet: keep the state fresh
    probing, probing_url = await start_scheduler(aiohttp_server)
    await register("p", probing_url, wants_load=False)
    assert await answer(2) is False
    cached, cached_url = await start_scheduler(aiohttp_server)
    await register("c", cached_url, wants_load=True)
    assert await answer(3) is True
    cached.fail = True  # forgotten after one failed push: only the probing scheduler is left
    ls.pusher.request({"c"})
    await wait_for(lambda: "c" not in ls.pusher.schedulers)
    assert await answer(4) is False
    assert len(probing.snapshots) >= 1  # it still gets the node list


@pytest.fixture
def shared_loadstore(loadstore):
    built: list = []

    async def get():
        if not built:
            built.append(await loadstore())
        return built[0]

    return get


def _envelopes():
    bodies = st.dictionaries(
        st.sampled_from(["node_id", "url", "seq", "capacity", "slots", "state", "node_ids",
                         "deltas", "placements", "scheduler_id", "role", "component_id"]),
        st.none() | st.integers(-5, 5) | st.text(max_size=4) | st.binary(max_size=48)
        | st.lists(st.integers(0, 3) | st.binary(max_size=40), max_size=3), max_size=8)
    return st.builds(lambda kind, body: msgpack.packb({"v": 1, "type": kind, "body": body}),
                     st.sampled_from(["node_state", "deltas", "register", "snapshot"]), bodies)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=120), _envelopes()),
       path=st.sampled_from(["/internal/node_state", "/internal/deltas", "/internal/register"]))
async def test_no_input_crashes_the_load_store(shared_loadstore, data, path):
    client, ls, _ = await shared_loadstore()
    resp = await client.post(path, data=data, headers=MSGPACK)
    assert resp.status in (204, 400), await resp.text()
    assert (await client.get("/v1/nodes")).status == 200


async def test_healthz_names_the_role_and_process(loadstore):
    import os

    client, ls, _ = await loadstore()
    health = await (await client.get("/healthz")).json()
    assert (health["role"], health["instance"], health["pid"]) == ("loadstore", ls.instance,
                                                                    os.getpid())


async def test_a_report_that_changes_the_state_is_pushed_after_refresh_ms_without_placements(
        loadstore, aiohttp_server):
    """A snapshot may hide a placement (its delta was superseded by a report sent before
    the agent had the task); with nothing else placed, only the refresh corrects it."""
    client, ls, clock = await loadstore(b=80, refresh_ms=1000)
    fake, url = await start_scheduler(aiohttp_server)
    await client.post("/internal/node_state", data=encode(node_state("n1")), headers=MSGPACK)
    await client.post("/internal/register", data=encode(Register("scheduler", "s", url)),
                      headers=MSGPACK)
    await wait_for(lambda: len(fake.snapshots) == 1)
    assert not ls.store.changed and not refresh_now(ls)
    beat = dataclasses.replace(node_state("n1", seq=2), heartbeat=True)  # same state
    await client.post("/internal/node_state", data=encode(beat), headers=MSGPACK)
    clock.advance(5000)
    assert not refresh_now(ls)  # idle and unchanged: nothing to push
    await client.post("/internal/node_state", data=encode(node_state("n1", seq=3, tasks=1)),
                      headers=MSGPACK)
    ls.pusher.last_push_ms = clock.now_ms() - 999
    assert not refresh_now(ls)  # a push went out less than refresh_ms ago
    clock.advance(1)
    assert refresh_now(ls)
    await wait_for(lambda: len(fake.snapshots) == 2)
    assert fake.snapshots[1].state[:, 3].tolist() == [1.0]
    assert not ls.store.changed and not refresh_now(ls)  # that push took the change
    assert ls.counter.counts["snapshot"] == 2
