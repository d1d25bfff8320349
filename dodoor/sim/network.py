"""Message delivery: every message is counted by type and arrives after the delay.

Bytes are counted too, from a size model calibrated on the real wire encoding
(:class:`WireSizes`): messages of fixed shape cost the encoded size of a
representative message, counted from the message counts at the end of a run;
``deltas`` and ``snapshot`` grow with their rows and are sized per send.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np

from dodoor.messages import MessageCounter
from dodoor.sim.engine import EventLoop, Mailbox
from dodoor.taskstates import SUCCEEDED

SIZED_TYPES = frozenset({"deltas", "snapshot"})


class WireSizes:
    """Encoded payload bytes of each message type (msgpack body, no HTTP headers).

    Calibrated once with :func:`dodoor.wire.encode` on representative messages:
    a task of 4 cores / 16 GiB / 30 s with a 11-character id, node ids of 10
    characters, URLs ``http://127.0.0.1:8200``. Row-sized messages are
    ``base + per_row · rows`` from encoding 1 and 2 rows.
    """

    def __init__(self) -> None:
        from dodoor import wire
        from dodoor.resources import Task

        task = Task("task-000001", 4.0, 16384.0, 0.0, 30000.0)
        sid, nid, url = "scheduler-0", "node-00001", "http://127.0.0.1:8200"
        state = np.zeros(5)
        size = lambda msg: len(wire.encode(msg))  # noqa: E731
        self.fixed: dict[str, int] = {
            "enqueue": size(wire.Enqueue(task, sid)),
            "probe": size(wire.Probe(sid)),
            "probe_reply": size(wire.ProbeReply(nid, state)),
            "reserve": size(wire.Reserve(task, sid, "http://127.0.0.1:8100")),
            "confirm": size(wire.Confirm(nid, task.task_id)),
            "cancel": size(wire.Cancel(task.task_id)),
            "node_state": size(wire.NodeState(nid, url, 1, np.zeros(3), 1, state)),
            "register": size(wire.Register("scheduler", sid, "http://127.0.0.1:8100")),
            "completion": size(wire.TaskStatus(task.task_id, SUCCEEDED, nid, 1.0, 2.0, 3.0, 0)),
        }

        def deltas(n: int) -> int:
            return size(wire.Deltas(sid, 1, (nid,) * n, np.zeros((n, 5)), 8))

        def full(n: int) -> int:
            return size(wire.Snapshot(1, (nid,) * n, (url,) * n, np.zeros((n, 3)),
                                      np.zeros(n), np.zeros((n, 5))))

        def delta_snap(n: int) -> int:
            return size(wire.SnapshotDelta(1, 0, "e" * 32, (nid,) * n, np.zeros((n, 5))))

        self.deltas = _linear(deltas)
        self.full_snapshot = _linear(full)
        self.delta_snapshot = _linear(delta_snap)

    def bytes_by_type(self, counts: Mapping[str, int], sized: Mapping[str, int]) -> dict[str, int]:
        """Bytes per type of a run from its message counts and the sized sends."""
        out = {kind: int(n) * self.fixed[kind] for kind, n in counts.items()
               if kind in self.fixed}
        out.update({kind: int(n) for kind, n in sized.items()})
        return dict(sorted(out.items()))


def _linear(size: Callable[[int], int]) -> tuple[int, int]:
    one, two = size(1), size(2)
    return one - (two - one), two - one


@functools.lru_cache(maxsize=1)
def wire_sizes() -> WireSizes:
    """The calibrated size model (built once per process)."""
    return WireSizes()


class Network:
    """Delivers ``fn(*args)`` one ``delay_ms`` after ``send`` and counts the message."""

    __slots__ = ("loop", "delay_ms", "counter", "_counts", "_channel")

    def __init__(self, loop: EventLoop, delay_ms: float, counter: MessageCounter | None = None):
        self.loop = loop
        self.delay_ms = delay_ms
        self.counter = counter or MessageCounter()
        self._counts = self.counter.counts
        # one delay for every message: arrivals come in send order, a FIFO needs no heap
        self._channel = loop.channel()

    def send(self, kind: str, fn: Callable[..., Any], *args: Any) -> None:
        self.count_only(kind)
        self._channel.push(self.loop.now + self.delay_ms, fn, args)

    def send_sized(self, kind: str, nbytes: int, fn: Callable[..., Any], *args: Any) -> None:
        """``send`` for a message whose size depends on its rows (deltas, snapshots)."""
        self.counter.add(kind, 1, nbytes)
        self._channel.push(self.loop.now + self.delay_ms, fn, args)

    def post(self, kind: str, mailbox: Mailbox, item: Any) -> None:
        """``send`` to a receiver that reads its mailbox when it next acts (no event)."""
        self.count_only(kind)
        mailbox.post(self.loop.now + self.delay_ms, item)

    def count_only(self, kind: str, n: int = 1) -> None:
        """Count a message whose delivery nothing in the model waits for (completions)."""
        counts = self._counts
        if kind in counts:
            counts[kind] += n
        else:
            self.counter.add(kind, n)  # validated once per type, then bumped directly
