"""The Swarm stack end to end, on a one-node swarm (docs/swarm.md).

compose/docker-stack.yml + the one-node override (4 replicated agents running
tasks as containers) + the gateway override. Every request goes through one
entry port on a new connection: Swarm's routing mesh where the kernel has IPVS,
the gateway (the same per-connection round robin, in user space) where it has
not. Starts are counted per task id from the engine's container events.
The tests run in file order on one stack; the last one removes it.
"""

from __future__ import annotations

import time

import pytest

from tests.swarm.conftest import AGENTS, Stack, wait_for

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(1500)]


def tasks(prefix: str, count: int, seconds: float) -> list[dict]:
    """Command-less tasks: the agents' docker executor runs `dodoor-task sleep S`."""
    return [{"id": f"{prefix}-{i:03d}", "cores": 0.1, "memory_mb": 32,
             "duration_ms": seconds * 1000} for i in range(count)]


def submit(stack: Stack, batch: list[dict], chunk: int = 20) -> dict[str, str]:
    """Submits through the entry port, ``chunk`` tasks a request; id → placed node."""
    placed: dict[str, str] = {}
    for start in range(0, len(batch), chunk):
        part = batch[start:start + chunk]
        status, body = stack.request("/v1/tasks", {"tasks": part}, timeout=30)
        assert status == 202, (status, body)
        placed.update({p["id"]: p["node"] for p in body["placements"]})
    assert set(placed) == {t["id"] for t in batch}
    return placed


def follow(stack: Stack, ids: list[str], timeout: float) -> tuple[dict[str, dict], set[str]]:
    """Polls every id through the entry port until it ends; also returns the scheduler ids
    whose /healthz answered in between (one per round of polling)."""
    final: dict[str, dict] = {}
    replicas: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(final) < len(ids) and time.monotonic() < deadline:
        for task_id in ids:
            if task_id in final:
                continue
            try:
                status, body = stack.request(f"/v1/tasks/{task_id}", timeout=10)
            except OSError:
                continue
            if status == 200 and body["state"] in ("succeeded", "failed", "lost"):
                final[task_id] = body
        for _ in range(2):
            try:
                sid = stack.healthz_id()
            except OSError:
                continue
            if sid:
                replicas.add(sid)
        time.sleep(0.5)
    missing = sorted(set(ids) - set(final))
    assert not missing, (f"{len(missing)} of {len(ids)} task(s) not finished in {timeout:.0f} s "
                         f"through the {stack.entry_kind}, e.g. {missing[:5]}\n{stack.diagnostics()}")
    return final, replicas


def not_succeeded(final: dict[str, dict]) -> dict[str, dict]:
    return {t: b for t, b in final.items() if b["state"] != "succeeded"}


def test_two_hundred_tasks_through_the_mesh_any_replica_answers(stack):
    assert stack.request("/v1/nodes", token=None)[0] == 401, "the token secret is not enforced"
    assert stack.request("/v1/nodes", token="wrong")[0] == 401
    ledger = stack.ledger()
    batch = tasks("mesh", 200, 0.2)
    placed = submit(stack, batch)
    final, replicas = follow(stack, list(placed), timeout=600)
    starts = ledger.close()
    assert not not_succeeded(final), list(not_succeeded(final).items())[:3]
    assert len(replicas) >= 2, f"only {replicas} answered through the {stack.entry_kind}"
    # every task ran once, in a container of this stack, on the node its placement named
    assert set(starts) == set(placed) and set(starts.values()) == {1}, \
        {t: n for t, n in starts.items() if n != 1} or set(placed) - set(starts)
    assert all(final[t]["node"] == placed[t] for t in placed)
    assert len(set(placed.values())) == AGENTS, "not every agent took work"


def agent_container(stack: Stack, slot: int) -> str | None:
    """The running container of the agent in ``slot`` (Swarm names it <service>.<slot>.<task>)."""
    ids = stack.docker("ps", "-q", "--filter", f"name={stack.agent_service}.{slot}.",
                       "--filter", "status=running").stdout.split()
    return ids[0] if len(ids) == 1 else None


def test_killed_agent_container_is_restarted_and_resumes_its_journal(stack):
    victim_slot = 1
    victim = stack.agent_id(victim_slot)
    before = agent_container(stack, victim_slot)
    assert before, f"no running container for agent slot {victim_slot}"
    ledger = stack.ledger()
    # 2 slots per agent, 4 agents: 24 tasks of 6 s keep every agent busy with a queue
    placed = submit(stack, tasks("kill", 24, 6.0), chunk=24)
    on_victim = {t for t, n in placed.items() if n == victim}
    assert on_victim, f"nothing was placed on {victim}: {placed}"

    def victim_running() -> set[str]:
        return {c["Labels"]["dodoor.task_id"] for c in stack.task_containers()
                if c["Labels"]["dodoor.agent_id"] == victim and c["State"] == "running"}

    in_flight = wait_for(f"a task running on {victim}", victim_running, 120, interval=0.2)
    killed_at = time.monotonic()
    stack.docker("kill", before)
    after = wait_for(f"Swarm restarting the agent of slot {victim_slot}",
                     lambda: (c := agent_container(stack, victim_slot)) and c != before and c,
                     60, interval=0.5, detail=stack.diagnostics)
    restarted_s = time.monotonic() - killed_at
    final, _ = follow(stack, list(placed), timeout=300)
    starts = ledger.close()
    assert not not_succeeded(final), (f"agent back {restarted_s:.1f} s after the kill; "
                                      f"{list(not_succeeded(final).items())[:3]}")
    # nothing lost, nothing run twice; what ran during the kill was adopted where it ran
    assert set(starts) == set(placed) and set(starts.values()) == {1}, starts
    assert all(final[t]["node"] == placed[t] for t in placed)
    assert all(final[t]["node"] == victim for t in in_flight)
    logs = stack.docker("logs", after).stderr + stack.docker("logs", after).stdout
    assert f"agent {victim} starting" in logs, logs[-2000:]
    assert "adopted" in logs, logs[-2000:]
    assert victim in stack.node_ids()


def test_scaled_up_agents_join_and_receive_work(stack):
    stack.docker("service", "scale", "--detach", f"{stack.agent_service}={AGENTS + 2}")
    new = {stack.agent_id(AGENTS + 1), stack.agent_id(AGENTS + 2)}

    def joined() -> list[str] | None:
        ids = stack.node_ids()
        return ids if new <= set(ids) else None

    nodes = wait_for(f"{sorted(new)} in GET /v1/nodes", joined, 180, interval=1,
                     detail=stack.diagnostics)
    assert len(nodes) == AGENTS + 2, nodes
    ledger = stack.ledger()
    ran_on: set[str] = set()
    placed: dict[str, str] = {}
    # 12 slots: rounds of 12 two-second tasks until the new agents have run some (≤ 4;
    # one is enough unless a new agent refused its first enqueue, which moves the task)
    for round_no in range(4):
        batch = submit(stack, tasks(f"scale{round_no}", 12, 2.0), chunk=12)
        placed.update(batch)
        final, _ = follow(stack, list(batch), timeout=300)
        assert not not_succeeded(final), list(not_succeeded(final).items())[:3]
        ran_on |= {b["node"] for b in final.values()}
        if new <= ran_on:
            break
    starts = ledger.close()
    assert set(starts) == set(placed) and set(starts.values()) == {1}, starts
    assert new <= ran_on, f"the new agents ran nothing: work went to {sorted(ran_on)}"


def test_removing_the_stack_leaves_nothing_running(stack):
    # remove it busy: agents stop and remove their task containers on SIGTERM
    submit(stack, tasks("rm", 8, 60.0), chunk=8)
    wait_for("the long tasks running", lambda: sum(
        c["State"] == "running" for c in stack.task_containers()) >= 4, 120, interval=0.3)
    stack.remove()
    wait_for("no service of the stack left", lambda: not stack.services(), 60, interval=1)
    wait_for("no container of the stack left (daemons and tasks)",
             lambda: not stack.stack_containers() and not stack.task_containers(),
             120, interval=1,
             detail=lambda: f"{stack.stack_containers()}\n{stack.task_containers()}")
