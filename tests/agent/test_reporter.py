import asyncio
import logging
import math
import socket

import numpy as np

from dodoor.wire import NodeState
from node_agent.app import STATE, create_app
from tests.agent.conftest import FakeLoadStore, GatedExecutor, enqueue, make_task, wait_for


async def test_enqueues_go_unreported_and_a_burst_of_completions_is_coalesced(
        aiohttp_client, aiohttp_server, agent_settings):
    store = FakeLoadStore()
    server = await aiohttp_server(store.app)
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=200.0,
                              heartbeat_ms=60_000.0, slots=1, advertise_url="http://127.0.0.1:9999")
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(settings, executor=ex))
    await wait_for(lambda: len(store.states) == 1)  # the registering report, sent at once
    first = store.states[0]
    assert isinstance(first, NodeState)
    assert (first.node_id, first.url, first.slots, first.seq) == ("node-t", "http://127.0.0.1:9999", 1, 1)
    np.testing.assert_array_equal(first.capacity, [4.0, 1000.0, 0.0])
    for i in range(30):
        assert (await enqueue(client, make_task(f"t{i}", duration_ms=10.0))).status == 202
    await wait_for(lambda: ex.started == ["t0"])
    await asyncio.sleep(0.4)
    # The placing scheduler's deltas carry its enqueues to the load store: no report.
    assert len(store.states) == 1
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(30):  # 30 completions in a burst, each a state change
        await wait_for(lambda: ex.started[-1] == f"t{i}")
        ex.release(f"t{i}")
    await wait_for(lambda: store.states[-1].state[3] == 0)
    await asyncio.sleep(0.5)
    elapsed = loop.time() - t0
    reports = len(store.states) - 1
    # at most one report per interval over the window (plus one in flight at each end)
    assert 1 <= reports <= math.ceil(elapsed / 0.2) + 1
    assert reports < 30
    last = store.states[-1]
    np.testing.assert_array_equal(last.state, [0.0, 0.0, 0.0, 0.0, 0.0])
    assert [s.seq for s in store.states] == list(range(1, len(store.states) + 1))
    assert set(last.utilization) >= {"cpu_percent", "memory_percent", "queued", "running"}
    assert (last.utilization["queued"], last.utilization["running"]) == (0.0, 0.0)
    assert client.app[STATE].agent.counter.counts["node_state"] == len(store.states)


async def test_heartbeat_without_changes(aiohttp_client, aiohttp_server, agent_settings):
    store = FakeLoadStore()
    server = await aiohttp_server(store.app)
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=20.0,
                              heartbeat_ms=100.0)
    client = await aiohttp_client(create_app(settings, executor=GatedExecutor()))
    await asyncio.sleep(0.55)
    # one at start, then one per ~120 ms (heartbeat + interval pause): 5 on an idle machine;
    # fewer only when the event loop is starved, more never
    assert 3 <= len(store.states) <= 6
    assert all(s.state[3] == 0 for s in store.states)
    # The registering report is a state report; the idle ones after it are heartbeats,
    # counted apart from scheduling messages.
    flags = [s.heartbeat for s in store.states]
    assert flags[0] is False and all(flags[1:])
    counts = client.app[STATE].agent.counter.counts
    assert (counts["node_state"], counts["heartbeat"]) == (1, len(store.states) - 1)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_load_store_down_holds_starts_until_a_report_is_answered(
        aiohttp_client, aiohttp_server, agent_settings, caplog):
    """An agent that never heard from the store may have been declared dead (a restart
    after a long outage): it journals enqueues but starts nothing until answered."""
    caplog.set_level(logging.INFO, logger="node_agent")
    port = closed_port()
    settings = agent_settings(loadstore_url=f"http://127.0.0.1:{port}", report_interval_ms=10.0,
                              heartbeat_ms=20.0, executor="sleep")
    client = await aiohttp_client(create_app(settings))
    reporter = client.app[STATE].reporter
    await wait_for(lambda: reporter.failures >= 3)
    health = await (await client.get("/healthz")).json()
    assert (health["status"], health["loadstore_reachable"]) == ("degraded", False)
    assert (await enqueue(client, make_task("a", duration_ms=20.0))).status == 202
    await asyncio.sleep(0.2)
    agent = client.app[STATE].agent
    assert (agent.finished["succeeded"], agent.queue.n_waiting) == (0, 1)
    assert agent.lease.lapses >= 1
    outage_lines = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_lines) == 1  # logged once per outage, not once per attempt

    # the load store comes back on that port: reports flow again
    store = FakeLoadStore()
    await aiohttp_server(store.app, host="127.0.0.1", port=port)
    await wait_for(lambda: len(store.states) >= 1)
    await wait_for(lambda: reporter.reachable is True)
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    await wait_for(lambda: agent.finished["succeeded"] == 1)  # the answer granted the lease


async def test_changes_go_unreported_while_no_scheduler_wants_load(aiohttp_client, aiohttp_server,
                                                                    agent_settings):
    store = FakeLoadStore()
    store.wants_load = False
    server = await aiohttp_server(store.app)
    # a heartbeat slow enough that a loaded machine cannot send it before the "no report" check
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=10.0,
                              heartbeat_ms=1_500.0, slots=1)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(settings, executor=ex))
    reporter = client.app[STATE].reporter
    await wait_for(lambda: len(store.states) == 1 and not reporter.load_wanted)
    for i in range(6):
        assert (await enqueue(client, make_task(f"t{i}", duration_ms=10.0))).status == 202
    await wait_for(lambda: ex.started == ["t0"])
    ex.release("t0")
    await wait_for(lambda: ex.started == ["t0", "t1"])
    await asyncio.sleep(0.1)
    assert len(store.states) == 1  # a completion, no report: the next message is the heartbeat
    await wait_for(lambda: len(store.states) == 2)
    beat = store.states[1]
    assert beat.heartbeat is True and beat.state[3] == 5  # which carries the current state
    counts = client.app[STATE].agent.counter.counts
    # the agent counts a message once the store has answered it, just after the store has it
    await wait_for(lambda: counts.get("heartbeat") == 1)
    assert (counts["node_state"], counts["heartbeat"]) == (1, 1)

    store.wants_load = True  # a cache-scoring scheduler registered
    await wait_for(lambda: reporter.load_wanted)  # told by the answer to the next heartbeat
    n = len(store.states)
    ex.release("t1")
    await wait_for(lambda: len(store.states) > n and store.states[-1].state[3] == 4)
    assert store.states[-1].heartbeat is False
    await wait_for(lambda: counts["node_state"] == 2)
