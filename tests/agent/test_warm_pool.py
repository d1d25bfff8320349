"""The warm pool's bookkeeping against a fake runtime (no Docker): reuse, limits,
bounds, discarding what misbehaves, idle reaping, wall limits, cancel, restart."""

from __future__ import annotations

import asyncio
import threading
from typing import Sequence

import pytest

from dodoor.resources import Task
from node_agent.docker_spec import DockerSettings, wants_warm
from node_agent.executor import Adopted, Interrupted
from node_agent.warm_pool import RunnerError, WarmPool


class FakeRuntime:
    """Containers as ids; a job's first word decides how it ends:
    ``ok`` 0, ``exit N`` N, ``die`` the runner ends, ``hang`` until killed."""

    def __init__(self, refuse_update: bool = False) -> None:
        self.refuse_update = refuse_update
        self.limits: dict[str, tuple[float, str]] = {}
        self.log: list[tuple[str, ...]] = []
        self.running: dict[str, bool] = {}
        self.finished: dict[tuple[str, str], int] = {}
        self._killed: dict[str, threading.Event] = {}

    def create(self, image: str, cores: float, memory: str) -> str:
        cid = f"c{len(self.limits)}"
        self.limits[cid] = (cores, memory)
        self.running[cid] = True
        self._killed[cid] = threading.Event()
        self.log.append(("create", cid, image))
        return cid

    def update(self, cid: str, cores: float, memory: str) -> None:
        self.log.append(("update", cid, f"{cores:g}", memory))
        if self.refuse_update:
            raise RuntimeError(f"cannot lower the memory of {cid} to {memory}")
        self.limits[cid] = (cores, memory)

    def run(self, cid: str, job: str, command: Sequence[str], env: dict[str, str],
            output: bytearray) -> int:
        self.log.append(("run", cid, *command))
        output += f"{env.get('DODOOR_TASK_ID', '')} ran\n".encode()
        if command[0] == "hang":
            self._killed[cid].wait(10)
            raise RunnerError("the runner ended")
        if command[0] == "die":
            raise RunnerError("the runner ended")
        return 0 if command[0] == "ok" else int(command[1])

    def kill(self, cid: str) -> None:
        self.log.append(("kill", cid))
        self.running[cid] = False
        self._killed[cid].set()

    def remove(self, cid: str) -> None:
        self.log.append(("remove", cid))
        self.running.pop(cid, None)
        self._killed[cid].set()

    def listed(self) -> list[tuple[str, bool]]:
        return list(self.running.items())

    def finished_job(self, cid: str, job: str) -> tuple[int, str] | None:
        code = self.finished.get((cid, job))
        return None if code is None else (code, "")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pool(runtime: FakeRuntime, per_image: int = 2, idle_s: float = 60.0,
         clock: Clock | None = None) -> WarmPool:
    jobs = iter(f"j{i}" for i in range(1000))
    return WarmPool(runtime, per_image, idle_s, clock=clock or Clock(), job_ids=lambda: next(jobs))


async def go(p: WarmPool, task_id: str, *command: str, image: str = "img", cores: float = 1.0,
             memory: str = "64m", limit_s: float = 5.0, forget: bool = True):
    handles: list[str] = []

    async def on_start(handle: str) -> None:
        handles.append(handle)

    result = await p.run(task_id, image, command, {"DODOOR_TASK_ID": task_id}, cores, memory,
                         limit_s, on_start)
    if forget:
        await p.forget(task_id)
    return result, handles


async def test_second_task_of_an_image_reuses_the_container_and_the_handle_names_it():
    rt = FakeRuntime()
    p = pool(rt)
    first, h1 = await go(p, "t1", "ok")
    second, h2 = await go(p, "t2", "ok")
    other, h3 = await go(p, "t3", "ok", image="other")
    assert (first.state, second.state, other.state) == ("succeeded",) * 3
    assert second.log_tail == "t2 ran\n"
    assert (h1, h2, h3) == (["warm:c0:j0"], ["warm:c0:j1"], ["warm:c1:j2"])
    assert [e for e in rt.log if e[0] == "create"] == [("create", "c0", "img"),
                                                      ("create", "c1", "other")]
    assert p.created == 2


async def test_limits_are_updated_only_when_they_differ_and_a_refusal_discards_the_container():
    rt = FakeRuntime()
    p = pool(rt)
    await go(p, "t1", "ok")
    await go(p, "t2", "ok")
    await go(p, "t3", "ok", cores=0.5, memory="32m")
    assert [e for e in rt.log if e[0] == "update"] == [("update", "c0", "0.5", "32m")]
    assert rt.limits["c0"] == (0.5, "32m")
    rt.refuse_update = True
    result, handles = await go(p, "t4", "ok", memory="16m")
    assert result.state == "succeeded" and handles == ["warm:c1:j3"]
    assert ("remove", "c0") in rt.log and rt.limits["c1"] == (1.0, "16m")


async def test_the_pool_keeps_at_most_per_image_idle_containers():
    rt = FakeRuntime()
    p = pool(rt, per_image=2)
    results = await asyncio.gather(*(go(p, f"t{i}", "ok", forget=False) for i in range(3)))
    assert all(r.state == "succeeded" for r, _ in results)
    for i in range(3):
        await p.forget(f"t{i}")
    assert [b.id for b in p.idle["img"]] == ["c0", "c1"]
    assert rt.log[-1] == ("remove", "c2")


@pytest.mark.parametrize("command, reason", [
    (("exit", "137"), "killed by SIGKILL (exit code 137): most likely its memory limit of 64m"),
    (("die",), "warm container failed: the runner ended"),
])
async def test_a_misbehaving_container_is_killed_held_until_forget_then_removed(command, reason):
    rt = FakeRuntime()
    p = pool(rt)
    result, _ = await go(p, "t1", *command, forget=False)
    assert (result.state, result.reason) == ("failed", reason)
    assert rt.log[-1] == ("kill", "c0")  # its result is not journaled yet: kept
    await p.forget("t1")
    assert rt.log[-1] == ("remove", "c0") and p.idle.get("img") == []
    await go(p, "t2", "ok")
    assert ("create", "c1", "img") in rt.log


async def test_a_task_failing_on_its_own_keeps_the_container_warm():
    rt = FakeRuntime()
    p = pool(rt)
    result, _ = await go(p, "t1", "exit", "3")
    assert (result.state, result.exit_code, result.reason) == ("failed", 3, "exit code 3")
    assert [b.id for b in p.idle["img"]] == ["c0"]


async def test_idle_containers_are_reaped_after_the_timeout_only():
    rt = FakeRuntime()
    clock = Clock()
    p = pool(rt, idle_s=10.0, clock=clock)
    await go(p, "t1", "ok", image="a")
    clock.now = 6.0
    await go(p, "t2", "ok", image="b")
    clock.now = 10.0
    assert await p.reap() == 1
    assert rt.log[-1] == ("remove", "c0") and [b.id for b in p.idle["b"]] == ["c1"]
    clock.now = 15.9
    assert await p.reap() == 0
    clock.now = 16.0
    assert await p.reap() == 1 and p.idle == {"a": [], "b": []}


async def test_past_its_wall_limit_a_warm_task_times_out_and_its_container_goes():
    rt = FakeRuntime()
    p = pool(rt)
    result, _ = await go(p, "t1", "hang", limit_s=0.05, forget=False)
    assert (result.state, result.exit_code, result.reason) == ("failed", 137,
                                                               "timed out after 0.05 s")
    assert result.log_tail == "t1 ran\n"
    await p.forget("t1")
    assert rt.log[-2:] == [("kill", "c0"), ("remove", "c0")]


async def test_a_cancelled_warm_task_has_its_container_removed():
    rt = FakeRuntime()
    p = pool(rt)
    task = asyncio.ensure_future(go(p, "t1", "hang", forget=False))
    while ("run", "c0", "hang") not in rt.log:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rt.log[-2:] == [("kill", "c0"), ("remove", "c0")]
    assert p.held == {} and p.idle == {}


def row(task_id: str, handle: str | None) -> Interrupted:
    return Interrupted(Task(task_id, 1.0, 64.0), "running", handle)


async def test_restart_collects_ended_jobs_and_removes_every_warm_container():
    rt = FakeRuntime()
    for _ in range(4):
        rt.create("img", 1.0, "64m")
    rt.finished[("c0", "j9")] = 3  # ended while the agent was down
    rt.running["c2"] = False  # killed at its wall limit before the result was journaled
    p = pool(rt)
    adopted = await p.reconcile([row("done", "warm:c0:j9"), row("busy", "warm:c1:j8"),
                                 row("killed", "warm:c2:j7"), row("cold", "container-id")])
    assert adopted == [
        Adopted("done", running=False, result=adopted[0].result),
        Adopted("killed", running=False, result=adopted[1].result)]
    assert (adopted[0].result.state, adopted[0].result.exit_code) == ("failed", 3)
    assert adopted[1].result.exit_code == 137
    # the running job and the stray container go now; the ended ones once journaled
    assert [e for e in rt.log if e[0] == "remove"] == [("remove", "c1"), ("remove", "c3")]
    await p.forget("done")
    await p.forget("killed")
    assert rt.running == {} and p.idle.get("") == []


async def test_close_removes_idle_and_held_containers():
    rt = FakeRuntime()
    p = pool(rt)
    await go(p, "t1", "ok")
    await go(p, "t2", "ok", image="other", forget=False)
    await p.close()
    assert rt.running == {} and p.idle == {} and p.held == {}


def test_a_task_opts_in_or_out_by_label_else_by_image_and_multiline_jobs_run_cold():
    s = DockerSettings(warm_images=frozenset({"dodoor-task:python"}))
    t = Task("t", 1.0, 64.0)
    assert wants_warm(s, t, "dodoor-task:python", ["matmul"])
    assert not wants_warm(s, t, "dodoor-task:busybox", ["true"])
    on = Task("t", 1.0, 64.0, labels={"warm": "true"})
    off = Task("t", 1.0, 64.0, labels={"warm": "False"})
    assert wants_warm(s, on, "dodoor-task:busybox", ["true"])
    assert not wants_warm(s, off, "dodoor-task:python", ["matmul"])
    assert not wants_warm(s, on, "dodoor-task:busybox", ["sh", "-c", "a\nb"])
    assert not wants_warm(s, Task("t", 1.0, 64.0, env={"A-B": "x"}, labels={"warm": "true"}),
                          "dodoor-task:busybox", ["true"])
    assert not wants_warm(DockerSettings(warm_per_image=0), on, "dodoor-task:busybox", ["true"])
    with pytest.raises(ValueError, match="'img:1'"):
        DockerSettings(warm_images=frozenset({"img:1"}))
