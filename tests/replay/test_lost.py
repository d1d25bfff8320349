"""Lost tasks are resubmitted once per loss (same id), bounded; a fake scheduler on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import msgpack
import pytest
from aiohttp import web

from dodoor.resources import Task
from dodoor.tools.replay import ReplaySettings, replay

pytestmark = pytest.mark.timeout(60)


class FakeScheduler:
    """Speaks the client side of the scheduler API. Like the real one it answers a
    known id with its remembered placement; a task it reports lost is forgotten
    (its node is gone), so resubmitting it places it again."""

    def __init__(self, lose_once=(), lose_always=(), refuse_once=(), reserved=()) -> None:
        self.reserved = set(reserved)  # answered like a Sparrow reservation: node None
        self.lose_once, self.lose_always = set(lose_once), set(lose_always)
        self.refuse_once = set(refuse_once)
        self.placed: dict[str, dict] = {}
        self.submissions: Counter[str] = Counter()
        self.placements: Counter[str] = Counter()
        self.status_reads: Counter[str] = Counter()
        self.status_requests = 0
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/tasks", self.submit)
        app.router.add_post("/v1/tasks/status", self.statuses)
        app.router.add_get("/v1/nodes", self.nodes)
        app.router.add_get("/metrics", self.metrics)
        return app

    async def submit(self, request: web.Request) -> web.Response:
        body = msgpack.unpackb(await request.read())
        out, failed = [], False
        for t in body["tasks"]:
            tid = t["id"]
            self.submissions[tid] += 1
            if tid in self.refuse_once:
                self.refuse_once.discard(tid)
                out.append({"id": tid, "node": None, "error": "agent busy"})
                failed = True
                continue
            if tid not in self.placed:
                now = time.time() * 1000.0
                self.placements[tid] += 1
                self.placed[tid] = {"queued_ms": now, "started_ms": now + 1.0,
                                    "finished_ms": now + 1.0 + t["duration_ms"]}
            out.append({"id": tid, "node": None if tid in self.reserved else "node-0"})
        return web.json_response({"placements": out}, status=503 if failed else 202)

    async def statuses(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert body["wait_s"] == 0  # replay schedules its own reads: no long poll
        self.status_requests += 1
        tasks, errors = [], []
        for tid in body["ids"]:
            self.status_reads[tid] += 1
            if tid not in self.placed:
                errors.append({"id": tid, "status": 404, "reason": "unknown"})
            elif tid in self.lose_always or tid in self.lose_once:
                self.lose_once.discard(tid)
                del self.placed[tid]
                tasks.append({"id": tid, "state": "lost", "node": "node-0",
                              "reason": "node node-0 is gone"})
            else:
                times = self.placed[tid]
                state = "succeeded" if time.time() * 1000.0 >= times["finished_ms"] else "running"
                tasks.append({"id": tid, "state": state, "node": "node-0", **times})
        return web.json_response({"tasks": tasks, "errors": errors})

    async def nodes(self, request: web.Request) -> web.Response:
        return web.json_response({"nodes": [{
            "id": "node-0", "url": self.url, "slots": 4,
            "capacity": {"cores": 4.0, "memory_mb": 8192.0, "disk_mb": 1000.0}}]})

    async def metrics(self, request: web.Request) -> web.Response:
        n = sum(self.placements.values())
        return web.Response(text=f'# TYPE dodoor_messages_total counter\n'
                                 f'dodoor_messages_total{{type="enqueue"}} {n}.0\n')


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _run(fake: FakeScheduler, tasks, **kw):
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = _port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        settings = ReplaySettings(urls=(fake.url,), poll_s=0.05, retry_s=0.05, timeout_s=20.0, **kw)
        return await replay(tasks, settings, progress=None)
    finally:
        await runner.cleanup()


def _tasks(n: int) -> list[Task]:
    return [Task(f"t{i}", 1.0, 128.0, duration_ms=20.0, arrival_ms=5.0 * i) for i in range(n)]


def test_lost_task_is_resubmitted_once_and_placed_once_more():
    fake = FakeScheduler(lose_once={"t3"})
    result = asyncio.run(_run(fake, _tasks(10)))
    assert result.states == {"succeeded": 10}
    assert result.resubmits == 1
    assert fake.submissions["t3"] == 2 and fake.placements["t3"] == 2
    # every other task went out once and was placed once: nothing runs twice
    assert all(fake.submissions[f"t{i}"] == 1 for i in range(10) if i != 3)
    assert all(fake.placements[f"t{i}"] == 1 for i in range(10) if i != 3)
    # the record of t3 is its second (successful) run, its submit the first send
    arr = result.records.arrays()
    assert arr["placed_ms"][3] > arr["submit_ms"][3]
    assert result.counts["enqueue"] == 11


def test_resubmissions_are_bounded():
    fake = FakeScheduler(lose_always={"t1"})
    result = asyncio.run(_run(fake, _tasks(3), max_resubmits=2))
    assert result.states == {"succeeded": 2, "lost": 1}
    assert fake.submissions["t1"] == 3  # the first send and two resubmissions
    summary = result.summary("fake")
    assert summary["tasks"] == 3 and summary["settings"]["states"]["lost"] == 1


def test_unplaced_task_of_a_partial_batch_is_sent_again():
    fake = FakeScheduler(refuse_once={"t0"})
    tasks = [Task(f"t{i}", 1.0, 128.0, duration_ms=10.0, arrival_ms=0.0) for i in range(4)]
    result = asyncio.run(_run(fake, tasks))
    assert result.states == {"succeeded": 4}
    assert fake.submissions == {"t0": 2, "t1": 1, "t2": 1, "t3": 1}
    assert result.resubmits == 0  # a refused send is a retry, not a loss


def test_reservation_without_a_node_yet_is_followed_not_resent():
    fake = FakeScheduler(reserved={"t1"})
    result = asyncio.run(_run(fake, _tasks(3)))
    assert result.states == {"succeeded": 3}
    assert fake.submissions == {"t0": 1, "t1": 1, "t2": 1}


def test_tasks_due_together_are_read_in_one_batch_status_request():
    fake = FakeScheduler()
    tasks = [Task(f"t{i}", 1.0, 128.0, duration_ms=20.0, arrival_ms=0.0) for i in range(20)]
    result = asyncio.run(_run(fake, tasks))
    assert result.states == {"succeeded": 20}
    # one submission and one status request for all twenty, each id read once
    assert sum(fake.submissions.values()) == 20
    assert fake.status_requests == 1
    assert fake.status_reads == {f"t{i}": 1 for i in range(20)}
