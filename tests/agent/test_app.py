import asyncio

import msgpack
import numpy as np

from dodoor.clock import ManualClock
from dodoor.wire import (CONTENT_TYPE, Cancel, CancelTask, Enqueue, Lookup, NodeState, Probe, ProbeReply, Reserve,
                         TaskStatus, TaskStatuses, decode, encode)
from node_agent.app import STATE, create_app
from node_agent.executor import TaskResult
from tests.agent.conftest import GatedExecutor, all_ended, enqueue, make_task, post, wait_for


async def status(client, tid):
    resp = await client.get(f"/v1/tasks/{tid}")
    return resp.status, await resp.json()


async def state_of(client, tid):
    code, body = await status(client, tid)
    return body.get("state") if code == 200 else None


async def test_enqueue_running_succeeded_with_times(aiohttp_client, agent_settings):
    clock, ex = ManualClock(1000.0), GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex, clock=clock))
    assert (await enqueue(client, make_task("a"))).status == 202
    await wait_for(lambda: ex.started == ["a"])
    assert await status(client, "a") == (200, {
        "id": "a", "state": "running", "node": "node-t", "queued_ms": 1000.0,
        "started_ms": 1000.0, "finished_ms": None, "exit_code": None, "reason": None, "log_tail": ""})
    clock.advance(250.0)
    ex.release("a", TaskResult("succeeded", exit_code=0, log_tail="done\n"))
    await wait_for(lambda: state_of(client, "a"))
    await all_ended(client.app[STATE].agent)
    assert await status(client, "a") == (200, {
        "id": "a", "state": "succeeded", "node": "node-t", "queued_ms": 1000.0,
        "started_ms": 1000.0, "finished_ms": 1250.0, "exit_code": 0, "reason": None, "log_tail": "done\n"})
    resp = await client.get("/v1/tasks/a", headers={"Accept": CONTENT_TYPE})
    assert decode(await resp.read()) == TaskStatus("a", "succeeded", "node-t", 1000.0, 1000.0, 1250.0, 0, None)
    assert (await status(client, "nope"))[0] == 404


async def test_batch_status_answers_queued_running_finished_and_missing_ids(
        aiohttp_client, agent_settings):
    clock, ex = ManualClock(1000.0), GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex, clock=clock))
    for tid in ("a", "b", "c"):
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: ex.started == ["a"])
    ex.release("a", TaskResult("failed", exit_code=2, reason="exit code 2"))
    await wait_for(lambda: ex.started == ["a", "b"])
    await wait_for(lambda: not client.app[STATE].agent.committing)  # a's end is on disk
    resp = await post(client, "/internal/status", Lookup("sched-0", ("c", "nope", "b", "a")))
    assert resp.status == 200
    got = decode(await resp.read(), TaskStatuses)
    assert [(s.task_id, s.state) for s in got.statuses] == [
        ("c", "queued"), ("b", "running"), ("a", "failed")]
    assert got.statuses[2].exit_code == 2 and got.missing == ("nope",)


async def test_cancel_task_stops_a_running_one_and_a_queued_one_never_starts(
        aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    for tid in ("run", "wait", "done"):
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: ex.started == ["run"])

    async def cancel(tid):
        resp = await post(client, "/internal/cancel_task", CancelTask(tid, "by test"))
        return resp.status, (decode(await resp.read(), TaskStatus) if resp.status == 200 else None)

    code, st = await cancel("wait")
    assert code == 200 and (st.state, st.reason) == ("cancelled", "by test")
    code, st = await cancel("run")
    assert code == 200 and st.state == "cancelled"
    await wait_for(lambda: ex.started == ["run", "done"])  # the slot was freed
    assert "wait" not in ex.started
    ex.release("done")
    await wait_for(lambda: state_of(client, "done"))
    await all_ended(client.app[STATE].agent)
    assert (await cancel("done"))[1].state == "succeeded"  # ended: left as it was
    assert (await cancel("run"))[1].state == "cancelled"  # again: the same answer
    assert (await cancel("nope"))[0] == 404
    assert client.app[STATE].agent.finished["cancelled"] == 2
    # a resubmission of a cancelled id is a duplicate: it does not run
    assert (await enqueue(client, make_task("wait"))).status == 202
    await asyncio.sleep(0.05)
    assert "wait" not in ex.started and await state_of(client, "wait") == "cancelled"


async def test_fifo_backfill_through_http(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(cores=4.0, slots=3), executor=ex))
    for tid, cores in (("a", 3.0), ("big", 2.0), ("small", 1.0)):
        assert (await enqueue(client, make_task(tid, cores=cores))).status == 202
    await wait_for(lambda: ex.started == ["a", "small"])
    assert await state_of(client, "big") == "queued"
    ex.release("a")
    await wait_for(lambda: ex.started == ["a", "small", "big"])


async def test_failed_result_keeps_exit_code_and_reason(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex))
    await enqueue(client, make_task("f"))
    await wait_for(lambda: ex.started == ["f"])
    ex.release("f", TaskResult("failed", exit_code=3, reason="exit code 3"))
    await all_ended(client.app[STATE].agent)
    _, body = await status(client, "f")
    assert (body["state"], body["exit_code"], body["reason"]) == ("failed", 3, "exit code 3")


async def test_duplicate_id_accepted_but_run_once(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex))
    codes = await asyncio.gather(*(enqueue(client, make_task("dup")) for _ in range(5)))
    assert [r.status for r in codes] == [202] * 5
    await wait_for(lambda: ex.started == ["dup"])
    ex.release("dup")
    await all_ended(client.app[STATE].agent)
    assert (await enqueue(client, make_task("dup"))).status == 202  # after it finished, too
    await asyncio.sleep(0.05)
    assert ex.started == ["dup"]
    assert client.app[STATE].agent.finished["succeeded"] == 1


async def test_restart_resumes_queue_and_serves_old_results(aiohttp_client, agent_settings):
    settings = agent_settings(slots=1)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(settings, executor=ex))
    for tid in ("a", "b", "c"):
        assert (await enqueue(client, make_task(tid))).status == 202
    await wait_for(lambda: ex.started == ["a"])
    ex.release("a", TaskResult("failed", exit_code=7, reason="exit code 7"))
    await wait_for(lambda: ex.started == ["a", "b"])
    await client.close()  # b was running, c queued

    ex2 = GatedExecutor()
    client2 = await aiohttp_client(create_app(settings, executor=ex2))
    await wait_for(lambda: ex2.started == ["b"])  # the interrupted task re-runs first
    assert await state_of(client2, "c") == "queued"
    _, old = await status(client2, "a")
    assert (old["state"], old["exit_code"]) == ("failed", 7)
    ex2.release("b")
    await wait_for(lambda: ex2.started == ["b", "c"])
    ex2.release("c")
    await all_ended(client2.app[STATE].agent)
    assert [await state_of(client2, t) for t in "abc"] == ["failed", "succeeded", "succeeded"]


async def test_restart_adopts_tasks_the_executor_still_runs(aiohttp_client, agent_settings):
    from node_agent.executor import Adopted

    settings = agent_settings(slots=2)
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(settings, executor=ex))
    for tid in ("live", "done"):
        await enqueue(client, make_task(tid))
    await wait_for(lambda: ex.started == ["live", "done"])
    await client.close()

    ex2 = GatedExecutor()
    ex2.adopt = [Adopted("live", running=True),
                 Adopted("done", running=False, result=TaskResult("succeeded", exit_code=0))]
    client2 = await aiohttp_client(create_app(settings, executor=ex2))
    await wait_for(lambda: ex2.started == ["adopted:live"])
    assert await state_of(client2, "done") == "succeeded"
    assert await state_of(client2, "live") == "running"
    ex2.release("live")
    await wait_for(lambda: state_of(client2, "live"))
    await all_ended(client2.app[STATE].agent)
    assert await state_of(client2, "live") == "succeeded"
    assert ex2.started == ["adopted:live"]  # neither was re-run


async def test_journal_failure_refuses_with_503(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(), executor=ex))
    journal = client.app[STATE].agent.journal
    await journal.execute("PRAGMA query_only=ON")
    resp = await enqueue(client, make_task("x"))
    assert resp.status == 503
    assert (await resp.json())["error"]["field"] == "journal"
    assert (await status(client, "x"))[0] == 404
    await asyncio.sleep(0.02)
    assert ex.started == []
    await journal.execute("PRAGMA query_only=OFF")
    assert (await enqueue(client, make_task("x"))).status == 202
    await wait_for(lambda: ex.started == ["x"])


async def test_probe_reply_is_the_exact_state(aiohttp_client, agent_settings):
    clock, ex = ManualClock(0.0), GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex, clock=clock))
    await enqueue(client, make_task("a", cores=1.0, memory_mb=100, duration_ms=1000))
    await enqueue(client, make_task("b", cores=2.0, memory_mb=300, duration_ms=500))
    await wait_for(lambda: ex.started == ["a"])
    clock.advance(400.0)
    resp = await post(client, "/internal/probe", Probe("sched-0"))
    assert resp.status == 200
    reply = decode(await resp.read(), expect=ProbeReply)
    assert reply.node_id == "node-t"
    np.testing.assert_array_equal(reply.state, [3.0, 400.0, 0.0, 2.0, 600.0 + 500.0])
    state = decode(await (await client.get("/v1/state")).read(), expect=NodeState)
    np.testing.assert_array_equal(state.capacity, [4.0, 1000.0, 0.0])
    assert state.slots == 1 and state.url == "http://127.0.0.1:8200"
    np.testing.assert_array_equal(state.state, reply.state)
    counts = client.app[STATE].agent.counter.counts
    assert (counts["enqueue"], counts["probe"], counts["probe_reply"]) == (2, 1, 1)
    text = await (await client.get("/metrics")).text()
    assert 'dodoor_agent_queue_length{node="node-t"} 1.0' in text
    assert 'dodoor_agent_running{node="node-t"} 1.0' in text
    assert 'dodoor_messages_total{direction="sent",type="probe_reply"} 1.0' in text
    assert 'dodoor_messages_total{direction="received",type="probe"} 1.0' in text
    # committed load in base units: 3 cores, 400 MiB in bytes, 1.1 s of pending work
    assert 'dodoor_agent_committed_cores{node="node-t"} 3.0' in text
    assert 'dodoor_agent_committed_memory_bytes{node="node-t"} 4.194304e+08' in text
    assert 'dodoor_agent_pending_work_seconds{node="node-t"} 1.1' in text
    assert "dodoor_agent_committed{" not in text


async def test_sparrow_reserve_confirm_409_release_and_cancel(aiohttp_client, aiohttp_server, agent_settings):
    from tests.agent.conftest import FakeScheduler

    sched = FakeScheduler()
    server = await aiohttp_server(sched.app)
    url = str(server.make_url("/internal/confirm"))
    ex, clock = GatedExecutor(), ManualClock(0.0)
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex, clock=clock))
    await enqueue(client, make_task("a"))
    await wait_for(lambda: ex.started == ["a"])
    sched.refuse.add("r1")
    sched.tasks["r2"] = make_task("r2", cores=2.0)
    for tid in ("r1", "r2", "r3"):
        resp = await post(client, "/internal/reserve", Reserve(make_task(tid), "sched-s", url))
        assert resp.status == 202
    np.testing.assert_array_equal(client.app[STATE].agent.state()[:4], [4.0, 400.0, 0.0, 4.0])
    assert (await post(client, "/internal/cancel", Cancel("r3"))).status == 204
    assert client.app[STATE].agent.state()[3] == 3.0
    assert sched.confirms == []  # nothing confirmed while a holds the only slot
    clock.advance(500.0)
    ex.release("a")
    await wait_for(lambda: ex.started == ["a", "r2"])
    assert [c.task_id for c in sched.confirms] == ["r1", "r2"]
    assert {c.node_id for c in sched.confirms} == {"node-t"}
    # the confirmed task replaced the reservation's estimate with its own demand
    np.testing.assert_array_equal(client.app[STATE].agent.state()[:4], [2.0, 100.0, 0.0, 1.0])
    _, r2 = await status(client, "r2")
    assert (r2["state"], r2["queued_ms"], r2["started_ms"]) == ("running", 500.0, 500.0)
    assert (await status(client, "r1"))[0] == 404
    ex.release("r2")
    await all_ended(client.app[STATE].agent)
    assert await state_of(client, "r2") == "succeeded"
    counts = client.app[STATE].agent.counter.counts
    assert (counts["reserve"], counts["confirm"], counts["cancel"], counts["enqueue"]) == (3, 2, 1, 2)


async def test_auth_token_required_except_healthz(aiohttp_client, agent_settings):
    client = await aiohttp_client(create_app(agent_settings(token="s3cret"), executor=GatedExecutor()))
    resp = await enqueue(client, make_task("a"))
    assert resp.status == 401
    assert (await resp.json())["error"]["field"] == "authorization"
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/v1/tasks/a", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/healthz")).status == 200
    ok = await client.post("/internal/enqueue", data=encode(Enqueue(make_task("a"), "s")),
                           headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 202


async def test_malformed_bodies_are_400_naming_the_problem(aiohttp_client, agent_settings):
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(max_body_bytes=2048), executor=ex))

    async def error(path, data):
        resp = await client.post(path, data=data)
        return resp.status, (await resp.json())["error"]["reason"]

    code, reason = await error("/internal/enqueue", b"\xc1garbage")
    assert code == 400 and "malformed msgpack" in reason
    code, reason = await error("/internal/enqueue", encode(Probe("s")))
    assert code == 400 and "expected 'enqueue'" in reason
    bad = {"v": 1, "type": "enqueue", "body": {"scheduler_id": "s", "task": {"id": "t", "cores": -1, "memory_mb": 5}}}
    code, reason = await error("/internal/enqueue", msgpack.packb(bad))
    assert code == 400 and "cores" in reason and "-1" in reason
    code, reason = await error("/internal/probe", msgpack.packb({"v": 9, "type": "probe", "body": {}}))
    assert code == 400 and "schema version 9" in reason
    code, reason = await error("/internal/enqueue", b"\x00" * 4096)
    assert code == 413 and "2048" in reason
    resp = await enqueue(client, make_task("huge", cores=16.0))
    assert resp.status == 422
    assert (await resp.json())["error"] == {"field": "task.cores", "reason": "requested 16 but node node-t has 4"}
    assert ex.started == []


async def test_enqueue_batch_is_all_or_nothing_and_skips_duplicates(aiohttp_client, agent_settings):
    from dodoor.wire import EnqueueBatch

    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    await enqueue(client, make_task("old"))
    batch = EnqueueBatch(tuple(make_task(t) for t in ("b1", "old", "b2", "b1")), "sched-0")
    assert (await post(client, "/internal/enqueue_batch", batch)).status == 202
    agent = client.app[STATE].agent
    assert [e.task_id for e in agent.queue.waiting] == ["b1", "b2"]
    assert agent.counter.counts["enqueue"] == 5  # one per task carried, as the scheduler counts

    too_big = EnqueueBatch((make_task("ok"), make_task("wide", cores=9.0)), "sched-0")
    resp = await post(client, "/internal/enqueue_batch", too_big)
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "tasks[1].cores"
    assert (await status(client, "ok"))[0] == 404  # nothing of a refused batch is kept

    await agent.journal.execute("PRAGMA query_only=ON")
    resp = await post(client, "/internal/enqueue_batch", EnqueueBatch((make_task("j1"), make_task("j2")), "s"))
    assert resp.status == 503
    await agent.journal.execute("PRAGMA query_only=OFF")
    assert [(await status(client, t))[0] for t in ("j1", "j2")] == [404, 404]
    for tid in ("old", "b1", "b2"):
        await wait_for(lambda: ex.started[-1:] == [tid])
        ex.release(tid)
    await all_ended(agent)
    assert ex.started == ["old", "b1", "b2"]


class CrashingExecutor(GatedExecutor):
    async def run(self, task, on_start=None):
        self.started.append(task.task_id)
        if task.task_id == "boom":
            raise RuntimeError("engine exploded")
        return await self._gate(task.task_id)


async def test_executor_crash_fails_the_task_and_frees_the_slot(aiohttp_client, agent_settings):
    ex = CrashingExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    await enqueue(client, make_task("boom"))
    await enqueue(client, make_task("next"))
    await wait_for(lambda: ex.started == ["boom", "next"])
    _, body = await status(client, "boom")
    assert body["state"] == "failed"
    assert body["reason"] == "executor error: RuntimeError('engine exploded')"


async def test_unreachable_confirm_target_frees_the_slot_and_keeps_the_reservation(
        aiohttp_client, agent_settings):
    """No verdict is not a no: the reservation is journaled and waits again."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/internal/confirm"
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    agent = client.app[STATE].agent
    agent.confirm_patience_s = 0.3
    assert (await post(client, "/internal/reserve", Reserve(make_task("r"), "s", dead))).status == 202
    await enqueue(client, make_task("t"))
    await wait_for(lambda: ex.started == ["t"])  # the held slot came back after the patience
    assert "r" in agent.queue and not agent.queue.is_running("r")
    assert agent.counter.counts["confirm"] >= 3  # asked again with a growing pause
    assert (await agent.journal.status("r")).state == "reserved"


async def test_healthz_names_the_role_node_and_process(aiohttp_client, agent_settings):
    import os

    client = await aiohttp_client(create_app(agent_settings(), executor=GatedExecutor()))
    health = await (await client.get("/healthz")).json()
    assert (health["role"], health["pid"]) == ("agent", os.getpid())
    assert health["node"] == client.app[STATE].agent.node_id
