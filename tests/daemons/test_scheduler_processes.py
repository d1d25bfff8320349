"""Real processes on loopback: ``python -m dodoor loadstore`` and ``scheduler``."""

from __future__ import annotations

import asyncio
import importlib.util

import aiohttp
import pytest

from tests.daemons.conftest import FakeAgent, free_port

pytestmark = pytest.mark.slow
HAVE_AGENT = importlib.util.find_spec("node_agent.command") is not None


async def _get(session: aiohttp.ClientSession, url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def _start_control_plane(spawn, token: str, b: int, k: int):
    ls_port, s_port = free_port(), free_port()
    env = {"DODOOR_TOKEN": token}
    loadstore = await asyncio.to_thread(
        spawn, ["loadstore", "--port", str(ls_port), "--b", str(b)], ls_port, env)
    scheduler = await asyncio.to_thread(
        spawn, ["scheduler", "--port", str(s_port), "--id", "sched-p", "--loadstore",
                loadstore.url, "--param", f"k={k}", "--seed", "3"], s_port, env)
    return loadstore, scheduler


async def _submit_and_converge(session, scheduler, token: str, n_nodes: int, n_tasks: int):
    auth = {"Authorization": f"Bearer {token}"}
    if True:
        async def node_view():
            return (await _get(session, scheduler.url + "/v1/nodes", token))[1]

        for _ in range(400):
            if len((await node_view())["nodes"]) == n_nodes:
                break
            await asyncio.sleep(0.05)
        seq0 = (await node_view())["snapshot_seq"]
        tasks = [{"id": f"p-{i}", "cores": 1, "memory_mb": 256, "duration_ms": 20}
                 for i in range(n_tasks)]
        async with session.post(scheduler.url + "/v1/tasks", json={"tasks": tasks}) as resp:
            assert resp.status == 401
        async with session.post(scheduler.url + "/v1/tasks", json={"tasks": tasks},
                                headers=auth) as resp:
            assert resp.status == 202
            placements = (await resp.json())["placements"]
        assert [p["id"] for p in placements] == [t["id"] for t in tasks]
        states: dict[str, str] = {}
        for _ in range(400):
            for p in placements:
                if states.get(p["id"]) != "succeeded":
                    status, body = await _get(session, f"{scheduler.url}/v1/tasks/{p['id']}",
                                              token)
                    assert status == 200, body
                    states[p["id"]] = body["state"]
            if set(states.values()) == {"succeeded"}:
                break
            await asyncio.sleep(0.1)
        assert set(states.values()) == {"succeeded"}
        return seq0, placements, node_view


async def test_processes_with_fake_agents(spawn, fake_agents):
    token = "proc-token"
    agents = await fake_agents(*[FakeAgent(f"node-{i}", token=token) for i in range(4)])
    loadstore, scheduler = await _start_control_plane(spawn, token, b=8, k=2)
    for agent in agents:
        await agent.report(loadstore.url)
    async with aiohttp.ClientSession() as session:
        seq0, placements, node_view = await _submit_and_converge(session, scheduler, token, 4, 16)
        assert sum(len(a.enqueued) for a in agents) == 16
        # b=8: the pushed view converges to every placement (the fake agents never
        # report again, so the load store holds exactly the scheduler's deltas)
        view = await node_view()
        assert view["snapshot_seq"] > seq0
        assert sum(n["state"]["tasks"] for n in view["nodes"]) == 16
        _, health = await _get(session, scheduler.url + "/healthz")
        assert health["status"] == "ok"
        metrics = await (await session.get(scheduler.url + "/metrics",
                                           headers={"Authorization": f"Bearer {token}"})).text()
        assert 'dodoor_messages_total{direction="sent",type="enqueue"} 16.0' in metrics
    # graceful shutdown on SIGTERM
    assert await asyncio.to_thread(scheduler.stop) == 0
    assert await asyncio.to_thread(loadstore.stop) == 0


@pytest.mark.skipif(not HAVE_AGENT, reason="node agent (node_agent.command) not in the repo yet")
async def test_processes_with_real_agents(spawn):
    token = "proc-token"
    loadstore, scheduler = await _start_control_plane(spawn, token, b=8, k=2)
    env = {"DODOOR_TOKEN": token}
    for i in range(3):
        port = free_port()
        await asyncio.to_thread(
            spawn, ["agent", "--port", str(port), "--id", f"node-{i}", "--loadstore",
                    loadstore.url, "--cores", "4", "--memory-mb", "4096", "--disk-mb", "1000",
                    "--slots", "2", "--executor", "sleep"], port, env)
    async with aiohttp.ClientSession() as session:
        _, placements, node_view = await _submit_and_converge(session, scheduler, token, 3, 12)
        assert {p["node"] for p in placements} <= {"node-0", "node-1", "node-2"}

        async def store_drained():
            _, view = await _get(session, loadstore.url + "/v1/nodes", token)
            return sum(n["state"][3] for n in view["nodes"]) == 0

        # the agents report their finished work: the load store's view empties
        for _ in range(300):
            if await store_drained():
                break
            await asyncio.sleep(0.1)
        assert await store_drained()
        # and the schedulers see it with the next push, after b more placements
        seq = (await node_view())["snapshot_seq"]
        more = [{"id": f"m-{i}", "cores": 1, "memory_mb": 1, "duration_ms": 1} for i in range(8)]
        async with session.post(scheduler.url + "/v1/tasks", json={"tasks": more},
                                headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 202
        for _ in range(300):
            view = await node_view()
            if view["snapshot_seq"] > seq:
                break
            await asyncio.sleep(0.05)
        assert view["snapshot_seq"] > seq
        assert sum(n["state"]["tasks"] for n in view["nodes"]) <= 8


@pytest.mark.skipif(not HAVE_AGENT, reason="node agent (node_agent.command) not in the repo yet")
async def test_every_live_policy_against_real_agents(spawn):
    """Schedulers of each message pattern share one load store and three real agents."""
    token = "pol-token"
    env = {"DODOOR_TOKEN": token}
    ls_port = free_port()
    loadstore = await asyncio.to_thread(spawn, ["loadstore", "--port", str(ls_port)], ls_port,
                                        env)
    for i in range(3):
        port = free_port()
        await asyncio.to_thread(
            spawn, ["agent", "--port", str(port), "--id", f"node-{i}", "--loadstore",
                    loadstore.url, "--cores", "4", "--memory-mb", "4096", "--disk-mb", "100",
                    "--slots", "2", "--executor", "sleep"], port, env)
    policies = ("sparrow", "power-of-two", "prequal", "cached-power-of-two")
    schedulers = {}
    for policy in policies:
        port = free_port()
        schedulers[policy] = await asyncio.to_thread(
            spawn, ["scheduler", "--port", str(port), "--id", f"s-{policy}", "--loadstore",
                    loadstore.url, "--policy", policy, "--seed", "5"], port, env)
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        for policy, sched in schedulers.items():
            for _ in range(400):
                _, view = await _get(session, sched.url + "/v1/nodes")
                if len(view["nodes"]) == 3:
                    break
                await asyncio.sleep(0.05)
            tasks = [{"id": f"{policy}-{i}", "cores": 1, "memory_mb": 128, "duration_ms": 30}
                     for i in range(6)]
            async with session.post(sched.url + "/v1/tasks", json={"tasks": tasks}) as resp:
                assert resp.status == 202, await resp.text()
        for policy, sched in schedulers.items():
            states = {}
            for _ in range(300):
                for i in range(6):
                    _, body = await _get(session, f"{sched.url}/v1/tasks/{policy}-{i}")
                    states[i] = (body["state"], body["node"])
                if all(s == "succeeded" for s, _ in states.values()):
                    break
                await asyncio.sleep(0.1)
            assert all(s == "succeeded" for s, _ in states.values()), (policy, states)
            assert {n for _, n in states.values()} <= {"node-0", "node-1", "node-2"}
            metrics = await (await session.get(sched.url + "/metrics")).text()
            assert ('dodoor_messages_total{direction="sent",type="enqueue"} 6.0'
                    in metrics), (policy, metrics)
