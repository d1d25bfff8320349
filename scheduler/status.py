"""Task status at any scheduler: one id (``GET /v1/tasks/{id}``) or many
(``POST /v1/tasks/status``, with an optional long poll), and a task's output tail.

Both status calls share :func:`resolve`: this scheduler's own placements come
from memory, the other ids from one load store lookup; then each node holding
some of them is asked once, for all of its ids (``POST /internal/status``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgpack
from aiohttp import web

from dodoor.errors import ValidationError
from dodoor.taskindex import BUSY, ENDED, MINE, PLACED
from dodoor.taskstates import LOST, MOVED, QUEUED, TERMINAL, UNKNOWN
from dodoor.wire import CONTENT_TYPE, Lookup, LookupReply, TaskStatuses
from dodoor.service.peers import PeerError
from dodoor.service.http import json_error

if TYPE_CHECKING:
    from scheduler.app import SchedulerState

log = logging.getLogger(__name__)

# ids one batch status request may list: a client following more sends several
MAX_STATUS_IDS = 10_000
# the longest long poll a request may ask for; a client wanting more asks again
MAX_WAIT_S = 60.0
# how often a long poll asks the agents again while nothing listed has ended
POLL_INTERVAL_S = 0.25
# how many hand-overs a status read follows (a task moved again and again is rare)
MAX_MOVES_FOLLOWED = 4
# the most output a logs request returns (the agent's tail is bounded too)
MAX_LOG_BYTES = 64 * 1024


@dataclass
class Resolved:
    """Per asked id either a status body (``found``) or an HTTP status and reason
    (``errors``: 404 for an id nobody knows, 503 when the load store cannot be asked)."""

    found: dict[str, dict] = field(default_factory=dict)
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # id -> node, for found ids on a node
    # id -> the node its agent handed it over to (rebalancing): asked there next
    moved: dict[str, str] = field(default_factory=dict)


def status_body(task_id: str, state: str, node: str | None, reason: str) -> dict:
    """A status answered by the scheduler itself (no agent said anything)."""
    return {"id": task_id, "state": state, "node": node, "queued_ms": None, "started_ms": None,
            "finished_ms": None, "exit_code": None, "reason": reason}


async def locate(state: SchedulerState, task_ids: list[str], out: Resolved) -> dict[str, str]:
    """The node holding each id, as far as this scheduler and the load store know;
    ids answered without a node (reserved, lost, ended, busy, unknown) go into ``out``.

    An id on a node declared dead is asked of the store too: only the store's index
    knows whether its end was reported before the death (then it keeps its state)
    or not (``lost``), and every scheduler must give the same answer."""
    placer, peers = state.placer, state.peers
    assert placer is not None and peers is not None
    where: dict[str, str] = {}
    ask: list[str] = []
    on_dead: dict[str, str] = {}  # id -> the dead node this scheduler placed it on
    for task_id in task_ids:
        if placer.reservations.get(task_id) is not None:
            out.found[task_id] = status_body(task_id, QUEUED, None,
                                             "reserved, waiting for a confirm")
        elif (node := placer.placed.get(task_id)) is not None and node not in state.view.dead:
            where[task_id] = node
        else:
            if node is not None:
                on_dead[task_id] = node
            ask.append(task_id)
    if ask:
        await ask_index(state, ask, on_dead, out, where)
    return where


async def ask_index(state: SchedulerState, ask: list[str], on_dead: dict[str, str],
                    out: Resolved, where: dict[str, str]) -> None:
    """Answer ``ask`` from the load store's task index (``on_dead``: ids this scheduler
    knows on a node declared dead); the ids placed on a live node go into ``where``."""
    placer, peers = state.placer, state.peers
    assert placer is not None and peers is not None
    try:
        reply = await peers.send(state.settings.loadstore_url.rstrip("/") + "/internal/lookup",
                                 Lookup(placer.instance, tuple(ask), ended=True),
                                 expect=LookupReply)
    except PeerError as exc:
        for task_id in ask:
            out.errors[task_id] = (503, f"task {task_id!r} was not placed by this scheduler and "
                                        f"the load store cannot be asked: {exc}")
        return
    ended = reply.states or ("",) * len(ask)
    for task_id, outcome, node, owner, end in zip(ask, reply.outcomes, reply.nodes,
                                                   reply.owners, ended):
        if outcome == ENDED:
            out.found[task_id] = status_body(
                task_id, end, node or None, f"ended {end} on node {node} before it was declared "
                "dead; its exit code and log are unavailable until the node is back")
        elif outcome == LOST or (task_id in on_dead and outcome != PLACED):
            # placed here on a node that died before it reported the id: lost as well
            node = node or on_dead[task_id]
            out.found[task_id] = status_body(task_id, LOST, node,
                                             f"node {node} was declared dead")
        elif outcome in (BUSY, MINE):
            why = (f"being placed by scheduler {owner}; no node has reported it yet" if owner
                   else "the load store is still collecting its nodes' ids")
            out.found[task_id] = status_body(task_id, UNKNOWN, None, why)
        elif outcome == PLACED and node:
            where[task_id] = node
        else:
            out.errors[task_id] = (404, f"unknown task {task_id!r} (not known to this scheduler "
                                        "nor to the load store; results expire with the agents' "
                                        "journal retention)")


async def resolve(state: SchedulerState, task_ids: list[str]) -> Resolved:
    """Where each id stands: one load store lookup at most, one request per node."""
    out = Resolved()
    where = await locate(state, task_ids, out)
    for _ in range(MAX_MOVES_FOLLOWED + 1):
        await _ask_nodes(state, where, out)
        # a moved task is answered by the agent it was handed over to; when that one was
        # declared dead, only the store's index knows whether the task's end was heard
        where, out.moved = out.moved, {}
        on_dead = {t: n for t, n in where.items() if n in state.view.dead}
        if on_dead:
            where = {t: n for t, n in where.items() if t not in on_dead}
            await ask_index(state, list(on_dead), on_dead, out, where)
        if not where:
            break
    for task_id, node in where.items():
        out.found[task_id] = status_body(task_id, UNKNOWN, node, f"moved to node {node} more "
                                         f"than {MAX_MOVES_FOLLOWED} times; ask again")
    return out


async def _ask_nodes(state: SchedulerState, where: dict[str, str], out: Resolved) -> None:
    by_node: dict[str, list[str]] = defaultdict(list)
    for task_id, node in where.items():
        if node in state.view.dead:
            # the store says it is placed there, so the node is back: our view lags
            out.found[task_id] = status_body(task_id, UNKNOWN, node, f"node {node} is back at "
                                             "the load store; this scheduler's view lags")
        elif state.view.index.get(node) is None:
            out.found[task_id] = status_body(task_id, UNKNOWN, node, f"node {node} is out of "
                                             "this scheduler's view but was not declared dead")
        else:
            by_node[node].append(task_id)
    if by_node:
        await asyncio.gather(*(_ask_node(state, node, ids, out) for node, ids in by_node.items()))


async def _ask_node(state: SchedulerState, node: str, task_ids: list[str], out: Resolved) -> None:
    assert state.peers is not None
    url = state.view.urls[state.view.index[node]]
    try:
        reply = await state.peers.send(url + "/internal/status",
                                       Lookup(state.settings.scheduler_id, tuple(task_ids)),
                                       expect=TaskStatuses, count=len(task_ids),
                                       kind="task_status")
    except PeerError as exc:
        for task_id in task_ids:
            out.found[task_id] = status_body(task_id, UNKNOWN, node,
                                             f"agent {node} unreachable: {exc}")
        return
    placer = state.placer
    learned = placer.learned if placer is not None else None
    # ids the packing fallback placed nowhere: the agent does not know why they wait there
    unplaced = placer.unplaced if placer is not None else None
    for st in reply.statuses:
        if st.state == MOVED and st.moved_to:
            out.moved[st.task_id] = st.moved_to
            continue
        if learned is not None:
            learned.saw(st)
        out.nodes[st.task_id] = node
        out.found[st.task_id] = {
            "id": st.task_id, "state": st.state, "node": node, "queued_ms": st.queued_ms,
            "started_ms": st.started_ms, "finished_ms": st.finished_ms,
            "exit_code": st.exit_code,
            "reason": st.reason or (unplaced.get(st.task_id) if unplaced is not None else None),
        }
    for task_id in reply.missing:
        out.found[task_id] = status_body(task_id, UNKNOWN, node, f"agent {node} does not know "
                                         "the task (its result expired, or its journal was "
                                         "replaced)")


def _settled(res: Resolved) -> bool:
    """Anything a waiting client should hear now: an end, or an id that never will end."""
    return bool(res.errors) or any(b["state"] in TERMINAL for b in res.found.values())


async def follow(state: SchedulerState, task_ids: list[str], wait_s: float) -> Resolved:
    """:func:`resolve`, asked again every :data:`POLL_INTERVAL_S` until a listed task is
    terminal (or unknown for good) or ``wait_s`` has passed."""
    deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
    while True:
        res = await resolve(state, task_ids)
        left = deadline - time.monotonic()
        if _settled(res) or left <= 0:
            return res
        await asyncio.sleep(min(POLL_INTERVAL_S, left))


def parse_status_request(body: bytes, content_type: str) -> tuple[list[str], float]:
    """``{"ids": [...], "wait_s": 0}`` as JSON or msgpack: the ids and the wait.
    Raises ValidationError naming the bad field."""
    try:
        if content_type == CONTENT_TYPE:
            data = msgpack.unpackb(body, raw=False)
        else:
            data = json.loads(body or b"{}")
    except Exception as exc:  # json and msgpack raise several unrelated types
        raise ValidationError("body", f"not valid {content_type or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError("body", f"expected an object, got {type(data).__name__}")
    ids = data.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ValidationError("ids", "expected a list of non-empty strings")
    if len(ids) > MAX_STATUS_IDS:
        raise ValidationError("ids", f"{len(ids)} ids; at most {MAX_STATUS_IDS} per request")
    wait_s = data.get("wait_s", 0)
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s < 1e9:
        raise ValidationError("wait_s", f"expected a number of seconds >= 0, got {wait_s!r}")
    return list(dict.fromkeys(ids)), float(wait_s)


def batch_body(res: Resolved, task_ids: list[str]) -> dict:
    """The batch answer: the found statuses in asked order, and an error per other id."""
    return {
        "tasks": [res.found[i] for i in task_ids if i in res.found],
        "errors": [{"id": i, "status": res.errors[i][0], "reason": res.errors[i][1]}
                   for i in task_ids if i in res.errors],
    }


async def fetch_log(state: SchedulerState, task_id: str, max_bytes: int) -> web.Response:
    """``GET /v1/tasks/{id}/logs``: the task's output tail, from the agent holding it."""
    res = await resolve(state, [task_id])
    if task_id in res.errors:
        status, reason = res.errors[task_id]
        return json_error(status, "id", reason)
    node = res.nodes.get(task_id)
    body = res.found[task_id]
    if node is None:  # no agent answered for it: say why, with no output
        return json_error(503 if body["state"] == UNKNOWN else 404, "id",
                          f"no output for task {task_id!r}: {body['state']}, {body['reason']}")
    assert state.peers is not None
    url = state.view.urls[state.view.index[node]]
    try:
        found = await state.peers.task_json(url, task_id)
    except PeerError as exc:
        return json_error(503, "id", f"agent {node} holding task {task_id!r} unreachable: {exc}")
    if found is None:
        return json_error(404, "id", f"agent {node} no longer knows task {task_id!r}")
    tail = found.get("log_tail") or ""
    data = tail.encode()
    truncated = len(data) > max_bytes
    if truncated:  # keep the end: the last lines say how it ended
        tail = data[-max_bytes:].decode(errors="replace")
    return web.json_response({"id": task_id, "node": node, "state": found.get("state"),
                              "log_tail": tail, "truncated": truncated})
