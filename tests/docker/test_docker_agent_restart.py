"""An in-process agent on the Docker executor: results are journaled before containers go.

The agent is the real one (``create_app``); the executor is the real
DockerExecutor with a note, at every container removal, of the task's state in
the journal file at that moment (read on the side with sqlite3).
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from dodoor.resources import Task
from node_agent.app import STATE, create_app
from node_agent.docker_executor import TASK_LABEL, DockerExecutor
from node_agent.settings import AgentSettings
from tests.agent.conftest import enqueue, wait_for
from tests.docker.conftest import labelled

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


class RecordingExecutor(DockerExecutor):
    """Records the containers it creates and, per removal, the journal's state of the task."""

    def __init__(self, settings: AgentSettings) -> None:
        super().__init__(settings)
        self.journal_path = settings.journal_path
        self.created: list[str] = []
        self.removals: list[tuple[str, str | None]] = []

    def _create_and_start(self, spec: dict[str, Any]) -> Any:
        self.created.append(spec["labels"][TASK_LABEL])
        return super()._create_and_start(spec)

    def _discard(self, container: Any, stop: bool = False) -> None:
        task_id = container.labels.get(TASK_LABEL)
        with sqlite3.connect(self.journal_path) as conn:
            row = conn.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        self.removals.append((task_id, row[0] if row else None))
        super()._discard(container, stop)


class StallingExecutor(RecordingExecutor):
    """Never hands a result back: the agent is stopped after the container exited and
    before the result could be journaled (the window of issue 13, finding 4)."""

    async def run(self, task: Task, on_start=None):
        await super().run(task, on_start)
        await asyncio.Event().wait()  # the agent "dies" here: cancelled by its shutdown


def settings_for(agent_id: str, tmp_path, **kw) -> AgentSettings:
    base = dict(node_id=agent_id, executor="docker", cores=2.0, memory_mb=2000.0, disk_mb=0.0,
                slots=2, journal_path=str(tmp_path / "journal.sqlite"))
    base.update(kw)
    return AgentSettings(**base)


async def state_of(client, task_id: str) -> str | None:
    resp = await client.get(f"/v1/tasks/{task_id}")
    return (await resp.json())["state"] if resp.status == 200 else None


async def test_results_are_journaled_before_their_containers_are_removed(
        aiohttp_client, agent_id, docker_client, tmp_path):
    settings = settings_for(agent_id, tmp_path, task_timeout_ms=2000.0)
    ex = RecordingExecutor(settings)
    client = await aiohttp_client(create_app(settings, executor=ex))
    await enqueue(client, Task("ok", 0.5, 64, duration_ms=100.0, command=("echo", "hi")))
    await enqueue(client, Task("slow", 0.5, 64, duration_ms=100.0,
                               command=("dodoor-task", "sleep", "30")))
    await wait_for(lambda: len(ex.removals) == 2, timeout=60)
    assert sorted(ex.removals) == [("ok", "succeeded"), ("slow", "failed")]
    assert await state_of(client, "ok") == "succeeded"
    resp = await client.get("/v1/tasks/slow")
    body = await resp.json()
    assert body["reason"] == "timed out after 2 s", body
    # removal follows the commit (and frees nothing the task still holds)
    await wait_for(lambda: labelled(docker_client, agent_id) == [], timeout=30)
    await client.close()


async def test_a_task_whose_result_was_not_journaled_is_collected_not_run_again(
        aiohttp_client, agent_id, docker_client, tmp_path):
    settings = settings_for(agent_id, tmp_path)
    first = StallingExecutor(settings)
    client = await aiohttp_client(create_app(settings, executor=first))
    await enqueue(client, Task("once", 0.5, 64, duration_ms=100.0,
                               command=("echo", "ran-once")))
    await wait_for(lambda: docker_client.api.containers(
        all=True, filters={"label": f"{TASK_LABEL}=once", "status": "exited"}), timeout=60)
    await asyncio.sleep(0.2)  # the executor has collected the result and holds the container
    await client.close()
    assert first.removals == []  # the container outlived its agent
    [left] = labelled(docker_client, agent_id)
    with sqlite3.connect(settings.journal_path) as conn:
        state, handle = conn.execute("SELECT state, handle FROM tasks WHERE id = 'once'").fetchone()
    assert (state, handle) == ("running", left.id)

    second = RecordingExecutor(settings)
    client2 = await aiohttp_client(create_app(settings, executor=second))
    assert await state_of(client2, "once") == "succeeded"  # journaled during the restart
    resp = await client2.get("/v1/tasks/once")
    assert (await resp.json())["log_tail"] == "ran-once\n"
    assert second.created == []  # not run a second time
    assert second.removals == [("once", "succeeded")]
    assert client2.app[STATE].agent.queue.n_running == 0
    assert labelled(docker_client, agent_id) == []
    await client2.close()
