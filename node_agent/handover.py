"""Handing a queued task over to another agent (rebalancing, docs/guarantees.md "Moved tasks").

A move order (:class:`dodoor.wire.MoveOrder`, ``POST /internal/move``) names a
target agent. This agent takes the named task, or its first queued task that fits
the target's free room, out of its queue — only a task that never started —
and then, in this order:

1. journals the hand-over: the row goes ``moving`` with the target in its
   ``handle`` (a crash from here on finds it and resolves it, never runs it);
2. enqueues the task at the target with the same id and its first placement time,
   aimed at the target's life the order named;
3. on the target's 202 journals the row ``moved`` (this agent then answers for the
   id with where it went); on a definite refusal puts the row back to ``queued``
   and the task back in its queue; with no verdict (timeout, dropped connection,
   503 after an unsure attempt) keeps the row ``moving`` and asks the target again
   with the same id, which it deduplicates, until it answers.

The target's journal is the commit point: before its 202 the task is this
agent's, after it the target's. So a definite refusal is taken only when the
target cannot hold the task: its first answer to this hand-over (4xx, 503 or no
connection), or, after an unsure attempt, 409 or 422 (it holds another body
under the id, or the task never fits it). A 410 after an unsure attempt means
the target's life was fenced: whatever it held of that life ended ``lost``
there, so the task ends ``lost`` here too and is never run (the client
resubmits it, as for any lost task). A fence of this agent's own life leaves a
hand-over under way alone (the target may hold the task, alive); if the target
then refuses it, the task ends ``lost``: the fenced life runs nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable

from aiohttp import web

from dodoor.resources import fits_free
from dodoor.service.http import BackgroundTasks, json_error, read_message
from dodoor.service.metrics import CounterCollector
from dodoor.service.peers import PeerClient, PeerError
from dodoor.taskstates import LOST, MOVED, MOVING, QUEUED
from dodoor.wire import Enqueue, MoveOrder, TaskStatus
from node_agent.journal import JournalError
from node_agent.journal_rows import Record, StatusRow, _record
from node_agent.queue import TASK, Entry

if TYPE_CHECKING:  # the agent reads its handed-over rows through handover_status
    from node_agent.node import NodeAgent

log = logging.getLogger(__name__)

# how long a hand-over's enqueue may take before it is unsure (and asked again)
ENQUEUE_TIMEOUT_MS = 2000.0
# outcomes of an order
MOVED_OUT, PENDING, RETURNED, MISSED = "moved", "pending", "returned", "missed"


@dataclass(frozen=True)
class Target:
    """Where a task is handed over to; journaled as JSON in its row's ``handle``."""

    node: str
    url: str
    incarnation: str = ""  # the target's life the order aimed at
    life: str = ""  # this agent's life when the hand-over began

    def dumps(self) -> str:
        return json.dumps({"node": self.node, "url": self.url, "incarnation": self.incarnation,
                           "life": self.life})

    @classmethod
    def loads(cls, text: str | None) -> Target:
        data = json.loads(text or "{}")
        return cls(str(data.get("node", "")), str(data.get("url", "")),
                   str(data.get("incarnation", "")), str(data.get("life", "")))


def handover_status(node_id: str, row: StatusRow) -> TaskStatus:
    """A handed-over row as clients' schedulers read it: ``queued`` while the hand-over
    is under way (the task is still this agent's), ``moved`` naming the agent after."""
    target = Target.loads(row.handle).node
    if row.state == MOVING:
        return TaskStatus(row.task_id, QUEUED, node_id, queued_ms=row.queued_ms,
                          reason=f"being handed over to node {target}")
    return TaskStatus(row.task_id, MOVED, node_id, queued_ms=row.queued_ms,
                      finished_ms=row.finished_ms, reason=row.reason, moved_to=target)


class Handover:
    """This agent's side of moves: orders, unsure hand-overs, and their restart."""

    def __init__(self, retry_s: float = 1.0) -> None:
        self.retry_s = retry_s
        self.agent: NodeAgent | None = None
        self.peers: PeerClient | None = None
        self.orders = 0  # orders received
        self.moves = 0  # tasks the target took
        self.misses = 0  # orders that found no queued task to move
        self.returned = 0  # hand-overs the target refused: the task is queued here again
        self.lost = 0  # hand-overs whose target's life was fenced meanwhile
        self.pending: dict[str, tuple[Record, Target]] = {}  # unsure: asked again
        self._wake = asyncio.Event()

    def bind(self, agent: NodeAgent, peers: PeerClient) -> None:
        self.agent, self.peers = agent, peers

    # -- orders --------------------------------------------------------------
    def pick(self, order: MoveOrder) -> Entry | None:
        """The queued task the order moves: the named one, else the first that fits."""
        assert self.agent is not None
        queue = self.agent.queue
        if order.task_id:
            entry = queue.get(order.task_id)
            ok = entry is not None and entry.kind == TASK and not queue.is_running(order.task_id)
            return entry if ok else None
        for entry in queue.waiting:
            t = entry.task
            if entry.kind == TASK and (not order.room or fits_free(
                    (t.cores, t.memory_mb, t.disk_mb), order.room)):
                return entry
        return None

    async def move(self, order: MoveOrder) -> str:
        """Carry out one order; one of MOVED_OUT, PENDING (unsure, asked again),
        RETURNED (the target refused) or MISSED (nothing to move)."""
        agent = self.agent
        assert agent is not None
        self.orders += 1
        entry = self.pick(order)
        # taken out of the queue before any await: nothing can start it from here on
        if entry is None or agent.queue.drop_waiting(entry.task_id) is None:
            self.misses += 1
            return MISSED
        target = Target(order.target_node, order.target_url.rstrip("/"), order.target_incarnation,
                         agent.incarnation)
        task_id = entry.task_id
        try:
            begun = await self._set(task_id, MOVING, QUEUED, handle=target.dumps(),
                                    reason=f"being handed over to node {target.node}")
        except JournalError as exc:
            log.warning("cannot journal the hand-over of %s: %s; it stays here", task_id, exc)
            begun = False
        if not begun:
            self._requeue(entry)
            self.misses += 1
            return MISSED
        record = Record(0, entry.task, entry.scheduler_id, MOVING, entry.queued_ms, None, None,
                        None, None, "")
        return await self._offer(record, target, first=True)

    async def _offer(self, record: Record, target: Target, first: bool) -> str:
        """Enqueue the task at the target and settle the row by its answer."""
        assert self.peers is not None
        task_id = record.task.task_id
        msg = Enqueue(record.task, record.scheduler_id, target.incarnation, record.queued_ms)
        try:
            await self.peers.send(target.url + "/internal/enqueue", msg)
        except PeerError as exc:
            refused = exc.refused if first else exc.status in (409, 422)
            if not first and exc.status == 410:
                return await self._end_lost(task_id, target, (
                    f"handed over to node {target.node}, whose life "
                    f"{target.incarnation or '?'} was declared dead before it confirmed; the "
                    "task may be resubmitted"))
            if not refused:
                log.info("hand-over of %s to %s unsure (%s); asking again", task_id,
                         target.node, exc)
                self.pending[task_id] = (record, target)
                self._wake.set()
                return PENDING
            if target.life and target.life != self.agent.incarnation:
                # this life was fenced meanwhile: the store told clients its tasks are lost
                return await self._end_lost(task_id, target, (
                    f"this node's life {target.life} was declared dead while it handed the "
                    f"task over to node {target.node}, which did not take it; the task may be "
                    "resubmitted"))
            log.info("node %s refused the hand-over of %s (%s); it stays here", target.node,
                     task_id, exc)
            self.pending.pop(task_id, None)
            if await self._set(task_id, QUEUED, MOVING, handle=None, reason=None):
                self._requeue(Entry(record.task, TASK, record.scheduler_id,
                                    queued_ms=record.queued_ms or 0.0))
            self.returned += 1
            return RETURNED
        self.pending.pop(task_id, None)
        if await self._set(task_id, MOVED, MOVING, reason=f"moved to node {target.node}"):
            self.moves += 1
        return MOVED_OUT

    async def _end_lost(self, task_id: str, target: Target, reason: str) -> str:
        assert self.agent is not None
        self.pending.pop(task_id, None)
        if await self._set(task_id, LOST, MOVING, reason=reason):
            self.agent.finished[LOST] += 1
            self.agent.unreported.ended(task_id, LOST)
            self.lost += 1
        return RETURNED

    def _requeue(self, entry: Entry) -> None:
        assert self.agent is not None
        if entry.task_id not in self.agent.queue:
            self.agent.queue.add(entry)
        self.agent.pump()

    async def _set(self, task_id: str, state: str, was: str, handle: str | None | bool = False,
                   reason: str | None | bool = False) -> bool:
        """Move the row from ``was`` to ``state`` (False: it was not in ``was``)."""
        assert self.agent is not None
        now = self.agent.clock.now_ms()
        sets, args = ["state = ?"], [state]
        if handle is not False:
            sets.append("handle = ?")
            args.append(handle)
        if reason is not False:
            sets.append("reason = ?")
            args.append(reason)
        if state in (MOVED, LOST):
            sets.append("finished_ms = ?")
            args.append(now)
        sql = f"UPDATE tasks SET {', '.join(sets)} WHERE id = ? AND state = ?"
        return await self.agent.journal.write(
            lambda c: c.execute(sql, (*args, task_id, was)).rowcount == 1)

    # -- restart and retries ---------------------------------------------------
    async def resume(self) -> int:
        """After a restart: every hand-over under way is asked again of its target
        (never run here meanwhile); returns how many."""
        assert self.agent is not None
        rows = await self.agent.journal.read(lambda c: c.execute(
            "SELECT * FROM tasks WHERE state = ? ORDER BY seq", (MOVING,)).fetchall())
        for row in rows:
            record = _record(row)
            self.pending[record.task.task_id] = (record, Target.loads(record.handle))
        if rows:
            log.info("%d hand-over(s) were under way at the last stop; asking their targets",
                     len(rows))
            self._wake.set()
        return len(rows)

    async def run(self) -> None:
        """Ask the targets of unsure hand-overs again, every ``retry_s``, until they answer."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.retry_s)
            if not self.pending:
                self._wake.clear()
                continue
            for record, target in list(self.pending.values()):
                try:
                    await self._offer(record, target, first=False)
                except JournalError as exc:
                    log.warning("hand-over of %s: %s; asking again", record.task.task_id, exc)


HANDOVER = web.AppKey("handover", Handover)


async def handle_move(request: web.Request) -> web.StreamResponse:
    """``POST /internal/move``: 202 when a task left for the target (or is on its way),
    204 when none moved; 503 while this agent cannot hand anything over."""
    handover = request.app[HANDOVER]
    msg, size = await read_message(request, MoveOrder)
    agent = handover.agent
    if agent is None or agent.fencing:
        return json_error(503, "agent", "not ready to hand tasks over")
    agent.counter.received("cancel", nbytes=size)
    if not msg.target_node or not msg.target_url:
        return json_error(400, "target_node", "a move order names its target node and url")
    if msg.target_node == agent.node_id:
        return json_error(400, "target_node", f"node {agent.node_id} cannot move a task to itself")
    if msg.room and len(msg.room) != 3:
        return json_error(400, "room", f"expected cores, memory and disk, got {list(msg.room)}")
    try:
        outcome = await handover.move(msg)
    except JournalError as exc:
        return json_error(503, "journal", str(exc))
    return web.Response(status=202 if outcome in (MOVED_OUT, PENDING) else 204)


def metrics(handover: Handover) -> dict[str, tuple[str, Callable[[], float]]]:
    """The agent's move counters (docs/operations.md)."""
    return {
        "dodoor_agent_move_orders_total": ("Move orders received", lambda: handover.orders),
        "dodoor_agent_moves_out_total": ("Queued tasks handed over to another agent",
                                         lambda: handover.moves),
        "dodoor_agent_move_misses_total": ("Move orders that found no queued task to move",
                                           lambda: handover.misses),
        "dodoor_agent_moves_returned_total": (
            "Hand-overs the target refused (the task was queued here again)",
            lambda: handover.returned),
        "dodoor_agent_moves_lost_total": (
            "Hand-overs whose target's life was declared dead before it confirmed",
            lambda: handover.lost),
    }


def handover_ctx(parts: Callable[[], tuple]) -> Callable:
    """The app's cleanup context for moves: binds the app's :class:`Handover` to the
    agent (``parts()``: the agent, the HTTP session, the metrics registry), resumes
    the hand-overs a crash left under way, and asks unsure targets again meanwhile."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        handover = app[HANDOVER]
        agent, session, registry = parts()
        handover.bind(agent, PeerClient(session, agent.counter, ENQUEUE_TIMEOUT_MS, {}))
        registry.register(CounterCollector(metrics(handover)))
        await handover.resume()
        async with BackgroundTasks() as loops:
            loops.spawn(handover.run(), name=f"handover-{agent.node_id}")
            yield

    return ctx
