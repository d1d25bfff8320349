"""Rebalancing on real processes: queued tasks move to an idle agent, each runs once.

The load store orders moves (``--rebalance``); an agent hands a queued task over
(node_agent.handover). Checked here: moves happen and every moved task runs once,
where the scheduler that placed it says; a target that refuses leaves the task
with its agent; a victim SIGKILLed mid-move resolves the hand-over after its restart
without running the task twice or losing it (docs/guarantees.md, "Moved tasks").
"""

from __future__ import annotations

import re
import signal
import threading
import urllib.error
import urllib.request

import pytest

from dodoor.wire import CONTENT_TYPE, MoveOrder, encode
from tests.daemons.conftest import free_port
from tests.faults.conftest import ProcCluster, count, poll, sleep_tasks

pytestmark = pytest.mark.timeout(180)


def add_agent(c: ProcCluster, i: int):
    """Start agent ``node-i`` like the cluster's own (a node joining late)."""
    args = list(c.agent_args[0])
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--id") + 1] = f"node-{i}"
    args[args.index("--journal") + 1] = str(c.workdir / f"node-{i}.sqlite")
    c.agent_args.append(args)
    c.agents.append(c._start(args, port))
    return c.agents[-1]


def post_move(agent_url: str, order: MoveOrder, timeout: float = 10.0) -> int:
    req = urllib.request.Request(agent_url + "/internal/move", data=encode(order),
                                 headers={"Content-Type": CONTENT_TYPE}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def holders(c: ProcCluster, task_id: str) -> dict[str, str]:
    """node -> the state its agent reports for the id (agents that know it)."""
    out = {}
    for i, agent in enumerate(c.agents):
        state = c.agent_knows(agent, task_id)
        if state is not None:
            out[f"node-{i}"] = state
    return out


def ran_once_where_said(c: ProcCluster, ids: list[str]) -> dict[str, str]:
    """Every id succeeded on exactly one agent, every other agent that knows it says
    ``moved``, and the scheduler names the agent that ran it; id -> that node."""
    ran = {}
    for tid in ids:
        held = holders(c, tid)
        done = [n for n, s in held.items() if s == "succeeded"]
        assert len(done) == 1, f"{tid}: {held}"
        assert all(s == "moved" for n, s in held.items() if n != done[0]), f"{tid}: {held}"
        assert c.status(0, tid)["node"] == done[0], (tid, c.status(0, tid), held)
        ran[tid] = done[0]
    return ran


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples at one daemon."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return sum(float(v) for v in found)


def test_a_joining_idle_agent_takes_queued_tasks_and_each_runs_once(cluster):
    c = cluster(agents=1, slots=1, loadstore_extra=("--rebalance",))
    tasks = sleep_tasks("q-", 12, duration_ms=1000.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    assert {p["node"] for p in body["placements"]} == {"node-0"}
    add_agent(c, 1)
    ids = [t["id"] for t in tasks]
    states = c.wait_terminal(0, ids, timeout=60)
    assert count(states.values()) == {"succeeded": 12}
    ran = ran_once_where_said(c, ids)
    moved = [t for t, n in ran.items() if n == "node-1"]
    assert moved, "no task moved to the idle agent"
    assert metric(c.loadstore.url, "dodoor_loadstore_moves_total") >= len(moved)
    assert metric(c.agents[0].url, "dodoor_agent_moves_out_total") == len(moved)
    # the moved tasks keep their first placement time
    st = c.get(f"{c.agents[1].url}/v1/tasks/{moved[-1]}")[1]
    assert st["queued_ms"] < st["started_ms"] - 1000.0, st


def queued_on(c: ProcCluster, node: int, ids: list[str]) -> list[str]:
    return [t for t in ids if c.agent_knows(c.agents[node], t) == "queued"]


def test_a_refusing_or_dead_target_leaves_the_task_queued_on_its_agent(cluster):
    c = cluster(agents=2, slots=1)  # no --rebalance: the orders are the test's
    tasks = sleep_tasks("r-", 8, duration_ms=1500.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    ids = [t["id"] for t in tasks]
    waiting = queued_on(c, 0, ids)
    assert len(waiting) >= 2, body
    # the target's life is not the one the order names: it refuses (410)
    stale = MoveOrder("node-1", c.agents[1].url, "not-its-life", task_id=waiting[-1])
    assert post_move(c.agents[0].url, stale) == 204
    # nobody listens at the target's address
    gone = MoveOrder("node-9", f"http://127.0.0.1:{free_port()}", task_id=waiting[-2])
    assert post_move(c.agents[0].url, gone) == 204
    # a running task never moves
    running = [t for t in ids if c.agent_knows(c.agents[0], t) == "running"]
    if running:
        assert post_move(c.agents[0].url, MoveOrder("node-1", c.agents[1].url,
                                                    task_id=running[0])) == 204
    assert c.agent_knows(c.agents[0], waiting[-1]) == "queued"
    assert c.agent_knows(c.agents[1], waiting[-1]) is None
    states = c.wait_terminal(0, ids, timeout=60)
    assert count(states.values()) == {"succeeded": 8}
    ran = ran_once_where_said(c, ids)
    assert ran[waiting[-1]] == ran[waiting[-2]] == "node-0"
    assert metric(c.agents[0].url, "dodoor_agent_moves_returned_total") == 2


def test_a_victim_killed_mid_move_resolves_it_after_restart_and_runs_it_once(cluster):
    c = cluster(agents=2, slots=1, dead_after_ms=30_000)  # the pause is no death
    tasks = sleep_tasks("k-", 8, duration_ms=700.0)
    code, body = c.submit(0, tasks)
    assert code == 202, body
    ids = [t["id"] for t in tasks]
    waiting = queued_on(c, 0, ids)
    assert waiting, body
    tid = waiting[-1]
    target = c.agents[1]
    target.proc.send_signal(signal.SIGSTOP)  # the hand-over's enqueue gets no answer
    try:
        order = MoveOrder("node-1", target.url, task_id=tid)
        sender = threading.Thread(target=lambda: _ignore(post_move, c.agents[0].url, order, 5.0))
        sender.start()
        poll(lambda: "handed over" in (c.get(f"{c.agents[0].url}/v1/tasks/{tid}")[1]
                                       .get("reason") or ""), 10, what="hand-over journaled")
        c.kill(c.agents[0])  # SIGKILL while the target has not answered
        sender.join(10)
    finally:
        target.proc.send_signal(signal.SIGCONT)
    c.restart_agent(0)
    states = c.wait_terminal(0, ids, timeout=60)
    assert count(states.values()) == {"succeeded": 8}
    ran = ran_once_where_said(c, ids)
    assert ran[tid] == "node-1"
    assert c.agent_knows(c.agents[0], tid) == "moved"


def _ignore(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:  # the victim died mid-request
        pass
