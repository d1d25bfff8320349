"""A simulated node agent: the core's run queue (``dodoor.runqueue``) on the simulated clock.

When anything arrives or ends the node starts, in queue order, every waiting
entry that fits the free resources and a free slot. Entries are tasks or
Sparrow reservations; a reservation that gets room holds the task's resources
and sends ``confirm``; the scheduler's ``enqueue`` then runs the task in the
held room, its ``cancel`` releases it.

The state a node reports (``dodoor.cache.STATE_COLUMNS``) is
:meth:`dodoor.runqueue.RunQueue.state_row`: committed cores/memory/disk and
entry count over queued and running entries, and pending duration.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import numpy as np

from dodoor.priority import DEFAULT_AGING_MS
from dodoor.resources import NodeSpec, fits_free
from dodoor.runqueue import QueueEntry, RunQueue
from dodoor.sim.engine import EventLoop, Mailbox
from dodoor.sim.network import Network
from dodoor.sim.records import TaskRecords
from dodoor.sim.warm import WarmContainers


class Entry(QueueEntry):
    """A task (or a reservation for one) travelling to and waiting on a node."""

    __slots__ = ("index", "job", "held", "cancelled", "runs", "true_ms")

    def __init__(self, index: int, demand: tuple[float, float, float], duration: float,
                 job: Any = None, estimate: float | None = None) -> None:
        # the queue counts what the scheduler declared as pending work (the agent knows
        # no better); the task runs ``duration``, its true length (docs/simulator.md)
        super().__init__(demand, duration if estimate is None else estimate)
        self.true_ms = duration
        self.index = index
        self.job = job  # the Sparrow job for a reservation, None for a task
        self.held = False
        self.cancelled = False
        self.runs = 0  # starts so far: a preempted run's end event is stale


class SimNode:
    """One node; its methods are the message handlers of the agent."""

    def __init__(self, index: int, spec: NodeSpec, loop: EventLoop, net: Network,
                 records: TaskRecords, reporter: Mailbox | None = None,
                 report_interval_ms: float = 100.0, start_overhead_ms: float = 0.0,
                 aging_ms: float = DEFAULT_AGING_MS, preempt: bool = False,
                 warm: WarmContainers | None = None) -> None:
        self.index = index
        self.spec = spec
        self.loop = loop
        self.net = net
        self.records = records
        self.rq: RunQueue[Entry] = RunQueue(
            (spec.cores, spec.memory_mb, spec.disk_mb), spec.slots, start_overhead_ms, aging_ms)
        self.preempt = preempt  # stop lower-class running tasks for a newcomer (docs/design.md §12)
        self.warm = warm  # this node's warm containers, when the run models them
        self.on_end: Callable[[Entry], None] | None = None  # told of every task that ends
        # (arrival ms, entry) of enqueues in flight, tracked for the oracle only
        self.inbound: deque[tuple[float, Entry]] = deque()
        self.version = 0  # bumped on every change; the oracle caches by it
        self._reporter = reporter
        self._interval = report_interval_ms
        self._last_report = -float("inf")
        self._report_scheduled = False

    # -- message handlers -------------------------------------------------
    def enqueue(self, entry: Entry) -> None:
        """A task arrives (``enqueue``): it is placed now and joins the queue."""
        now = self.loop.now
        records = self.records
        records.placed[entry.index] = now
        records.node[entry.index] = self.index
        entry.priority = records.priority[entry.index]
        if self.inbound and self.inbound[0][1] is entry:
            self.inbound.popleft()
        self.version += 1
        if self.rq.admit(entry, now):
            self._run(entry, now)
        elif self.preempt:
            self._preempt_for(entry)

    def reserve(self, entry: Entry) -> None:
        """A Sparrow reservation joins the queue like a task."""
        if self.rq.admit(entry, self.loop.now):
            self._hold(entry)

    def assign(self, entry: Entry) -> None:
        """The task for a confirmed reservation arrives and runs in the held room."""
        now = self.loop.now
        self.records.placed[entry.index] = now
        self.records.node[entry.index] = self.index
        self.version += 1
        entry.held = False
        self.rq.restart(entry, entry.demand, entry.duration_ms, now)
        self._run(entry, now)

    def cancel(self, entry: Entry) -> None:
        """A reservation lost: release its hold or drop it from the queue."""
        entry.cancelled = True
        if entry.held:
            entry.held = False
            self.rq.finish(entry)
            self._backfill()
        else:
            self.rq.drop(entry)

    def withdraw(self, room: tuple[float, float, float]) -> Entry | None:
        """A move order (``cancel``) from rebalancing: the first queued task that fits
        ``room`` leaves this node, None when none does. Nothing has started it, so
        no slot or room is freed and nothing else can start."""
        for entry in self.rq.waiting:
            if entry.job is None and fits_free(entry.demand, room):
                self.rq.drop(entry)
                self.version += 1
                return entry
        return None

    def probe(self, reply: Callable[..., None], *args: Any) -> None:
        """Answer a probe with the current state (``probe_reply``)."""
        self.net.send("probe_reply", reply, *args, self.index, self.state())

    # -- state --------------------------------------------------------------
    def state_row(self) -> list[float]:
        """The node's true state in STATE_COLUMNS order, as a list."""
        return self.rq.state_row(self.loop.now)

    def state(self) -> np.ndarray:
        """The node's true state in STATE_COLUMNS order."""
        return np.array(self.rq.state_row(self.loop.now))

    def fits(self, demand: tuple[float, float, float]) -> bool:
        """Whether ``demand`` fits the free room and a free slot now."""
        return self.rq.fits(demand)

    # -- internals ----------------------------------------------------------
    def _hold(self, entry: Entry) -> None:
        entry.held = True
        self.net.send("confirm", entry.job.on_confirm, entry, self.index)

    def _run(self, entry: Entry, now: float) -> None:
        if self.warm is not None:  # the run queue set the cold figure; a warm start pays less
            overhead = self.warm.overhead(entry.index, now, self.rq.overhead_ms)
            entry.end_ms = now + entry.duration_ms + overhead
        self.records.start[entry.index] = now
        entry.runs += 1
        # the queue expects the declared length; the task takes its true one
        self.loop.call_at(entry.end_ms + entry.true_ms - entry.duration_ms, self._finish,
                          entry, entry.runs)

    def _preempt_for(self, entry: Entry) -> None:
        """Requeue the lower-class running tasks whose room lets ``entry`` start."""
        victims = self.rq.victims(entry.demand, entry.priority)
        if not victims or any(v.job is not None for v in victims):
            return  # no room to make, or a held reservation: those are not tasks yet
        for victim in victims:
            self.rq.requeue(victim)
            victim.runs += 1  # its pending end event no longer counts
            self.records.preempted += 1
        self._backfill()

    def _backfill(self) -> None:
        now = self.loop.now
        for entry in self.rq.backfill(now):
            if entry.job is not None:
                self._hold(entry)
            else:
                self._run(entry, now)

    def _finish(self, entry: Entry, run: int = 0) -> None:
        if run and run != entry.runs:
            return  # the run this end belonged to was preempted
        rq = self.rq
        rq.finish(entry)
        records = self.records
        records.end[entry.index] = self.loop.now
        records.finished += 1
        self.version += 1
        if self.warm is not None:
            self.warm.release(entry.index, self.loop.now)
        self.net.count_only("completion")
        if self.on_end is not None:
            self.on_end(entry)
        if rq.waiting:
            self._backfill()
        if self._reporter is not None and not self._report_scheduled:
            self._state_changed()

    def _state_changed(self) -> None:
        """Report to the load store, coalesced to one report per interval."""
        if self._report_scheduled:
            return
        due = self._last_report + self._interval
        if self.loop.now >= due:
            self._send_report()
        else:
            self._report_scheduled = True
            self.loop.call_at(due, self._deferred_report)

    def _deferred_report(self) -> None:
        self._report_scheduled = False
        self._send_report()

    def _send_report(self) -> None:
        self._last_report = self.loop.now
        # the load store reads reports only when it next acts: a mailbox, not an event
        self.net.post("node_state", self._reporter, (self.index, self.rq.state_row(self.loop.now)))
