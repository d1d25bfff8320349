"""Agent faults on a real cluster: SIGKILL + restart on the same journal; death for good."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import count, poll, sleep_tasks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def placed_on(body: dict) -> dict[str, str]:
    return {p["id"]: p["node"] for p in body["placements"]}


def test_sigkilled_agent_restarted_on_its_journal_finishes_its_tasks(cluster):
    c = cluster(agents=3, dead_after_ms=20_000)  # the restart comes well before death
    tasks = sleep_tasks("a", 300, duration_ms=120.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    where = placed_on(body)
    on_victim = [t for t, n in where.items() if n == "node-0"]
    assert len(on_victim) > 30  # the random placement spread the batch
    time.sleep(0.5)  # some of node-0's tasks ran, most still queued
    c.kill(c.agents[0])
    c.restart_agent(0)
    states = c.wait_terminal(0, list(where), timeout=60)
    assert count(states.values()) == {"succeeded": 300}
    log_text = c.agents[0].log()
    assert "resumed" in log_text
    # every task of node-0 was run by node-0 and no other agent ever saw it
    for tid in on_victim[:40]:
        assert c.agent_knows(c.agents[0], tid) == "succeeded"
        assert c.agent_knows(c.agents[1], tid) is None and c.agent_knows(c.agents[2], tid) is None


def test_dead_agent_tasks_are_lost_then_resubmitted_and_run_once_elsewhere(cluster):
    dead_after_ms = 1000.0
    c = cluster(agents=3, dead_after_ms=dead_after_ms)
    tasks = sleep_tasks("b", 240, duration_ms=150.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    where = placed_on(body)
    on_victim = sorted(t for t, n in where.items() if n == "node-0")
    assert len(on_victim) > 20
    time.sleep(0.3)
    # Death is counted from the last report, which may be a little older than the kill
    # (agents report completions and heartbeats, not every enqueue).
    code, nodes = c.get(c.loadstore.url + "/v1/nodes", timeout=2.0)
    assert code == 200, nodes
    age_s = next(n["report_age_ms"] for n in nodes["nodes"] if n["id"] == "node-0") / 1000
    c.kill(c.agents[0])
    killed_at = time.monotonic()

    # the load store drops it after dead_after; the scheduler one snapshot later
    poll(lambda: "node-0" not in c.node_ids(c.loadstore.url), 10, what="load store expiry")
    store_s = time.monotonic() - killed_at
    poll(lambda: "node-0" not in c.node_ids(c.schedulers[0].url), 5, what="scheduler view")
    sched_s = time.monotonic() - killed_at
    # dead_after, plus one expiry sweep (<= 500 ms) and one push; generous slack for a busy host
    assert dead_after_ms / 1000 - age_s - 0.1 <= store_s <= dead_after_ms / 1000 + 2.0
    assert sched_s <= store_s + 1.0
    print(f"node-0 dead at the load store after {store_s:.2f} s, out of the scheduler view "
          f"after {sched_s:.2f} s (dead_after {dead_after_ms:.0f} ms)")

    # nothing new goes to node-0
    code, later = c.submit(0, sleep_tasks("late", 60, duration_ms=20.0))
    assert code == 202, later
    assert "node-0" not in set(placed_on(later).values())

    states = c.wait_terminal(0, list(where), timeout=60)
    lost = sorted(t for t, s in states.items() if s == "lost")
    # only node-0's tasks read lost: those the store had not heard end (docs/guarantees.md);
    # its tasks whose end was reported keep their result
    assert lost and set(lost) <= set(on_victim), (lost, on_victim)
    assert count(states.values()) == {"succeeded": 240 - len(lost), "lost": len(lost)}

    # the client resubmits the lost ids with the same ids: placed on live nodes, run once
    resub = [t for t in tasks if t["id"] in set(lost)]
    code, again = c.submit(0, resub)
    assert code == 202, again
    assert "node-0" not in set(placed_on(again).values())
    code, third = c.submit(0, resub)  # idempotent from now on
    assert placed_on(third) == placed_on(again)
    final = c.wait_terminal(0, lost, timeout=60)
    assert count(final.values()) == {"succeeded": len(lost)}
    live = c.agents[1:]
    for tid in lost:
        known = [c.agent_knows(a, tid) for a in live]
        assert sorted(k for k in known if k) == ["succeeded"], (tid, known)
