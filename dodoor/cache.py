"""The load cache: every node's load as an N×S numpy matrix, plus own deltas.

A node's row holds one view per priority class (``STATE_COLUMNS`` each:
committed cores, memory and disk, queued and running, task count, pending ms)
of the entries of that class or above, so a task of class p is scored against
the load it competes for (docs/design.md §12); class 0's view counts every
entry and is what fit tests read. A scheduler replaces
the matrix with each pushed snapshot and re-applies the deltas it has not yet
flushed — the snapshot cannot contain those — so its own recent placements are
never forgotten. Every placement is applied locally at once and batched; each
k placements yield one :class:`DeltaBatch` for the load store.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np

from dodoor.priority import MAX_PRIORITY, N_CLASSES
from dodoor.resources import N_RESOURCES, N_STATE, N_VIEW, PENDING, STATE_COLUMNS, TASKS, Task
from dodoor.score import squared_capacity

__all__ = ["STATE_COLUMNS", "N_STATE", "N_VIEW", "TASKS", "PENDING", "state_row", "delta_row",
           "task_delta", "class_view", "rows_view", "CandidateView", "DeltaBatch", "LoadCache"]


def state_row(committed: Sequence[float], tasks: float, pending_ms: float,
              top: int = MAX_PRIORITY, above: Sequence[Sequence[float]] = ()) -> list[float]:
    """A node's row (``N_STATE`` values): the one place its order is built.

    ``committed``, ``tasks`` and ``pending_ms`` count every entry, of classes up
    to ``top``; when all are of class ``top`` the views of classes 1..top are
    the same and those above are zero. Otherwise ``above[c - 1]`` gives class
    c's view (``committed``, ``tasks``, ``pending_ms`` of classes c and above).
    """
    row = [*committed, tasks, pending_ms]  # RESOURCES, then TASKS, then PENDING
    if above:
        for view in above:
            row += view
        return row
    return row * (top + 1) + [0.0] * (N_VIEW * (MAX_PRIORITY - top))


def delta_row(demand: Sequence[float], duration_ms: float, priority: int) -> list[float]:
    """The state change one placement of a task of class ``priority`` causes on its node,
    up to the last class view it changes (those above are unchanged)."""
    return [*demand, 1.0, duration_ms] * (priority + 1)


def task_delta(task: Task) -> np.ndarray:
    """The full-row state change of placing ``task`` (:func:`delta_row`, zeros above)."""
    row = np.zeros(N_STATE, dtype=np.float64)
    delta = delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms, task.priority)
    row[:len(delta)] = delta
    return row


def class_view(rows: np.ndarray, priority: int) -> np.ndarray:
    """Class ``priority``'s view (``STATE_COLUMNS``) of full node rows (..., N_STATE)."""
    return rows[..., priority * N_VIEW:(priority + 1) * N_VIEW]


@dataclass(frozen=True, slots=True)
class CandidateView:
    """What a policy sees of its d candidates, from a cache, probes or the oracle."""

    nodes: np.ndarray  # (d,) int node indices
    capacity: np.ndarray  # (d, R)
    state: np.ndarray  # (d, V): the task's class view, STATE_COLUMNS order
    slots: np.ndarray  # (d,)
    start_ms: np.ndarray | None = None  # (d,) earliest start, oracle only
    sq_capacity: np.ndarray | None = None  # (d, R) dodoor.score.squared_capacity, if known
    # (d, V) class 0's view, every entry: what holds the resources, so fit tests read it
    # (a lower class's running task still blocks); None when ``state`` is that view
    total: np.ndarray | None = None

    # ``...``: a host may stack the views of many tasks on leading axes (B, d, ...)
    @property
    def load(self) -> np.ndarray:
        return self.state[..., :N_RESOURCES]

    @property
    def tasks(self) -> np.ndarray:
        return self.state[..., TASKS]

    @property
    def pending(self) -> np.ndarray:
        return self.state[..., PENDING]

    @property
    def totals(self) -> np.ndarray:
        """Every entry's state (class 0's view), which fit and wait tests read."""
        return self.state if self.total is None else self.total


def rows_view(nodes: np.ndarray, capacity: np.ndarray, rows: np.ndarray, slots: np.ndarray,
              priority: int, start_ms: np.ndarray | None = None) -> CandidateView:
    """A view of full node rows (probe replies, the oracle's true state) for a task of
    class ``priority``: scored on its class's view, fit-tested on every entry."""
    return CandidateView(nodes, capacity, class_view(rows, priority), slots, start_ms,
                         None, class_view(rows, 0))


@dataclass(frozen=True, slots=True)
class DeltaBatch:
    """Accumulated own placements per node, sent to the load store every k."""

    nodes: tuple[int, ...]
    deltas: np.ndarray  # (len(nodes), S)
    placements: int


class LoadCache:
    """A scheduler's cached view of the cluster (see module docstring)."""

    def __init__(self, capacity: np.ndarray, slots: np.ndarray, k: int = 8) -> None:
        self.capacity = np.asarray(capacity, dtype=np.float64)
        self.slots = np.asarray(slots, dtype=np.float64)
        self.sq_capacity = squared_capacity(self.capacity)  # once, not per scored task
        # what never changes, side by side, so a view gathers it in one call
        self._static = np.hstack([self.capacity, self.slots[:, None], self.sq_capacity])
        n = self.capacity.shape[0]
        self.state = np.zeros((n, N_STATE), dtype=np.float64)
        # each class's view of every node, sharing the state's memory
        by_class = self.state.reshape(n, N_CLASSES, N_VIEW)
        self._by_class = by_class
        self._class_views = [by_class[:, c] for c in range(N_CLASSES)]
        # the same memory as flat doubles: a placement adds its five values as Python
        # floats (the same IEEE sums), without numpy's cost of a call on a 5-vector;
        # state is never rebound (snapshots are copied into it)
        self._flat = memoryview(self.state.reshape(-1))  # a view: shares the memory
        self.k = k
        self._unflushed: dict[int, list[float]] = {}  # node -> summed own deltas
        self._placements = 0
        self.snapshots_applied = 0

    @property
    def n_nodes(self) -> int:
        return int(self.capacity.shape[0])

    def view(self, nodes: Sequence[int] | np.ndarray,
             priority: int | np.ndarray = 0) -> CandidateView:
        """Class ``priority``'s view of ``nodes`` (a B×d array of node indices gives a
        stacked view; then ``priority`` may be a (B,) array, one class per task).

        Two gathers (``take``, several times faster than fancy indexing) — the
        state rows and the static ones — since numpy's fixed cost per call is
        what a view of d rows pays for.
        """
        idx = np.asarray(nodes, dtype=np.intp)
        static = self._static.take(idx, axis=0)
        total = self._class_views[0].take(idx, axis=0)
        if isinstance(priority, np.ndarray):
            state = self._by_class[idx, priority.reshape(-1, 1)]
        elif priority:
            state = self._class_views[priority].take(idx, axis=0)
        else:
            state = total
        return CandidateView(idx, static[..., :N_RESOURCES], state, static[..., N_RESOURCES],
                             None, static[..., N_RESOURCES + 1:], total)

    def replace(self, state: np.ndarray) -> None:
        """Install a snapshot (N×S) and re-apply deltas not yet sent to the store."""
        if state.shape != self.state.shape:
            raise ValueError(f"snapshot shape {state.shape} != cache shape {self.state.shape}")
        np.copyto(self.state, state)
        for node, delta in self._unflushed.items():
            self.state[node] += delta
        self.snapshots_applied += 1

    def replace_rows(self, nodes: np.ndarray, rows: np.ndarray) -> None:
        """Install a delta snapshot: only ``rows`` of ``nodes`` are new.

        Like :meth:`replace` for those rows (unflushed deltas re-applied); the
        other rows keep the cached value, own deltas included.
        """
        idx = np.asarray(nodes, dtype=np.intp)
        self.state[idx] = rows
        if self._unflushed:
            for node in idx.tolist():
                delta = self._unflushed.get(node)
                if delta is not None:
                    self.state[node] += delta
        self.snapshots_applied += 1

    def record_placement(self, node: int, task: Task) -> DeltaBatch | None:
        """Apply a placement locally; every k placements return the batch to send."""
        self._add(node, delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms,
                                  task.priority))
        self._placements += 1
        if self._placements >= self.k:
            return self.flush()
        return None

    def undo_placement(self, node: int, task: Task) -> None:
        """Take back a placement whose enqueue failed (the task went elsewhere).

        The negative delta joins the unflushed batch so the load store is
        corrected too; the placement count is left as it was.
        """
        # x + (-v) is x - v to the bit
        delta = delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms,
                          task.priority)
        self._add(node, [-v for v in delta])

    def _add(self, node: int, delta: list[float]) -> None:
        """Add one :func:`delta_row` (a prefix of a row) to the node's row and unflushed sum.

        Python floats through the flat view and plain lists: the same IEEE sums as
        numpy's, without its fixed cost per call on a few values.
        """
        flat, row = self._flat, node * N_STATE  # a node outside raises before any change
        for i, v in enumerate(delta, row):
            flat[i] += v
        acc = self._unflushed.get(node)
        if acc is None:
            acc = self._unflushed[node] = [0.0] * N_STATE
        for i, v in enumerate(delta):
            acc[i] += v

    def flush(self) -> DeltaBatch | None:
        """Hand over every unflushed delta (e.g. on shutdown); None if there are none."""
        if not self._unflushed:
            return None
        unflushed = self._unflushed
        nodes = tuple(unflushed)
        # one flat pass over the sums (in node order): cheaper than np.array of nested lists
        deltas = np.fromiter(chain.from_iterable(unflushed.values()), np.float64,
                             N_STATE * len(nodes)).reshape(len(nodes), N_STATE)
        batch = DeltaBatch(nodes, deltas, self._placements)
        self._unflushed.clear()
        self._placements = 0
        return batch

    @property
    def unflushed_placements(self) -> int:
        return self._placements
