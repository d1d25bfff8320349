"""The scheduler daemon: ``create_app(settings)`` (protocol: docs/protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import AsyncIterator

import aiohttp
import numpy as np
from aiohttp import web

from dodoor.clock import Clock, MonotonicClock
from dodoor.errors import NoFitError, ValidationError
from dodoor.messages import MessageCounter
from dodoor.policies.base import PolicyKind
from dodoor.policies.lists import effective_spec
from dodoor.wire import Confirm, Deltas, Register, Snapshot, SnapshotDelta
from dodoor.service.peers import PeerClient, PeerError
from dodoor.service.auth_token import auth_headers
from dodoor.service.http import (BackgroundTasks, daemon_app, json_error, metrics_handler,
                                 read_message, wire_response)
from scheduler.paths.reservation import ASK_AGAIN
from scheduler.cancel import cancel_task
from scheduler.intake import BodyError, parse_submission
from scheduler.metrics import SubmitMetrics, make_registry
from scheduler.placer import Placer
from scheduler.settings import SchedulerSettings
from scheduler.status import (MAX_LOG_BYTES, batch_body, fetch_log, follow,
                              parse_status_request, resolve)
from scheduler.view import ClusterView, NoNodesError

log = logging.getLogger(__name__)


class SchedulerState:
    """Everything one scheduler app holds; built in ``create_app``, wired in cleanup_ctx."""

    def __init__(self, settings: SchedulerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = random.Random(settings.seed)
        self.counter = MessageCounter()
        self.metrics = SubmitMetrics()
        self.view = ClusterView(settings.scheduler_id, settings.policy_settings.k)
        # the spec as it runs, --param settings included, so it can be simulated as is
        self.policy_spec = effective_spec(settings.policy, settings.policy_settings)
        self.deltas: asyncio.Queue[Deltas] = asyncio.Queue()
        self.background = BackgroundTasks()
        self.loadstore_reachable = False
        self.registered = False
        self.loadstore_instance: str | None = None
        self.placer: Placer | None = None  # needs the client session (cleanup_ctx)
        self.peers: PeerClient | None = None

    def emit_deltas(self, deltas: Deltas) -> None:
        self.deltas.put_nowait(deltas)

    def health(self) -> dict:
        age = self.view.age_ms(self.clock.now_ms())
        degraded = not self.loadstore_reachable or self.view.snapshot_ms is None
        return {
            "status": "degraded" if degraded else "ok",
            "role": "scheduler", "id": self.settings.scheduler_id,
            "pid": os.getpid(),  # lets a launcher tell its own process from another on the port
            "policy": self.policy_spec,
            "loadstore_reachable": self.loadstore_reachable,
            "snapshot_seq": self.view.snapshot_seq,
            "snapshot_age_ms": age,
            "nodes": self.view.n_nodes,
            **({"durations": self.placer.learned.summary()}
               if self.placer is not None and self.placer.learned is not None else {}),
        }


STATE = web.AppKey("scheduler_state", SchedulerState)


def create_app(settings: SchedulerSettings, clock: Clock | None = None) -> web.Application:
    """The scheduler's aiohttp application."""
    app = daemon_app(settings.token, settings.max_body_bytes)
    state = SchedulerState(settings, clock or MonotonicClock())
    app[STATE] = state
    registry = make_registry(state)
    app.cleanup_ctx.append(_client_ctx)
    app.cleanup_ctx.append(_loops_ctx)
    app.router.add_post("/v1/tasks", submit)
    app.router.add_post("/v1/tasks/status", task_status_batch)
    app.router.add_get("/v1/tasks/{task_id}", task_status)
    app.router.add_delete("/v1/tasks/{task_id}", task_cancel)
    app.router.add_get("/v1/tasks/{task_id}/logs", task_logs)
    app.router.add_get("/v1/nodes", nodes)
    app.router.add_post("/internal/snapshot", snapshot)
    app.router.add_post("/internal/snapshot_delta", snapshot_delta)
    app.router.add_post("/internal/confirm", confirm)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(registry))
    return app


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    s = state.settings
    connector = aiohttp.TCPConnector(limit=s.max_connections, keepalive_timeout=60.0)
    session = aiohttp.ClientSession(connector=connector)
    state.peers = PeerClient(session, state.counter, s.agent_timeout_ms, auth_headers(s.token))
    state.placer = Placer(s, state.view, state.peers, state.rng, state.clock, state.emit_deltas,
                          state.background)
    state.placer.claims.claiming = lambda: state.loadstore_reachable
    log.info("scheduler %s starting: policy=%s url=%s loadstore=%s", s.scheduler_id, s.policy,
             s.url, s.loadstore_url)
    yield
    await state.placer.close()
    await state.background.close()
    await session.close()
    log.info("scheduler %s stopped", s.scheduler_id)


async def _loops_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    async with BackgroundTasks() as loops:
        loops.spawn(_loadstore_loop(state), name="loadstore-watch")
        loops.spawn(_deltas_loop(state), name="deltas-sender")
        yield
    await _flush_deltas(state)


async def _loadstore_loop(state: SchedulerState) -> None:
    """Register until the load store answers; then watch it and re-register after it returns."""
    s = state.settings
    assert state.peers is not None
    base = s.loadstore_url.rstrip("/")
    while True:
        if not state.registered:
            try:
                assert state.placer is not None
                wants_load = state.placer.kind is PolicyKind.CACHED
                await state.peers.send(base + "/internal/register",
                                       Register("scheduler", s.scheduler_id, s.url, wants_load))
                health = await state.peers.get_json(base + "/healthz")
            except PeerError as exc:
                if state.loadstore_reachable:
                    log.warning("load store unreachable: %s", exc)
                state.loadstore_reachable = False
                await asyncio.sleep(s.register_retry_ms / 1000.0)
                continue
            state.registered = state.loadstore_reachable = True
            state.loadstore_instance = health.get("instance") if isinstance(health, dict) else None
            log.info("registered with load store %s", base)
        await asyncio.sleep(s.loadstore_check_ms / 1000.0)
        try:
            health = await state.peers.get_json(base + "/healthz")
        except PeerError as exc:
            log.warning("load store unreachable, placing on the last snapshot: %s", exc)
            state.loadstore_reachable = state.registered = False
            continue
        if isinstance(health, dict) and health.get("instance") != state.loadstore_instance:
            log.info("load store restarted; registering again")
            state.registered = False
            continue
        if not state.loadstore_reachable:
            log.info("load store %s reachable again", base)
        state.loadstore_reachable = True


def merge_deltas(batch: list[Deltas]) -> Deltas:
    """Several delta batches as one message (sent when they queue up under load)."""
    if len(batch) == 1:
        return batch[0]
    acc: dict[str, np.ndarray] = {}
    for d in batch:
        for node, row in zip(d.node_ids, d.deltas):
            if node in acc:
                acc[node] = acc[node] + row
            else:
                acc[node] = np.array(row, dtype=np.float64)
    ids = tuple(acc)
    return Deltas(batch[-1].scheduler_id, batch[-1].seq, ids,
                  np.array([acc[i] for i in ids]), sum(d.placements for d in batch))


async def _deltas_loop(state: SchedulerState) -> None:
    while True:
        batch = [await state.deltas.get()]
        while not state.deltas.empty():
            batch.append(state.deltas.get_nowait())
        await _send_deltas(state, merge_deltas(batch))


async def _send_deltas(state: SchedulerState, msg: Deltas) -> None:
    assert state.peers is not None
    try:
        await state.peers.send(state.settings.loadstore_url.rstrip("/") + "/internal/deltas", msg)
    except PeerError as exc:
        # The store is soft state: it will rebuild from the next node reports.
        log.debug("deltas not delivered: %s", exc)
        state.loadstore_reachable = False


async def _flush_deltas(state: SchedulerState) -> None:
    """On shutdown, hand over what is still queued or unflushed, best effort."""
    pending = []
    while not state.deltas.empty():
        pending.append(state.deltas.get_nowait())
    last = state.view.take_deltas(state.view.cache.flush())
    if last is not None:
        pending.append(last)
    if pending and state.loadstore_reachable:
        await _send_deltas(state, merge_deltas(pending))


# -- handlers ---------------------------------------------------------------

async def submit(request: web.Request) -> web.Response:
    started = time.monotonic()
    state = request.app[STATE]
    placer = state.placer
    assert placer is not None
    body = await request.read()
    made: set[str] = set()
    try:
        tasks, batch = parse_submission(body, request.content_type if body else "",
                                        state.settings.max_batch, made)
        placer.check_fits(tasks, batch)
    except BodyError as exc:
        return json_error(exc.status, exc.field, exc.reason)
    except NoFitError as exc:
        return json_error(422, exc.field, exc.reason)
    except ValidationError as exc:
        return json_error(400, exc.field, exc.reason)
    except NoNodesError as exc:
        return json_error(503, "cluster", str(exc))
    snapshot_age_ms = state.view.age_ms(state.clock.now_ms())
    placements = await placer.place(tasks, made)
    state.metrics.submitted(placements, time.monotonic() - started, snapshot_age_ms)
    body_out = {"placements": [p.as_dict() for p in placements]}
    conflicts = [i for i, p in enumerate(placements) if p.conflict]
    if conflicts:
        first = conflicts[0]
        body_out["error"] = {"field": f"tasks[{first}].id" if batch else "id",
                             "reason": placements[first].error}
        return web.json_response(body_out, status=409)
    failed = [p for p in placements if p.error is not None]
    if failed:
        body_out["error"] = {"field": "node", "reason": f"{len(failed)} task(s) could not be "
                             f"enqueued on any agent; first: {failed[0].error}"}
        return web.json_response(body_out, status=503)
    return web.json_response(body_out, status=202)


async def task_status(request: web.Request) -> web.Response:
    """Any scheduler answers for any task: its own placements from memory, the rest
    through the load store's task index; the node holding the task has the truth."""
    task_id = request.match_info["task_id"]
    res = await resolve(request.app[STATE], [task_id])
    if task_id in res.errors:
        status, reason = res.errors[task_id]
        return json_error(status, "id", reason)
    return web.json_response(res.found[task_id])


async def task_cancel(request: web.Request) -> web.Response:
    """``DELETE /v1/tasks/{id}``: cancel the task wherever it is (scheduler.cancel)."""
    return await cancel_task(request.app[STATE], request.match_info["task_id"])


async def task_status_batch(request: web.Request) -> web.Response:
    """``POST /v1/tasks/status``: many ids, optionally waiting for one of them to end."""
    body = await request.read()
    try:
        ids, wait_s = parse_status_request(body, request.content_type if body else "")
    except ValidationError as exc:
        return json_error(400, exc.field, exc.reason)
    state = request.app[STATE]
    res = await follow(state, ids, wait_s) if wait_s > 0 else await resolve(state, ids)
    return web.json_response(batch_body(res, ids))


async def task_logs(request: web.Request) -> web.Response:
    """``GET /v1/tasks/{id}/logs?max_bytes=N``: the task's output tail."""
    raw = request.query.get("max_bytes", str(MAX_LOG_BYTES))
    try:
        max_bytes = int(raw)
    except ValueError:
        max_bytes = -1
    if not 0 < max_bytes <= MAX_LOG_BYTES:
        return json_error(400, "max_bytes", f"expected 1..{MAX_LOG_BYTES}, got {raw!r}")
    return await fetch_log(request.app[STATE], request.match_info["task_id"], max_bytes)


async def nodes(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(state.view.describe(state.clock.now_ms()))


async def snapshot(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snap, _ = await read_message(request, Snapshot, field="snapshot")
    try:
        leftover = state.view.apply(snap, state.clock.now_ms())
    except ValueError as exc:
        return json_error(400, "snapshot", str(exc))
    state.counter.received("snapshot")
    state.loadstore_reachable = True
    if leftover is not None:
        state.emit_deltas(leftover)
    _dead_nodes_seen(state)
    return web.Response(status=204)


def _dead_nodes_seen(state: SchedulerState) -> None:
    if state.view.dead and state.placer is not None and state.placer.reservations:
        state.placer.forget_dead_targets(state.view.dead)


async def snapshot_delta(request: web.Request) -> web.Response:
    """Changed rows only; 409 when they do not extend what is held (the store resyncs)."""
    state = request.app[STATE]
    msg, _ = await read_message(request, SnapshotDelta, field="snapshot_delta")
    try:
        applied = state.view.apply_delta(msg, state.clock.now_ms())
    except ValueError as exc:
        return json_error(400, "snapshot_delta", str(exc))
    state.counter.received("snapshot")
    state.loadstore_reachable = True
    _dead_nodes_seen(state)
    if not applied:
        return json_error(409, "base_seq", f"holding seq {state.view.snapshot_seq} of epoch "
                          f"{state.view.epoch!r}, got a delta on {msg.base_seq} of {msg.epoch!r}")
    return web.Response(status=204)


async def confirm(request: web.Request) -> web.Response:
    state = request.app[STATE]
    assert state.placer is not None
    msg, _ = await read_message(request, Confirm, field="confirm")
    state.counter.received("confirm")
    enqueue = await state.placer.confirm(msg.node_id, msg.task_id, msg.task)
    if enqueue is None:
        return json_error(409, "task_id", f"task {msg.task_id!r} is not waiting for a confirm")
    if enqueue == ASK_AGAIN:
        return json_error(503, "task_id", f"no verdict for {msg.task_id!r} yet; ask again")
    return wire_response(enqueue)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].health())
