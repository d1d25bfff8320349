"""DockerExecutor against the real engine and the project's task images."""

from __future__ import annotations

import asyncio
import time

import pytest
from docker.errors import NotFound

from dodoor.resources import Task
from node_agent.docker_executor import (AGENT_LABEL, BUSYBOX_IMAGE, PYTHON_IMAGE, TASK_LABEL,
                                        DockerExecutor, DockerSettings)
from node_agent.executor import Executor, TaskResult
from tests.docker.conftest import labelled

# The first test also builds the images (about 2.5 min from nothing): allow for it.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


def make(agent_id: str, **overrides) -> DockerExecutor:
    return DockerExecutor(DockerSettings(agent_id=agent_id, **overrides))


async def run(executor: DockerExecutor, t: Task) -> TaskResult:
    """What the agent does: run, journal the result (not here), then forget the container."""
    result = await executor.run(t)
    await executor.forget(t.task_id)
    return result


def task(task_id: str, *command: str, cores: float = 0.5, memory_mb: float = 64,
         **fields) -> Task:
    return Task(task_id, cores, memory_mb, duration_ms=500.0,
                command=tuple(command) if command else None, **fields)


async def wait_for_container(client, agent_id: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(labelled, client, agent_id)
        if found:
            try:
                return await asyncio.to_thread(client.containers.get, found[0].id)
            except NotFound:
                pass  # listed while the engine was still registering it: look again
        await asyncio.sleep(0.05)
    raise AssertionError(f"no container of agent {agent_id} appeared in {timeout} s")


async def test_is_an_executor(agent_id):
    executor = make(agent_id)
    assert isinstance(executor, Executor)
    await executor.close()


async def test_success_with_output(agent_id):
    executor = make(agent_id)
    result = await run(executor, task("ok-1", "sh", "-c", "echo hello from $DODOOR_TASK_ID"))
    await executor.close()
    assert result.state == "succeeded"
    assert result.exit_code == 0
    assert result.reason is None
    assert "hello from ok-1" in result.log_tail


async def test_task_without_command_sleeps_its_duration(agent_id):
    executor = make(agent_id, sleep_scale=0.5)
    start = time.monotonic()
    result = await run(executor, Task("dur-1", 0.2, 16, duration_ms=2000.0))
    elapsed = time.monotonic() - start
    await executor.close()
    assert result.state == "succeeded"
    assert elapsed >= 1.0  # 2000 ms scaled by 0.5


async def test_limits_visible_in_inspect(agent_id, docker_client):
    executor = make(agent_id)
    job = asyncio.ensure_future(run(
        executor, task("lim-1", "dodoor-task", "sleep", "2", cores=1.5, memory_mb=96,
             labels={"team": "a"})))
    container = await wait_for_container(docker_client, agent_id)
    attrs = container.attrs
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 96 * 1024 * 1024
    assert host["MemorySwap"] == 96 * 1024 * 1024
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("Binds")
    assert attrs["Mounts"] == []
    labels = attrs["Config"]["Labels"]
    assert labels[TASK_LABEL] == "lim-1"
    assert labels[AGENT_LABEL] == agent_id
    assert labels["dodoor.label.team"] == "a"
    assert attrs["Config"]["Image"] == BUSYBOX_IMAGE
    result = await job
    await executor.close()
    assert result.state == "succeeded"


async def test_nonzero_exit(agent_id):
    executor = make(agent_id)
    result = await run(executor, task("bad-1", "dodoor-task", "exit", "3"))
    await executor.close()
    assert result.state == "failed"
    assert result.exit_code == 3
    assert result.reason == "exit code 3"
    assert "exiting with 3" in result.log_tail


async def test_oom_killed(agent_id):
    executor = make(agent_id)
    result = await run(executor, task("oom-1", "dodoor-task", "touch", "256", memory_mb=32))
    await executor.close()
    assert result.state == "failed"
    assert result.reason == "OOM killed"
    assert result.exit_code == 137


async def test_memory_within_limit_succeeds(agent_id):
    executor = make(agent_id)
    result = await run(executor, task("mem-1", "dodoor-task", "touch", "16", memory_mb=128))
    await executor.close()
    assert result.state == "succeeded", result
    assert f"touched {16 * 1024 * 1024} bytes" in result.log_tail


async def test_disallowed_image_fails_the_task(agent_id):
    executor = make(agent_id)
    result = await run(executor, task("img-1", "true", image="debian:bookworm"))
    await executor.close()
    assert result.state == "failed"
    assert "'debian:bookworm' is not allowed" in result.reason


async def test_missing_image_fails_the_task(agent_id):
    missing = "dodoor-task:does-not-exist"
    executor = make(agent_id, allowed_images=frozenset({BUSYBOX_IMAGE, missing}))
    result = await run(executor, task("img-2", "true", image=missing))
    await executor.close()
    assert result.state == "failed"
    assert f"{missing!r} is not present on this host" in result.reason


async def test_named_function_runs_on_the_python_image(agent_id, docker_client):
    executor = make(agent_id)
    job = asyncio.ensure_future(run(
        executor, Task("fn-1", 1.0, 256, function="linsolve", command=("300", "--repeat", "100"))))
    container = await wait_for_container(docker_client, agent_id)
    assert container.attrs["Config"]["Image"] == PYTHON_IMAGE
    result = await job
    await executor.close()
    assert result.state == "succeeded", result
    assert '"function": "linsolve"' in result.log_tail
    assert '"size": 300, "repeat": 100' in result.log_tail


async def test_unknown_function_fails_the_task(agent_id):
    executor = make(agent_id)
    result = await run(executor, Task("fn-2", 1.0, 256, function="fft"))
    await executor.close()
    assert result.state == "failed"
    assert "unknown function 'fft'" in result.reason


async def test_wall_limit(agent_id):
    executor = make(agent_id, min_timeout_ms=1000.0, timeout_factor=0.0)
    result = await run(executor, task("slow-1", "dodoor-task", "sleep", "30"))
    await executor.close()
    assert result.state == "failed"
    assert result.reason == "timed out after 1 s"


async def test_cancel_stops_and_removes(agent_id, docker_client):
    executor = make(agent_id)
    job = asyncio.ensure_future(run(executor, task("cancel-1", "dodoor-task", "sleep", "60")))
    await wait_for_container(docker_client, agent_id)
    start = time.monotonic()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert time.monotonic() - start < 10
    assert labelled(docker_client, agent_id) == []
    await executor.close()


async def test_parallel_tasks(agent_id):
    executor = make(agent_id)
    results = await asyncio.gather(*(
        run(executor, task(f"par-{i}", "sh", "-c", f"sleep 0.5; echo {i}")) for i in range(8)))
    await executor.close()
    assert [r.state for r in results] == ["succeeded"] * 8
    assert [r.log_tail.strip() for r in results] == [str(i) for i in range(8)]


async def test_cpu_quota_capped_at_the_host(agent_id, docker_client):
    # A virtual capacity may exceed the host; the engine would refuse the quota.
    host_cpus = docker_client.info()["NCPU"]
    executor = make(agent_id)
    job = asyncio.ensure_future(run(
        executor, task("big-1", "dodoor-task", "sleep", "1", cores=host_cpus + 6.0)))
    container = await wait_for_container(docker_client, agent_id)
    assert container.attrs["HostConfig"]["NanoCpus"] == host_cpus * 1_000_000_000
    result = await job
    await executor.close()
    assert result.state == "succeeded", result


async def test_waits_do_not_exhaust_the_default_thread_pool(agent_id, docker_client):
    # With the loop's pool at 2 threads, 6 tasks must still all run at once.
    from concurrent.futures import ThreadPoolExecutor

    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
    executor = make(agent_id)
    jobs = [asyncio.ensure_future(run(executor, task(f"pool-{i}", "dodoor-task", "sleep", "4")))
            for i in range(6)]
    most = 0
    deadline = time.monotonic() + 20
    while most < 6 and time.monotonic() < deadline and not all(j.done() for j in jobs):
        found = await asyncio.to_thread(
            docker_client.api.containers, filters={"label": f"{AGENT_LABEL}={agent_id}",
                                                   "status": "running"})
        most = max(most, len(found))
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*jobs)
    await executor.close()
    assert most == 6
    assert [r.state for r in results] == ["succeeded"] * 6


async def test_tiny_task_gets_the_engine_floors(agent_id, docker_client):
    executor = make(agent_id)
    job = asyncio.ensure_future(run(
        executor, task("tiny-1", "dodoor-task", "sleep", "1", cores=0.001, memory_mb=1)))
    container = await wait_for_container(docker_client, agent_id)
    assert container.attrs["HostConfig"]["NanoCpus"] == 100_000_000  # 0.1 CPU: starts in time
    assert container.attrs["HostConfig"]["Memory"] == 6 * 1024 * 1024
    result = await job
    await executor.close()
    assert result.state == "succeeded", result


def test_settings_from_the_agents_settings():
    from node_agent.settings import AgentSettings

    agent = AgentSettings(node_id="node-7", executor="docker", sleep_scale=0.25,
                          task_timeout_ms=1500.0)
    settings = DockerSettings.from_agent(agent)
    assert settings.agent_id == "node-7"
    assert settings.sleep_scale == 0.25
    assert settings.timeout_ms == 1500.0
    assert settings.allowed_images == frozenset({BUSYBOX_IMAGE, PYTHON_IMAGE})
    assert settings.network_mode == "none"


async def test_fixed_wall_limit_from_the_agent(agent_id):
    executor = make(agent_id, timeout_ms=1500.0)
    result = await run(executor, task("slow-2", "dodoor-task", "sleep", "30"))
    await executor.close()
    assert result.state == "failed"
    assert result.reason == "timed out after 1.5 s"


async def test_unreachable_engine_fails_the_task_not_the_agent(tmp_path):
    import docker

    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    executor = DockerExecutor(DockerSettings(agent_id="nowhere"), client=client)
    result = await run(executor, task("gone-1", "true"))
    await executor.close()
    assert result.state == "failed"
    assert result.reason.startswith("docker engine error:")
