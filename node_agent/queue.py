"""The agent's run queue: :class:`dodoor.runqueue.RunQueue` keyed by task id.

The core's FIFO with backfill (one implementation, shared with the simulator)
on the agent's entries: tasks and Sparrow reservations, found by id. A
reservation moved to the running set *holds* its resources while the agent
asks the scheduler to confirm it; :meth:`TaskQueue.promote` turns it into the
confirmed task.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from dodoor.cache import N_STATE
from dodoor.priority import effective_priority
from dodoor.resources import N_RESOURCES, Task, demand_matrix, fits
from dodoor.runqueue import QueueEntry, RunQueue

TASK = "task"
RESERVATION = "reservation"


class Entry(QueueEntry):
    """One queued or running unit of work. ``kind`` is ``task`` or ``reservation``."""

    __slots__ = ("task", "kind", "scheduler_id", "reply_url", "queued_ms", "started_ms", "note")

    def __init__(self, task: Task, kind: str = TASK, scheduler_id: str = "", reply_url: str = "",
                 queued_ms: float = 0.0, started_ms: float | None = None,
                 estimate_ms: float | None = None) -> None:
        # the pending work it counts: the scheduler's learned estimate when the enqueue
        # carried one (wire.Enqueue.estimate_ms), else the declared duration
        super().__init__((task.cores, task.memory_mb, task.disk_mb),
                         task.duration_ms if estimate_ms is None else estimate_ms, task.priority)
        self.since_ms = queued_ms  # aging counts from the arrival, on the agent's clock
        self.task = task
        self.kind = kind
        self.scheduler_id = scheduler_id
        self.reply_url = reply_url
        self.queued_ms = queued_ms
        self.started_ms = started_ms
        self.note: str | None = None  # why it waits again (a preempted task), for its status

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def __repr__(self) -> str:
        return f"Entry({self.task_id!r}, {self.kind})"


class QueueError(ValueError):
    """An operation named an entry in the wrong place (unknown, duplicate, not waiting)."""


class TaskQueue:
    """FIFO with backfill by task id; see the module docstring."""

    def __init__(self, capacity: np.ndarray, slots: int) -> None:
        cap = np.asarray(capacity, dtype=np.float64)
        if cap.shape != (N_RESOURCES,):
            raise ValueError(f"capacity must have {N_RESOURCES} entries, got {cap.shape}")
        self._rq: RunQueue[Entry] = RunQueue(cap.tolist(), slots)
        self.capacity = cap.copy()
        self.slots = self._rq.slots
        self._by_id: dict[str, Entry] = {}

    # -- inspection -------------------------------------------------------
    def __contains__(self, task_id: str) -> bool:
        return task_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, task_id: str) -> Entry | None:
        return self._by_id.get(task_id)

    def is_running(self, task_id: str) -> bool:
        entry = self._by_id.get(task_id)
        return entry is not None and entry in self._rq.running

    @property
    def waiting(self) -> Iterator[Entry]:
        return iter(tuple(self._rq.waiting))

    @property
    def running(self) -> Iterator[Entry]:
        return iter(tuple(self._rq.running))

    @property
    def n_waiting(self) -> int:
        return len(self._rq.waiting)

    @property
    def n_running(self) -> int:
        return len(self._rq.running)

    @property
    def committed(self) -> np.ndarray:
        """Sum of demands of every waiting and running entry."""
        return np.array(self._rq.committed, dtype=np.float64)

    @property
    def free(self) -> np.ndarray:
        """Capacity not held by running entries (may be negative after a restart)."""
        return np.array(self._rq.free, dtype=np.float64)

    def fits_node(self, task: Task) -> bool:
        """Whether the task could ever run here (its demand within the capacity)."""
        return bool(fits(task.demand(), self.capacity))

    def fits_node_each(self, tasks: Sequence[Task]) -> np.ndarray:
        """``fits_node`` of every task, as booleans: one comparison for a whole batch."""
        if not tasks:
            return np.zeros(0, dtype=bool)
        return np.asarray(fits(demand_matrix(tasks), self.capacity), dtype=bool)

    def state(self, now_ms: float) -> np.ndarray:
        """The node's row in ``STATE_COLUMNS`` order at ``now_ms``
        (:meth:`dodoor.runqueue.RunQueue.state_row`)."""
        return np.array(self._rq.state_row(now_ms), dtype=np.float64).reshape(N_STATE)

    # -- changes ----------------------------------------------------------
    def add(self, entry: Entry) -> None:
        """Append an entry at the tail of the queue."""
        self._claim(entry)
        self._rq.push(entry)

    def add_running(self, entry: Entry, now_ms: float) -> None:
        """Put an entry straight into the running set (a task adopted after a restart)."""
        self._claim(entry)
        if entry.started_ms is None:
            entry.started_ms = now_ms
        self._rq.adopt(entry, entry.started_ms)

    def _claim(self, entry: Entry) -> None:
        if entry.task_id in self._by_id:
            raise QueueError(f"task {entry.task_id!r} is already queued")
        self._by_id[entry.task_id] = entry

    def schedule(self, now_ms: float) -> list[Entry]:
        """Start, in queue order, every waiting entry that fits; return them."""
        started = self._rq.backfill(now_ms)
        for entry in started:
            entry.started_ms = now_ms
        return started

    def finish(self, task_id: str) -> Entry:
        """A running entry ended (or a held reservation was released)."""
        entry = self._by_id.get(task_id)
        if entry is None or entry not in self._rq.running:
            raise QueueError(f"task {task_id!r} is not running")
        self._rq.finish(entry)
        del self._by_id[task_id]
        return entry

    def drop_waiting(self, task_id: str) -> Entry | None:
        """Remove a waiting entry (a cancelled reservation); None if it is not waiting."""
        entry = self._by_id.get(task_id)
        if entry is None or not self._rq.drop(entry):
            return None
        del self._by_id[task_id]
        return entry

    def promote(self, task_id: str, task: Task, now_ms: float | None = None) -> Entry:
        """Turn a held reservation into the task the scheduler confirmed, keeping its place.

        The task's run is counted from ``now_ms`` (default: when the hold began).
        """
        entry = self._by_id.get(task_id)
        if entry is None or entry.kind != RESERVATION or entry not in self._rq.running:
            raise QueueError(f"no held reservation {task_id!r}")
        start = now_ms if now_ms is not None else entry.started_ms or 0.0
        self._rq.restart(entry, (task.cores, task.memory_mb, task.disk_mb), task.duration_ms,
                         start)
        entry.task = task
        entry.kind = TASK
        entry.priority = task.priority  # running: no waiting class count to keep in step
        return entry

    # -- preemption (node_agent.preemption) ---------------------------------
    def top(self) -> Entry | None:
        """The first waiting entry of the highest class (before aging), or None.

        Kept first by the run queue's order, so this is O(1)."""
        waiting = self._rq.waiting
        return waiting[0] if waiting else None

    def rank(self, entry: Entry, now_ms: float) -> int:
        """``entry``'s class after aging (:func:`dodoor.priority.effective_priority`)."""
        return effective_priority(entry.priority, now_ms - entry.since_ms, self._rq.aging_ms)

    def victims(self, entry: Entry) -> list[Entry] | None:
        """The running entries to stop so ``entry`` starts: the core's choice
        (:meth:`dodoor.runqueue.RunQueue.victims`, as in the simulator)."""
        return self._rq.victims(entry.demand, entry.priority)

    def requeue(self, task_id: str, note: str | None = None) -> Entry:
        """A stopped running entry waits again, keeping its aging clock
        (:meth:`dodoor.runqueue.RunQueue.requeue`); ``note`` says why in its status."""
        entry = self._by_id.get(task_id)
        if entry is None or entry not in self._rq.running:
            raise QueueError(f"task {task_id!r} is not running")
        self._rq.requeue(entry)
        entry.started_ms = None
        entry.note = note
        return entry
