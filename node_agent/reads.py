"""The agent's read-only routes: task status (one id, or many for a scheduler),
which ids it holds, its full state, health and metrics. The routes that change
something (enqueue, reserve, cancel, move) are in ``node_agent/app.py``."""

from __future__ import annotations

import asyncio
import os

import psutil
from aiohttp import web

from dodoor.service.http import json_error, metrics_handler, read_message, wire_response
from dodoor.taskindex import PLACED, UNKNOWN
from dodoor.taskstates import QUEUED, RUNNING
from dodoor.wire import CONTENT_TYPE, Lookup, LookupReply, NodeState, TaskStatuses
from node_agent.app_state import STATE, AgentState
from node_agent.journal import JournalError
from node_agent.retention import unknown_task_reason

# ids per state report: a restarted store gets a big journal's ids over several reports
MAX_IDS_PER_REPORT = 50_000


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
