"""The agent's side of fencing and leases (node_agent.lease, NodeAgent.fence), in-process."""

from __future__ import annotations

from node_agent.app import STATE, create_app
from tests.agent.conftest import FakeLoadStore, GatedExecutor, enqueue, make_task, wait_for


async def test_a_fenced_agent_ends_every_unfinished_task_lost_and_starts_a_new_life(
        aiohttp_client, aiohttp_server, agent_settings):
    store = FakeLoadStore()
    store.wants_load = True
    server = await aiohttp_server(store.app)
    ex = GatedExecutor()
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=10.0,
                              heartbeat_ms=50.0, slots=1)
    client = await aiohttp_client(create_app(settings, executor=ex))
    agent = client.app[STATE].agent
    for tid in ("run", "wait1", "wait2"):
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: ex.started == ["run"])
    old = agent.incarnation
    await wait_for(lambda: any(s.task_ids for s in store.states))  # the ids reach the store
    store.fenced.add(old)
    await wait_for(lambda: agent.fences == 1)
    for tid in ("run", "wait1", "wait2"):
        st = await agent.status(tid)
        assert st.state == "lost" and "declared dead" in st.reason, st
    assert ex.started == ["run"]  # nothing else ever started
    assert agent.incarnation != old and len(agent.queue) == 0
    # the new life reports and is answered: a resubmitted lost id runs here again
    await wait_for(lambda: store.states[-1].incarnation == agent.incarnation)
    assert (await enqueue(client, make_task("wait1"))).status == 202
    await wait_for(lambda: ex.started == ["run", "wait1"])
    assert client.app[STATE].reporter.reachable


async def test_ids_reach_the_store_once_and_all_again_for_a_new_store(
        aiohttp_client, aiohttp_server, agent_settings):
    store = FakeLoadStore()
    store.wants_load = True
    server = await aiohttp_server(store.app)
    ex = GatedExecutor()
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=10.0,
                              heartbeat_ms=30.0)
    client = await aiohttp_client(create_app(settings, executor=ex))
    for tid in ("a", "b"):
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: {"a", "b"} <= {t for s in store.states for t in s.task_ids})
    sent = [t for s in store.states for t in s.task_ids]
    assert sorted(sent) == ["a", "b"]  # not repeated once answered
    store.instance = "store-2"  # a restarted store knows nothing: it gets every id again
    await wait_for(lambda: sum(t == "a" for s in store.states for t in s.task_ids) == 2)


async def test_an_enqueue_aimed_at_a_fenced_life_is_refused_410_and_not_journaled(
        aiohttp_client, aiohttp_server, agent_settings):
    """Sent before the node was declared dead, delivered after its fence: the task was
    placed elsewhere meanwhile, so this life must not take it."""
    from dodoor.wire import Enqueue
    from tests.agent.conftest import post

    store = FakeLoadStore()
    store.wants_load = True
    server = await aiohttp_server(store.app)
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=10.0,
                              heartbeat_ms=30.0)
    client = await aiohttp_client(create_app(settings, executor=GatedExecutor()))
    agent = client.app[STATE].agent
    await wait_for(lambda: store.states)
    old = agent.incarnation
    assert (await post(client, "/internal/enqueue", Enqueue(make_task("a"), "s", old))).status == 202
    store.fenced.add(old)
    await wait_for(lambda: agent.fences == 1)
    resp = await post(client, "/internal/enqueue", Enqueue(make_task("late"), "s", old))
    assert resp.status == 410 and (await resp.json())["error"]["field"] == "incarnation"
    assert await agent.status("late") is None
    now = agent.incarnation
    assert (await post(client, "/internal/enqueue", Enqueue(make_task("b"), "s", now))).status == 202


async def test_a_fence_voids_the_ends_the_store_did_not_hear_and_keeps_the_ones_it_did(
        aiohttp_client, aiohttp_server, agent_settings):
    """docs/guarantees.md: an end reported in an answered report is final; one the store
    never heard before declaring the node dead (it finished while the store could not be
    reached) ends ``lost``, as every scheduler says; one the store heard in a report
    whose answer was lost is listed ``kept`` in the fenced answer and stays."""
    store = FakeLoadStore()
    store.wants_load = True
    server = await aiohttp_server(store.app)
    ex = GatedExecutor()
    settings = agent_settings(loadstore_url=str(server.make_url("")), report_interval_ms=10.0,
                              heartbeat_ms=50.0, slots=4)
    client = await aiohttp_client(create_app(settings, executor=ex))
    agent = client.app[STATE].agent
    ids = ("heard", "unheard", "kept", "running")
    for tid in ids:
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: sorted(ex.started) == sorted(ids))
    ex.release("heard")
    await wait_for(lambda: any(("heard", "succeeded") in zip(s.task_ids, s.task_states)
                               for s in store.states))
    await wait_for(lambda: "heard" not in agent.unreported.ids)  # the answer came
    store.status = 503  # the store takes reports but its answers are lost
    ex.release("unheard")
    ex.release("kept")
    await wait_for(lambda: {"unheard", "kept"} <= {t for t, s in zip(store.states[-1].task_ids,
                                                                     store.states[-1].task_states) if s})
    old = agent.incarnation
    store.kept, store.status = {"kept", "unheard-elsewhere"}, 204
    store.fenced.add(old)
    await wait_for(lambda: agent.fences == 1)
    got = {tid: await agent.status(tid) for tid in ids}
    assert {tid: st.state for tid, st in got.items()} == {
        "heard": "succeeded", "kept": "succeeded", "unheard": "lost", "running": "lost"}
    assert "unknown to, the load store" in got["unheard"].reason
    assert got["unheard"].exit_code is None
    assert "declared dead" in got["running"].reason
    assert agent.finished["lost"] == 2
    # the new life reports none of the old life's ends again
    await wait_for(lambda: store.states[-1].incarnation == agent.incarnation)
    assert not any(s for st in store.states if st.incarnation == agent.incarnation
                   for s in st.task_states)
