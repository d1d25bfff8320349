"""Helpers for the agent tests: a gated executor, wire posting, fake peers."""

from __future__ import annotations

import asyncio
from typing import Sequence

import pytest
from aiohttp import web

from dodoor.resources import Task
from dodoor.wire import CONTENT_TYPE, Enqueue, ReportAck, decode, encode
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult
from node_agent.settings import AgentSettings


class GatedExecutor:
    """Runs each task until the test releases it, so starts and ends are decided by the test.

    Each started task reports the handle ``gated:<id>`` through ``on_start``; the
    agent's ``forget`` calls (``forgotten``) and the rows ``reconcile`` got
    (``interrupted``) are recorded. ``release`` (the test's) ends a task.
    """

    name = "gated"
    outlives_agent = True

    def __init__(self) -> None:
        self.started: list[str] = []
        self._gates: dict[str, asyncio.Future] = {}
        self.adopt: list[Adopted] = []
        self.adopted_results: dict[str, TaskResult] = {}
        self.interrupted: list[Interrupted] = []
        self.forgotten: list[str] = []

    def _gate(self, task_id: str) -> asyncio.Future:
        if task_id not in self._gates:
            self._gates[task_id] = asyncio.get_running_loop().create_future()
        return self._gates[task_id]

    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult:
        self.started.append(task.task_id)
        if on_start is not None:
            await on_start(f"gated:{task.task_id}")
        return await self._gate(task.task_id)

    def release(self, task_id: str, result: TaskResult | None = None) -> None:
        self._gate(task_id).set_result(result or TaskResult("succeeded", exit_code=0))

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        self.interrupted = list(interrupted)
        return list(self.adopt)

    async def forget(self, task_id: str) -> None:
        self.forgotten.append(task_id)

    async def wait_adopted(self, task_id: str) -> TaskResult:
        self.started.append(f"adopted:{task_id}")
        return await self._gate(task_id)

    async def close(self) -> None:
        return None


def make_task(tid: str, cores: float = 1.0, memory_mb: float = 100.0, duration_ms: float = 1000.0,
              **kw) -> Task:
    return Task(tid, cores, memory_mb, 0.0, duration_ms, **kw)


async def post(client, path: str, msg, **kw):
    return await client.post(path, data=encode(msg), headers={"Content-Type": CONTENT_TYPE}, **kw)


async def enqueue(client, task: Task, scheduler: str = "sched-0"):
    return await post(client, "/internal/enqueue", Enqueue(task, scheduler))


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.005):
    """Poll an (async or sync) predicate until it is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def all_ended(agent) -> None:
    """Wait until nothing runs on ``agent`` and every end is committed to its journal
    (a task's end frees its slot before its commit; docs/throughput.md)."""
    await wait_for(lambda: agent.queue.n_running == 0 and not agent.committing)


class FakeLoadStore:
    """Records every NodeState it receives; can be told to fail."""

    def __init__(self) -> None:
        self.states: list = []
        self.status = 204
        self.wants_load: bool | None = None  # None: answer with an empty 204, as older stores did
        self.fenced: set[str] = set()  # incarnations answered ``fenced``
        self.kept: set[str] = set()  # ended ids a fenced answer says the store heard
        self.instance = "store-1"
        self.auth_seen: set[str | None] = set()  # the reports' Authorization headers
        self.app = web.Application()
        self.app.router.add_post("/internal/node_state", self._node_state)

    async def _node_state(self, request: web.Request) -> web.Response:
        self.auth_seen.add(request.headers.get("Authorization"))
        self.states.append(decode(await request.read()))
        if self.wants_load is None or self.status >= 300:
            return web.Response(status=self.status)
        msg = self.states[-1]
        fenced = msg.incarnation in self.fenced
        kept = tuple(t for t, s in zip(msg.task_ids, msg.task_states) if s and t in self.kept)
        return web.Response(body=encode(ReportAck(self.wants_load, fenced=fenced, lease_ms=60_000.0,
                                                  instance=self.instance,
                                                  kept=kept if fenced else ())),
                            content_type=CONTENT_TYPE)


class FakeScheduler:
    """Answers Sparrow confirms: with the task (Enqueue) or 409 for ids in ``refuse``."""

    def __init__(self) -> None:
        self.confirms: list = []
        self.tasks: dict[str, Task] = {}
        self.refuse: set[str] = set()
        self.app = web.Application()
        self.app.router.add_post("/internal/confirm", self._confirm)

    async def _confirm(self, request: web.Request) -> web.Response:
        msg = decode(await request.read())
        self.confirms.append(msg)
        if msg.task_id in self.refuse:
            return web.Response(status=409)
        return web.Response(body=encode(Enqueue(self.tasks[msg.task_id], "sched-s")),
                            content_type=CONTENT_TYPE)


@pytest.fixture
def agent_settings(tmp_path):
    def build(**kw) -> AgentSettings:
        base = dict(node_id="node-t", cores=4.0, memory_mb=1000.0, disk_mb=0.0, slots=2,
                    journal_path=str(tmp_path / "journal.sqlite"))
        base.update(kw)
        return AgentSettings(**base)

    return build
