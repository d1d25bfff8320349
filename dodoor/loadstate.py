"""The load store's state: each node's last report plus the deltas since, and b-counting.

The one implementation of the load store's state machine (docs/design.md §2),
wrapped by the simulated store (``dodoor/sim/loadstore.py``) and the daemon
(``scheduler/loadstore/state.py``), each with its own clock, transport and — for the
daemon — membership and task index. Pure: times are passed in.

* A node is a row. Its state is its last report plus the scheduler deltas
  received since; a report supersedes those deltas (the node already counts
  the tasks they describe), so deltas never pile up.
* Placements are counted over all schedulers; when ``b`` have been counted
  since the last push, :meth:`LoadState.count` says a push is due and the
  count restarts (an adaptive b is re-chosen at that moment).
* Every snapshot taken gets the next version (:meth:`LoadState.next_seq`).
* A report that changes what a snapshot would show sets ``changed`` until the
  next snapshot is taken: the daemon's refresh push (docs/daemons.md,
  "Snapshots") reads it, so a view that hides a placement, or still counts
  tasks that ended, is corrected while nothing is placed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dodoor.cache import N_STATE
from dodoor.snapshots import AdaptiveBatch


class LoadState:
    """Rows of node state (report + deltas since), the b-count and the snapshot version."""

    def __init__(self, n_rows: int, b: int, adaptive_target_ms: float = 0.0,
                 start_ms: float = 0.0) -> None:
        if b < 1:
            raise ValueError(f"b must be >= 1, got {b}")
        # the rows in use are views of buffers with room to grow into
        self._room = n_rows
        self._reported_buf = np.zeros((n_rows, N_STATE), dtype=np.float64)
        self._since_buf = np.zeros((n_rows, N_STATE), dtype=np.float64)
        self.reported = self._reported_buf[:n_rows]
        self.since = self._since_buf[:n_rows]
        self.b = b
        # optional: b follows the placement rate to hold snapshot age near a target
        self.adaptive = (AdaptiveBatch(adaptive_target_ms, b, start_ms=start_ms)
                         if adaptive_target_ms > 0 else None)
        self.placements = 0  # every placement counted
        self.since_push = 0  # placements counted since the last push
        self.seq = 0  # version of the last snapshot taken
        self.changed = False  # a report changed a row since the last snapshot taken

    @property
    def n_rows(self) -> int:
        return int(self.reported.shape[0])

    def grow(self, n: int = 1) -> int:
        """Add ``n`` rows of zeros (nodes that joined); returns the first new row."""
        first = self.n_rows
        if first + n > self._room:  # doubling: joins one by one stay linear overall
            self._room = max(2 * self._room, first + n, 16)
            for name in ("_reported_buf", "_since_buf"):
                old = getattr(self, name)
                buf = np.zeros((self._room, N_STATE), dtype=np.float64)
                buf[:first] = old[:first]
                setattr(self, name, buf)
        self.reported = self._reported_buf[:first + n]
        self.since = self._since_buf[:first + n]
        return first

    def report(self, rows: Sequence[int], states: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Install the nodes' reported states (one row each); their deltas are dropped."""
        if not self.changed:
            self.changed = not np.array_equal(self.view(rows), np.asarray(states, np.float64)
                                              .reshape(len(rows), N_STATE))
        self.reported[rows] = states
        self.since[rows] = 0.0

    def add_deltas(self, rows: Sequence[int], deltas: np.ndarray) -> None:
        """Add a scheduler's per-node deltas to the nodes' states (a repeated row adds up)."""
        np.add.at(self.since, rows, deltas)

    def count(self, placements: int, now_ms: float) -> bool:
        """Count ``placements``; True when b were counted since the last push (it is due now)."""
        self.placements += placements
        self.since_push += placements
        if self.since_push < self.b:
            return False
        if self.adaptive is not None:
            self.b = self.adaptive.observe(now_ms, self.since_push)
        self.since_push = 0
        return True

    def view(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Each node's state (all rows, or ``rows`` in that order): report plus deltas."""
        if rows is None:
            return self.reported + self.since
        idx = np.asarray(rows, dtype=np.intp)
        return self.reported[idx] + self.since[idx]

    def next_seq(self) -> int:
        """The version of a snapshot taken now: one more than the last one's."""
        self.seq += 1
        self.changed = False
        return self.seq
