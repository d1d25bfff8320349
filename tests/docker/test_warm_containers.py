"""Warm containers against the real engine: reuse, per-task limits, discarding,
idle reaping, cancel, wall limits, and what a restarted agent does with them."""

from __future__ import annotations

import asyncio
import time

import pytest
from docker.errors import NotFound

from dodoor.resources import Task
from node_agent.docker_executor import DockerExecutor, DockerSettings
from node_agent.docker_spec import BUSYBOX_IMAGE, PYTHON_IMAGE, WARM_LABEL
from node_agent.executor import Interrupted, TaskResult
from tests.docker.conftest import labelled

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def make(agent_id: str, **overrides) -> DockerExecutor:
    overrides.setdefault("warm_images", frozenset({BUSYBOX_IMAGE, PYTHON_IMAGE}))
    return DockerExecutor(DockerSettings(agent_id=agent_id, **overrides))


def task(task_id: str, *command: str, cores: float = 0.5, memory_mb: float = 32,
         **fields) -> Task:
    return Task(task_id, cores, memory_mb, duration_ms=500.0, command=tuple(command), **fields)


async def run(executor: DockerExecutor, t: Task, forget: bool = True) -> tuple[TaskResult, str]:
    """Run a task the way the agent does; its result and the container id of its handle."""
    handles: list[str] = []

    async def on_start(handle: str) -> None:
        handles.append(handle)

    result = await executor.run(t, on_start)
    if forget:
        await executor.forget(t.task_id)
    assert len(handles) == 1 and handles[0].startswith("warm:"), handles
    return result, handles[0].split(":")[1]


def gone(client, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except NotFound:
        return True
    return False


async def test_the_second_task_of_an_image_reuses_the_warm_container(agent_id, docker_client):
    executor = make(agent_id)
    first, c1 = await run(executor, task("w1", "sh", "-c", "echo one $DODOOR_TASK_ID; sleep 60 &"))
    second, c2 = await run(executor, task("w2", "sh", "-c", "echo two $DODOOR_TASK_ID; ps"))
    assert (first.state, second.state) == ("succeeded", "succeeded")
    assert c1 == c2
    assert "two w2" in second.log_tail and "one w1" not in second.log_tail
    assert "sleep 60" not in second.log_tail  # the first task's leftovers were killed
    container = docker_client.containers.get(c1)
    assert container.labels[WARM_LABEL] == BUSYBOX_IMAGE
    await executor.close()
    assert gone(docker_client, c1)  # shutdown removes the pool


async def test_a_function_task_runs_warm_on_the_python_image(agent_id):
    executor = make(agent_id)
    first, c1 = await run(executor, Task("f1", 1.0, 256, function="matmul", command=("64",)))
    second, c2 = await run(executor, Task("f2", 1.0, 256, function="floatops",
                                          command=("1000",)))
    await executor.close()
    assert (first.state, second.state) == ("succeeded", "succeeded"), (first, second)
    assert c1 == c2


async def test_limits_are_set_per_task(agent_id, docker_client):
    executor = make(agent_id)
    _, c1 = await run(executor, task("l1", "true", cores=0.5, memory_mb=32))
    _, c2 = await run(executor, task("l2", "true", cores=1.0, memory_mb=48))
    host = docker_client.containers.get(c2).attrs["HostConfig"]
    await executor.close()
    assert c1 == c2
    assert (host["CpuPeriod"], host["CpuQuota"]) == (100_000, 100_000)
    assert host["Memory"] == host["MemorySwap"] == 48 * 1024 * 1024
    assert (host["NetworkMode"], host["CapDrop"], host["Privileged"]) == ("none", ["ALL"], False)


async def test_a_task_killed_by_its_memory_limit_discards_the_container(agent_id, docker_client):
    executor = make(agent_id)
    _, c1 = await run(executor, task("m0", "true"))
    oom, c2 = await run(executor, task("m1", "dodoor-task", "touch", "128", memory_mb=16),
                        forget=False)
    assert c1 == c2
    assert (oom.state, oom.exit_code) == ("failed", 137)
    assert "memory limit of 16m" in oom.reason
    assert not gone(docker_client, c1)  # kept until the result is journaled
    await executor.forget("m1")
    assert gone(docker_client, c1)
    after, c3 = await run(executor, task("m2", "true"))
    await executor.close()
    assert after.state == "succeeded" and c3 != c1


async def test_an_idle_container_is_reaped_after_the_timeout(agent_id, docker_client):
    executor = make(agent_id, warm_idle_s=0.5)
    _, c1 = await run(executor, task("i1", "true"))
    deadline = time.monotonic() + 20
    while not gone(docker_client, c1) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert gone(docker_client, c1)
    await executor.close()


async def test_cancelling_a_warm_task_removes_its_container(agent_id, docker_client):
    executor = make(agent_id)
    started: list[str] = []

    async def on_start(handle: str) -> None:
        started.append(handle.split(":")[1])

    job = asyncio.ensure_future(executor.run(task("c1", "sleep", "60"), on_start))
    while not started:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert time.monotonic() - t0 < 15
    assert gone(docker_client, started[0])
    await executor.close()


async def test_a_warm_task_past_its_wall_limit_times_out(agent_id, docker_client):
    executor = make(agent_id, timeout_ms=1500)
    t0 = time.monotonic()
    result, c1 = await run(executor, task("t1", "sh", "-c", "echo begun; sleep 60"),
                           forget=False)
    assert time.monotonic() - t0 < 20
    assert (result.state, result.exit_code, result.reason) == ("failed", 137,
                                                               "timed out after 1.5 s")
    assert "begun" in result.log_tail
    await executor.forget("t1")
    assert gone(docker_client, c1)
    await executor.close()


async def test_after_a_crash_an_ended_job_is_collected_and_a_running_one_killed(agent_id,
                                                                             docker_client):
    crashed = make(agent_id)
    done_task = task("d1", "sh", "-c", "echo fin; exit 4")
    busy_task = task("b1", "sleep", "60", memory_mb=24)
    handles: dict[str, str] = {}

    def hook(task_id):
        async def on_start(handle: str) -> None:
            handles[task_id] = handle
        return on_start

    done = await crashed.run(done_task, hook("d1"))  # its result never reached the journal
    assert done.exit_code == 4
    busy = asyncio.ensure_future(crashed.run(busy_task, hook("b1")))
    while "b1" not in handles:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    # the agent dies: nothing of its pool is cleaned up
    restarted = make(agent_id)
    adopted = await restarted.reconcile([Interrupted(done_task, "running", handles["d1"]),
                                         Interrupted(busy_task, "running", handles["b1"])])
    assert [(a.task_id, a.running, a.result.exit_code) for a in adopted] == [("d1", False, 4)]
    assert gone(docker_client, handles["b1"].split(":")[1])
    old = await busy  # the old agent's wait ends with its container
    assert (old.state, old.reason.startswith("warm container failed")) == ("failed", True)
    await restarted.forget("d1")
    assert labelled(docker_client, agent_id) == []
    await restarted.close()
    crashed._wait_pool.shutdown(wait=False)
