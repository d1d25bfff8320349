"""Rebalancing queued work: the load store moves a queued task to an agent with a free slot.

The design (docs/simulator.md, "Rebalancing"): an agent already reports its
state to the load store when a task ends, so a report that shows a free slot
is the agent's request for work and costs no message of its own. The store
answers from what it holds anyway, the reports plus the schedulers' deltas,
with the core's rule (:mod:`dodoor.rebalance`, which the live load store uses
too): it picks a victim queue and sends it a move order (``cancel``) naming
the idle agent and its free room. That node
hands over its first queued task that fits the room (``enqueue`` to the idle
agent), or nothing if none fits. No container has started, so the task starts
once, on its new node. A move costs a cancel and an enqueue; a miss costs the
cancel alone.

Only what a live store and agent know is used: the store's view (reports and
deltas), capacities and slots; the victim's own queue. The store charges each
order to its view at once (one task fewer, with the victim's mean pending
work, on the victim; one more on the idle agent), so it does not send every
idle agent to the same queue before the next reports correct its rows. This
module is the simulated transport around that rule: the order, the victim's
choice of task (:meth:`dodoor.sim.node.SimNode.withdraw`) and the enqueue.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dodoor.rebalance import plan_moves
from dodoor.sim.engine import Mailbox
from dodoor.sim.loadstore import SimLoadStore
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode


class Rebalancer:
    """Matches agents that report a free slot with the longest queues (module docstring)."""

    def __init__(self, store: SimLoadStore, nodes: Sequence[SimNode], net: Network,
                 capacity: np.ndarray, slots: np.ndarray, min_queue: int = 2) -> None:
        self.store = store
        self.nodes = nodes
        self.net = net
        self.capacity = capacity
        self.slots = slots
        # queued tasks a node must hold (by the store's view) to be asked for one
        self.min_queue = float(min_queue)
        self.moves = 0  # orders that moved a task
        self.misses = 0  # orders that found nothing fitting in the queue
        self._events = net.loop.channel()
        # a move must save more than it takes: the order and the enqueue in flight
        self._least_wait_ms = 2.0 * net.delay_ms

    def reporter(self) -> "ReportTap":
        """What the nodes report to: the store's mailbox, and a look at each report."""
        return ReportTap(self.store.reports, self)

    def on_report(self, node: int) -> None:
        """A node's report has reached the store: while it shows a free slot, fill it."""
        view = self.store.view()  # installs every report delivered so far
        # the charges go to the view and to the deltas it is made of: the next reports
        # replace those rows
        for plan in plan_moves(view, self.slots, self.capacity, node, self.min_queue,
                               self._least_wait_ms, also=self.store.state.since):
            self.net.send("cancel", self._move, plan.victim, node, plan.room)

    def _move(self, victim: int, thief: int, room: tuple[float, float, float]) -> None:
        """The order reaches the victim: its first queued task that fits goes to the thief."""
        entry = self.nodes[victim].withdraw(room)
        if entry is None:
            self.misses += 1
            return
        self.moves += 1
        placed = self.nodes[victim].records.placed[entry.index]
        self.net.send("enqueue", self._arrive, thief, entry, placed)

    def _arrive(self, thief: int, entry: Entry, placed: float) -> None:
        """The moved task reaches its new node; it keeps its first placement time, so
        scheduling latency stays the scheduler's (the move shows in the makespan)."""
        node = self.nodes[thief]
        node.enqueue(entry)
        node.records.placed[entry.index] = placed


class ReportTap:
    """A node's report target: the store's mailbox, plus an event when the report lands.

    The mailbox item is posted first, so it is among what the store takes when
    the event runs (:class:`dodoor.sim.engine.Mailbox`).
    """

    __slots__ = ("_mailbox", "_channel", "_rebalancer")

    def __init__(self, mailbox: Mailbox, rebalancer: Rebalancer) -> None:
        self._mailbox = mailbox
        self._channel = rebalancer._events
        self._rebalancer = rebalancer

    def post(self, time_ms: float, item: tuple[int, list[float]]) -> None:
        self._mailbox.post(time_ms, item)
        self._channel.push(time_ms, self._rebalancer.on_report, (item[0],))
