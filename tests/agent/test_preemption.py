"""Live preemption on the agent (node_agent.preemption), over loopback with real executors.

A low-class task fills the node, a high-class one arrives: with ``preempt`` the
low one is stopped through its executor's cancel path, waits (``queued``), and
runs again from the start once the high one is done; without it nothing is
stopped. The executors are the real sleep and process ones, wrapped to log
every run's start and how it ended, so the tests see that no task ever ran as
two copies at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Sequence

import psutil
import pytest

from dodoor.clock import ManualClock
from node_agent.app import STATE, create_app
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult
from node_agent.preemption import STOPPING
from node_agent.process_executor import ProcessExecutor
from node_agent.sleep_executor import SleepExecutor
from tests.agent.conftest import GatedExecutor, all_ended, enqueue, make_task, wait_for


class Logged:
    """An executor that logs ``(outcome, task id)`` of each run: ``start`` when it begins,
    then ``succeeded``/``failed`` or ``stopped`` (its run was cancelled)."""

    def __init__(self, inner, on_start=None) -> None:
        self.inner = inner
        self.name, self.outlives_agent = inner.name, inner.outlives_agent
        self.log: list[tuple[str, str]] = []
        self.live: set[str] = set()
        self.overlaps: list[str] = []  # ids that started while a copy of them was live
        self.on_start = on_start

    async def run(self, task, on_start: StartHook | None = None) -> TaskResult:
        tid = task.task_id
        if tid in self.live:
            self.overlaps.append(tid)
        self.live.add(tid)
        self.log.append(("start", tid))
        if self.on_start is not None:
            self.on_start(tid)
        try:
            result = await self.inner.run(task, on_start)
        except asyncio.CancelledError:
            self.log.append(("stopped", tid))
            raise
        finally:
            self.live.discard(tid)
        self.log.append((result.state, tid))
        return result

    async def forget(self, task_id: str) -> None:
        await self.inner.forget(task_id)

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        return await self.inner.reconcile(interrupted)

    async def wait_adopted(self, task_id: str) -> TaskResult:
        return await self.inner.wait_adopted(task_id)

    async def close(self) -> None:
        await self.inner.close()


async def _state(client, tid: str) -> str:
    async with client.get(f"/v1/tasks/{tid}") as r:
        return (await r.json())["state"]


async def _low_then_high(client, ex: Logged, low_ms: float, low_cmd=(), high_cmd=()):
    low = make_task("low", cores=2.0, duration_ms=low_ms, priority=0,
                    **({"command": tuple(low_cmd)} if low_cmd else {}))
    high = make_task("high", cores=1.0, duration_ms=300.0, priority=2,
                     **({"command": tuple(high_cmd)} if high_cmd else {}))
    assert (await enqueue(client, low)).status == 202
    await wait_for(lambda: ("start", "low") in ex.log)
    await asyncio.sleep(0.1)
    assert (await enqueue(client, high)).status == 202


async def _preempting_agent(aiohttp_client, agent_settings, executor):
    """An agent of 2 cores and 2 slots that preempts, on ``executor``."""
    return await aiohttp_client(create_app(
        agent_settings(cores=2.0, slots=2, preempt=True), executor=executor))


async def test_a_high_task_stops_the_low_one_which_waits_then_runs_again_once(
        aiohttp_client, agent_settings):
    ex = Logged(SleepExecutor())
    client = await _preempting_agent(aiohttp_client, agent_settings, ex)
    agent = client.app[STATE].agent
    await _low_then_high(client, ex, low_ms=5000.0)
    await wait_for(lambda: ("start", "high") in ex.log)
    async with client.get("/v1/tasks/low") as r:  # a preempted task waits (taskstates.QUEUED)
        body = await r.json()
    assert (body["state"], body["reason"]) == (
        "queued", "preempted for task high; waits to run again from the start")
    assert await _state(client, "high") == "running"
    await wait_for(lambda: ("succeeded", "high") in ex.log)
    # the low one starts again only now, from the start (a full 5 s sleep is not awaited)
    await wait_for(lambda: ex.log.count(("start", "low")) == 2)
    assert ex.log == [("start", "low"), ("stopped", "low"), ("start", "high"),
                      ("succeeded", "high"), ("start", "low")]
    assert ex.overlaps == [] and agent.preemption.count == 1
    row = await agent.journal.get("low")
    assert row.state == "queued" and row.reason == "preempted for task high; waits to run again from the start"
    async with client.get("/metrics") as r:
        assert 'dodoor_agent_preemptions_total{node="node-t"} 1.0' in await r.text()
    async with client.get("/healthz") as r:
        assert (await r.json())["preempted"] == 1


async def test_the_rerun_succeeds_once_and_nothing_ends_twice(aiohttp_client, agent_settings):
    ex = Logged(SleepExecutor())
    client = await _preempting_agent(aiohttp_client, agent_settings, ex)
    agent = client.app[STATE].agent
    await _low_then_high(client, ex, low_ms=800.0)
    await wait_for(lambda: ("succeeded", "low") in ex.log, timeout=10)
    await all_ended(agent)
    assert ex.log == [("start", "low"), ("stopped", "low"), ("start", "high"),
                      ("succeeded", "high"), ("start", "low"), ("succeeded", "low")]
    assert dict(agent.finished) == {"succeeded": 2}
    assert (await agent.journal.counts()) == {"succeeded": 2}
    assert await _state(client, "low") == "succeeded"


async def test_without_the_setting_nothing_running_is_stopped(aiohttp_client, agent_settings):
    ex = Logged(SleepExecutor())
    client = await aiohttp_client(create_app(agent_settings(cores=2.0, slots=2), executor=ex))
    agent = client.app[STATE].agent
    await _low_then_high(client, ex, low_ms=600.0)
    await wait_for(lambda: ("succeeded", "high") in ex.log, timeout=10)
    assert ex.log == [("start", "low"), ("succeeded", "low"), ("start", "high"),
                      ("succeeded", "high")]
    assert agent.preemption.count == 0


async def test_the_queue_serves_the_higher_class_first(aiohttp_client, agent_settings):
    """The agent's entries carry their task's class: behind a running task, a later
    high one starts before an earlier low one (FIFO only within a class)."""
    ex = GatedExecutor()
    client = await aiohttp_client(create_app(agent_settings(slots=1), executor=ex))
    for tid, prio in (("first", 1), ("low", 0), ("high", 2)):
        assert (await enqueue(client, make_task(tid, priority=prio))).status == 202
    await wait_for(lambda: ex.started == ["first"])
    ex.release("first")
    await wait_for(lambda: ex.started == ["first", "high"])
    ex.release("high")
    await wait_for(lambda: ex.started == ["first", "high", "low"])
    ex.release("low")


async def test_real_processes_the_stopped_group_is_gone_before_the_high_task_starts(
        aiohttp_client, agent_settings, tmp_path):
    runs = tmp_path / "runs"
    alive_at_high: list[list[int]] = []

    def check(tid: str) -> None:
        if tid == "high":  # every pid the low task's runs wrote must be gone by now
            pids = [int(p) for p in runs.read_text().split()]
            alive_at_high.append([p for p in pids if _alive(p)])

    ex = Logged(ProcessExecutor(exit_dir=str(tmp_path / "exits"), limit_memory=False), check)
    client = await aiohttp_client(create_app(
        agent_settings(cores=2.0, slots=2, preempt=True, executor="process"), executor=ex))
    agent = client.app[STATE].agent
    low_cmd = ["sh", "-c", f'echo $$ >> {runs}; exec sleep 1.5']
    await _low_then_high(client, ex, 1500.0, low_cmd, ["sleep", "0.3"])
    await wait_for(lambda: runs.exists() and len(runs.read_text().split()) == 1)
    await wait_for(lambda: ("succeeded", "low") in ex.log, timeout=15)
    await all_ended(agent)
    assert alive_at_high == [[]]
    assert ex.log == [("start", "low"), ("stopped", "low"), ("start", "high"),
                      ("succeeded", "high"), ("start", "low"), ("succeeded", "low")]
    assert len(runs.read_text().split()) == 2 and ex.overlaps == []
    assert dict(agent.finished) == {"succeeded": 2}
    # forgotten (after each end's commit): no exit file is left, the stopped run's neither
    await wait_for(lambda: not any(Path(tmp_path / "exits").iterdir()))


async def test_a_victim_that_outranks_the_newcomer_after_aging_is_not_stopped(
        aiohttp_client, agent_settings):
    """It would start again first and be stopped again: no round at all."""
    ex, clock = GatedExecutor(), ManualClock(1_000_000.0)
    client = await aiohttp_client(create_app(
        agent_settings(cores=2.0, slots=1, preempt=True), executor=ex, clock=clock))
    agent = client.app[STATE].agent
    assert (await enqueue(client, make_task("block", cores=2.0))).status == 202
    assert (await enqueue(client, make_task("low", cores=2.0, priority=0))).status == 202
    await wait_for(lambda: ex.started == ["block"])
    clock.advance(3 * 60_000.0)  # the low one waited three minutes: it ranks critical
    ex.release("block")
    await wait_for(lambda: ex.started == ["block", "low"])
    assert (await enqueue(client, make_task("high", cores=2.0, priority=2))).status == 202
    await asyncio.sleep(0.2)
    assert agent.preemption.count == 0 and agent.queue.is_running("low")
    ex.release("low")
    await wait_for(lambda: ex.started == ["block", "low", "high"])
    ex.release("high")


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever adopted it) holds nothing."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class SlowStop(SleepExecutor):
    """A sleep whose stop takes a while (as a container's does), so a client's
    cancel can arrive while the preemption's stop is under way."""

    stop_s = 0.3

    async def run(self, task, on_start=None):
        try:
            return await super().run(task, on_start)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(self.stop_s))
            raise


async def test_a_client_cancel_during_the_stop_wins_and_nothing_is_requeued(
        aiohttp_client, agent_settings):
    ex = Logged(SlowStop())
    client = await _preempting_agent(aiohttp_client, agent_settings, ex)
    agent = client.app[STATE].agent
    await _low_then_high(client, ex, low_ms=5000.0)
    await wait_for(lambda: agent.preemption._notes)
    await agent.cancel_task("low", "client says stop")
    await wait_for(lambda: ("succeeded", "high") in ex.log, timeout=10)
    await all_ended(agent)
    st = await agent.status("low")
    assert (st.state, st.reason) == ("cancelled", "client says stop")
    assert agent.preemption.count == 0 and ex.log.count(("start", "low")) == 1


# -- a crash in the middle of a stop: what the restart makes of the STOPPING row ----------

@pytest.mark.parametrize("found, state, reruns", [
    (None, "succeeded", True),  # nothing left of it: requeued, runs again
    (Adopted("low", False, TaskResult("failed", exit_code=137, reason="killed by signal 9")),
     "succeeded", True),  # the stop's kill left an exit status: void, runs again
    (Adopted("low", True), "succeeded", False),  # it survived the crash: adopted, runs on
    (Adopted("low", False, TaskResult("succeeded", exit_code=0)), "succeeded", False),
    (Adopted("low", False, TaskResult("failed", reason="processes [7] could not be killed")),
     "failed", False),  # alive beyond SIGKILL: never run a second copy
])
async def test_a_restart_mid_stop_recovers_one_consistent_state(
        aiohttp_client, agent_settings, found, state, reruns):
    from node_agent.journal import Journal

    settings = agent_settings(cores=2.0, slots=2, preempt=True)
    journal = Journal(settings.journal_path)
    await journal.open()
    await journal.insert(make_task("low", cores=2.0, priority=0), "s", "queued", 1.0)
    await journal.mark_running("low", 2.0)
    await journal.set_handle("low", "gated:low")
    await journal.execute(f"UPDATE tasks SET reason = '{STOPPING}high' WHERE id = 'low'")
    await journal.close()

    ex = GatedExecutor()
    ex.adopt = [found] if found is not None else []
    client = await aiohttp_client(create_app(settings, executor=ex))
    agent = client.app[STATE].agent
    assert [r.task_id for r in ex.interrupted] == ["low"]
    if reruns:
        await wait_for(lambda: ex.started == ["low"])
        row = await agent.journal.get("low")
        assert row.state == "running" and row.reason.startswith("preempted for task high")
        assert ("low" in ex.forgotten) == (found is not None)  # the killed run's status is gone
    elif found.running:
        await wait_for(lambda: ex.started == ["adopted:low"])
        assert (await agent.journal.get("low")).reason is None
    if reruns or found.running:
        ex.release("low")
    await all_ended(agent)
    st = await agent.status("low")
    assert st.state == state and sum(agent.finished.values()) == 1
    assert len([s for s in ex.started if s.endswith("low")]) == (1 if reruns or found.running else 0)


async def test_a_fence_during_the_stop_ends_everything_lost_and_requeues_nothing(
        aiohttp_client, aiohttp_server, agent_settings):
    from tests.agent.conftest import FakeLoadStore

    store = FakeLoadStore()
    store.wants_load = True
    server = await aiohttp_server(store.app)
    slow = SlowStop()
    slow.stop_s = 2.0
    ex = Logged(slow)
    client = await aiohttp_client(create_app(agent_settings(
        cores=2.0, slots=2, preempt=True, loadstore_url=str(server.make_url("")),
        report_interval_ms=10.0, heartbeat_ms=30.0), executor=ex))
    agent = client.app[STATE].agent
    await _low_then_high(client, ex, low_ms=5000.0)
    await wait_for(lambda: agent.preemption._notes)  # the low one's stop is under way
    await wait_for(lambda: {"low", "high"} <= {t for s in store.states for t in s.task_ids})
    assert agent.preemption._notes  # still stopping: the fence comes mid-stop
    store.fenced.add(agent.incarnation)
    await wait_for(lambda: agent.fences == 1)
    await wait_for(lambda: agent.preemption._round is None)
    for tid in ("low", "high"):
        assert (await agent.status(tid)).state == "lost"
    assert (await agent.journal.counts()) == {"lost": 2}
    assert agent.preemption.count == 0 and len(agent.queue) == 0
    assert ex.log == [("start", "low"), ("stopped", "low")]
