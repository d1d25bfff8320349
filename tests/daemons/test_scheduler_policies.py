"""The probing and reservation placement paths of the scheduler (power-of-two, Sparrow,
Prequal), against fake agents and a real in-process load store."""

from __future__ import annotations

import numpy as np

from tests.daemons.conftest import FakeAgent, wait_for
from tests.daemons.test_scheduler import TASK, make_stack  # noqa: F401


async def test_power_of_two_probes_and_picks_the_shorter_queue(make_stack):
    busy, idle = FakeAgent("busy"), FakeAgent("idle")
    busy.state = np.array([4, 4096, 0, 5, 5000.0])
    stack = await make_stack([busy, idle], policy="power-of-two")
    status, body = await stack.post({"tasks": [{**TASK, "id": f"p-{i}"} for i in range(5)]})
    assert status == 202
    assert {p["node"] for p in body["placements"]} == {"idle"}
    counts = stack.state.counter.counts
    assert (counts["probe"], counts["probe_reply"], counts["enqueue"]) == (10, 10, 5)
    assert counts["deltas"] == 0


async def test_power_of_two_duration_uses_pending_time(make_stack):
    a, b = FakeAgent("a"), FakeAgent("b")
    a.state = np.array([0, 0, 0, 1, 9000.0])
    b.state = np.array([0, 0, 0, 3, 10.0])
    stack = await make_stack([a, b], policy="power-of-two-duration")
    _, body = await stack.post({"tasks": [{**TASK, "id": f"q-{i}"} for i in range(4)]})
    assert {p["node"] for p in body["placements"]} == {"b"}


async def test_sparrow_first_confirm_wins_and_the_other_is_cancelled(make_stack):
    a, b = FakeAgent("a"), FakeAgent("b")
    stack = await make_stack([a, b], policy="sparrow")
    status, body = await stack.post({**TASK, "id": "sp"})
    assert status == 202 and body["placements"] == [{"id": "sp", "node": None}]
    assert set(a.reserved) == set(b.reserved) == {"sp"}
    assert (await stack.client.get("/v1/tasks/sp")).status == 200
    status, reply = await b.confirm("sp")
    assert status == 200 and reply.task.task_id == "sp" and reply.task.cores == 1.0
    await wait_for(lambda: a.cancelled == ["sp"])
    status, reply = await a.confirm("sp")
    assert status == 409 and reply["error"]["field"] == "task_id"
    _, again = await stack.post({**TASK, "id": "sp"})
    assert again["placements"] == [{"id": "sp", "node": "b"}]
    counts = stack.state.counter.counts
    # the resubmission is confirmed by b (a second enqueue, deduplicated there)
    assert (counts["reserve"], counts["confirm"], counts["enqueue"], counts["cancel"]) == (
        2, 2, 2, 1)


async def test_prequal_feeds_its_probe_pool(make_stack):
    stack = await make_stack(policy="prequal", probe_rate=2.0)
    for i in range(5):
        assert (await stack.post({**TASK, "id": f"pq-{i}"}))[0] == 202
    await wait_for(lambda: stack.state.counter.counts["probe_reply"] == 10)
    assert sum(a.probes for a in stack.agents) == 10
    assert stack.state.placer.policy.pool_size > 0
    # a batch earns probe_rate probes per task, not per request
    assert (await stack.post({"tasks": [{**TASK, "id": f"pb-{i}"} for i in range(4)]}))[0] == 202
    await wait_for(lambda: stack.state.counter.counts["probe_reply"] == 18)
