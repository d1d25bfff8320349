"""Tasks of a timed executor (the sleep executor) run as loop timers, or end at their
start when too short to time (node_agent.runs): each still ends once, journaled,
and a client's cancel or a preemption stops them as it stops any run."""

import numpy as np

from dodoor.clock import WallClock
from dodoor.resources import RESOURCES
from dodoor.taskstates import CANCELLED, QUEUED, RUNNING, SUCCEEDED
from node_agent.journal import Journal
from node_agent.node import NodeAgent
from node_agent.runs import AT_ONCE_PER_PUMP
from node_agent.sleep_executor import SleepExecutor
from tests.agent.conftest import all_ended, make_task, wait_for

CAPACITY = np.array([2.0, 8192.0] + [1e6] * (len(RESOURCES) - 2))


async def _agent(tmp_path, slots: int = 1, preempt: bool = False) -> tuple[NodeAgent, Journal]:
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    agent = NodeAgent("n0", CAPACITY, slots, SleepExecutor(), journal, WallClock(),
                      preempt=preempt)
    await agent.resume()
    return agent, journal


async def test_instant_sleeps_end_at_their_start_in_a_loop_each_once_and_journaled(tmp_path):
    agent, journal = await _agent(tmp_path, slots=1)
    n = 3000  # beyond the recursion limit: one pump's round runs the next, no recursion
    ids = [f"t{i}" for i in range(n)]
    assert await agent.submit_many([make_task(t, duration_ms=0.0) for t in ids], "s") == n
    # one slot, no timer: the accept's pump ran its share in a loop, then left the rest
    # to the next loop turns, so the 202 does not wait for a whole batch to run
    assert agent.finished == {SUCCEEDED: AT_ONCE_PER_PUMP} and not agent._timers
    assert agent.queue.n_waiting == n - AT_ONCE_PER_PUMP
    # ended but not on disk yet: they read running until their commit
    assert (await agent.status("t0")).state == RUNNING
    await wait_for(lambda: agent.finished == {SUCCEEDED: n})
    assert agent.queue.n_waiting == 0 and agent.queue.n_running == 0 and not agent._timers
    await all_ended(agent)
    rows = await journal.statuses(ids)
    assert len(rows) == n and {r.state for r in rows.values()} == {SUCCEEDED}
    assert all(r.started_ms is not None and r.started_ms <= r.finished_ms for r in rows.values())
    await agent.close()
    await journal.close()


async def test_a_client_cancel_stops_a_timed_sleep_and_frees_its_slot(tmp_path):
    agent, journal = await _agent(tmp_path, slots=1)
    await agent.submit_many([make_task("long", duration_ms=60_000.0),
                             make_task("next", duration_ms=60_000.0)], "s")
    assert agent.queue.is_running("long") and set(agent._timers) == {"long"}
    status = await agent.cancel_task("long", "client says stop")
    # answered after the end's commit: the journaled end, not the in-memory ``running``
    assert (status.state, status.reason) == (CANCELLED, "client says stop")
    assert (await journal.status("long")).state == CANCELLED
    assert agent.queue.is_running("next") and set(agent._timers) == {"next"}
    assert (await agent.cancel_task("long", "again")).state == CANCELLED  # an end stands
    await agent.close()
    assert (await journal.status("next")).state == QUEUED  # a shutdown gives it no end
    await journal.close()


async def test_preemption_stops_a_timed_sleep_which_waits_then_runs_again_once(tmp_path):
    agent, journal = await _agent(tmp_path, slots=2, preempt=True)
    await agent.submit(make_task("low", cores=2.0, duration_ms=400.0, priority=0), "s")
    assert agent.has_run("low")
    await agent.submit(make_task("high", cores=1.0, duration_ms=200.0, priority=2), "s")
    await wait_for(lambda: agent.queue.is_running("high"))
    assert agent.preemption.count == 1
    status = await agent.status("low")
    assert status.state == QUEUED and status.reason  # says why it waits again
    await wait_for(lambda: agent.finished == {SUCCEEDED: 2}, timeout=10)
    await all_ended(agent)
    assert (await journal.status("low")).state == SUCCEEDED
    assert (await journal.status("high")).state == SUCCEEDED
    await agent.close()
    await journal.close()
