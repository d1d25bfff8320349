"""A task's end joins the journal's next group commit: the slot goes on meanwhile,
the result is served from memory until committed, and the executor forgets the
task only after the commit (docs/guarantees.md)."""

import asyncio
import threading

import numpy as np

from dodoor.clock import WallClock
from dodoor.resources import RESOURCES
from dodoor.taskstates import QUEUED, RUNNING, SUCCEEDED
from node_agent.journal import Journal
from node_agent.node import NodeAgent
from node_agent.sleep_executor import SleepExecutor
from tests.agent.conftest import GatedExecutor, make_task, wait_for

CAPACITY = np.array([8.0, 8192.0] + [1e6] * (len(RESOURCES) - 2))


async def _agent(tmp_path, executor, slots: int = 1) -> tuple[NodeAgent, Journal]:
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    agent = NodeAgent("n0", CAPACITY, slots, executor, journal, WallClock())
    await agent.resume()
    return agent, journal


def _count_drains(journal: Journal) -> list[int]:
    drains = [0]
    real_submit = journal._pool.submit

    def counting_submit(fn, *args):
        if getattr(fn, "__name__", "") == "_drain":
            drains[0] += 1
        return real_submit(fn, *args)

    journal._pool.submit = counting_submit  # type: ignore[method-assign]
    return drains


async def test_sleep_tasks_take_at_most_one_commit_each_and_journal_start_with_end(tmp_path):
    agent, journal = await _agent(tmp_path, SleepExecutor(1.0), slots=1)
    drains = _count_drains(journal)
    n = 60
    assert await agent.submit_many([make_task(f"t{i}", duration_ms=0.001) for i in range(n)],
                                   "s") == n
    await wait_for(lambda: agent.finished[SUCCEEDED] == n and not agent.unjournaled)
    # one commit for the batch, then at most one per task: the start has none of its own
    # (it was one commit for the start and one for the end, each awaited)
    assert drains[0] <= n + 1
    rows = await journal.statuses([f"t{i}" for i in range(n)])
    assert {r.state for r in rows.values()} == {SUCCEEDED}
    assert all(r.started_ms is not None and r.started_ms <= r.finished_ms for r in rows.values())
    await agent.close()
    await journal.close()


async def test_an_ended_task_frees_its_slot_before_its_commit_and_is_forgotten_after(tmp_path):
    ex = GatedExecutor()
    agent, journal = await _agent(tmp_path, ex, slots=1)
    await agent.submit_many([make_task("a"), make_task("b")], "s")
    await wait_for(lambda: ex.started == ["a"])
    # hold the journal thread: nothing commits until the gate opens
    gate, held = threading.Event(), threading.Event()
    journal._pool.submit(lambda: (held.set(), gate.wait(10)))
    await asyncio.to_thread(held.wait, 10)
    ex.release("a")
    # the slot goes to b while a's end waits for the commit (b's own start, which
    # outlives the agent, waits for the journal before b runs)
    await wait_for(lambda: agent.queue.is_running("b") and not agent.queue.is_running("a"))
    status = await agent.status("a")
    # ended, not yet on disk: it reads running until its end is committed
    assert status is not None and status.state == RUNNING and status.finished_ms is None
    assert ex.forgotten == []  # the executor keeps the task until its end is on disk
    gate.set()
    await wait_for(lambda: ex.forgotten == ["a"])
    assert (await journal.status("a")).state == SUCCEEDED
    assert "a" not in agent.unjournaled
    await wait_for(lambda: ex.started == ["a", "b"])
    assert (await journal.status("b")).state != QUEUED  # a start that outlives us is on disk
    ex.release("b")
    await agent.close()
    await journal.close()
