"""The simulated load store: last node reports plus scheduler deltas, b-batched snapshots."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dodoor.cache import N_STATE, DeltaBatch
from dodoor.sim.network import Network

SnapshotSink = Callable[[np.ndarray], None]


class SimLoadStore:
    """Soft state of every node, pushed to every scheduler each ``b`` placements.

    A node's row is its last report plus the deltas received since; a report
    supersedes those deltas (the node already counts the tasks they describe),
    so deltas never pile up.
    """

    def __init__(self, n_nodes: int, b: int, net: Network) -> None:
        self.reported = np.zeros((n_nodes, N_STATE), dtype=np.float64)
        self.since = np.zeros((n_nodes, N_STATE), dtype=np.float64)
        self.b = b
        self.net = net
        self.placements = 0
        self.snapshots = 0
        self._sinks: list[SnapshotSink] = []

    def subscribe(self, sinks: Sequence[SnapshotSink]) -> None:
        self._sinks.extend(sinks)

    def view(self) -> np.ndarray:
        return self.reported + self.since

    def on_report(self, node: int, state: np.ndarray) -> None:
        """A ``node_state`` arrives."""
        self.reported[node] = state
        self.since[node] = 0.0

    def on_deltas(self, batch: DeltaBatch) -> None:
        """A ``deltas`` batch arrives; every b placements push a snapshot."""
        self.since[list(batch.nodes)] += batch.deltas
        self.placements += batch.placements
        while self.placements >= self.b:
            self.placements -= self.b
            self.snapshots += 1
            snapshot = self.view()
            for sink in self._sinks:
                self.net.send("snapshot", sink, snapshot)
