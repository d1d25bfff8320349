"""The load store's side of rebalancing: move orders for agents that report a free slot.

The same design as the simulator's (docs/simulator.md, "Rebalancing: the design and
why"), with the same decision code (:func:`dodoor.rebalance.plan_moves`): an agent's
state report that shows a free slot is its pull; the store picks the victim from
its own rows (reports plus the schedulers' deltas), charges the move to those rows
at once, and sends the victim a :class:`~dodoor.wire.MoveOrder` naming the idle
agent, its life and its free room. The victim hands a queued task over
(node_agent.handover) and answers 202, or 204 when nothing fit. Orders go out
from one background loop, never from the report's own request, so a slow victim
holds up no report.

Messages: the order counts as a ``cancel`` and the victim's hand-over as an
``enqueue``, as in the simulator; a miss costs the order alone.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import numpy as np

from dodoor.rebalance import MovePlan, charge, plan_moves
from dodoor.messages import MessageCounter
from dodoor.wire import CONTENT_TYPE, MoveOrder, encode
from scheduler.loadstore.state import LoadStoreState

log = logging.getLogger(__name__)


class Mover:
    """Plans move orders on reports and sends them; counts what came of them."""

    def __init__(self, store: LoadStoreState, counter: MessageCounter, min_queue: int,
                 least_wait_ms: float, timeout_ms: float,
                 headers: dict[str, str] | None = None) -> None:
        self.store = store
        self.counter = counter
        self.min_queue = float(min_queue)
        self.least_wait_ms = least_wait_ms
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000.0)
        self.session: aiohttp.ClientSession | None = None
        self.headers = {"Content-Type": CONTENT_TYPE, **(headers or {})}
        self.orders = 0  # orders sent
        self.moves = 0  # answered 202: a task left the victim for the idle agent
        self.misses = 0  # answered 204: nothing queued there fitted
        self.failures = 0  # no answer, or a refusal (the victim is down or busy)
        self._outbox: list[tuple[str, str, MoveOrder]] = []
        self._event = asyncio.Event()

    def on_report(self, node_id: str) -> int:
        """A live node reported: while it shows a free slot, order a move to it.
        Returns how many orders were planned."""
        store = self.store
        live = store.live()
        pos = next((i for i, rec in enumerate(live) if rec.node_id == node_id), None)
        if pos is None or len(live) < 2:
            return 0
        view = store.live_states(live)
        slots = np.array([float(r.slots) for r in live])
        capacity = np.array([r.capacity for r in live])
        plans = plan_moves(view, slots, capacity, pos, self.min_queue, self.least_wait_ms)
        if not plans:
            return 0
        rows = [r.row for r in live]
        thief = live[pos]
        for plan in plans:
            # the view was charged; the store's rows are its deltas (the next reports
            # of both nodes replace them)
            charge(store.loads.since, MovePlan(rows[plan.victim], plan.room, plan.share),
                   rows[pos])
            victim = live[plan.victim]
            self._outbox.append((victim.node_id, victim.url, MoveOrder(
                thief.node_id, thief.url, thief.incarnation, plan.room)))
            store.mark_changed([plan.victim, pos])
        self._event.set()
        return len(plans)

    async def run(self) -> None:
        """Send the planned orders, all at once, as they come."""
        while True:
            await self._event.wait()
            self._event.clear()
            batch, self._outbox = self._outbox, []
            await asyncio.gather(*(self._send(node, url, order) for node, url, order in batch))

    async def _send(self, node: str, url: str, order: MoveOrder) -> None:
        assert self.session is not None
        body = encode(order)
        self.orders += 1
        self.counter.sent("cancel", nbytes=len(body))
        try:
            async with self.session.post(url + "/internal/move", data=body, timeout=self.timeout,
                                         headers=self.headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures += 1
            log.info("move order to %s failed: %s", node, exc)
            return
        if status == 202:
            self.moves += 1
        elif status == 204:
            self.misses += 1
        else:
            self.failures += 1
            log.info("move order to %s answered %d", node, status)
