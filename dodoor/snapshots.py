"""Delta snapshots and adaptive batch size: the load store's push logic, pure.

A full snapshot costs N rows per scheduler per push, so at 100,000 nodes the
bytes per task grow with N. A delta snapshot carries only the rows that changed
since the receiving scheduler's previous snapshot. Each update names the
store's ``epoch`` (new on every store start), its ``seq`` for that scheduler
and the ``base_seq`` it extends; a receiver that sees another epoch or a base
it does not hold (a lost or reordered push) refuses it and asks for a full
resync instead of silently drifting.

Rows are addressed by node index: a change in the node set itself (join,
death, resize) is pushed as a full snapshot (:meth:`DeltaPublisher.force_full`).

:class:`AdaptiveBatch` picks b, the placements per push, from the measured
placement rate so that the mean age of the snapshot a decision uses stays
near a target: with placements at rate λ a snapshot is replaced every b/λ,
so a decision meets one that is b/(2λ) old on average — hence b ≈ 2·λ·target.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Hashable

import numpy as np


@dataclass(frozen=True, slots=True)
class SnapshotUpdate:
    """One push to one scheduler: full (every row) or delta (changed rows only)."""

    epoch: str
    seq: int
    base_seq: int  # the seq this update extends; -1 for a full snapshot
    nodes: np.ndarray  # (n,) int row indices; all rows in order when full
    rows: np.ndarray  # (n, S)
    full: bool
    made_ms: float = 0.0  # when the store built it (snapshot age starts here)

    @property
    def n_rows(self) -> int:
        return int(self.nodes.shape[0])


class DeltaPublisher:
    """Store side: tracks which rows changed and builds each scheduler's next update.

    ``mark(nodes)`` after every report or delta batch; ``update_for(sub, state)``
    when a push is due. A subscriber gets a full snapshot first, after
    ``resync(sub)`` and after ``force_full()``; otherwise only rows marked since
    its previous update.
    """

    def __init__(self, n_nodes: int, epoch: str | None = None) -> None:
        self.epoch = epoch or uuid.uuid4().hex
        self._version = 0
        self._changed = np.zeros(n_nodes, dtype=np.int64)  # version of each row's last change
        self._sent: dict[Hashable, tuple[int, int]] = {}  # sub -> (seq, version) last sent
        self.full_sent = 0
        self.delta_sent = 0

    @property
    def n_nodes(self) -> int:
        return int(self._changed.shape[0])

    def mark(self, nodes) -> None:
        """Rows ``nodes`` changed (a node report, a scheduler's delta batch)."""
        self._version += 1
        # a tuple would index several axes; an int or a list index rows
        self._changed[list(nodes) if isinstance(nodes, tuple) else nodes] = self._version

    def resize(self, n_nodes: int) -> None:
        """The node set changed: new row count, everyone gets a full snapshot next."""
        self._changed = np.zeros(n_nodes, dtype=np.int64)
        self.force_full()

    def force_full(self) -> None:
        """Every subscriber's next update is full (node set changed)."""
        self._sent = {sub: (seq, -1) for sub, (seq, _) in self._sent.items()}

    def resync(self, sub: Hashable) -> None:
        """``sub`` reported a gap or another epoch: its next update is full."""
        seq, _ = self._sent.get(sub, (0, -1))
        self._sent[sub] = (seq, -1)

    def forget(self, sub: Hashable) -> None:
        self._sent.pop(sub, None)

    def update_for(self, sub: Hashable, state: np.ndarray, now_ms: float = 0.0) -> SnapshotUpdate:
        """The next update for ``sub`` given the store's current view ``state`` (N×S)."""
        if state.shape[0] != self.n_nodes:
            raise ValueError(f"state has {state.shape[0]} rows, publisher tracks {self.n_nodes}")
        seq, version = self._sent.get(sub, (0, -1))
        new_seq = seq + 1
        if version < 0:
            nodes = np.arange(self.n_nodes, dtype=np.intp)
            update = SnapshotUpdate(self.epoch, new_seq, -1, nodes, state.copy(), True, now_ms)
            self.full_sent += 1
        else:
            nodes = np.flatnonzero(self._changed > version)
            update = SnapshotUpdate(self.epoch, new_seq, seq, nodes, state[nodes], False, now_ms)
            self.delta_sent += 1
        self._sent[sub] = (new_seq, self._version)
        return update


class Outcome(Enum):
    APPLIED = "applied"
    RESYNC = "resync"  # refused: ask the store for a full snapshot


class DeltaReceiver:
    """Scheduler side: holds the store's view as of the last applied update.

    ``base`` is what the store had sent, without this scheduler's own deltas;
    callers install ``rows`` of an applied update into their cache.
    """

    def __init__(self, n_nodes: int, n_state: int) -> None:
        self.base = np.zeros((n_nodes, n_state), dtype=np.float64)
        self.epoch: str | None = None
        self.seq = 0
        self.resyncs = 0

    def accept(self, update: SnapshotUpdate) -> Outcome:
        """Apply ``update`` if it extends what this receiver holds; else ask for a resync."""
        if update.full:
            if update.rows.shape != self.base.shape:
                self.base = np.array(update.rows, dtype=np.float64)
            else:
                np.copyto(self.base, update.rows)
            self.epoch, self.seq = update.epoch, update.seq
            return Outcome.APPLIED
        if update.epoch != self.epoch or update.base_seq != self.seq:
            self.resyncs += 1
            return Outcome.RESYNC
        self.base[update.nodes] = update.rows
        self.seq = update.seq
        return Outcome.APPLIED


class AdaptiveBatch:
    """Chooses b from the measured placement rate to hold snapshot age near a target.

    ``observe(now_ms, placements)`` at each push with the placements counted
    since the previous push (or since ``start_ms``); the rate is smoothed (EWMA
    with ``smoothing`` for the new sample) and b becomes round(2 · rate ·
    target), clamped to [b_min, b_max].
    """

    def __init__(self, target_ms: float, b_initial: int = 80, b_min: int = 1,
                 b_max: int = 100_000, smoothing: float = 0.3,
                 start_ms: float | None = None) -> None:
        if not (math.isfinite(target_ms) and target_ms > 0):
            raise ValueError(f"adaptive b target must be > 0 ms, got {target_ms}")
        if not 1 <= b_min <= b_max:
            raise ValueError(f"need 1 <= b_min <= b_max, got {b_min}, {b_max}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.target_ms = target_ms
        self.b_min = b_min
        self.b_max = b_max
        self.smoothing = smoothing
        self.b = min(max(int(b_initial), b_min), b_max)
        self.rate_per_ms: float | None = None
        # counting from the start lets the first push measure the rate already
        self._last_ms: float | None = start_ms

    def observe(self, now_ms: float, placements: int) -> int:
        """Record a push; returns the b to use until the next one."""
        last, self._last_ms = self._last_ms, now_ms
        if last is None or now_ms <= last or placements <= 0:
            return self.b
        sample = placements / (now_ms - last)
        if self.rate_per_ms is None:
            self.rate_per_ms = sample
        else:
            self.rate_per_ms += self.smoothing * (sample - self.rate_per_ms)
        self.b = min(max(int(round(2.0 * self.rate_per_ms * self.target_ms)), self.b_min),
                     self.b_max)
        return self.b
