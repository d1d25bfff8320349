"""An enqueue whose outcome is unknown (a timeout) is settled on the same agent.

Against fake agents scripted per request (``FakeAgent.script``): ``late`` takes
the tasks but answers after the scheduler's timeout, ``drop`` times out without
taking them, ``503`` refuses. Only a definite refusal (503, no connection) may
move a task to another agent.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest

from dodoor.errors import ValidationError
from dodoor.wire import CONTENT_TYPE, Snapshot, encode
from scheduler.settings import SchedulerSettings
from tests.daemons.conftest import FakeAgent, wait_for
from tests.daemons.test_scheduler import TASK, make_stack  # noqa: F401

TIMEOUT_MS = 200
LATE_S = 0.5  # past the timeout


def slow_agents(n: int = 2, script: tuple[str, ...] = ("late",)) -> list[FakeAgent]:
    agents = [FakeAgent(f"node-{i}") for i in range(n)]
    for agent in agents:
        agent.script = list(script)
        agent.late_s = LATE_S
    return agents


def holders(agents: list[FakeAgent]) -> dict[str, list[str]]:
    """Task id -> every agent that received it, in any request."""
    out: dict[str, list[str]] = {}
    for agent in agents:
        for task_id in dict.fromkeys(agent.posted_ids):
            out.setdefault(task_id, []).append(agent.node_id)
    return out


def tasks_on(stack) -> dict[str, float]:
    view = stack.state.view
    return dict(zip(view.node_ids, view.cache.state[:, 3]))


@pytest.mark.parametrize("step", ["late", "drop"])
async def test_single_enqueue_with_no_answer_is_settled_on_the_same_agent(make_stack, step):
    agents = slow_agents(script=(step,))
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS})
    status, body = await stack.post({**TASK, "id": "u-1"})
    assert status == 202, body
    [placement] = body["placements"]
    node = placement["node"]
    # the same agent got the same id again, and no other agent ever got it
    assert holders(agents) == {"u-1": [node]}
    assert stack.by_id(node).posted_ids == ["u-1", "u-1"]
    assert "u-1" in stack.by_id(node).enqueued
    placer = stack.state.placer
    assert (placer.resolves, placer.failovers) == (1, 0)
    assert tasks_on(stack)[node] == 1.0  # its cached delta stands, once
    got = await (await stack.client.get("/v1/tasks/u-1")).json()
    assert (got["state"], got["node"]) == ("succeeded", node)


async def test_batched_enqueue_with_no_answer_is_settled_on_the_same_agent(make_stack):
    agents = slow_agents()
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS})
    ids = [f"g-{i}" for i in range(8)]
    status, body = await stack.post({"tasks": [{**TASK, "id": i} for i in ids]})
    assert status == 202, body
    reported = {p["id"]: p["node"] for p in body["placements"]}
    assert holders(agents) == {i: [reported[i]] for i in ids}
    for agent in agents:
        mine = sorted(i for i in ids if reported[i] == agent.node_id)
        assert sorted(agent.enqueued) == mine
        if mine:  # the late batch, then the same ids again in a batch of their own
            assert agent.batch_posts == 2
            assert Counter(agent.posted_ids) == {i: 2 for i in mine}
    placer = stack.state.placer
    assert (placer.resolves, placer.failovers) == (8, 0)
    assert sum(tasks_on(stack).values()) == 8.0


async def test_an_agent_back_without_batches_is_asked_again_one_by_one(make_stack):
    agents = slow_agents(n=1, script=("late", "404"))  # back as an agent without batches
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS})
    ids = [f"n-{i}" for i in range(3)]
    status, body = await stack.post({"tasks": [{**TASK, "id": i} for i in ids]})
    assert status == 202, body
    assert {p["node"] for p in body["placements"]} == {"node-0"}
    [agent] = agents
    assert (agent.batch_posts, agent.enqueue_posts) == (2, 3)
    assert Counter(agent.posted_ids) == {i: 3 for i in ids}
    assert stack.state.counter.counts["enqueue"] == 6  # the refused batch delivered nothing


async def test_unknown_then_refused_fails_over_and_takes_back_the_delta(make_stack):
    shared = ["drop", "503"]  # one script for both agents: whichever is asked first
    agents = slow_agents(script=())
    for agent in agents:
        agent.script = shared
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS})
    status, body = await stack.post({**TASK, "id": "r-1"})
    assert status == 202, body
    node = body["placements"][0]["node"]
    [first] = [a for a in agents if a.node_id != node]
    assert first.posted_ids == ["r-1", "r-1"] and not first.enqueued
    assert stack.by_id(node).posted_ids == ["r-1"]
    placer = stack.state.placer
    assert (placer.resolves, placer.failovers) == (1, 1)
    assert tasks_on(stack) == {first.node_id: 0.0, node: 1.0}


async def test_refusals_fail_over_at_once_without_settling(make_stack):
    good, refusing = FakeAgent("good"), FakeAgent("refusing")
    refusing.fail_enqueue = True  # 503: the agent's "cannot journal"
    # nothing here is slow on purpose: a roomy timeout keeps a loaded machine from
    # turning good's answers into unknown outcomes
    stack = await make_stack([good, refusing], unreachable=("ghost",),  # connection refused
                             sched={"agent_timeout_ms": 5_000})
    ids = [f"f-{i}" for i in range(12)]
    status, body = await stack.post({"tasks": [{**TASK, "id": i} for i in ids]})
    assert status == 202, body
    assert {p["node"] for p in body["placements"]} == {"good"}
    assert Counter(refusing.posted_ids).most_common(1)[0][1] == 1  # never asked twice
    status, body = await stack.post({**TASK, "id": "f-single"})
    assert status == 202 and body["placements"][0]["node"] == "good"
    assert refusing.posted_ids.count("f-single") <= 1
    placer = stack.state.placer
    assert placer.resolves == 0 and placer.failovers > 0


async def test_still_unknown_after_resolve_timeout_is_503_naming_the_node(make_stack):
    shared = ["late"] * 100  # every request to whichever agent is asked first
    agents = slow_agents(script=())
    for agent in agents:
        agent.script = shared
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS,
                                            "resolve_timeout_ms": 600})
    status, body = await stack.post({**TASK, "id": "x-1"})
    assert status == 503, body
    [placement] = body["placements"]
    [asked] = [a for a in agents if a.posted_ids]
    assert placement["node"] is None
    assert f"outcome unknown on node {asked.node_id}" in placement["error"]
    assert set(asked.posted_ids) == {"x-1"} and len(asked.posted_ids) >= 2
    assert stack.state.placer.failovers == 0
    assert tasks_on(stack)[asked.node_id] == 0.0  # not counted until it is known
    # the id stays with that node: its status is asked there (the late agent took it)
    got = await (await stack.client.get("/v1/tasks/x-1")).json()
    assert (got["state"], got["node"]) == ("succeeded", asked.node_id)
    # a resubmission goes back to that node first; now it answers
    shared.clear()
    status, body = await stack.post({**TASK, "id": "x-1"})
    assert status == 202, body
    assert body["placements"] == [{"id": "x-1", "node": asked.node_id}]
    assert holders(agents) == {"x-1": [asked.node_id]}
    assert tasks_on(stack)[asked.node_id] == 1.0
    # and from then on it is an ordinary placed id
    status, body = await stack.post({**TASK, "id": "x-1"})
    assert status == 202 and body["placements"][0]["node"] == asked.node_id
    assert asked.posted_ids.count("x-1") == len(asked.posted_ids)


async def test_a_node_that_leaves_the_view_while_unknown_is_given_up(make_stack):
    agents = slow_agents(script=("late",) * 100)
    stack = await make_stack(agents, sched={"agent_timeout_ms": TIMEOUT_MS})
    post = asyncio.create_task(stack.post({**TASK, "id": "d-1"}))
    await wait_for(lambda: stack.state.placer.resolves == 1)
    [asked] = [a for a in agents if a.posted_ids]
    [other] = [a for a in agents if a is not asked]
    other.script.clear()
    # the load store declares it dead: the next snapshot leaves it out and names it dead
    snap = Snapshot(seq=500, node_ids=(other.node_id,), urls=(other.url,),
                    capacity=np.array([other.capacity]), slots=np.ones(1),
                    state=np.zeros((1, 5)), dead=(asked.node_id,))
    resp = await stack.client.post("/internal/snapshot", data=encode(snap),
                                   headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 204
    status, body = await asyncio.wait_for(post, 10)
    assert status == 202, body
    assert body["placements"] == [{"id": "d-1", "node": other.node_id}]
    assert stack.state.placer.failovers == 1


def test_resolve_timeout_must_not_be_negative():
    with pytest.raises(ValidationError, match="resolve_timeout_ms: must be >= 0, got -1"):
        SchedulerSettings(resolve_timeout_ms=-1)
    assert SchedulerSettings(resolve_timeout_ms=0).resolve_timeout_ms == 0
