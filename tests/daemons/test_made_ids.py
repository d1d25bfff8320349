"""Real processes: the claim of an id the scheduler made goes out with its enqueue.

A real load store and scheduler (``python -m dodoor``), fake agents in this process,
and between the scheduler and the store a pass-through proxy that can hold or fail
the claim requests (``/internal/lookup`` with ``claim``). docs/guarantees.md "Ids":
an id the scheduler generated is claimed and enqueued at once and answered 202 when
both are done; a client-given id is claimed before it is enqueued.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from dodoor.wire import Lookup, decode
from tests.daemons.conftest import FakeAgent, free_port, wait_for

pytestmark = pytest.mark.slow
TASK = {"cores": 1, "memory_mb": 256, "duration_ms": 10}


class ClaimGate:
    """A proxy to the load store that can hold (``gate``) or fail (``fail``) claims."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self.claims: list[tuple[str, ...]] = []
        self.claims_answered = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._forward)
        self.url = ""

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/internal/lookup":
            msg = decode(body, Lookup)
            if msg.claim:
                self.claims.append(msg.task_ids)
                await self.gate.wait()
                if self.fail:
                    return web.Response(status=502, text="claims down")
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "authorization", "accept")}
        async with aiohttp.ClientSession() as s:
            async with s.request(request.method, self.target + request.path_qs, data=body,
                                 headers=headers) as resp:
                out = web.Response(status=resp.status, body=await resp.read(),
                                   content_type=resp.content_type)
        if request.path == "/internal/lookup" and msg.claim:
            self.claims_answered += 1
        return out


@pytest.fixture
async def cluster(spawn, fake_agents, aiohttp_server):
    """Store, proxy, two agents and two schedulers: ``a`` behind the proxy, ``b`` direct."""
    ls_port = free_port()
    store = await asyncio.to_thread(spawn, ["loadstore", "--port", str(ls_port), "--b", "8",
                                     "--dead-after-ms", "600000"],
                                    ls_port)
    gate = ClaimGate(store.url)
    server = await aiohttp_server(gate.app, host="127.0.0.1", port=free_port())
    gate.url = str(server.make_url("")).rstrip("/")
    agents = await fake_agents(FakeAgent("node-0"), FakeAgent("node-1"))
    for agent in agents:
        await agent.report(store.url)
    scheds = []
    for name, via in (("sched-a", gate.url), ("sched-b", store.url)):
        port = free_port()
        scheds.append(await asyncio.to_thread(
            spawn, ["scheduler", "--port", str(port), "--id", name, "--loadstore", via,
                    "--seed", "5"], port))
    for agent in agents:  # again, now that both schedulers take snapshots
        await agent.report(store.url)
    async with aiohttp.ClientSession() as session:
        for sched in scheds:
            for _ in range(400):
                async with session.get(sched.url + "/v1/nodes") as resp:
                    if len((await resp.json())["nodes"]) == 2:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{sched.url} never saw both agents")
        yield session, store, gate, agents, scheds[0], scheds[1]


def posted(agents: list[FakeAgent]) -> list[str]:
    return [i for a in agents for i in a.posted_ids]


async def status_of(session: aiohttp.ClientSession, url: str, task_id: str):
    async with session.get(f"{url}/v1/tasks/{task_id}") as resp:
        return resp.status, await resp.json()


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    return float(next(line.split()[-1] for line in text.splitlines()
                      if line.startswith(name + " ")))


async def test_a_made_id_is_enqueued_during_its_claim_and_answered_once_both_are_done(cluster):
    session, _, gate, agents, sched, other = cluster
    gate.gate.clear()
    post = asyncio.create_task(session.post(sched.url + "/v1/tasks", json=TASK))
    await wait_for(lambda: len(posted(agents)) == 1)
    # the agent has the task while the claim is still held at the proxy: no 202 yet
    assert len(gate.claims) == 1 and gate.claims_answered == 0
    task_id = posted(agents)[0]
    assert gate.claims[0] == (task_id,)
    await asyncio.sleep(0.2)
    assert not post.done()
    gate.gate.set()
    async with await post as resp:
        assert resp.status == 202
        (placement,) = (await resp.json())["placements"]
    assert placement["id"] == task_id and gate.claims_answered == 1
    # the claim reached the store's index before the 202: another scheduler asked before
    # any agent report says it is being placed by sched-a, not 404
    status, body = await status_of(session, other.url, task_id)
    assert status == 200 and body["state"] == "unknown", body
    assert "being placed by scheduler sched-a" in body["reason"], body
    assert await metric(session, sched.url, "dodoor_scheduler_claims_skipped_total") == 0


async def test_a_client_given_id_is_claimed_before_it_is_enqueued(cluster):
    session, _, gate, agents, sched, _ = cluster
    gate.gate.clear()
    post = asyncio.create_task(session.post(sched.url + "/v1/tasks", json={**TASK, "id": "c-1"}))
    await wait_for(lambda: len(gate.claims) == 1)
    await asyncio.sleep(0.3)
    assert posted(agents) == [] and not post.done()
    gate.gate.set()
    async with await post as resp:
        assert resp.status == 202
    assert posted(agents) == ["c-1"]


async def test_a_batch_mixing_made_and_given_ids_claims_the_given_ones_first(cluster):
    session, _, gate, agents, sched, _ = cluster
    gate.gate.clear()
    body = {"tasks": [TASK, {**TASK, "id": "given-1"}, TASK]}
    post = asyncio.create_task(session.post(sched.url + "/v1/tasks", json=body))
    await wait_for(lambda: len(gate.claims) == 1)
    await asyncio.sleep(0.3)
    assert gate.claims == [("given-1",)] and posted(agents) == []
    gate.gate.set()
    async with await post as resp:
        assert resp.status == 202
        ids = [p["id"] for p in (await resp.json())["placements"]]
    assert ids[1] == "given-1" and sorted(posted(agents)) == sorted(ids)
    # the made ids were claimed after the given one, alongside their enqueue
    assert gate.claims[1:] == [(ids[0], ids[2])]


async def test_a_failed_claim_of_a_made_id_leaves_the_durable_placement_standing(cluster):
    session, store, gate, agents, sched, other = cluster
    gate.fail = True
    async with session.post(sched.url + "/v1/tasks", json=TASK) as resp:
        assert resp.status == 202
        (placement,) = (await resp.json())["placements"]
    task_id, node = placement["id"], placement["node"]
    assert posted(agents) == [task_id] and gate.claims == [(task_id,)]
    assert await metric(session, sched.url, "dodoor_scheduler_claims_skipped_total") == 1
    # not in the index yet: the other scheduler cannot tell ...
    status, _ = await status_of(session, other.url, task_id)
    assert status == 404
    # ... until the agent holding it reports it, as every agent does within a report interval
    holder = next(a for a in agents if a.node_id == node)
    await holder.report(store.url, (task_id,))
    status, body = await status_of(session, other.url, task_id)
    assert status == 200 and body["node"] == node, body
    # resubmitted (now with its id, as a client retries) it is not placed again: the
    # holder confirms it (and deduplicates), no other agent is sent it
    gate.fail = False
    async with session.post(other.url + "/v1/tasks", json={**TASK, "id": task_id}) as resp:
        assert resp.status == 202
        assert (await resp.json())["placements"][0]["node"] == node
    assert [a.node_id for a in agents if task_id in a.posted_ids] == [node]


async def test_a_failed_enqueue_of_a_made_id_keeps_its_claim_for_its_scheduler(cluster):
    session, _, gate, agents, sched, other = cluster
    for agent in agents:
        agent.fail_enqueue = True
    async with session.post(sched.url + "/v1/tasks", json=TASK) as resp:
        assert resp.status == 503
        (placement,) = (await resp.json())["placements"]
    task_id = placement["id"]
    assert placement["node"] is None and gate.claims == [(task_id,)]
    # claimed by sched-a: another scheduler does not place it (until the claim's TTL)
    async with session.post(other.url + "/v1/tasks", json={**TASK, "id": task_id}) as resp:
        assert resp.status == 503
        assert "sched-a" in (await resp.json())["placements"][0]["error"]
    for agent in agents:
        agent.fail_enqueue = False
    # its own scheduler may retry at once
    async with session.post(sched.url + "/v1/tasks", json={**TASK, "id": task_id}) as resp:
        assert resp.status == 202
    assert sum(task_id in a.enqueued for a in agents) == 1
