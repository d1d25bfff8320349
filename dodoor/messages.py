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
# ``task_statuses`` is an agent's one answer to a batch status request.
OTHER_TYPES: frozenset[str] = frozenset(
    {"task_status", "task_statuses", "cancel_task", "completion", "register", "metrics", "heartbeat", "lookup",
     "lookup_reply"}
)
ALL_TYPES: frozenset[str] = SCHEDULING_TYPES | OTHER_TYPES
SENT = "sent"
RECEIVED = "received"
DIRECTIONS: tuple[str, ...] = (SENT, RECEIVED)


class MessageCounter:
    """Counts messages (and optionally bytes) by type.

    ``counts`` holds every message whichever way it went (the simulator's and the
    reports' figure). The daemons say which way with :meth:`sent` and
    :meth:`received`, kept apart in ``by_direction`` for ``/metrics``.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.by_direction: dict[str, Counter[str]] = {d: Counter() for d in DIRECTIONS}

    def add(self, kind: str, n: int = 1, nbytes: int = 0, direction: str | None = None) -> None:
        """Count ``n`` messages of ``kind``; ``direction`` is ``sent``, ``received`` or None."""
        if kind not in ALL_TYPES:
            raise ValueError(f"unknown message type {kind!r}")
        if direction is not None and direction not in self.by_direction:
            raise ValueError(f"unknown message direction {direction!r}")
        self.counts[kind] += n
        if nbytes:
            self.bytes[kind] += nbytes
        if direction is not None:
            self.by_direction[direction][kind] += n

    def sent(self, kind: str, n: int = 1, nbytes: int = 0) -> None:
        """Count messages this component sent."""
        self.add(kind, n, nbytes, SENT)

    def received(self, kind: str, n: int = 1, nbytes: int = 0) -> None:
        """Count messages this component received."""
        self.add(kind, n, nbytes, RECEIVED)

    def merge(self, other: "MessageCounter") -> None:
        self.counts.update(other.counts)
        self.bytes.update(other.bytes)
        for direction, counts in other.by_direction.items():
            self.by_direction[direction].update(counts)

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

