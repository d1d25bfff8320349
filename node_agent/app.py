"""The agent's aiohttp application: endpoints of docs/protocol.md over a NodeAgent.

``create_app(settings, executor=None, clock=None)`` builds everything; the
journal, the agent, the HTTP client session and the reporter loop start and
stop in ``cleanup_ctx`` order, so a shutdown first stops reporting and the
journal's retention loop, then cancels running tasks (left ``running`` in the journal for the next start),
then closes the journal and the session.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import AsyncIterator

import aiohttp
import numpy as np
import psutil
from aiohttp import web
from prometheus_client import CollectorRegistry

from dodoor.clock import Clock, MonotonicClock, WallClock
from dodoor.errors import DecodeError, DodoorError
from dodoor.messages import MessageCounter
from dodoor.resources import FIT_TOLERANCE, RESOURCES, Task
from dodoor.service.http import (BackgroundTasks, daemon_app, json_error, metrics_handler,
                                 read_message, wire_response)
from dodoor.taskindex import PLACED, UNKNOWN
from dodoor.taskstates import QUEUED, RUNNING
from dodoor.wire import (CONTENT_TYPE, Cancel, CancelTask, Confirm, Enqueue, EnqueueBatch, Lookup, LookupReply,
                         NodeState, Probe, Reserve, TaskStatuses, decode, encode)
from node_agent.executor import Executor
from node_agent.handover import HANDOVER, Handover, handle_move, handover_ctx
from node_agent.journal import Journal, JournalError
from node_agent.metrics import make_registry
from node_agent.movable import probe_reply
from node_agent.lease import Lease
from node_agent.node import ASK_AGAIN, NodeAgent, TaskConflict
from node_agent.reporter import Reporter
from node_agent.retention import Retention, unknown_task_reason
from node_agent.settings import AgentSettings

log = logging.getLogger(__name__)

# ids per state report: a restarted store gets a big journal's ids over several reports
MAX_IDS_PER_REPORT = 50_000


class AgentState:
    """Everything one agent app holds; built in ``create_app``, the rest in cleanup_ctx."""

    def __init__(self, settings: AgentSettings, executor: Executor, clock: Clock,
                 lease_clock: Clock) -> None:
        self.settings = settings
        self.executor = executor
        self.clock = clock
        self.lease_clock = lease_clock
        self.counter = MessageCounter()
        self.session: aiohttp.ClientSession | None = None
        self.agent: NodeAgent | None = None
        self.reporter: Reporter | None = None  # None without a load store
        self.registry: CollectorRegistry | None = None
        self.retention: Retention | None = None  # None when results are kept forever


STATE = web.AppKey("agent_state", AgentState)


def create_app(settings: AgentSettings, executor: Executor | None = None,
               clock: Clock | None = None) -> web.Application:
    """The agent's application; ``executor`` and ``clock`` are injectable for tests."""
    app = daemon_app(settings.token, settings.max_body_bytes)
    # the lease measures intervals: monotonic unless a test injects its own clock
    app[STATE] = AgentState(settings, executor if executor is not None else make_executor(settings),
                            clock if clock is not None else WallClock(),
                            clock if clock is not None else MonotonicClock())
    app[HANDOVER] = Handover()
    parts = app[STATE]  # the handover binds to the agent, session and registry made below
    app.cleanup_ctx.extend([_session_ctx, _agent_ctx, _reporter_ctx, _retention_ctx,
                            handover_ctx(lambda: (parts.agent, parts.session, parts.registry))])
    app.router.add_post("/internal/move", handle_move)
    app.router.add_post("/internal/enqueue", handle_enqueue)
    app.router.add_post("/internal/enqueue_batch", handle_enqueue_batch)
    app.router.add_post("/internal/probe", handle_probe)
    app.router.add_post("/internal/reserve", handle_reserve)
    app.router.add_post("/internal/cancel", handle_cancel)
    app.router.add_post("/internal/cancel_task", handle_cancel_task)
    app.router.add_post("/internal/lookup", handle_lookup)
    app.router.add_post("/internal/status", handle_status_batch)
    app.router.add_get("/v1/tasks/{task_id}", handle_task)
    app.router.add_get("/v1/state", handle_state)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    return app


def make_executor(settings: AgentSettings) -> Executor:
    """The executor named by ``settings.executor`` (docker imported only when chosen)."""
    if settings.executor == "sleep":
        from node_agent.sleep_executor import SleepExecutor

        return SleepExecutor(settings.sleep_scale)
    if settings.executor == "process":
        from node_agent.process_executor import ProcessExecutor

        # exit statuses outlive the agent next to its journal (see the executor)
        return ProcessExecutor(timeout_ms=settings.task_timeout_ms,
                               exit_dir=settings.journal_path + ".exits")
    from node_agent.docker_executor import DockerExecutor  # needs the docker SDK and engine

    try:
        return DockerExecutor(settings)
    except Exception as exc:  # the SDK raises its own types for a missing or refusing engine
        raise DodoorError(f"cannot use the docker executor: {exc}") from exc


# -- lifecycle ------------------------------------------------------------------
async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    async with aiohttp.ClientSession(headers=state.settings.auth_headers) as session:
        state.session = session
        yield


async def _agent_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    journal = Journal(settings.journal_path)
    await journal.open()
    # without a load store nobody can declare this node dead, so no lease is needed
    lease = Lease(state.lease_clock, required=bool(settings.loadstore_url))
    agent = NodeAgent(settings.node_id, settings.capacity, settings.slots, state.executor,
                      journal, state.clock, state.counter, settings.journal_keep_finished, lease,
                      settings.preempt)
    agent.confirm = lambda url, node, task: _confirm(state, url, node, task)
    state.agent = agent
    log.info("agent %s starting: capacity cores=%g memory_mb=%g disk_mb=%g slots=%d executor=%s",
             settings.node_id, settings.cores, settings.memory_mb, settings.disk_mb,
             settings.slots, state.executor.name)
    await agent.resume()
    try:
        yield
    finally:
        log.info("agent %s stopping: %d queued, %d running", settings.node_id,
                 agent.queue.n_waiting, agent.queue.n_running)
        await agent.close()
        await state.executor.close()
        await journal.close()


async def _reporter_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings, agent = state.settings, state.agent
    reporter = None
    if settings.loadstore_url:
        reporter = Reporter(state.session, settings.loadstore_url,
                            lambda seq: build_state(state, seq), state.counter,
                            settings.report_interval_ms, settings.heartbeat_ms,
                            on_answer=agent.on_report_answer, clock_ms=state.lease_clock.now_ms)
        state.reporter = reporter
        agent.on_change(reporter.notify)
        agent.want_report = reporter.notify
    state.registry = make_registry(agent, reporter)
    async with BackgroundTasks() as loops:
        if reporter is not None:
            loops.spawn(reporter.run(), name=f"reporter-{settings.node_id}")
            log.info("reporting to %s every <=%g ms", settings.loadstore_url,
                     settings.report_interval_ms)
        yield


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Forget old finished results in the background (not on the write path)."""
    state = app[STATE]
    settings = state.settings
    async with BackgroundTasks() as loops:
        if settings.journal_retention_s > 0:
            state.retention = Retention(state.agent.journal, state.clock,
                                        settings.journal_retention_s)
            loops.spawn(state.retention.run(), name=f"retention-{settings.node_id}")
            log.info("journal keeps finished results for %g s (pruned every %g s)",
                     settings.journal_retention_s, state.retention.interval_s)
        yield


async def build_state(state: AgentState, seq: int) -> NodeState:
    """The full NodeState of this agent right now."""
    settings, agent = state.settings, state.agent
    cpu, mem = await asyncio.to_thread(_utilization)
    util = {"cpu_percent": cpu, "memory_percent": mem,
            QUEUED: float(agent.queue.n_waiting), RUNNING: float(agent.queue.n_running)}
    task_ids, task_states, complete = agent.ids_to_report(MAX_IDS_PER_REPORT)
    return NodeState(settings.node_id, settings.url, seq, settings.capacity, settings.slots,
                     agent.state(), util, incarnation=agent.incarnation, task_ids=task_ids,
                     task_ids_complete=complete, task_states=task_states)


def _utilization() -> tuple[float, float]:
    return float(psutil.cpu_percent(interval=None)), float(psutil.virtual_memory().percent)


async def _confirm(state: AgentState, reply_url: str, node_id: str,
                   task: Task) -> Task | None | str:
    """Ask a Sparrow scheduler whether our held reservation gets the task: the task
    (yes), None (no: 409, it went elsewhere), or ASK_AGAIN (no verdict: unreachable, or
    any other answer)."""
    counter = state.counter
    task_id = task.task_id
    # the task rides along, so a restarted scheduler can still decide (docs/guarantees.md)
    body = encode(Confirm(node_id, task_id, task))
    timeout = aiohttp.ClientTimeout(total=state.settings.confirm_timeout_ms / 1000.0)
    counter.sent("confirm", nbytes=len(body))
    try:
        async with state.session.post(reply_url, data=body, timeout=timeout,
                                     headers={"Content-Type": CONTENT_TYPE}) as resp:
            if resp.status == 409:
                return None
            if resp.status != 200:
                log.warning("confirm of %s at %s answered %d; asking again later", task_id,
                            reply_url, resp.status)
                return ASK_AGAIN
            data = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("confirm of %s at %s failed (%s); asking again later", task_id, reply_url, exc)
        return ASK_AGAIN
    try:
        msg = decode(data, expect=Enqueue)
    except DecodeError as exc:
        log.warning("confirm of %s got a bad answer (%s); asking again later", task_id, exc)
        return ASK_AGAIN
    counter.received("enqueue", nbytes=len(data))
    return msg.task


# -- handlers -------------------------------------------------------------------
async def handle_enqueue(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    msg, size = await read_message(request, Enqueue)
    state.counter.received("enqueue", nbytes=size)
    agent = state.agent
    stale = _stale_life(agent, msg.incarnation)
    if stale is not None:
        return stale
    if not agent.queue.fits_node(msg.task):
        return _too_big(agent, msg.task)
    try:
        await agent.submit(msg.task, msg.scheduler_id, msg.queued_ms, msg.estimate_ms)
    except JournalError as exc:
        log.error("refusing task %s: %s", msg.task.task_id, exc)
        return json_error(503, "journal", f"cannot journal the task: {exc}")
    except TaskConflict as exc:
        return _conflict(exc)
    return web.Response(status=202)


async def handle_enqueue_batch(request: web.Request) -> web.StreamResponse:
    """Several tasks in one request: all journaled in one transaction, or none (503)."""
    state = request.app[STATE]
    msg, size = await read_message(request, EnqueueBatch)
    state.counter.received("enqueue", n=len(msg.tasks), nbytes=size)
    agent = state.agent
    stale = _stale_life(agent, msg.incarnation)
    if stale is not None:
        return stale
    fit = agent.queue.fits_node_each(msg.tasks)
    if not fit.all():
        i = int(np.argmin(fit))  # the first task that can never run here
        return _too_big(agent, msg.tasks[i], where=f"tasks[{i}].")
    try:
        await agent.submit_many(msg.tasks, msg.scheduler_id, estimates_ms=msg.estimates_ms)
    except JournalError as exc:
        log.error("refusing a batch of %d tasks: %s", len(msg.tasks), exc)
        return json_error(503, "journal", f"cannot journal the tasks: {exc}")
    except TaskConflict as exc:
        return _conflict(exc)  # the other tasks were accepted
    return web.Response(status=202)


def _stale_life(agent: NodeAgent, incarnation: str) -> web.StreamResponse | None:
    """410 for an enqueue aimed at a node life that was fenced (or is being fenced):
    it may have been sent before the node was declared dead and reached us after, and
    its task was placed elsewhere meanwhile. Nothing is journaled; the scheduler
    places it elsewhere."""
    if agent.fencing or (incarnation and incarnation != agent.incarnation):
        return json_error(410, "incarnation", f"node {agent.node_id} life "
                              f"{incarnation or '?'} is over (now {agent.incarnation})")
    return None


def _conflict(exc: TaskConflict) -> web.StreamResponse:
    """409: the ids are held here with another body; ``conflicts`` lists them all."""
    return json_error(409, "id", str(exc), conflicts=exc.task_ids)


async def handle_probe(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    msg, size = await read_message(request, Probe)
    state.counter.received("probe", nbytes=size)
    reply = encode(probe_reply(state.settings.node_id, state.agent, msg.movable_below))
    state.counter.sent("probe_reply", nbytes=len(reply))
    return web.Response(body=reply, content_type=CONTENT_TYPE)


async def handle_reserve(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    msg, size = await read_message(request, Reserve)
    state.counter.received("reserve", nbytes=size)
    agent = state.agent
    if not agent.queue.fits_node(msg.task):
        return _too_big(agent, msg.task)
    try:
        await agent.reserve(msg.task, msg.scheduler_id, msg.reply_url)
    except JournalError as exc:
        return json_error(503, "journal", f"cannot read the journal: {exc}")
    return web.Response(status=202)


async def handle_lookup(request: web.Request) -> web.StreamResponse:
    """Which of these ids does this agent hold? Asked by a scheduler that cannot reach
    the load store's task index, before it places ids it does not know."""
    state = request.app[STATE]
    msg, size = await read_message(request, Lookup)
    state.counter.received("lookup", nbytes=size)
    try:
        held = await state.agent.journal.held(msg.task_ids)
    except JournalError as exc:
        return json_error(503, "journal", f"cannot read the journal: {exc}")
    node = state.settings.node_id
    reply = LookupReply(tuple(PLACED if t in held else UNKNOWN for t in msg.task_ids),
                        tuple(node if t in held else "" for t in msg.task_ids),
                        ("",) * len(msg.task_ids))
    return wire_response(reply)


async def handle_cancel(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    msg, size = await read_message(request, Cancel)
    state.counter.received("cancel", nbytes=size)
    await state.agent.cancel(msg.task_id)
    return web.Response(status=204)


async def handle_status_batch(request: web.Request) -> web.StreamResponse:
    """The status of many ids in one request (a :class:`Lookup` listing them): a
    scheduler following many tasks asks each agent once per round."""
    state = request.app[STATE]
    msg, size = await read_message(request, Lookup)
    state.counter.received("task_status", n=len(msg.task_ids), nbytes=size)
    try:
        statuses, missing = await state.agent.statuses(msg.task_ids)
    except JournalError as exc:
        return json_error(503, "journal", str(exc))
    return wire_response(TaskStatuses(tuple(statuses), tuple(missing)))


async def handle_cancel_task(request: web.Request) -> web.StreamResponse:
    """A client's cancel, relayed by a scheduler: 200 with the task's status afterwards
    (``cancelled``, or the terminal state it had reached); 404 for an id not held."""
    state = request.app[STATE]
    msg, size = await read_message(request, CancelTask)
    state.counter.received("cancel_task", nbytes=size)
    try:
        status = await state.agent.cancel_task(msg.task_id, msg.reason or "cancelled by a client")
    except JournalError as exc:
        return json_error(503, "journal", f"cannot journal the cancel: {exc}")
    if status is None:
        settings = state.settings
        return json_error(404, "id", unknown_task_reason(
            msg.task_id, settings.journal_retention_s, settings.journal_keep_finished))
    return wire_response(status)


async def handle_task(request: web.Request) -> web.StreamResponse:
    task_id = request.match_info["task_id"]
    try:
        found = await request.app[STATE].agent.status_and_log(task_id)
    except JournalError as exc:
        return json_error(503, "journal", str(exc))
    if found is None:
        settings = request.app[STATE].settings
        return json_error(404, "id", unknown_task_reason(
            task_id, settings.journal_retention_s, settings.journal_keep_finished))
    status, log_tail = found
    request.app[STATE].counter.received("task_status")
    if CONTENT_TYPE in request.headers.get("Accept", ""):
        return wire_response(status)
    return web.json_response({
        "id": status.task_id, "state": status.state, "node": status.node_id,
        "queued_ms": status.queued_ms, "started_ms": status.started_ms,
        "finished_ms": status.finished_ms, "exit_code": status.exit_code, "reason": status.reason,
        "log_tail": log_tail,
    })


async def handle_state(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    reporter = state.reporter
    return wire_response(await build_state(state, reporter.seq if reporter else 0))


async def handle_healthz(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    agent = state.agent
    reporter = state.reporter
    reachable = None if reporter is None else reporter.reachable
    return web.json_response({
        "status": "degraded" if reachable is False else "ok",
        "role": "agent", "node": state.settings.node_id,
        "pid": os.getpid(),  # lets a launcher tell its own process from another on the port
        QUEUED: agent.queue.n_waiting,
        RUNNING: agent.queue.n_running, "loadstore_reachable": reachable,
        "executor": state.executor.name, "incarnation": agent.incarnation,
        "lease": agent.lease.valid(), "fences": agent.fences,
        "preempted": agent.preemption.count,
        # ends not yet in a report the store answered (a fence now would void them)
        "unheard_ends": agent.unreported.unanswered_ends(),
    })


async def handle_metrics(request: web.Request) -> web.StreamResponse:
    return await metrics_handler(request.app[STATE].registry)(request)


def _too_big(agent: NodeAgent, task: Task, where: str = "task.") -> web.StreamResponse:
    for name, want, have in zip(RESOURCES, task.demand(), agent.queue.capacity):
        if want > have + FIT_TOLERANCE:
            return json_error(422, f"{where}{name}",
                                  f"requested {want:g} but node {agent.node_id} has {have:g}")
    return json_error(422, where.rstrip("."), f"does not fit node {agent.node_id}")
