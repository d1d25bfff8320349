"""The load cache: every node's load as an N×S numpy matrix, plus own deltas.

State columns (``STATE_COLUMNS``): committed cores, memory and disk (demands
queued and running), task count, pending duration in ms. A scheduler replaces
the matrix with each pushed snapshot and re-applies the deltas it has not yet
flushed — the snapshot cannot contain those — so its own recent placements are
never forgotten. Every placement is applied locally at once and batched; each
k placements yield one :class:`DeltaBatch` for the load store.

With ``echo`` > 0 (docs/evaluation.md, "Herding") each own placement also adds
``echo`` copies of itself to the local view only — never to the deltas — as a
guess of what the other schedulers, working from the same snapshot, placed
there meanwhile; the next snapshot of a row drops its echoes, since it holds
the others' real placements.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np

from dodoor.resources import N_RESOURCES, N_STATE, PENDING, STATE_COLUMNS, TASKS, Task
from dodoor.score import squared_capacity

__all__ = ["STATE_COLUMNS", "N_STATE", "TASKS", "PENDING", "state_row", "delta_row", "task_delta",
           "CandidateView", "DeltaBatch", "LoadCache"]


def state_row(committed: Sequence[float], tasks: float, pending_ms: float) -> list[float]:
    """A node's state as a list in ``STATE_COLUMNS`` order: the one place that order is built."""
    return [*committed, tasks, pending_ms]  # RESOURCES, then TASKS, then PENDING


def delta_row(demand: Sequence[float], duration_ms: float) -> list[float]:
    """The state change one placement of a task with ``demand`` causes on its node."""
    return state_row(demand, 1.0, duration_ms)


def task_delta(task: Task) -> np.ndarray:
    """:func:`delta_row` of ``task`` as an array."""
    return np.array(delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms),
                    dtype=np.float64)


@dataclass(frozen=True, slots=True)
class CandidateView:
    """What a policy sees of its d candidates, from a cache, probes or the oracle."""

    nodes: np.ndarray  # (d,) int node indices
    capacity: np.ndarray  # (d, R)
    state: np.ndarray  # (d, S) in STATE_COLUMNS order
    slots: np.ndarray  # (d,)
    start_ms: np.ndarray | None = None  # (d,) earliest start, oracle only
    sq_capacity: np.ndarray | None = None  # (d, R) dodoor.score.squared_capacity, if known

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


@dataclass(frozen=True, slots=True)
class DeltaBatch:
    """Accumulated own placements per node, sent to the load store every k."""

    nodes: tuple[int, ...]
    deltas: np.ndarray  # (len(nodes), S)
    placements: int


class LoadCache:
    """A scheduler's cached view of the cluster (see module docstring)."""

    def __init__(self, capacity: np.ndarray, slots: np.ndarray, k: int = 8,
                 echo: float = 0.0) -> None:
        self.capacity = np.asarray(capacity, dtype=np.float64)
        self.slots = np.asarray(slots, dtype=np.float64)
        self.sq_capacity = squared_capacity(self.capacity)  # once, not per scored task
        # what never changes, side by side, so a view gathers it in one call
        self._static = np.hstack([self.capacity, self.slots[:, None], self.sq_capacity])
        n = self.capacity.shape[0]
        self.state = np.zeros((n, N_STATE), dtype=np.float64)
        # the same memory as flat doubles: a placement adds its five values as Python
        # floats (the same IEEE sums), without numpy's cost of a call on a 5-vector;
        # state is never rebound (snapshots are copied into it)
        self._flat = memoryview(self.state.reshape(-1))  # a view: shares the memory
        self.k = k
        self._unflushed: dict[int, list[float]] = {}  # node -> summed own deltas
        self._placements = 0
        self.snapshots_applied = 0
        self.echo = echo  # kept out of _unflushed, so a snapshot's copy drops the echoes

    @property
    def n_nodes(self) -> int:
        return int(self.capacity.shape[0])

    def view(self, nodes: Sequence[int] | np.ndarray) -> CandidateView:
        """The rows of ``nodes`` (a B×d array of node indices gives a stacked view).

        Two gathers (``take``, several times faster than fancy indexing) — the
        state rows and the static ones — since numpy's fixed cost per call is
        what a view of d rows pays for.
        """
        idx = np.asarray(nodes, dtype=np.intp)
        static = self._static.take(idx, axis=0)
        return CandidateView(idx, static[..., :N_RESOURCES], self.state.take(idx, axis=0),
                             static[..., N_RESOURCES], None, static[..., N_RESOURCES + 1:])

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
        delta = delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms)
        self._add(node, delta)
        if self.echo > 0.0:
            self.state[node] += np.asarray(delta) * self.echo
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
        delta = delta_row((task.cores, task.memory_mb, task.disk_mb), task.duration_ms)
        self._add(node, [-v for v in delta])

    def _add(self, node: int, delta: list[float]) -> None:
        """Add one :func:`delta_row` to the node's row and unflushed sum.

        Python floats through the flat view and plain lists, unrolled: the same
        IEEE sums as numpy's, without its fixed cost per call on a 5-vector.
        """
        v0, v1, v2, v3, v4 = delta  # N_STATE values, whatever the columns mean
        flat, row = self._flat, node * N_STATE  # a node outside raises before any change
        flat[row] += v0
        flat[row + 1] += v1
        flat[row + 2] += v2
        flat[row + 3] += v3
        flat[row + 4] += v4
        acc = self._unflushed.get(node)
        if acc is None:
            self._unflushed[node] = [1.0 * v0, 1.0 * v1, 1.0 * v2, 1.0 * v3, 1.0 * v4]
        else:
            acc[0] += v0
            acc[1] += v1
            acc[2] += v2
            acc[3] += v3
            acc[4] += v4

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
