"""Shared fixtures for daemon tests: free ports, real processes, fake agents.

* ``free_port()`` — a free TCP port on 127.0.0.1.
* ``spawn`` fixture — ``spawn(["loadstore", "--port", p], port=p)`` starts
  ``python -m dodoor ...`` on loopback, waits for ``GET /healthz`` and kills it
  (SIGTERM, then SIGKILL) at teardown. Returns a :class:`Daemon`.
* ``FakeAgent`` — an in-process aiohttp app speaking the agent side of
  docs/protocol.md, recording what it receives; ``fake_agents`` starts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from dodoor.wire import (
    CONTENT_TYPE, Cancel, CancelTask, Confirm, Enqueue, EnqueueBatch, Lookup, NodeState, Probe, ProbeReply, Reserve,
    TaskStatus, TaskStatuses,
    decode, encode,
)

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, data: Any = None, token: str | None = None, timeout: float = 5.0,
              method: str | None = None) -> tuple[int, Any]:
    """Blocking JSON request (for process tests); returns (status, parsed body)."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


class Daemon:
    """One ``python -m dodoor`` process on loopback."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None,
                 log_path: Path | None = None, cwd: Path | None = None) -> None:
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dodoor", *args], cwd=str(cwd or REPO), env=full_env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.proc.returncode}: {self.log()}")
            try:
                status, body = http_json(self.url + "/healthz", timeout=1.0)
                if status == 200:
                    return body
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"{self.args} not healthy after {timeout}s: {last}; {self.log()}")

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode


@pytest.fixture
def spawn(tmp_path):
    """Factory starting daemons that are stopped at teardown."""
    started: list[Daemon] = []

    def start(args: list[str], port: int, env: dict[str, str] | None = None,
              wait: bool = True) -> Daemon:
        name = f"{args[0]}-{port}.log"
        # run in the test's own directory: default files (agent journals) land there
        daemon = Daemon(args, port, env, tmp_path / name, cwd=tmp_path)
        started.append(daemon)
        if wait:
            daemon.wait_healthy()
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.stop()


class FakeAgent:
    """The agent side of docs/protocol.md, in-process, recording what arrives.

    ``fail_enqueue`` answers enqueues with 503; ``script`` scripts the next
    enqueue requests (see :meth:`_scripted`); ``posted_ids`` lists every id of
    every enqueue request, repeats included; ``batch=False`` leaves out
    ``/internal/enqueue_batch`` (404, as an agent without batching); ``auto_confirm`` makes a
    reservation confirm at once (a node with room); tasks "succeed" as soon as
    they are enqueued unless ``finish`` is False.
    """

    def __init__(self, node_id: str, cores: float = 8, memory_mb: float = 65536,
                 disk_mb: float = 0, slots: int = 1, token: str | None = None,
                 auto_confirm: bool = False, finish: bool = True, batch: bool = True) -> None:
        self.node_id = node_id
        self.capacity = np.array([cores, memory_mb, disk_mb], dtype=np.float64)
        self.slots = slots
        self.token = token
        self.auto_confirm = auto_confirm
        self.finish = finish
        self.fail_enqueue = False
        self.state = np.zeros(5)
        self.enqueued: dict[str, Enqueue] = {}
        self.enqueue_posts = 0
        self.posted_ids: list[str] = []
        self.script: list[str] = []  # may be one list shared by several agents
        self.late_s = 1.0
        self.batch_posts = 0
        self.probes = 0
        self.reserved: dict[str, Reserve] = {}
        self.cancelled: list[str] = []
        self.confirm_replies: list[tuple[int, Any]] = []
        self.url = ""
        self.seq = 0
        self.unauthorized = 0
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_post("/internal/enqueue", self._enqueue)
        if batch:
            self.app.router.add_post("/internal/enqueue_batch", self._enqueue_batch)
        self.app.router.add_post("/internal/probe", self._probe)
        self.app.router.add_post("/internal/reserve", self._reserve)
        self.app.router.add_post("/internal/cancel", self._cancel)
        self.app.router.add_get("/v1/tasks/{task_id}", self._status)
        self.app.router.add_post("/internal/status", self._status_batch)
        self.app.router.add_post("/internal/cancel_task", self._cancel_task)
        self.status_batches = 0
        self.cancelled_tasks: set[str] = set()
        self.app.router.add_get("/healthz", self._healthz)

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.token and request.path != "/healthz":
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                self.unauthorized += 1
                return web.json_response({"error": {"field": "authorization",
                                                    "reason": "bad token"}}, status=401)
        return await handler(request)

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": CONTENT_TYPE}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    async def _scripted(self, tasks: list[Enqueue]) -> web.Response:
        """Take ``tasks`` or not, as the next step of ``script`` says (default: take them).

        ``"late"`` takes them and answers 202 after ``late_s`` (past the scheduler's
        timeout: a paused agent); ``"drop"`` answers after ``late_s`` without taking
        them; ``"503"`` refuses them; ``"404"`` answers as an agent without the path.
        """
        self.posted_ids.extend(e.task.task_id for e in tasks)
        step = self.script.pop(0) if self.script else "take"
        if self.fail_enqueue or step in ("503", "404"):
            status = 503 if self.fail_enqueue else int(step)
            return web.json_response({"error": {"field": "node", "reason": "down"}}, status=status)
        if step != "drop":
            for e in tasks:
                self.enqueued.setdefault(e.task.task_id, e)
        if step in ("late", "drop"):
            await asyncio.sleep(self.late_s)
        return web.Response(status=202)

    async def _enqueue(self, request: web.Request) -> web.Response:
        self.enqueue_posts += 1
        return await self._scripted([decode(await request.read(), Enqueue)])

    async def _enqueue_batch(self, request: web.Request) -> web.Response:
        self.batch_posts += 1
        msg = decode(await request.read(), EnqueueBatch)
        return await self._scripted([Enqueue(t, msg.scheduler_id) for t in msg.tasks])

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _probe(self, request: web.Request) -> web.Response:
        decode(await request.read(), Probe)
        self.probes += 1
        return web.Response(body=encode(ProbeReply(self.node_id, self.state)),
                            content_type=CONTENT_TYPE)

    async def _reserve(self, request: web.Request) -> web.Response:
        msg = decode(await request.read(), Reserve)
        self.reserved[msg.task.task_id] = msg
        return web.Response(status=202)

    async def confirm(self, task_id: str) -> tuple[int, Any]:
        """POST Confirm for a held reservation, as an agent with room does."""
        res = self.reserved[task_id]
        async with aiohttp.ClientSession() as s:
            async with s.post(res.reply_url, data=encode(Confirm(self.node_id, task_id)),
                              headers=self.headers()) as resp:
                body = await resp.read()
                reply = decode(body, Enqueue) if resp.status == 200 else json.loads(body)
                if resp.status == 200:
                    self.enqueued.setdefault(task_id, reply)
                self.confirm_replies.append((resp.status, reply))
                return resp.status, reply

    async def _cancel(self, request: web.Request) -> web.Response:
        self.cancelled.append(decode(await request.read(), Cancel).task_id)
        return web.Response(status=204)

    def _task_status(self, task_id: str) -> TaskStatus:
        done = self.finish
        return TaskStatus(task_id, "succeeded" if done else "queued", self.node_id,
                          queued_ms=1.0, started_ms=2.0 if done else None,
                          finished_ms=3.0 if done else None, exit_code=0 if done else None)

    async def _status(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        if task_id not in self.enqueued:
            return web.json_response({"error": {"field": "id", "reason": "unknown"}}, status=404)
        st = self._task_status(task_id)
        if CONTENT_TYPE not in request.headers.get("Accept", ""):
            return web.json_response({"id": task_id, "state": st.state, "node": self.node_id,
                                      "log_tail": f"output of {task_id}\n"})
        return web.Response(body=encode(st), content_type=CONTENT_TYPE)

    async def _cancel_task(self, request: web.Request) -> web.Response:
        msg = decode(await request.read(), CancelTask)
        if msg.task_id not in self.enqueued:
            return web.json_response({"error": {"field": "id", "reason": "unknown"}}, status=404)
        st = self._task_status(msg.task_id)
        if not self.finish:  # still queued here: it ends cancelled
            self.cancelled_tasks.add(msg.task_id)
        if msg.task_id in self.cancelled_tasks:
            st = TaskStatus(msg.task_id, "cancelled", self.node_id, reason=msg.reason)
        return web.Response(body=encode(st), content_type=CONTENT_TYPE)

    async def _status_batch(self, request: web.Request) -> web.Response:
        msg = decode(await request.read(), Lookup)
        self.status_batches += 1
        held = [t for t in msg.task_ids if t in self.enqueued]
        reply = TaskStatuses(tuple(self._task_status(t) for t in held),
                             tuple(t for t in msg.task_ids if t not in self.enqueued))
        return web.Response(body=encode(reply), content_type=CONTENT_TYPE)

    def node_state(self) -> NodeState:
        self.seq += 1
        # it holds no ids it has not reported: the store's index is complete for it
        return NodeState(self.node_id, self.url, self.seq, self.capacity, self.slots, self.state,
                         task_ids_complete=True)

    async def report(self, loadstore_url: str, task_ids: tuple[str, ...] = ()) -> None:
        msg = dataclasses.replace(self.node_state(), task_ids=task_ids)
        async with aiohttp.ClientSession() as s:
            async with s.post(loadstore_url + "/internal/node_state",
                              data=encode(msg), headers=self.headers()) as resp:
                assert resp.status == 200, resp.status


@pytest.fixture
async def fake_agents(aiohttp_server):
    """Factory: ``await fake_agents(FakeAgent("node-0"), ...)`` starts them on loopback."""

    async def start(*agents: FakeAgent) -> list[FakeAgent]:
        for agent in agents:
            server = await aiohttp_server(agent.app, host="127.0.0.1", port=free_port())
            agent.url = str(server.make_url("")).rstrip("/")
        return list(agents)

    return start


async def wait_for(predicate, timeout: float = 15.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
