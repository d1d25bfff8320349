"""DockerExecutor's containers across their end and the agent's restart: a result held
until the agent forgets it, and the containers a previous run left, reconciled with the
journal (adopted, collected or removed), against the real engine."""

from __future__ import annotations

import asyncio
import time

import pytest

from dodoor.resources import Task
from node_agent.docker_executor import AGENT_LABEL, BUSYBOX_IMAGE, TASK_LABEL
from node_agent.executor import Interrupted
from tests.docker.conftest import labelled
from tests.docker.test_docker_executor import make, task

# Run alone, the first test also builds the images (about 2.5 min from nothing).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


def interrupted(*task_ids: str, duration_ms: float = 500.0) -> list[Interrupted]:
    """Journal rows left ``running`` by a previous run of the agent."""
    return [Interrupted(Task(t, 0.5, 64, duration_ms=duration_ms), "running", None)
            for t in task_ids]


def leave(client, agent_id: str, task_id: str, *command: str):
    """A container as a previous run of agent ``agent_id`` would have left it."""
    return client.containers.run(BUSYBOX_IMAGE, list(command), detach=True,
                                 labels={AGENT_LABEL: agent_id, TASK_LABEL: task_id})


async def test_reconcile_adopts_running_and_collects_exited(agent_id, docker_client):
    running = leave(docker_client, agent_id, "left-running", "dodoor-task", "sleep", "2")
    exited = leave(docker_client, agent_id, "left-exited", "dodoor-task", "exit", "5")
    exited.wait()
    other = docker_client.containers.run(
        BUSYBOX_IMAGE, ["dodoor-task", "sleep", "5"], detach=True,
        labels={AGENT_LABEL: agent_id + "-other", TASK_LABEL: "not-mine"})
    try:
        executor = make(agent_id)
        adopted = {a.task_id: a for a in await executor.reconcile(
            interrupted("left-running", "left-exited"))}
        assert set(adopted) == {"left-running", "left-exited"}
        assert adopted["left-running"].running is True
        done = adopted["left-exited"]
        assert done.running is False
        assert done.result.state == "failed"
        assert done.result.exit_code == 5
        assert "exiting with 5" in done.result.log_tail
        # The exited one stays until its result is journaled (forget), then goes.
        assert {c.id for c in labelled(docker_client, agent_id)} == {running.id, exited.id}
        await executor.forget("left-exited")
        assert [c.id for c in labelled(docker_client, agent_id)] == [running.id]
        result = await executor.wait_adopted("left-running")
        assert result.state == "succeeded"
        await executor.forget("left-running")
        with pytest.raises(LookupError):
            await executor.wait_adopted("left-running")
        await executor.close()
        # Another agent's container was not touched.
        other.reload()
        assert other.status == "running"
    finally:
        other.remove(force=True)


async def test_a_result_is_held_until_forget(agent_id, docker_client):
    executor = make(agent_id)
    handles = []

    async def on_start(handle: str) -> None:
        handles.append(handle)

    result = await executor.run(task("held-1", "sh", "-c", "echo kept"), on_start)
    assert result.state == "succeeded" and "kept" in result.log_tail
    [container] = labelled(docker_client, agent_id)
    assert handles == [container.id]  # the container id, given once it started
    assert docker_client.containers.get(container.id).status == "exited"
    await executor.forget("held-1")
    assert labelled(docker_client, agent_id) == []
    await executor.forget("held-1")  # twice, or for a task it never held: nothing happens
    await executor.forget("never-ran")
    await executor.close()


async def test_a_timed_out_container_is_killed_then_held(agent_id, docker_client):
    executor = make(agent_id, timeout_ms=1000.0)
    result = await executor.run(task("slow-3", "dodoor-task", "sleep", "30"))
    assert (result.state, result.reason, result.exit_code) == (
        "failed", "timed out after 1 s", 137)
    [container] = labelled(docker_client, agent_id)
    assert docker_client.containers.get(container.id).status == "exited"  # killed, not running
    await executor.forget("slow-3")
    assert labelled(docker_client, agent_id) == []
    await executor.close()


async def test_reconcile_removes_containers_whose_row_is_finished_or_missing(agent_id,
                                                                             docker_client):
    leave(docker_client, agent_id, "done-running", "dodoor-task", "sleep", "30")
    leave(docker_client, agent_id, "done-exited", "dodoor-task", "exit", "0").wait()
    leave(docker_client, agent_id, "unknown", "dodoor-task", "sleep", "30")
    live = leave(docker_client, agent_id, "live", "dodoor-task", "sleep", "30")
    executor = make(agent_id)
    # only "live" is unfinished in the journal; the rest finished or were pruned
    found = await executor.reconcile(interrupted("live", duration_ms=60_000.0))
    assert [(a.task_id, a.running) for a in found] == [("live", True)]
    assert [c.id for c in labelled(docker_client, agent_id)] == [live.id]
    waiting = asyncio.ensure_future(executor.wait_adopted("live"))
    await asyncio.sleep(0.2)
    waiting.cancel()  # agent shutdown: the adopted container is stopped and removed
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert labelled(docker_client, agent_id) == []
    await executor.close()


async def test_an_adopted_container_keeps_its_original_wall_limit(agent_id, docker_client):
    # 3 s limit; the container has run about 2 s of it when the agent comes back.
    container = leave(docker_client, agent_id, "adopt-slow", "dodoor-task", "sleep", "30")
    await asyncio.sleep(2.0)
    executor = make(agent_id, timeout_ms=3000.0)
    [found] = await executor.reconcile(interrupted("adopt-slow"))
    assert found.running
    t0 = time.monotonic()
    result = await executor.wait_adopted("adopt-slow")
    waited = time.monotonic() - t0
    assert (result.state, result.reason) == ("failed", "timed out after 3 s")
    assert waited < 2.5, f"waited {waited:.2f} s: the limit restarted from the adoption"
    container.reload()
    assert container.status == "exited"
    started = container.attrs["State"]["StartedAt"]
    finished = container.attrs["State"]["FinishedAt"]
    from datetime import datetime
    ran = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    assert 3.0 <= ran < 4.5
    await executor.forget("adopt-slow")
    # adopted past its limit already: killed at once
    leave(docker_client, agent_id, "adopt-late", "dodoor-task", "sleep", "30")
    await asyncio.sleep(1.2)
    executor2 = make(agent_id, timeout_ms=1000.0)
    await executor2.reconcile(interrupted("adopt-late"))
    t0 = time.monotonic()
    late = await executor2.wait_adopted("adopt-late")
    assert late.reason == "timed out after 1 s" and time.monotonic() - t0 < 1.0
    await executor2.forget("adopt-late")
    # a killed-at-its-limit container found exited at restart keeps its reason
    leave(docker_client, agent_id, "limit-exited", "dodoor-task", "sleep", "30")
    await asyncio.sleep(1.2)
    [gone_one] = docker_client.containers.list(filters={"label": f"{TASK_LABEL}=limit-exited"})
    gone_one.kill()
    gone_one.wait()
    [found] = await executor2.reconcile(interrupted("limit-exited"))
    assert (found.running, found.result.reason) == (False, "timed out after 1 s")
    await executor2.forget("limit-exited")
    await executor.close()
    await executor2.close()
