"""Scheduler app behaviour against fake agents and a real in-process load store."""

from __future__ import annotations

import asyncio
import json

import msgpack
import numpy as np
import pytest

from dodoor.settings import PolicySettings
from dodoor.wire import CONTENT_TYPE, Snapshot, encode
from scheduler.app import STATE, create_app
from scheduler.loadstore.app import LOADSTORE
from scheduler.loadstore.app import create_app as create_loadstore
from scheduler.loadstore.settings import LoadStoreSettings
from scheduler.settings import SchedulerSettings
from tests.daemons.conftest import FakeAgent, free_port, wait_for

TASK = {"cores": 1, "memory_mb": 1024, "duration_ms": 100}


class Stack:
    """A real load store, fake agents and one scheduler, all on loopback in-process."""

    def __init__(self, client, scheduler_app, loadstore_server, agents):
        self.client = client
        self.app = scheduler_app
        self.state = scheduler_app[STATE]
        self.loadstore_server = loadstore_server
        self.ls = loadstore_server.app[LOADSTORE]
        self.agents = agents

    def by_id(self, node_id: str) -> FakeAgent:
        return next(a for a in self.agents if a.node_id == node_id)

    async def post(self, payload, *, msgpack_body=False, headers=None):
        h = dict(headers or {})
        if msgpack_body:
            h["Content-Type"] = CONTENT_TYPE
            data = msgpack.packb(payload)
        else:
            h["Content-Type"] = "application/json"
            data = json.dumps(payload)
        resp = await self.client.post("/v1/tasks", data=data, headers=h)
        return resp.status, await resp.json()


@pytest.fixture
def make_stack(aiohttp_server, aiohttp_client, fake_agents):
    async def build(agents=None, policy="dodoor", b=80, token=None, unreachable=(),
                    sched=None, **params):
        """``sched``: SchedulerSettings fields to override."""
        agents = agents or [FakeAgent(f"node-{i}", token=token) for i in range(3)]
        await fake_agents(*agents)
        ls_server = await aiohttp_server(
            create_loadstore(LoadStoreSettings(b=b, token=token)), host="127.0.0.1",
            port=free_port())
        ls_url = str(ls_server.make_url("")).rstrip("/")
        for node_id in unreachable:  # reported, but nothing listens there
            ghost = FakeAgent(node_id, token=token)
            ghost.url = f"http://127.0.0.1:{free_port()}"
            agents.append(ghost)
        for agent in agents:
            await agent.report(ls_url)
        port = free_port()
        settings = SchedulerSettings(
            scheduler_id="sched-t", port=port, loadstore_url=ls_url, policy=policy,
            policy_settings=PolicySettings(**params), seed=1, token=token,
            sparrow_wait_ms=50, loadstore_check_ms=100, register_retry_ms=50,
            **{"agent_timeout_ms": 1000, **(sched or {})},
        )
        app = create_app(settings)
        server = await aiohttp_server(app, host="127.0.0.1", port=port)
        client = await aiohttp_client(server)
        stack = Stack(client, app, ls_server, agents)
        await wait_for(lambda: stack.state.view.n_nodes == len(agents))
        return stack

    return build


async def test_single_task_is_placed_and_forwarded(make_stack):
    stack = await make_stack()
    status, body = await stack.post({**TASK, "id": "t-1"})
    assert status == 202
    [placement] = body["placements"]
    assert placement["id"] == "t-1"
    agent = stack.by_id(placement["node"])
    assert agent.enqueued["t-1"].task.cores == 1.0
    assert agent.enqueued["t-1"].scheduler_id == "sched-t"
    assert sum(len(a.enqueued) for a in stack.agents) == 1


async def test_batch_in_msgpack_places_every_task_once_in_order(make_stack):
    stack = await make_stack()
    tasks = [{**TASK, "id": f"b-{i}"} for i in range(30)]
    status, body = await stack.post({"tasks": tasks}, msgpack_body=True)
    assert status == 202
    assert [p["id"] for p in body["placements"]] == [t["id"] for t in tasks]
    for p in body["placements"]:
        assert p["id"] in stack.by_id(p["node"]).enqueued
    assert sum(len(a.enqueued) for a in stack.agents) == 30
    # the cache saw every own placement (k=8 deltas plus the unflushed rest)
    assert stack.state.view.cache.state[:, 3].sum() == 30


async def test_batch_sends_one_request_per_agent(make_stack):
    stack = await make_stack()
    status, body = await stack.post({"tasks": [{**TASK, "id": f"g-{i}"} for i in range(60)]},
                                    msgpack_body=True)
    assert status == 202
    used = {p["node"] for p in body["placements"]}
    for agent in stack.agents:
        assert agent.batch_posts == (1 if agent.node_id in used else 0)
        assert agent.enqueue_posts == 0
    assert stack.state.counter.counts["enqueue"] == 60


async def test_batch_falls_back_to_single_enqueues_without_batch_support(make_stack):
    agents = [FakeAgent(f"old-{i}", batch=False) for i in range(2)]
    stack = await make_stack(agents)
    status, body = await stack.post({"tasks": [{**TASK, "id": f"o-{i}"} for i in range(20)]})
    assert status == 202
    assert sum(a.enqueue_posts for a in agents) == 20
    assert sum(len(a.enqueued) for a in agents) == 20
    assert stack.state.counter.counts["enqueue"] == 20
    # the second batch goes straight to single enqueues
    await stack.post({"tasks": [{**TASK, "id": f"o2-{i}"} for i in range(20)]})
    assert sum(a.enqueue_posts for a in agents) == 40


async def test_failed_batch_fails_over_per_task(make_stack):
    good, bad = FakeAgent("good"), FakeAgent("bad")
    bad.fail_enqueue = True
    stack = await make_stack([good, bad])
    status, body = await stack.post({"tasks": [{**TASK, "id": f"h-{i}"} for i in range(40)]})
    assert status == 202
    assert {p["node"] for p in body["placements"]} == {"good"}
    assert bad.batch_posts == 1 and len(good.enqueued) == 40
    view = stack.state.view
    assert dict(zip(view.node_ids, view.cache.state[:, 3])) == {"bad": 0.0, "good": 40.0}


async def test_generated_ids_when_absent(make_stack):
    stack = await make_stack()
    status, body = await stack.post({"tasks": [TASK, TASK]})
    assert status == 202
    ids = [p["id"] for p in body["placements"]]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)


async def test_failover_when_agent_refuses_or_is_unreachable(make_stack):
    good = FakeAgent("good")
    refusing = FakeAgent("refusing")
    refusing.fail_enqueue = True
    stack = await make_stack([good, refusing], unreachable=("ghost",))
    status, body = await stack.post({"tasks": [{**TASK, "id": f"f-{i}"} for i in range(12)]})
    assert status == 202
    assert {p["node"] for p in body["placements"]} == {"good"}
    assert len(good.enqueued) == 12
    assert refusing.enqueue_posts > 0
    assert stack.state.placer.failovers >= refusing.enqueue_posts
    # the failed nodes' cached deltas were taken back
    view = stack.state.view
    tasks = dict(zip(view.node_ids, view.cache.state[:, 3]))
    assert tasks == {"good": 12.0, "ghost": 0.0, "refusing": 0.0}


async def test_503_when_no_agent_accepts(make_stack):
    bad = FakeAgent("bad")
    bad.fail_enqueue = True
    stack = await make_stack([bad])
    status, body = await stack.post({**TASK, "id": "x"})
    assert status == 503
    assert body["placements"] == [{"id": "x", "node": None, "error": body["placements"][0]["error"]}]
    assert "503" in body["placements"][0]["error"]


async def test_resubmission_returns_existing_placement(make_stack):
    stack = await make_stack()
    _, first = await stack.post({**TASK, "id": "same"})
    status, second = await stack.post({"tasks": [{**TASK, "id": "same"}, {**TASK, "id": "new"}]})
    assert status == 202
    assert second["placements"][0] == first["placements"][0]
    # the resubmitted id is confirmed by the agent holding it (it deduplicates), and
    # goes nowhere else
    assert sum(a.enqueue_posts for a in stack.agents) == 3
    holders = [a for a in stack.agents if "same" in a.enqueued]
    assert [a.node_id for a in holders] == [first["placements"][0]["node"]]


async def test_deltas_reach_the_load_store_every_k(make_stack):
    stack = await make_stack(k=4)
    for i in range(7):
        assert (await stack.post({**TASK, "id": f"d-{i}"}))[0] == 202
    await wait_for(lambda: stack.ls.store.placements == 4)
    assert stack.state.view.cache.unflushed_placements == 3
    assert (await stack.post({**TASK, "id": "d-7"}))[0] == 202
    await wait_for(lambda: stack.ls.store.placements == 8)
    records = stack.ls.store.live()
    live = {r.node_id: s[3] for r, s in zip(records, stack.ls.store.live_states(records))}
    assert sum(live.values()) == 8


async def test_snapshot_pushed_every_b_replaces_the_cache(make_stack):
    stack = await make_stack(k=2, b=6)
    seq0 = stack.state.view.snapshot_seq
    for i in range(6):
        await stack.post({**TASK, "id": f"s-{i}"})
    await wait_for(lambda: stack.state.view.snapshot_seq > seq0)
    view = stack.state.view
    # the pushed snapshot holds all six placements, none counted twice
    assert view.cache.state[:, 3].sum() == 6
    assert view.cache.state[:, 0].sum() == 6.0


async def test_snapshot_with_a_new_node_set_rebuilds_the_view(make_stack):
    stack = await make_stack()
    snap = Snapshot(seq=99, node_ids=("n-a", "n-b"), urls=("http://127.0.0.1:1/", "u2"),
                    capacity=np.array([[4.0, 100.0, 0.0], [2.0, 50.0, 0.0]]),
                    slots=np.array([1.0, 2.0]), state=np.array([[1, 2, 0, 1, 50.0],
                                                                 [0, 0, 0, 0, 0.0]]))
    resp = await stack.client.post("/internal/snapshot", data=encode(snap),
                                   headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 204
    nodes = await (await stack.client.get("/v1/nodes")).json()
    assert nodes["snapshot_seq"] == 99
    assert [n["id"] for n in nodes["nodes"]] == ["n-a", "n-b"]
    assert nodes["nodes"][0]["url"] == "http://127.0.0.1:1"
    assert nodes["nodes"][0]["state"]["pending_ms"] == 50.0
    assert nodes["nodes"][1]["capacity"] == {"cores": 2.0, "memory_mb": 50.0, "disk_mb": 0.0}
    status, body = await stack.post({**TASK, "cores": 5, "memory_mb": 50})
    assert status == 422 and body["error"]["field"] == "cores"


async def test_bad_snapshot_is_400(make_stack):
    stack = await make_stack()
    snap = Snapshot(seq=1, node_ids=("a",), urls=("u",), capacity=np.zeros((2, 3)),
                    slots=np.ones(1), state=np.zeros((1, 5)))
    resp = await stack.client.post("/internal/snapshot", data=encode(snap),
                                   headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 400
    resp = await stack.client.post("/internal/snapshot", data=b"junk",
                                   headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 400


async def test_degraded_health_when_load_store_is_gone_and_placement_continues(make_stack):
    stack = await make_stack()
    health = await (await stack.client.get("/healthz")).json()
    assert health["status"] == "ok"
    await stack.loadstore_server.close()
    await wait_for(lambda: not stack.state.loadstore_reachable, timeout=15)
    health = await (await stack.client.get("/healthz")).json()
    assert health["status"] == "degraded"
    assert health["snapshot_age_ms"] > 0
    status, body = await stack.post({**TASK, "id": "while-degraded"})
    assert status == 202 and body["placements"][0]["node"].startswith("node-")


async def test_token_required_except_healthz(make_stack):
    stack = await make_stack(token="s3cret")
    assert (await stack.client.get("/healthz")).status == 200
    resp = await stack.client.get("/v1/nodes")
    assert resp.status == 401
    assert (await resp.json())["error"]["field"] == "authorization"
    status, _ = await stack.post(TASK, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await stack.post({**TASK, "id": "authed"},
                                    headers={"Authorization": "Bearer s3cret"})
    assert status == 202
    # the scheduler authenticated itself to the agent (which checks the token)
    agent = stack.by_id(body["placements"][0]["node"])
    assert "authed" in agent.enqueued and agent.unauthorized == 0
    resp = await stack.client.get("/v1/tasks/authed", headers={"Authorization": "Bearer s3cret"})
    assert (await resp.json())["state"] == "succeeded"
    # the scheduler authenticated itself to the load store (registration, snapshot)
    assert stack.state.view.n_nodes == 3


async def test_metrics_export_message_counts(make_stack):
    stack = await make_stack()
    await stack.post({"tasks": [TASK] * 3})
    text = await (await stack.client.get("/metrics")).text()
    assert 'dodoor_messages_total{direction="sent",type="enqueue"} 3.0' in text
    assert 'dodoor_messages_total{direction="received",type="snapshot"}' in text
    assert "dodoor_scheduler_nodes 3.0" in text
    assert "# TYPE dodoor_scheduler_placements_total counter" in text
    assert "dodoor_scheduler_placements_total 3.0" in text
    # one batch of three placed tasks: three observations of each histogram
    assert "dodoor_scheduler_submit_to_placed_seconds_count 3.0" in text
    assert "dodoor_scheduler_snapshot_age_at_use_seconds_count 3.0" in text
    assert "process_resident_memory_bytes" in text


async def test_concurrent_submissions_of_one_id_place_it_once(make_stack):
    stack = await make_stack()
    results = await asyncio.gather(*(stack.post({**TASK, "id": "race"}) for _ in range(8)))
    assert {status for status, _ in results} == {202}
    assert len({body["placements"][0]["node"] for _, body in results}) == 1
    assert sum(a.enqueue_posts + a.batch_posts for a in stack.agents) == 1


async def test_load_store_restart_brings_a_new_registration(make_stack, aiohttp_server):
    stack = await make_stack()
    port = stack.loadstore_server.port
    await stack.loadstore_server.close()
    await wait_for(lambda: not stack.state.loadstore_reachable)
    fresh = await aiohttp_server(create_loadstore(LoadStoreSettings()), host="127.0.0.1",
                                 port=port)
    ls = fresh.app[LOADSTORE]
    await wait_for(lambda: "sched-t" in ls.pusher.schedulers, timeout=15)
    # the new store knows no nodes until they report; the push empties the view
    await wait_for(lambda: stack.state.view.n_nodes == 0)
    for agent in stack.agents:
        await agent.report(str(fresh.make_url("")).rstrip("/"))
    await wait_for(lambda: stack.state.view.n_nodes == 3)
    health = await (await stack.client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert (await stack.post({**TASK, "id": "after-restart"}))[0] == 202


async def test_task_that_stopped_fitting_after_admission_is_reported_not_crashed(make_stack):
    from dodoor.validation import parse_task

    stack = await make_stack()
    too_big = parse_task({"id": "big", "cores": 100, "memory_mb": 1})
    fine = parse_task({"id": "fine", "cores": 1, "memory_mb": 1})
    placements = await stack.state.placer.place([too_big, fine])
    assert placements[0].as_dict() == {"id": "big", "node": None,
                                       "error": "no live node can hold the task"}
    assert placements[1].node is not None


async def test_health_recovers_after_a_transient_delta_failure(make_stack):
    stack = await make_stack()
    stack.state.loadstore_reachable = False  # as after one failed deltas POST
    await wait_for(lambda: stack.state.loadstore_reachable)
    assert (await (await stack.client.get("/healthz")).json())["status"] == "ok"


async def test_concurrent_single_submissions_share_claim_requests(make_stack):
    stack = await make_stack()
    answers = await asyncio.gather(*(stack.post({**TASK, "id": f"cc-{i}"}) for i in range(24)))
    assert [status for status, _ in answers] == [202] * 24
    claims = stack.state.placer.claims
    # one request in flight at a time: callers that arrive meanwhile leave together
    assert 1 <= claims.requests < 24
    assert stack.state.counter.counts["lookup"] == claims.requests
