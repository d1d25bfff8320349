"""True earliest start of a task on a node, for the omniscient ``ideal`` policy.

The node's FIFO + backfill is replayed forward with the exact durations —
running tasks end, waiting and in-flight tasks start in queue order when they
fit — giving the free room as a step function of time. A new task arriving at
``a`` starts at the first step at or after ``a`` whose room holds it: earlier
entries always get their pick at each step before it, which is what the
node's scan does too. Step functions are cached per node until its state
changes; a node with room now and nothing in flight to it needs no replay.
"""

from __future__ import annotations

import bisect
import heapq

from dodoor.cache import delta_row
from dodoor.resources import fits_free
from dodoor.runqueue import QueueEntry, RunQueue
from dodoor.sim.node import SimNode

# one step: (from_ms, free room, free slots)
Step = tuple[float, tuple[float, float, float], int]


class _Timeline:
    """A node's replayed room over time, valid for one node version."""

    __slots__ = ("version", "steps", "times", "first_fit")

    def __init__(self, version: int, steps: list[Step]) -> None:
        self.version = version
        self.steps = steps
        self.times = [step[0] for step in steps]
        # demand -> index of the first step that holds it, from the last query's step on;
        # arrivals only move forward, so it stays right until that step is over
        self.first_fit: dict[tuple[float, float, float], int] = {}


class Oracle:
    """Earliest starts from per-node replays, cached until the node changes."""

    def __init__(self) -> None:
        self._cache: dict[int, _Timeline] = {}
        self.replays = 0

    def earliest_start(self, node: SimNode, demand: tuple[float, float, float],
                       arrival_ms: float) -> float:
        if not node.inbound and node.fits(demand):
            return arrival_ms  # room now, and nothing that waits there can take it first
        timeline = self._cache.get(node.index)
        if timeline is None or timeline.version != node.version:
            timeline = _Timeline(node.version, self._replay(node))
            self._cache[node.index] = timeline
        times = timeline.times
        current = bisect.bisect_right(times, arrival_ms) - 1
        current = max(current, 0)
        found = timeline.first_fit.get(demand)
        if found is None or found < current:
            found = _first_fit(timeline.steps, demand, current)
            timeline.first_fit[demand] = found
        return max(times[found], arrival_ms)

    def true_state(self, node: SimNode) -> list[float]:
        """The node's state with the enqueues in flight to it already counted."""
        row = node.state_row()
        for _, entry in node.inbound:
            for i, v in enumerate(delta_row(entry.demand, entry.duration_ms)):
                row[i] += v
        return row

    def _replay(self, node: SimNode) -> list[Step]:
        """The node's run queue, copied and run forward on its known durations."""
        self.replays += 1
        now = node.loop.now
        real = node.rq
        rq: RunQueue[QueueEntry] = RunQueue(real.capacity, real.slots, real.overhead_ms,
                                            real.aging_ms)
        classes = node.records.priority
        ends: list[tuple[float, int, QueueEntry]] = []
        seq = 0
        for entry in real.running:
            copy = QueueEntry(entry.demand, entry.duration_ms, entry.priority)
            rq.adopt(copy, now)
            copy.end_ms = entry.end_ms
            seq += 1
            ends.append((copy.end_ms, seq, copy))
        heapq.heapify(ends)
        for entry in real.waiting:
            if entry.job is None:  # reservations are not tasks yet
                copy = QueueEntry(entry.demand, entry.duration_ms, entry.priority)
                copy.since_ms = entry.since_ms
                rq.push(copy)
        arrivals = [(at, entry.demand, entry.duration_ms, classes[entry.index])
                    for at, entry in node.inbound]
        steps: list[Step] = [(now, tuple(rq.free), rq.free_slots)]
        ai = 0
        # One event at a time, in the loop's order — ends by (time, start order),
        # an end before an arrival at the same time — each followed by a backfill,
        # exactly as the node handles them; batching simultaneous ends would let
        # a later entry see room an earlier one takes in the real run.
        while True:
            if ends and (ai >= len(arrivals) or ends[0][0] <= arrivals[ai][0]):
                t, _, done = heapq.heappop(ends)
                rq.finish(done)
            elif ai < len(arrivals):
                t, demand, duration, priority = arrivals[ai]
                rq.push(QueueEntry(demand, duration, priority), t)
                ai += 1
            else:
                return steps
            for started in rq.backfill(t):
                seq += 1
                heapq.heappush(ends, (started.end_ms, seq, started))
            steps.append((t, tuple(rq.free), rq.free_slots))


def _first_fit(steps: list[Step], demand: tuple[float, float, float], start: int) -> int:
    """Index of the first step from ``start`` on whose room holds ``demand``."""
    for i in range(start, len(steps)):
        _, free, slots = steps[i]
        if slots > 0 and fits_free(demand, free):
            return i
    # the last step is the idle node, which holds every task sampled for it
    return len(steps) - 1
