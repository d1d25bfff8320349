"""Learned durations live: real processes on loopback (load store, two agents, scheduler).

Agent ``fast`` runs every task for a tenth of its declared duration (``--sleep-scale
0.1``); agent ``honest`` for its declared duration. The tasks' shapes pin each kind
to one agent: the over-declared kind needs memory only ``fast`` has, the honest one
cores only ``honest`` has. A client follows the tasks; the scheduler learns from the
ends it resolves and shows its per-kind factor in ``/healthz``. Once it has learned,
its enqueues carry the estimate, and the agent counts that as the waiting tasks'
pending work in the state it reports (``GET /v1/state``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import time

import aiohttp
import pytest

from dodoor.resources import PENDING
from dodoor.wire import NodeState, decode
from tests.daemons.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("node_agent.command") is None, reason="no node agent")]

TOKEN = "learn-token"
WRONG = {"cores": 1, "memory_mb": 3000, "duration_ms": 400}  # runs 40 ms on `fast`
HONEST = {"cores": 3, "memory_mb": 100, "duration_ms": 150}  # runs 150 ms on `honest`
WRONG_KIND, HONEST_KIND = "shape/1.0/3000.0/0.0", "shape/3.0/100.0/0.0"
# holds `fast`'s memory for 5 s (declared 50 s): WRONG tasks sent then must wait
BLOCKER = {"id": "blocker", "cores": 1, "memory_mb": 3500, "duration_ms": 50_000}


async def _json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _run_and_follow(session, url: str, tasks: list[dict]) -> dict[str, str]:
    async with session.post(url + "/v1/tasks", json={"tasks": tasks}) as resp:
        assert resp.status == 202, await resp.text()
        placements = (await resp.json())["placements"]
    nodes = {p["id"]: p["node"] for p in placements}
    ids = [t["id"] for t in tasks]
    for _ in range(300):
        async with session.post(url + "/v1/tasks/status", json={"ids": ids}) as resp:
            body = await resp.json()
        if all(t["state"] == "succeeded" for t in body["tasks"]) and len(body["tasks"]) == len(ids):
            return nodes
        await asyncio.sleep(0.1)
    raise AssertionError(f"tasks did not all succeed: {body}")


async def test_the_scheduler_learns_a_kind_declared_ten_times_too_long(spawn):
    env = {"DODOOR_TOKEN": TOKEN}
    ls_port = free_port()
    loadstore = await asyncio.to_thread(spawn, ["loadstore", "--port", str(ls_port), "--b", "4"],
                                        ls_port, env)
    agents = {}
    for node, cores, memory, scale in (("fast", 2, 4096, "0.1"), ("honest", 4, 1024, "1")):
        port = free_port()
        agents[node] = await asyncio.to_thread(
            spawn, ["agent", "--port", str(port), "--id", node, "--loadstore", loadstore.url,
                    "--cores", str(cores), "--memory-mb", str(memory), "--disk-mb", "100",
                    "--slots", "4", "--executor", "sleep", "--sleep-scale", scale], port, env)
    s_port = free_port()
    scheduler = await asyncio.to_thread(
        spawn, ["scheduler", "--port", str(s_port), "--id", "learner", "--loadstore",
                loadstore.url, "--policy", "dodoor-wait:d=16,learn_durations=1", "--seed", "2"],
        s_port, env)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        for _ in range(400):
            if len((await _json(session, scheduler.url + "/v1/nodes"))["nodes"]) == 2:
                break
            await asyncio.sleep(0.05)
        health = await _json(session, scheduler.url + "/healthz")
        assert health["durations"] == {"learned": 0, "awaiting": 0, "kinds": {}}
        # the learner's warm-up is 8 ends per kind: 12 of each, in rounds of 4
        for round_ in range(3):
            tasks = [{"id": f"w-{round_}-{i}", **WRONG} for i in range(4)]
            tasks += [{"id": f"h-{round_}-{i}", **HONEST} for i in range(4)]
            nodes = await _run_and_follow(session, scheduler.url, tasks)
            assert {nodes[t["id"]] for t in tasks if t["id"].startswith("w")} == {"fast"}
            assert {nodes[t["id"]] for t in tasks if t["id"].startswith("h")} == {"honest"}
        durations = (await _json(session, scheduler.url + "/healthz"))["durations"]
        assert durations["learned"] == 24 and durations["awaiting"] == 0
        wrong, honest = durations["kinds"][WRONG_KIND], durations["kinds"][HONEST_KIND]
        assert wrong["observed"] == honest["observed"] == 12
        # declared 400 ms, ran about 40 ms (plus the agent's start overhead): the estimate
        # moves from the declaration most of the way to the truth
        assert 0.08 <= wrong["factor"] <= 0.3, wrong
        # declared as it runs: the estimate stays near the declaration
        assert 0.8 <= honest["factor"] <= 1.25, honest
        await _agent_counts_the_estimate(session, scheduler.url, agents["fast"].url,
                                         wrong["factor"] * WRONG["duration_ms"])


async def _pending_ms(session, agent_url: str) -> float:
    async with session.get(agent_url + "/v1/state") as resp:
        assert resp.status == 200, await resp.text()
        state = decode(await resp.read(), NodeState)
    return float(state.state[PENDING])


async def _agent_counts_the_estimate(session, url: str, fast: str, estimate_ms: float) -> None:
    """Three WRONG tasks wait on ``fast`` behind the blocker: its pending work grows by
    three estimates, not three declarations (less what the blocker ran meanwhile)."""
    async with session.post(url + "/v1/tasks", json={"tasks": [BLOCKER]}) as resp:
        assert resp.status == 202, await resp.text()
    for _ in range(100):
        async with session.get(url + "/v1/tasks/blocker") as resp:
            if (await resp.json())["state"] == "running":
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the blocker never started")
    t0 = time.monotonic()
    before = await _pending_ms(session, fast)
    tasks = [{"id": f"w-late-{i}", **WRONG} for i in range(3)]
    async with session.post(url + "/v1/tasks", json={"tasks": tasks}) as resp:
        assert resp.status == 202, await resp.text()
        assert {p["node"] for p in (await resp.json())["placements"]} == {"fast"}
    after = await _pending_ms(session, fast)
    elapsed_ms = (time.monotonic() - t0) * 1000.0
    # the blocker's remaining run shrank by at most elapsed_ms between the two reports
    grown = after - before
    assert grown <= 3 * estimate_ms + 1.0 and grown + elapsed_ms >= 3 * estimate_ms - 1.0, (
        grown, elapsed_ms, estimate_ms)
    assert grown < 3 * WRONG["duration_ms"] / 2  # counted as declared it would be ~1200
    async with session.get(url + "/v1/tasks/w-late-0") as resp:
        body = await resp.json()
    assert body["state"] == "queued", body  # still waiting: its pending work was counted
