"""Message types and their accounting, identical in the simulator and the daemons.

*Scheduling messages* are those that serve placement (docs/design.md §4): the enqueue,
probes and replies, reservations, confirmations, cancellations, scheduler
deltas, snapshot pushes (one per receiving scheduler) and node state reports.
Completion notices and everything else are counted but left out of that figure.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

SCHEDULING_TYPES: frozenset[str] = frozenset(
    {
        "enqueue",
        "probe",
        "probe_reply",
        "reserve",
        "confirm",
        "cancel",
        "deltas",
        "snapshot",
        "node_state",
    }
)
# Heartbeats are an idle agent's liveness reports (no state change since the last
# report): they serve failure detection, not placement, like metrics scrapes.
# A lookup (one per submission request: the cluster-wide claim of its new ids, or a
# status read of a task another scheduler placed) serves the delivery guarantees of
# docs/guarantees.md, not the choice of a node; it is counted apart, and reported.
OTHER_TYPES: frozenset[str] = frozenset(
    {"task_status", "completion", "register", "metrics", "heartbeat", "lookup", "lookup_reply"}
)
ALL_TYPES: frozenset[str] = SCHEDULING_TYPES | OTHER_TYPES


class MessageCounter:
    """Counts messages (and optionally bytes) by type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1, nbytes: int = 0) -> None:
        if kind not in ALL_TYPES:
            raise ValueError(f"unknown message type {kind!r}")
        self.counts[kind] += n
        if nbytes:
            self.bytes[kind] += nbytes

    def merge(self, other: "MessageCounter") -> None:
        self.counts.update(other.counts)
        self.bytes.update(other.bytes)

    @property
    def scheduling_total(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind in SCHEDULING_TYPES)

    def summary(self, tasks: int) -> dict:
        """The ``messages`` object of summary.json."""
        return messages_summary(self.counts, tasks)


def messages_summary(counts: Mapping[str, int], tasks: int) -> dict:
    """``{"total", "per_task", "by_type"}`` with total/per_task over scheduling types only."""
    total = sum(n for kind, n in counts.items() if kind in SCHEDULING_TYPES)
    return {
        "total": int(total),
        "per_task": (total / tasks) if tasks else 0.0,
        "by_type": {kind: int(counts[kind]) for kind in sorted(counts)},
    }

