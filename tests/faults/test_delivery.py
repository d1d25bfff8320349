"""Issue 13's findings against real processes: each test failed before its fix.

docs/guarantees.md names these tests beside the sentences they prove.
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import time

from tests.faults.conftest import count, poll, sleep_tasks

TASK = {"cores": 1, "memory_mb": 256}


def _placements(body) -> dict[str, str | None]:
    return {p["id"]: p["node"] for p in body["placements"]}


def test_load_store_restart_reads_no_healthy_task_as_lost(cluster):
    """Finding 2: a node out of a scheduler's view is ``unknown``, never ``lost``.

    Before the fix, 8 of 12 running tasks read ``lost`` after a load-store restart."""
    # agents that report seldom rejoin a restarted store one by one, seconds apart
    c = cluster(agents=3, schedulers=1, slots=4, dead_after_ms=6000,
                agent_extra=("--heartbeat-ms", "2000"))
    ids = [t["id"] for t in sleep_tasks("ls", 12, duration_ms=3000.0)]
    code, body = c.submit(0, sleep_tasks("ls", 12, duration_ms=3000.0))
    assert code == 202, body
    c.kill(c.loadstore)
    c.restart_loadstore()
    seen: list[str] = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # right after the restart, nodes rejoin one by one
        seen.extend(c.states(0, ids).values())
        time.sleep(0.05)
    assert "lost" not in seen, count(seen)
    final = c.wait_terminal(0, ids, timeout=30)
    assert count(final.values()) == {"succeeded": 12}


def test_agent_declared_dead_is_fenced_and_never_runs_what_was_reported_lost(cluster):
    """Finding 2: an agent declared dead that comes back ends its unfinished tasks ``lost``
    itself and runs none of them; a resubmitted lost id then runs exactly once."""
    c = cluster(agents=2, schedulers=1, slots=1, dead_after_ms=1000)
    tasks = sleep_tasks("f", 8, duration_ms=1500.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    placed = _placements(body)
    on0 = sorted(t for t, n in placed.items() if n == "node-0")
    waiting = [t for t in on0 if c.agent_knows(c.agents[0], t) == "queued"]
    assert waiting, placed
    c.agents[0].proc.send_signal(signal.SIGSTOP)
    try:
        poll(lambda: c.status(0, on0[0])["state"] == "lost", 10, what="node-0 declared dead")
        told_lost = {t for t in on0 if c.status(0, t)["state"] == "lost"}
    finally:
        c.agents[0].proc.send_signal(signal.SIGCONT)
    assert told_lost == set(on0)
    # the agent hears it was fenced at its first report and ends them lost itself; the
    # one running when it was paused may have finished meanwhile (docs/guarantees.md)
    poll(lambda: all(c.agent_knows(c.agents[0], t) == "lost" for t in waiting), 10,
         what="node-0 ends its waiting tasks lost")
    for t in waiting:
        _, st = c.get(f"{c.agents[0].url}/v1/tasks/{t}")
        assert st["started_ms"] is None and "declared dead" in st["reason"], st
    health = c.get(c.agents[0].url + "/healthz")[1]
    assert health["fences"] == 1
    # a client resubmits what it was told is lost: each runs once more, to the end (a 503
    # "retry later" while the scheduler's view catches up with node-0's new life)
    code, again = poll(lambda: (lambda r: r if r[0] != 503 else None)(
        c.submit(0, [t for t in tasks if t["id"] in told_lost])), 20, interval=0.5,
        what="the resubmission accepted")
    assert code == 202, again
    final = c.wait_terminal(0, [t["id"] for t in tasks], timeout=30)
    assert count(final.values()) == {"succeeded": 8}
    for t in on0:
        holders = [a for a in c.agents if c.agent_knows(a, t) == "succeeded"]
        assert len(holders) == 1, (t, holders)


def test_same_id_with_another_body_is_409_naming_id_at_either_scheduler(cluster):
    """Finding 6: a reused id with a different task never gets a 202 nor the first
    task's result."""
    c = cluster(agents=2, schedulers=2, slots=2)
    code, body = c.submit(0, [{**TASK, "id": "dup", "duration_ms": 100.0}])
    assert code == 202, body
    c.wait_terminal(0, ["dup"], timeout=10)
    other = [{**TASK, "id": "dup", "duration_ms": 999.0}]
    for sched in (0, 1):  # the placing scheduler, and one that learns it from the index
        code, body = poll(lambda s=sched: (lambda r: r if r[0] != 503 else None)(c.submit(s, other)),
                          10, what="an answer other than 503")
        assert code == 409, body
        assert body["error"]["field"] == "tasks[0].id" and "different task" in body["error"]["reason"]
    # the same body again is an idempotent retry, at either scheduler
    for sched in (0, 1):
        code, body = c.submit(sched, [{**TASK, "id": "dup", "duration_ms": 100.0}])
        assert code == 202 and _placements(body)["dup"] is not None, body


def test_same_ids_at_two_schedulers_at_once_run_once(cluster):
    """Finding 6: concurrent submissions of the same ids to two schedulers place each
    id once (the load store's claims). Before the fix 9 of 20 ran on two agents."""
    c = cluster(agents=4, schedulers=2, slots=4)
    tasks = sleep_tasks("both", 20, duration_ms=200.0)
    ids = [t["id"] for t in tasks]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda s: c.submit(s, tasks), (0, 1)))
    for code, body in answers:
        # an id the other scheduler is placing at that moment is answered 503 (retry)
        assert code in (202, 503), body
    final = c.wait_terminal(0, ids, timeout=30)
    assert count(final.values()) == {"succeeded": 20}
    for t in ids:
        holders = [a.url for a in c.agents if c.agent_knows(a, t) is not None]
        assert len(holders) == 1, (t, holders)
    # a client retrying its 503s gets the placement that stands
    for code, body in answers:
        code, again = c.submit(0 if code == 202 else 1, tasks)
        assert code == 202 and all(p["node"] for p in again["placements"]), again


def test_any_scheduler_answers_for_any_task_including_a_restarted_one(cluster):
    """Finding 7: reads do not depend on the scheduler that placed the task."""
    c = cluster(agents=2, schedulers=2, slots=2)
    tasks = sleep_tasks("any", 6, duration_ms=100.0)
    ids = [t["id"] for t in tasks]
    code, body = c.submit(0, tasks)
    assert code == 202, body
    placed = _placements(body)
    done = c.wait_terminal(0, ids, timeout=20)
    assert count(done.values()) == {"succeeded": 6}
    # the other scheduler: it learns the node from the load store's task index
    other = poll(lambda: (lambda s: s if all(v == "succeeded" for v in s.values()) else None)(
        c.states(1, ids)), 10, what="scheduler 1 answers for every task")
    assert other == done
    assert {t: c.status(1, t)["node"] for t in ids} == placed
    c.kill(c.schedulers[0])
    c.restart_scheduler(0)
    # a new process, no memory of placing them: `unknown` at most while its first
    # snapshot arrives (docs/guarantees.md), never another state
    seen: list[str] = []

    def answers() -> bool:
        states = c.states(0, ids)
        seen.extend(states.values())
        return states == done

    poll(answers, 10, interval=0.1, what="the restarted scheduler answers for every task")
    assert set(seen) <= {"succeeded", "unknown"}, count(seen)


def test_sparrow_reservation_survives_agent_restarts(cluster):
    """Finding 5: a reservation answered 202 is journaled; after its agents restart it
    still gets its confirm and runs once. Before, it read ``queued, waiting for a
    confirm`` for ever and the agents answered 404.

    On a loaded host an agent's restart (a new interpreter) can outlast
    ``dead_after_ms``: the store then declares the node dead and its unfinished
    tasks are ``lost``, which docs/guarantees.md promises (the sleep executor's
    runs die with their agent, so none of them is alive). So the exact outcome is
    asserted when no node life was fenced, and otherwise the contract: ``lost``
    only for ids a fenced node held, agreed by every agent holding them, and
    nothing run twice."""
    c = cluster(agents=2, schedulers=1, slots=1, scheduler_extra=("--policy", "sparrow"))
    lives = _lives(c)
    busy = sleep_tasks("busy", 2, duration_ms=2500.0)
    code, body = c.submit(0, busy)
    assert code == 202, body
    poll(lambda: all(c.agent_knows(a, t["id"]) == "running" for a in c.agents for t in busy
                     if c.agent_knows(a, t["id"]) is not None), 10, what="both agents busy")
    code, body = c.submit(0, [{**TASK, "id": "late", "duration_ms": 100.0}])
    assert code == 202, body
    for i in range(2):  # both reservations are journaled ...
        assert c.agent_knows(c.agents[i], "late") == "queued"
    for i in range(2):  # ... and survive their agents
        c.kill(c.agents[i])
        c.restart_agent(i)
    ids = ["late", *(t["id"] for t in busy)]
    final = c.wait_terminal(0, ids, timeout=30)
    at_agents = {t: [_agent_status(c, a, t) for a in c.agents] for t in ids}
    for t in ids:  # nothing ran twice
        assert [s["state"] for s in at_agents[t]].count("succeeded") <= 1, (t, at_agents[t])
    fenced = {n for n, life in _lives(c).items() if life != lives[n]}
    if not fenced:
        assert count(final.values()) == {"succeeded": 3}, final
        assert sum(c.agent_knows(a, "late") == "succeeded" for a in c.agents) == 1
        return
    for t, state in final.items():
        held = [s for s in at_agents[t] if s["state"] != "http-404"]
        if state == "lost":  # ... said only of ids on a node declared dead, and final there
            assert {s["node"] for s in held} & fenced, (t, at_agents[t], fenced)
            assert all(s["state"] == "lost" and re.search(r"declared (the node )?dead", s["reason"] or "")
                       for s in held), (t, at_agents[t])
        else:
            assert state == "succeeded", (t, final)
            assert "succeeded" in [s["state"] for s in held], (t, at_agents[t])


def _lives(c) -> dict[str, str]:
    """Each node's life (incarnation) as the load store knows it: a new one only after a
    fence, so a change means the node was declared dead."""
    code, body = c.get(c.loadstore.url + "/v1/nodes")
    assert code == 200, body
    return {n["id"]: n["incarnation"] for n in body["nodes"]}


def _agent_status(c, agent, task_id: str) -> dict:
    code, body = c.get(f"{agent.url}/v1/tasks/{task_id}")
    return body if code == 200 else {"state": f"http-{code}", "node": None, "reason": None}
