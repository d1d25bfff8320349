"""The simulated load store: last node reports plus scheduler deltas, b-batched snapshots.

Options beyond the paper (``dodoor.snapshots``): delta snapshots (each
scheduler gets only the rows changed since its previous snapshot) and an
adaptive b that holds the mean snapshot age near a target.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dodoor.cache import DeltaBatch
from dodoor.loadstate import LoadState
from dodoor.snapshots import DeltaPublisher, SnapshotUpdate
from dodoor.sim.engine import Mailbox
from dodoor.sim.network import Network, wire_sizes

SnapshotSink = Callable[[SnapshotUpdate], None]


class SimLoadStore:
    """The core's :class:`~dodoor.loadstate.LoadState` (a row per node) on the simulated
    network: every push is one ``snapshot`` message per scheduler, sized by the wire
    model (full: every row; delta: changed rows)."""

    def __init__(self, n_nodes: int, b: int, net: Network, *, delta: bool = False,
                 adaptive_target_ms: float = 0.0) -> None:
        self.state = LoadState(n_nodes, b, adaptive_target_ms, start_ms=net.loop.now)
        self.net = net
        self.snapshots = 0
        self.resyncs = 0
        self.publisher = DeltaPublisher(n_nodes, epoch="sim") if delta else None
        self.b_trace: list[tuple[float, int]] = []  # (time, b) after each push when adaptive
        self._sinks: list[SnapshotSink] = []
        # node reports, (node index, row): read when the store next acts, the last per node wins
        self.reports = Mailbox(net.loop)
        self._all = np.arange(n_nodes, dtype=np.intp)
        self._sizes = wire_sizes()

    def subscribe(self, sinks: Sequence[SnapshotSink]) -> None:
        self._sinks.extend(sinks)

    def view(self) -> np.ndarray:
        self._apply_reports()
        return self.state.view()

    def _apply_reports(self) -> None:
        """Install the reports received so far, all rows in one assignment.

        Nothing reads the rows between two reports except the handlers that
        call this first, so deferring them changes no outcome and saves an
        event and a numpy row write per report.
        """
        arrived = self.reports.take()
        if not arrived:
            return
        latest: dict[int, Sequence[float]] = dict(item for _, item in arrived)
        nodes = list(latest)
        self.state.report(nodes, list(latest.values()))
        if self.publisher is not None:
            self.publisher.mark(nodes)

    def on_deltas(self, batch: DeltaBatch) -> None:
        """A ``deltas`` batch arrives; every b placements push a snapshot."""
        self._apply_reports()  # the reports that arrived before it
        nodes = list(batch.nodes)
        state = self.state
        state.add_deltas(nodes, batch.deltas)
        if self.publisher is not None:
            self.publisher.mark(nodes)
        if state.count(batch.placements, self.net.loop.now):
            self._push()
            if state.adaptive is not None:
                self.b_trace.append((self.net.loop.now, state.b))

    def resync(self, sub: int) -> None:
        """A scheduler saw a gap: its next snapshot is full, sent now."""
        self.resyncs += 1
        assert self.publisher is not None
        self.publisher.resync(sub)
        self._send(sub, self._sinks[sub], self.view())

    def _push(self) -> None:
        self.snapshots += 1
        self.state.next_seq()
        snapshot = self.view()
        for sub, sink in enumerate(self._sinks):
            self._send(sub, sink, snapshot)

    def _send(self, sub: int, sink: SnapshotSink, snapshot: np.ndarray) -> None:
        now = self.net.loop.now
        if self.publisher is None:
            update = SnapshotUpdate("sim", self.state.seq, -1, self._all, snapshot, True, now)
            base, per_row = self._sizes.full_snapshot
        else:
            update = self.publisher.update_for(sub, snapshot, now)
            base, per_row = (self._sizes.full_snapshot if update.full
                             else self._sizes.delta_snapshot)
        self.net.send_sized("snapshot", base + per_row * update.n_rows, sink, update)
