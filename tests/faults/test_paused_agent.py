"""An agent paused past the scheduler's request timeout (a GC pause, a slow disk).

The timed-out enqueue may well have been journaled by the agent once it runs again,
so the scheduler must settle the outcome on that agent instead of failing over:
every task runs exactly once, on the node the scheduler reported.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import count, sleep_tasks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PAUSE_S = 2.0
TIMEOUT_MS = 500  # the scheduler gives up on one request well within the pause


def test_tasks_sent_to_a_paused_agent_run_once_where_the_scheduler_says(cluster):
    c = cluster(agents=3, dead_after_ms=20_000,  # a 2 s pause is no death
                scheduler_extra=("--agent-timeout-ms", str(TIMEOUT_MS)))
    victim = c.agents[0]  # node-0
    # one batch (one EnqueueBatch per agent) and lone tasks (single enqueues), at once
    batch = sleep_tasks("batch-", 16, duration_ms=100.0)
    singles = [sleep_tasks(f"one{i}-", 1, duration_ms=100.0) for i in range(8)]
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(len(singles) + 1) as pool:
            futures = [pool.submit(c.submit, 0, tasks) for tasks in [batch, *singles]]
            time.sleep(PAUSE_S)
            victim.proc.send_signal(signal.SIGCONT)
            answers = [f.result() for f in futures]
    finally:
        victim.proc.send_signal(signal.SIGCONT)

    reported: dict[str, str] = {}
    for code, body in answers:
        assert code == 202, body
        reported.update({p["id"]: p["node"] for p in body["placements"]})
    ids = [t["id"] for t in batch] + [t[0]["id"] for t in singles]
    assert sorted(reported) == sorted(ids)

    states = c.wait_terminal(0, ids, timeout=60)
    assert count(states.values()) == {"succeeded": len(ids)}
    # an id known to two agents was placed twice (and run twice)
    holders = {tid: [f"node-{i}" for i, agent in enumerate(c.agents)
                     if c.agent_knows(agent, tid) is not None] for tid in ids}
    doubles = {tid: nodes for tid, nodes in holders.items() if len(nodes) != 1}
    assert not doubles, f"placed on several agents (or none): {doubles}; reported {reported}"
    wrong = {tid: (reported[tid], nodes[0]) for tid, nodes in holders.items()
             if nodes[0] != reported[tid]}
    assert not wrong, f"reported node differs from the one that ran it: {wrong}"
    # the pause did hit tasks: the paused agent still took (and ran) its share
    assert "node-0" in set(reported.values()), reported
