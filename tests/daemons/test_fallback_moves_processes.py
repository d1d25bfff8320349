"""The packing fallback's moves in real processes on loopback: a load store, two sleep
agents of 8 cores and 2 slots, and a scheduler with ``--fallback``. A queued low task
holds the room a high task needs; the fallback moves it (the agents' move order) and
places the high task, and each task runs once, where the scheduler says it is."""

from __future__ import annotations

import asyncio
import importlib.util

import aiohttp
import pytest

from dodoor.wire import CONTENT_TYPE, CancelTask, Enqueue, encode
from dodoor.resources import Task
from tests.daemons.conftest import free_port
from tests.daemons.test_fallback_processes import AUTH, TOKEN, _get, _sees_cores, _submit

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("node_agent.command") is None, reason="no node agent")]
MSGPACK = {**AUTH, "Content-Type": CONTENT_TYPE}


async def _cluster(spawn, fallback: bool):
    env = {"DODOOR_TOKEN": TOKEN}
    ls_port = free_port()
    loadstore = await asyncio.to_thread(
        spawn, ["loadstore", "--port", str(ls_port), "--b", "1"], ls_port, env)
    agents = {}
    for node in ("node-0", "node-1"):
        port = free_port()
        agents[node] = await asyncio.to_thread(
            spawn, ["agent", "--port", str(port), "--id", node, "--loadstore", loadstore.url,
                    "--cores", "8", "--memory-mb", "8192", "--disk-mb", "1000", "--slots", "2",
                    "--executor", "sleep"], port, env)
    port = free_port()
    scheduler = await asyncio.to_thread(
        spawn, ["scheduler", "--port", str(port), "--id", "tested", "--loadstore", loadstore.url,
                "--policy", "dodoor-wait:d=2", "--param", "k=1", "--seed", "3",
                *(["--fallback"] if fallback else [])], port, env)
    return loadstore, agents, scheduler


async def _post(session, url, msg):
    async with session.post(url, data=encode(msg), headers=MSGPACK) as resp:
        await resp.read()
        return resp.status


async def _fragment(session, loadstore, agents, scheduler) -> None:
    """node-0 runs a 6-core task with a 4-core low task queued behind it (10 of 8 cores
    committed, both slots taken); node-1 runs a 7-core task (1 core free)."""
    for _ in range(400):
        if len((await _get(session, scheduler.url + "/v1/nodes"))[1]["nodes"]) == 2:
            break
        await asyncio.sleep(0.05)
    placed = [("node-0", Task("fill-0", 6.0, 256.0, 0.0, 60_000.0)),
              ("node-0", Task("low", 4.0, 256.0, 0.0, 300.0, priority=0)),
              ("node-1", Task("fill-1", 7.0, 256.0, 0.0, 60_000.0))]
    for node, task in placed:
        assert await _post(session, agents[node].url + "/internal/enqueue",
                           Enqueue(task, "other")) == 202
    for _ in range(400):  # the agents reported them (the store's rows: lists by column)
        rows = (await _get(session, loadstore.url + "/v1/nodes"))[1]["nodes"]
        if sum(n["state"][0] for n in rows) >= 17.0:
            break
        await asyncio.sleep(0.05)
    # snapshots follow placements: one short task through the scheduler brings the reports
    status, body = await _submit(session, scheduler.url, [
        {"id": "nudge", "cores": 0.1, "memory_mb": 1, "duration_ms": 1}])
    assert status == 202, body
    await _sees_cores(session, scheduler, 17.0)
    await _until(session, scheduler, "nudge", {"succeeded"})


async def _status(session, scheduler, task_id):
    status, body = await _get(session, f"{scheduler.url}/v1/tasks/{task_id}")
    assert status == 200, body
    return body


async def _until(session, scheduler, task_id, states, wait_s=10.0):
    for _ in range(int(wait_s / 0.1)):
        body = await _status(session, scheduler, task_id)
        if body["state"] in states:
            return body
        await asyncio.sleep(0.1)
    pytest.fail(f"{task_id} never reached {states}: {body}")


HIGH = {"id": "high", "cores": 2, "memory_mb": 256, "duration_ms": 60_000, "priority": 2}


def _metric(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[-1])


async def test_the_fallback_moves_a_queued_low_task_and_places_the_high_one_in_its_room(spawn):
    loadstore, agents, scheduler = await _cluster(spawn, fallback=True)
    async with aiohttp.ClientSession() as session:
        await _fragment(session, loadstore, agents, scheduler)
        status, body = await _submit(session, scheduler.url, [HIGH])
        assert status == 202, body
        [placement] = body["placements"]
        assert placement == {"id": "high", "node": "node-0"}, placement  # no reason: placed
        high = await _until(session, scheduler, "high", {"running"})
        assert high["node"] == "node-0"
        # the low task left node-0 unstarted; it waits on node-1 until fill-1 ends
        at_origin = (await _get(session, agents["node-0"].url + "/v1/tasks/low"))[1]
        assert (at_origin["state"], at_origin.get("started_ms")) == ("moved", None), at_origin
        low = await _status(session, scheduler, "low")
        assert (low["state"], low["node"]) == ("queued", "node-1"), low
        assert await _post(session, agents["node-1"].url + "/internal/cancel_task",
                           CancelTask("fill-1")) == 200
        low = await _until(session, scheduler, "low", {"succeeded"})
        assert low["node"] == "node-1", low
        # ran once: on node-1, and never on node-0, which says where it went
        at_target = (await _get(session, agents["node-1"].url + "/v1/tasks/low"))[1]
        assert at_target["state"] == "succeeded" and at_target["started_ms"], at_target
        at_origin = (await _get(session, agents["node-0"].url + "/v1/tasks/low"))[1]
        assert (at_origin["state"], at_origin.get("started_ms")) == ("moved", None), at_origin
        assert (await _status(session, scheduler, "high"))["state"] == "running"
        origin_metrics = await (await session.get(agents["node-0"].url + "/metrics",
                                                  headers=AUTH)).text()
        metrics = await (await session.get(scheduler.url + "/metrics", headers=AUTH)).text()
    assert _metric(origin_metrics, "dodoor_agent_moves_out_total") == 1.0
    assert _metric(metrics, 'dodoor_scheduler_fallback_moves_total{outcome="done"}') == 1.0
    assert _metric(metrics, 'dodoor_scheduler_fallback_moves_total{outcome="failed"}') == 0.0
    assert _metric(metrics, 'dodoor_scheduler_fallback_tasks_total{outcome="placed"}') == 1.0
