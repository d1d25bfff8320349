"""A node's run queue: FIFO with backfill over a capacity vector and slots.

The one implementation of the node's state machine, wrapped by the simulated
node (``dodoor/sim/node.py``) and the agent (``node_agent/queue.py``), each
with its own clock and messages. Pure: no I/O, no clock of its own — every
time is passed in.

* An entry commits its demand and its duration estimate from the moment it is
  added until it finishes or is dropped, so the committed load a node reports
  is what the schedulers' placements added (``dodoor.cache.task_delta``).
* Waiting entries are kept in :func:`order_key` order: the higher priority
  class first, arrival order within a class. :meth:`RunQueue.backfill` starts,
  in the order of :meth:`RunQueue.ranked` (the classes after aging,
  ``dodoor.priority.effective_priority``), every waiting entry that fits the
  free room and a free slot: FIFO with backfill within a class.
* Running entries are never preempted here; :meth:`RunQueue.victims` names
  the lower-class running entries a host that enables preemption would stop
  (docs/design.md §12).
* Only the room an entry holds while it runs counts against ``free``; a
  running entry is expected to end ``duration_ms`` (plus the queue's
  ``overhead_ms``) after it started, which gives the pending time.
"""

from __future__ import annotations

from typing import Generic, Sequence, TypeVar

from dodoor.cache import state_row
from dodoor.priority import DEFAULT_AGING_MS, DEFAULT_PRIORITY, effective_priority
from dodoor.resources import N_RESOURCES, fits_free

Demand = tuple[float, float, float]


class QueueEntry:
    """What the queue needs of an entry; hosts subclass it with their own fields."""

    __slots__ = ("demand", "duration_ms", "priority", "seq", "end_ms", "since_ms")

    def __init__(self, demand: Demand, duration_ms: float,
                 priority: int = DEFAULT_PRIORITY) -> None:
        self.demand = demand
        self.duration_ms = duration_ms
        self.priority = priority
        self.seq = 0  # set by the queue when the entry is added
        self.end_ms = 0.0  # expected end, set when the entry starts
        self.since_ms = 0.0  # when it joined the queue: aging counts from here


E = TypeVar("E", bound=QueueEntry)


def order_key(entry: QueueEntry) -> tuple[int, int]:
    """Where a waiting entry ranks before aging (lowest first): class, then arrival."""
    return (-entry.priority, entry.seq)


class RunQueue(Generic[E]):
    """Waiting and running entries of one node; see the module docstring."""

    def __init__(self, capacity: Sequence[float], slots: int, overhead_ms: float = 0.0,
                 aging_ms: float = DEFAULT_AGING_MS) -> None:
        if len(capacity) != N_RESOURCES:
            raise ValueError(f"capacity must have {N_RESOURCES} entries, got {list(capacity)}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.capacity: Demand = (float(capacity[0]), float(capacity[1]), float(capacity[2]))
        self.slots = int(slots)
        self.overhead_ms = overhead_ms  # slot time beyond a task's duration (containers)
        if not aging_ms >= 0.0:
            raise ValueError(f"aging_ms must be >= 0 (0 turns aging off), got {aging_ms!r}")
        self.aging_ms = aging_ms
        self.free = list(self.capacity)  # room not held by running entries (< 0 after adoption)
        self.free_slots = self.slots
        self.committed = [0.0, 0.0, 0.0]  # demands of every waiting and running entry
        self.waiting: list[E] = []
        self.running: dict[E, None] = {}  # insertion-ordered: replays are deterministic
        self.waiting_ms = 0.0  # duration estimates of the waiting entries
        self._seq = 0
        self._classes: dict[int, int] = {}  # priority -> waiting entries of that class
        # a waiting entry may fit the room now (room was freed, or it was pushed
        # unchecked since the last backfill), so a newcomer must not take it first
        self._unchecked = False

    def __len__(self) -> int:
        return len(self.waiting) + len(self.running)

    def fits(self, demand: Sequence[float]) -> bool:
        """Whether ``demand`` fits the free room and a free slot now."""
        return self.free_slots > 0 and fits_free(demand, self.free)

    # -- adding -------------------------------------------------------------
    def push(self, entry: E, now_ms: float | None = None) -> None:
        """Commit ``entry`` and let it wait its turn (the next :meth:`backfill` may start it).

        ``now_ms`` starts its aging clock; without it the entry keeps its ``since_ms``.
        """
        if now_ms is not None:
            entry.since_ms = now_ms
        self._commit(entry)
        self._wait(entry)
        self._unchecked = True

    def admit(self, entry: E, now_ms: float) -> bool:
        """Commit ``entry`` and start it at once when that is what a backfill would do.

        True if it started. After a backfill no waiting entry fits the free
        room, so while nothing has been freed or pushed since, a newcomer that
        fits is the one the next backfill would start.
        """
        entry.since_ms = now_ms
        self._commit(entry)
        if (not self._unchecked or not self.waiting) and self.fits(entry.demand):
            self._start(entry, now_ms)
            return True
        self._wait(entry)
        return False

    def adopt(self, entry: E, started_ms: float) -> None:
        """Put an entry straight into the running set (a task found running after a restart)."""
        self._commit(entry)
        self._start(entry, started_ms)

    def _commit(self, entry: E) -> None:
        c, m, d = entry.demand
        com = self.committed
        com[0] += c
        com[1] += m
        com[2] += d

    def _wait(self, entry: E) -> None:
        self._seq += 1
        entry.seq = self._seq
        waiting = self.waiting
        self.waiting_ms += entry.duration_ms
        classes = self._classes
        classes[entry.priority] = classes.get(entry.priority, 0) + 1
        if not waiting or waiting[-1].priority == entry.priority:
            waiting.append(entry)  # a later arrival of the last entry's class: the usual case
            return
        key = order_key(entry)
        if order_key(waiting[-1]) <= key:
            waiting.append(entry)  # always so in arrival order
            return
        lo, hi = 0, len(waiting)
        while lo < hi:  # after every entry ranked at or before it
            mid = (lo + hi) // 2
            if order_key(waiting[mid]) <= key:
                lo = mid + 1
            else:
                hi = mid
        waiting.insert(lo, entry)

    # -- starting -----------------------------------------------------------
    def ranked(self, now_ms: float) -> list[E]:
        """The waiting entries in the order a backfill now tries them.

        Highest effective class first (``dodoor.priority.effective_priority``),
        arrival order within one; entries of one class age alike, so with a
        single class waiting this is the stored order.
        """
        if len(self._classes) <= 1 or self.aging_ms <= 0.0:
            return list(self.waiting)
        aging = self.aging_ms
        return sorted(self.waiting, key=lambda e: (
            -effective_priority(e.priority, now_ms - e.since_ms, aging), e.seq))

    def backfill(self, now_ms: float) -> list[E]:
        """Start, in order, every waiting entry that fits; return them in start order."""
        self._unchecked = False
        if self.free_slots <= 0 and self.waiting:
            return []  # nothing can start: spare the ranking (a sort, with several classes)
        if len(self._classes) > 1 and self.aging_ms > 0.0:
            return self._backfill_ranked(now_ms)
        waiting = self.waiting
        started: list[E] = []
        i = 0
        # started entries leave the list in place: no copy of a long queue per scan
        while i < len(waiting) and self.free_slots > 0:
            entry = waiting[i]
            if fits_free(entry.demand, self.free):
                del waiting[i]
                self._unwait(entry)
                self._start(entry, now_ms)
                started.append(entry)
            else:
                i += 1
        if not waiting:
            self.waiting_ms = 0.0  # shed the float dust of the sums
        return started

    def _backfill_ranked(self, now_ms: float) -> list[E]:
        """:meth:`backfill` when aging may reorder the classes: scan :meth:`ranked`."""
        started: list[E] = []
        for entry in self.ranked(now_ms):
            if self.free_slots <= 0:
                break
            if fits_free(entry.demand, self.free):
                self._unwait(entry)
                self._start(entry, now_ms)
                started.append(entry)
        if started:
            gone = set(map(id, started))
            self.waiting[:] = [e for e in self.waiting if id(e) not in gone]
        if not self.waiting:
            self.waiting_ms = 0.0
        return started

    def _unwait(self, entry: E) -> None:
        self.waiting_ms -= entry.duration_ms
        classes = self._classes
        left = classes[entry.priority] - 1
        if left:
            classes[entry.priority] = left
        else:
            del classes[entry.priority]

    def _start(self, entry: E, now_ms: float) -> None:
        c, m, d = entry.demand
        free = self.free
        free[0] -= c
        free[1] -= m
        free[2] -= d
        self.free_slots -= 1
        entry.end_ms = now_ms + entry.duration_ms + self.overhead_ms
        self.running[entry] = None

    def restart(self, entry: E, demand: Demand, duration_ms: float, now_ms: float) -> None:
        """A running entry (a held reservation) becomes its task: new demand, clock from now."""
        old = entry.demand
        if entry not in self.running:
            raise ValueError(f"entry {entry!r} is not running")
        delta = (demand[0] - old[0], demand[1] - old[1], demand[2] - old[2])
        if delta != (0.0, 0.0, 0.0):
            for i in range(N_RESOURCES):
                self.committed[i] += delta[i]
                self.free[i] -= delta[i]
        entry.demand = demand
        entry.duration_ms = duration_ms
        entry.end_ms = now_ms + duration_ms + self.overhead_ms

    # -- ending -------------------------------------------------------------
    def finish(self, entry: E) -> None:
        """A running entry ended (or a held reservation was released): its room is free."""
        running = self.running
        del running[entry]  # KeyError names an entry that was not running
        c, m, d = entry.demand
        com = self.committed
        free = self.free
        if running:
            com[0] -= c
            com[1] -= m
            com[2] -= d
            free[0] += c
            free[1] += m
            free[2] += d
        else:  # an idle node holds exactly its capacity: no float dust left over
            free[:] = self.capacity
            if self.waiting:
                com[0] -= c
                com[1] -= m
                com[2] -= d
            else:
                com[:] = (0.0, 0.0, 0.0)
        self.free_slots += 1
        if self.waiting:
            self._unchecked = True

    def drop(self, entry: E) -> bool:
        """Remove a waiting entry (a cancelled one); False if it is not waiting."""
        try:
            self.waiting.remove(entry)
        except ValueError:
            return False
        c, m, d = entry.demand
        com = self.committed
        com[0] -= c
        com[1] -= m
        com[2] -= d
        self._unwait(entry)
        if not self.waiting:
            self.waiting_ms = 0.0
            if not self.running:
                com[:] = (0.0, 0.0, 0.0)
        return True

    # -- preemption (only where a host enables it) --------------------------
    def victims(self, demand: Sequence[float], priority: int) -> list[E] | None:
        """Running entries of a lower class whose stop would let ``demand`` start now.

        The lowest class first, the latest started first within a class (the
        least work lost); only as many as needed. None when even all of them
        would not make room; [] when ``demand`` fits already.
        """
        if self.fits(demand):
            return []
        lower = [e for e in self.running if e.priority < priority]
        lower.sort(key=lambda e: (e.priority, -e.end_ms + e.duration_ms))
        free = list(self.free)
        slots = self.free_slots
        chosen: list[E] = []
        for entry in lower:
            chosen.append(entry)
            for i in range(N_RESOURCES):
                free[i] += entry.demand[i]
            slots += 1
            if slots > 0 and fits_free(demand, free):
                return chosen
        return None

    def requeue(self, entry: E) -> None:
        """Stop a running entry and put it back to wait (a preempted one).

        It keeps its aging clock, so it outranks its class's newer arrivals
        and cannot be starved by repeated preemption.
        """
        self.finish(entry)
        self.push(entry)

    # -- state --------------------------------------------------------------
    def pending_ms(self, now_ms: float) -> float:
        """Waiting estimates plus what remains (never below 0) of each running one."""
        pending = self.waiting_ms
        for entry in self.running:
            left = entry.end_ms - now_ms
            if left > 0.0:
                pending += left
        return pending if pending > 0.0 else 0.0

    def state_row(self, now_ms: float) -> list[float]:
        """The node's state in ``dodoor.cache.STATE_COLUMNS`` order."""
        return state_row(self.committed, float(len(self.waiting) + len(self.running)),
                         self.pending_ms(now_ms))
