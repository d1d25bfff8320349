"""A simulated node agent: capacity vector plus slots, FIFO with backfill.

When anything arrives or ends the node starts, in queue order, every waiting
entry that fits the free resources and a free slot. Entries are tasks or
Sparrow reservations; a reservation that gets room holds the task's resources
and sends ``confirm``; the scheduler's ``enqueue`` then runs the task in the
held room, its ``cancel`` releases it.

The state a node reports (``dodoor.cache.STATE_COLUMNS``) is committed
cores/memory/disk and task count over queued and running tasks, and pending
duration: queued durations plus the remaining time of running tasks.
Reservations are not tasks yet and are left out.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import numpy as np

from dodoor.resources import NodeSpec
from dodoor.sim.engine import EventLoop, Mailbox
from dodoor.sim.network import Network
from dodoor.sim.records import TaskRecords

EPS = 1e-6  # trace demands such as 0.42000000000000004 cores drift under +/-


class Entry:
    """A task (or a reservation for one) travelling to and waiting on a node."""

    __slots__ = ("index", "demand", "duration", "estimate", "job", "held", "cancelled", "end")

    def __init__(self, index: int, demand: tuple[float, float, float], duration: float,
                 job: Any = None, estimate: float | None = None) -> None:
        self.index = index
        self.demand = demand
        self.duration = duration  # how long it really runs
        # what the scheduler declared and the node counts as pending work (the agent
        # knows no better); the same as duration unless estimates are wrong
        self.estimate = duration if estimate is None else estimate
        self.job = job  # the Sparrow job for a reservation, None for a task
        self.held = False
        self.cancelled = False
        self.end = 0.0


class SimNode:
    """One node; its methods are the message handlers of the agent."""

    def __init__(self, index: int, spec: NodeSpec, loop: EventLoop, net: Network,
                 records: TaskRecords, reporter: Mailbox | None = None,
                 report_interval_ms: float = 100.0, start_overhead_ms: float = 0.0,
                 exact_estimates: bool = True) -> None:
        self.index = index
        self.spec = spec
        self.loop = loop
        self.net = net
        self.records = records
        self.capacity = (float(spec.cores), float(spec.memory_mb), float(spec.disk_mb))
        self.slots = int(spec.slots)
        self.free = list(self.capacity)
        self.free_slots = self.slots
        self.overhead = start_overhead_ms  # slot time beyond a task's duration (containers)
        self.queue: list[Entry] = []
        self.running: dict[Entry, None] = {}  # insertion-ordered, so replays are deterministic
        # (arrival ms, entry) of enqueues in flight, tracked for the oracle only
        self.inbound: deque[tuple[float, Entry]] = deque()
        self.committed = [0.0, 0.0, 0.0]
        self.tasks = 0
        self.queued_ms = 0.0
        self._end_sum = 0.0
        self.version = 0  # bumped on every change; the oracle caches by it
        self._reporter = reporter
        self._interval = report_interval_ms
        self._last_report = -float("inf")
        self._report_scheduled = False
        # with exact estimates no running task outlives its estimate, so pending work
        # is a running sum; otherwise each overdue task counts 0, as a live agent does
        self._exact = exact_estimates
        self.on_end: Callable[[Entry], None] | None = None  # told of every task that ends

    # -- message handlers -------------------------------------------------
    def enqueue(self, entry: Entry) -> None:
        """A task arrives (``enqueue``): it is placed now and joins the queue."""
        now = self.loop.now
        self.records.placed[entry.index] = now
        self.records.node[entry.index] = self.index
        if self.inbound and self.inbound[0][1] is entry:
            self.inbound.popleft()
        c, m, d = entry.demand
        com = self.committed
        com[0] += c
        com[1] += m
        com[2] += d
        self.tasks += 1
        self.queued_ms += entry.estimate
        self.version += 1
        self._admit(entry)

    def reserve(self, entry: Entry) -> None:
        """A Sparrow reservation joins the queue like a task."""
        self._admit(entry)

    def assign(self, entry: Entry) -> None:
        """The task for a confirmed reservation arrives and runs in the held room."""
        now = self.loop.now
        self.records.placed[entry.index] = now
        self.records.node[entry.index] = self.index
        c, m, d = entry.demand
        com = self.committed
        com[0] += c
        com[1] += m
        com[2] += d
        self.tasks += 1
        self.version += 1
        entry.held = False
        self._run(entry, now)

    def cancel(self, entry: Entry) -> None:
        """A reservation lost: release its hold or drop it from the queue."""
        entry.cancelled = True
        if entry.held:
            entry.held = False
            self._release(entry.demand)
            self._scan()
        else:
            try:
                self.queue.remove(entry)
            except ValueError:
                pass

    def withdraw(self, room: tuple[float, float, float]) -> Entry | None:
        """A move order (``cancel``) from rebalancing: the first queued task that fits
        ``room`` leaves this node, None when none does. Nothing has started it, so
        no slot or room is freed and nothing else can start."""
        for i, entry in enumerate(self.queue):
            c, m, d = entry.demand
            if (entry.job is None and c <= room[0] + EPS and m <= room[1] + EPS
                    and d <= room[2] + EPS):
                del self.queue[i]
                com = self.committed
                com[0] -= c
                com[1] -= m
                com[2] -= d
                self.tasks -= 1
                self.queued_ms -= entry.estimate
                self.version += 1
                return entry
        return None

    def probe(self, reply: Callable[..., None], *args: Any) -> None:
        """Answer a probe with the current state (``probe_reply``)."""
        self.net.send("probe_reply", reply, *args, self.index, self.state())

    # -- state --------------------------------------------------------------
    def pending_ms(self, now: float) -> float:
        if self._exact:
            return self.queued_ms + self._end_sum - len(self.running) * now
        start, overhead = self.records.start, self.overhead
        return self.queued_ms + sum(max(0.0, start[e.index] + e.estimate + overhead - now)
                                    for e in self.running)

    def state_row(self) -> list[float]:
        """The node's true state in STATE_COLUMNS order, as a list."""
        c, m, d = self.committed
        return [c, m, d, float(self.tasks), self.pending_ms(self.loop.now)]

    def state(self) -> np.ndarray:
        """The node's true state in STATE_COLUMNS order."""
        return np.array(self.state_row())

    # -- internals ----------------------------------------------------------
    def fits(self, demand: tuple[float, float, float]) -> bool:
        """Whether ``demand`` fits the free room and a free slot now."""
        free = self.free
        return (self.free_slots > 0 and demand[0] <= free[0] + EPS
                and demand[1] <= free[1] + EPS and demand[2] <= free[2] + EPS)

    def _admit(self, entry: Entry) -> None:
        # Whatever waits did not fit at its last chance and nothing has been
        # freed since, so a newcomer that fits starts at once: the backfill
        # scan would pick it too.
        if self.fits(entry.demand):
            self._start(entry)
        else:
            self.queue.append(entry)

    def _start(self, entry: Entry) -> None:
        c, m, d = entry.demand
        free = self.free
        free[0] -= c
        free[1] -= m
        free[2] -= d
        self.free_slots -= 1
        if entry.job is not None:
            entry.held = True
            self.net.send("confirm", entry.job.on_confirm, entry, self.index)
        else:
            self.queued_ms -= entry.estimate
            self._run(entry, self.loop.now)

    def _run(self, entry: Entry, now: float) -> None:
        entry.end = now + entry.duration + self.overhead
        self.records.start[entry.index] = now
        self.running[entry] = None
        self._end_sum += entry.end
        self.loop.call_at(entry.end, self._finish, entry)

    def _finish(self, entry: Entry) -> None:
        # runs once per task: the release and the report check are inlined
        running = self.running
        del running[entry]
        if running:
            self._end_sum -= entry.end
        else:
            self._end_sum = 0.0  # shed float drift whenever the node idles
        records = self.records
        records.end[entry.index] = self.loop.now
        records.finished += 1
        c, m, d = entry.demand
        com = self.committed
        com[0] -= c
        com[1] -= m
        com[2] -= d
        free = self.free
        free[0] += c
        free[1] += m
        free[2] += d
        self.free_slots += 1
        self.tasks -= 1
        self.version += 1
        self.net.count_only("completion")
        if self.on_end is not None:
            self.on_end(entry)
        if self.queue:
            self._scan()
        if self._reporter is not None and not self._report_scheduled:
            self._state_changed()

    def _release(self, demand: tuple[float, float, float]) -> None:
        free = self.free
        free[0] += demand[0]
        free[1] += demand[1]
        free[2] += demand[2]
        self.free_slots += 1

    def _scan(self) -> None:
        """Start, in queue order, every waiting entry that fits (backfill)."""
        queue = self.queue
        i = 0
        # started entries leave the list in place: no per-scan copy of a long queue
        while i < len(queue) and self.free_slots > 0:
            entry = queue[i]
            if self.fits(entry.demand):
                del queue[i]
                self._start(entry)
            else:
                i += 1

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
        self.net.post("node_state", self._reporter, (self.index, self.state_row()))
