"""The node's run queue: FIFO with backfill over a capacity vector and slots.

Pure logic (no I/O, no clock of its own). Every entry — a task or a Sparrow
reservation — commits its demand from the moment it is added until it is
finished or dropped, so the committed load the agent reports is exactly what a
scheduler's placement added (``dodoor.cache.task_delta``). ``schedule`` moves,
in queue order, every waiting entry that fits the free resources and a free
slot to the running set; a reservation moved there *holds* its resources while
the agent asks the scheduler to confirm it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from dodoor.cache import N_STATE, PENDING, TASKS
from dodoor.resources import N_RESOURCES, Task, fits

TASK = "task"
RESERVATION = "reservation"


@dataclass(slots=True)
class Entry:
    """One queued or running unit of work. ``kind`` is ``task`` or ``reservation``."""

    task: Task
    kind: str = TASK
    scheduler_id: str = ""
    reply_url: str = ""
    queued_ms: float = 0.0
    started_ms: float | None = None
    # ``task.demand()`` kept once: the queue reads it on every add, start and finish.
    # Only ``TaskQueue.promote`` replaces ``task``, and it renews this too.
    demand: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.demand = self.task.demand()

    @property
    def task_id(self) -> str:
        return self.task.task_id


class QueueError(ValueError):
    """An operation named an entry in the wrong place (unknown, duplicate, not waiting)."""


class TaskQueue:
    """FIFO with backfill; see the module docstring."""

    def __init__(self, capacity: np.ndarray, slots: int) -> None:
        self.capacity = np.asarray(capacity, dtype=np.float64).copy()
        if self.capacity.shape != (N_RESOURCES,):
            raise ValueError(f"capacity must have {N_RESOURCES} entries, got {self.capacity.shape}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = int(slots)
        self._waiting: OrderedDict[str, Entry] = OrderedDict()
        self._running: dict[str, Entry] = {}
        self._committed = np.zeros(N_RESOURCES, dtype=np.float64)
        self._in_use = np.zeros(N_RESOURCES, dtype=np.float64)
        self._waiting_ms = 0.0  # sum of duration estimates of waiting entries

    # -- inspection -------------------------------------------------------
    def __contains__(self, task_id: str) -> bool:
        return task_id in self._waiting or task_id in self._running

    def __len__(self) -> int:
        return len(self._waiting) + len(self._running)

    def get(self, task_id: str) -> Entry | None:
        return self._waiting.get(task_id) or self._running.get(task_id)

    def is_running(self, task_id: str) -> bool:
        return task_id in self._running

    @property
    def waiting(self) -> Iterator[Entry]:
        return iter(tuple(self._waiting.values()))

    @property
    def running(self) -> Iterator[Entry]:
        return iter(tuple(self._running.values()))

    @property
    def n_waiting(self) -> int:
        return len(self._waiting)

    @property
    def n_running(self) -> int:
        return len(self._running)

    @property
    def committed(self) -> np.ndarray:
        """Sum of demands of every waiting and running entry."""
        return self._committed.copy()

    @property
    def free(self) -> np.ndarray:
        """Capacity not held by running entries (may be negative after a restart)."""
        return self.capacity - self._in_use

    def fits_node(self, task: Task) -> bool:
        """Whether the task could ever run here (its demand within the capacity)."""
        return bool(fits(task.demand(), self.capacity))

    def fits_node_each(self, tasks: Sequence[Task]) -> np.ndarray:
        """``fits_node`` of every task, as booleans: one comparison for a whole batch."""
        if not tasks:
            return np.zeros(0, dtype=bool)
        return np.asarray(fits(np.stack([t.demand() for t in tasks]), self.capacity), dtype=bool)

    def state(self, now_ms: float) -> np.ndarray:
        """The node's row in ``STATE_COLUMNS`` order at ``now_ms``.

        Pending time is the full estimate of each waiting entry plus the
        remaining estimate (never below 0) of each running one.
        """
        out = np.zeros(N_STATE, dtype=np.float64)
        out[:N_RESOURCES] = self._committed
        out[TASKS] = len(self)
        pending = max(0.0, self._waiting_ms)
        for e in self._running.values():
            elapsed = now_ms - (e.started_ms if e.started_ms is not None else now_ms)
            pending += max(0.0, e.task.duration_ms - elapsed)
        out[PENDING] = pending
        return out

    # -- changes ----------------------------------------------------------
    def add(self, entry: Entry) -> None:
        """Append an entry at the tail of the queue."""
        if entry.task_id in self:
            raise QueueError(f"task {entry.task_id!r} is already queued")
        self._waiting[entry.task_id] = entry
        self._committed += entry.demand
        self._waiting_ms += entry.task.duration_ms

    def add_running(self, entry: Entry, now_ms: float) -> None:
        """Put an entry straight into the running set (a task adopted after a restart)."""
        if entry.task_id in self:
            raise QueueError(f"task {entry.task_id!r} is already queued")
        if entry.started_ms is None:
            entry.started_ms = now_ms
        self._running[entry.task_id] = entry
        self._committed += entry.demand
        self._in_use += entry.demand

    def schedule(self, now_ms: float) -> list[Entry]:
        """Start, in queue order, every waiting entry that fits; return them."""
        free_slots = self.slots - len(self._running)
        if free_slots <= 0 or not self._waiting:
            return []
        free = self.free
        started: list[Entry] = []
        for entry in self._waiting.values():  # no mutation here: removals happen below
            if not fits(entry.demand, free):
                continue
            free -= entry.demand
            started.append(entry)
            if len(started) == free_slots:
                break
        for entry in started:
            del self._waiting[entry.task_id]
            self._waiting_ms -= entry.task.duration_ms
            entry.started_ms = now_ms
            self._running[entry.task_id] = entry
            self._in_use += entry.demand
        return started

    def finish(self, task_id: str) -> Entry:
        """A running entry ended (or a held reservation was released)."""
        entry = self._running.pop(task_id, None)
        if entry is None:
            raise QueueError(f"task {task_id!r} is not running")
        self._in_use -= entry.demand
        self._committed -= entry.demand
        self._clean()
        return entry

    def drop_waiting(self, task_id: str) -> Entry | None:
        """Remove a waiting entry (a cancelled reservation); None if it is not waiting."""
        entry = self._waiting.pop(task_id, None)
        if entry is not None:
            self._committed -= entry.demand
            self._waiting_ms -= entry.task.duration_ms
            self._clean()
        return entry

    def promote(self, task_id: str, task: Task) -> Entry:
        """Turn a held reservation into the task the scheduler confirmed, keeping its place."""
        entry = self._running.get(task_id)
        if entry is None or entry.kind != RESERVATION:
            raise QueueError(f"no held reservation {task_id!r}")
        demand = task.demand()
        delta = demand - entry.demand
        self._committed += delta
        self._in_use += delta
        entry.task = task
        entry.demand = demand
        entry.kind = TASK
        return entry

    def _clean(self) -> None:
        # Repeated float additions and subtractions leave dust; an empty queue is exactly zero.
        if not self._waiting:
            self._waiting_ms = 0.0
        if not self._waiting and not self._running:
            self._committed[:] = 0.0
            self._in_use[:] = 0.0
        elif not self._running:
            self._in_use[:] = 0.0
