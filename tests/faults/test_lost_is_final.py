"""`lost` is final (docs/guarantees.md, States): a task the store did not hear finish
before it declared the node dead is `lost` at every scheduler and on the agent; one
it heard finish keeps its result everywhere. Real processes on 127.0.0.1."""

from __future__ import annotations

import signal

from tests.faults.conftest import count, poll, sleep_tasks


def _placements(body: dict) -> dict[str, str]:
    return {p["id"]: p["node"] for p in body["placements"]}


def test_a_task_that_finishes_while_its_fenced_agent_cannot_hear_the_fence_ends_lost(cluster):
    """Failure 1, made certain: node-0 is paused while f-0 runs until it is declared dead
    and f-0 is resubmitted elsewhere; the load store is then paused while node-0 resumes,
    so node-0's sleep finishes and journals `succeeded` before any answer can fence it.
    Once the store answers, node-0 must end f-0 `lost` and only the resubmission counts."""
    c = cluster(agents=2, schedulers=1, slots=1, dead_after_ms=1000)
    task = sleep_tasks("f", 1, duration_ms=1500.0)
    code, body = c.submit(0, task)
    assert code == 202, body
    [(tid, first)] = _placements(body).items()
    holder = c.agents[int(first.split("-")[1])]
    poll(lambda: c.agent_knows(holder, tid) == "running", 10, what="f-0 running")
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        poll(lambda: c.status(0, tid)["state"] == "lost", 15, what="the holder declared dead")
        code, again = poll(lambda: (lambda r: r if r[0] != 503 else None)(c.submit(0, task)),
                           20, interval=0.5, what="the resubmission accepted")
        assert code == 202 and _placements(again)[tid] != first, again
        c.loadstore.proc.send_signal(signal.SIGSTOP)
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    try:
        # the run ends (its sleep is long over) while no answer can reach the agent
        poll(lambda: c.agent_knows(holder, tid) == "succeeded", 10,
             what="the fenced life journals its end before hearing the fence")
    finally:
        c.loadstore.proc.send_signal(signal.SIGCONT)
    poll(lambda: c.agent_knows(holder, tid) == "lost", 15, what="the fence voids that end")
    _, st = c.get(f"{holder.url}/v1/tasks/{tid}")
    assert "unknown to, the load store" in st["reason"] and st["exit_code"] is None, st
    final = c.wait_terminal(0, [tid], timeout=30)
    assert final == {tid: "succeeded"}
    holders = [a for a in c.agents if c.agent_knows(a, tid) == "succeeded"]
    assert len(holders) == 1 and holders[0] is not holder, holders


def test_tasks_reported_finished_keep_their_result_at_every_scheduler_when_their_node_dies(
        cluster):
    """Failure 2: tasks that ended on node-0, and were reported, are never `lost` when
    node-0 is SIGKILLed and declared dead: both schedulers answer their state (details
    unavailable) while it is down, and the same once it is back and fenced."""
    c = cluster(agents=2, schedulers=2, slots=2, dead_after_ms=1000)
    tasks = sleep_tasks("d", 8, duration_ms=50.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    on0 = sorted(t for t, n in _placements(body).items() if n == "node-0")
    assert on0, body
    ids = [t["id"] for t in tasks]
    assert count(c.wait_terminal(0, ids, timeout=20).values()) == {"succeeded": 8}
    # the ends reach the store with the next reports (one report interval; heartbeats 1 s)
    poll(lambda: c.get(c.agents[0].url + "/healthz")[1].get("unheard_ends") == 0, 10,
         what="node-0's ends answered by the store")
    c.kill(c.agents[0])
    poll(lambda: "node-0" in c.get(c.loadstore.url + "/healthz")[1]["dead"], 15,
         what="node-0 declared dead")
    for sched in (0, 1):
        for t in on0:
            # `unknown` until this scheduler's snapshot carries the death, never `lost`
            st = poll(lambda s=sched, t=t: (lambda st: st if st["state"] != "unknown" else None)(
                c.status(s, t)), 10, interval=0.1, what="the scheduler's view of the death")
            assert (st["state"], st["node"]) == ("succeeded", "node-0"), (sched, st)
            assert "unavailable until the node is back" in st["reason"], st
    # a client's retry of a finished id is answered with its node, nothing runs again
    code, again = c.submit(1, [t for t in tasks if t["id"] in on0])
    assert code == 202 and set(_placements(again).values()) == {"node-0"}, again
    c.restart_agent(0)
    poll(lambda: c.get(c.agents[0].url + "/healthz")[1]["fences"] == 1, 15,
         what="node-0 back and fenced")
    seen: list[str] = []

    def all_succeeded(sched: int) -> bool:
        states = c.states(sched, ids)
        seen.extend(states.values())
        return states == {t: "succeeded" for t in ids}

    for sched in (0, 1):  # `unknown` while a scheduler's view catches up, never `lost`
        poll(lambda s=sched: all_succeeded(s), 10, interval=0.2, what="every id succeeded")
    assert set(seen) <= {"succeeded", "unknown"}, count(seen)
    for t in on0:
        assert c.agent_knows(c.agents[0], t) == "succeeded"
        assert c.agent_knows(c.agents[1], t) is None
