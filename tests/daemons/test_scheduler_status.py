"""The scheduler's task status, logs and cancel answers, against fake agents and a real
in-process load store."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dodoor.resources import Task
from dodoor.wire import CONTENT_TYPE, Enqueue, Snapshot, encode
from tests.daemons.conftest import FakeAgent
from tests.daemons.test_scheduler import TASK, make_stack  # noqa: F401


async def test_task_status_states(make_stack):
    stack = await make_stack()
    _, body = await stack.post({**TASK, "id": "st"})
    node = body["placements"][0]["node"]
    resp = await stack.client.get("/v1/tasks/st")
    got = await resp.json()
    assert resp.status == 200
    assert (got["state"], got["node"], got["exit_code"], got["finished_ms"]) == (
        "succeeded", node, 0, 3.0)
    nope = await stack.client.get("/v1/tasks/nope")
    assert nope.status == 404 and "load store" in (await nope.json())["error"]["reason"]
    del stack.by_id(node).enqueued["st"]
    # a healthy node that does not know the id: not a death, so not ``lost``
    got = await (await stack.client.get("/v1/tasks/st")).json()
    assert got["state"] == "unknown" and "does not know" in got["reason"]


async def test_task_status_of_another_schedulers_task_goes_through_the_task_index(make_stack):
    stack = await make_stack()
    agent = stack.agents[0]
    # the agent holds an id no scheduler of this stack placed, and reports it
    agent.enqueued["elsewhere"] = Enqueue(Task("elsewhere", 1.0, 256.0), "sched-other")
    await agent.report(str(stack.loadstore_server.make_url("")).rstrip("/"), task_ids=("elsewhere",))
    got = await (await stack.client.get("/v1/tasks/elsewhere")).json()
    assert (got["state"], got["node"]) == ("succeeded", agent.node_id)


async def test_batch_status_asks_each_agent_once_and_names_unknown_ids(make_stack):
    stack = await make_stack()
    tasks = [{**TASK, "id": f"b-{i}"} for i in range(12)]
    status, _ = await stack.post({"tasks": tasks})
    assert status == 202
    before = sum(a.status_batches for a in stack.agents)
    ids = [t["id"] for t in tasks] + ["nope"]
    resp = await stack.client.post("/v1/tasks/status", json={"ids": ids})
    got = await resp.json()
    assert resp.status == 200
    assert [t["id"] for t in got["tasks"]] == ids[:-1]
    assert {t["state"] for t in got["tasks"]} == {"succeeded"}
    assert got["errors"] == [{"id": "nope", "status": 404, "reason": got["errors"][0]["reason"]}]
    holding = {t["node"] for t in got["tasks"]}
    assert sum(a.status_batches for a in stack.agents) - before == len(holding)
    # the single-id call answers the same from the same code
    one = await (await stack.client.get("/v1/tasks/b-3")).json()
    assert one == got["tasks"][3]


async def test_batch_status_long_poll_waits_until_the_deadline_when_nothing_ends(make_stack):
    agent = FakeAgent("slow", finish=False)
    stack = await make_stack([agent])
    await stack.post({**TASK, "id": "w"})
    started = time.monotonic()
    got = await (await stack.client.post("/v1/tasks/status",
                                         json={"ids": ["w"], "wait_s": 0.6})).json()
    assert time.monotonic() - started >= 0.55
    assert got["tasks"][0]["state"] == "queued" and agent.status_batches >= 2
    agent.finish = True
    started = time.monotonic()
    got = await (await stack.client.post("/v1/tasks/status",
                                         json={"ids": ["w"], "wait_s": 30})).json()
    assert got["tasks"][0]["state"] == "succeeded" and time.monotonic() - started < 5


@pytest.mark.parametrize("body, field", [
    ({"ids": "x"}, "ids"), ({"ids": [1]}, "ids"), ({"ids": ["a"], "wait_s": -1}, "wait_s"),
    ({"ids": ["a"], "wait_s": True}, "wait_s"), ([], "body"),
])
async def test_batch_status_bad_bodies_name_the_field(make_stack, body, field):
    stack = await make_stack()
    resp = await stack.client.post("/v1/tasks/status", json=body)
    assert resp.status == 400 and (await resp.json())["error"]["field"] == field


async def test_logs_come_from_the_agent_holding_the_task(make_stack):
    stack = await make_stack()
    _, body = await stack.post({**TASK, "id": "lg"})
    resp = await stack.client.get("/v1/tasks/lg/logs")
    got = await resp.json()
    assert resp.status == 200
    assert (got["log_tail"], got["node"], got["truncated"]) == (
        "output of lg\n", body["placements"][0]["node"], False)
    got = await (await stack.client.get("/v1/tasks/lg/logs?max_bytes=4")).json()
    assert (got["log_tail"], got["truncated"]) == ("f lg\n"[-4:], True)
    assert (await stack.client.get("/v1/tasks/nope/logs")).status == 404
    assert (await stack.client.get("/v1/tasks/lg/logs?max_bytes=0")).status == 400


async def test_cancel_answers_cancelled_again_409_for_an_ended_task_and_404_for_unknown(
        make_stack):
    agent = FakeAgent("slow", finish=False)
    stack = await make_stack([agent])
    await stack.post({**TASK, "id": "c"})
    for _ in range(2):  # idempotent
        resp = await stack.client.delete("/v1/tasks/c")
        got = await resp.json()
        assert resp.status == 200 and (got["state"], got["node"]) == ("cancelled", "slow")
    agent.finish = True
    await stack.post({**TASK, "id": "ended"})
    resp = await stack.client.delete("/v1/tasks/ended")
    got = await resp.json()
    assert resp.status == 409 and got["state"] == "succeeded"
    assert "succeeded" in got["error"]["reason"]
    assert (await stack.client.delete("/v1/tasks/nope")).status == 404


async def test_task_on_a_node_out_of_view_is_unknown_and_lost_only_once_declared_dead(make_stack):
    stack = await make_stack()
    _, body = await stack.post({**TASK, "id": "v"})
    node = body["placements"][0]["node"]
    others = [a for a in stack.agents if a.node_id != node]

    async def push(seq: int, dead: tuple[str, ...]) -> dict:
        snap = Snapshot(seq=seq, node_ids=tuple(a.node_id for a in others),
                        urls=tuple(a.url for a in others),
                        capacity=np.array([a.capacity for a in others]),
                        slots=np.ones(len(others)), state=np.zeros((len(others), 5)), dead=dead)
        await stack.client.post("/internal/snapshot", data=encode(snap),
                                headers={"Content-Type": CONTENT_TYPE})
        return await (await stack.client.get("/v1/tasks/v")).json()

    got = await push(500, ())
    assert (got["state"], got["node"]) == ("unknown", node) and "not declared dead" in got["reason"]
    got = await push(501, (node,))
    assert (got["state"], got["node"]) == ("lost", node) and "declared dead" in got["reason"]
