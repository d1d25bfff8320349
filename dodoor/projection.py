"""Projecting a stale snapshot forward: the others' placements a scheduler cannot see yet.

With M schedulers each one sees the others' placements only through the load
store's snapshots, many placements late; all of them then find the same few
nodes that look free in the same snapshot and send work there (herding,
docs/evaluation.md). A :class:`Projection` adds to the scheduler's cache the
placements the ``others`` schedulers have probably made since the snapshot,
where they have probably made them:

* how many: each other scheduler is assumed to place at this one's rate, so
  ``others × own placements since the snapshot`` (what they placed before it
  is in it: the agents' reports carry it, unflushed deltas or not);
* what: this scheduler's own tasks' average (an exponentially weighted mean of
  their delta rows), since arrivals are shared out among the schedulers;
* where: one at a time on the node with the least expected wait for such a
  task (:func:`dodoor.score.expected_wait`; ties to the fewest tasks per slot)
  — the water level every scheduler's least-wait choice fills.

The projected placements live only in the cache's matrix (never in its deltas),
so the next snapshot, holding the others' real placements, replaces them. The
keys only grow between snapshots (placements only add), so a lazy heap finds
the least wait: a popped node whose key has grown is pushed back.
"""

from __future__ import annotations

import heapq

import numpy as np

from dodoor.cache import LoadCache, delta_row
from dodoor.resources import N_RESOURCES, TASKS, Task
from dodoor.score import expected_wait


class Projection:
    """Adds the others' probable placements since the snapshot to ``cache``."""

    def __init__(self, cache: LoadCache, others: float, weight: float = 0.05) -> None:
        if not others > 0.0:
            raise ValueError(f"others must be > 0, got {others}")
        self.cache = cache
        self.others = others
        self.weight = weight
        self._mean: np.ndarray | None = None  # the own tasks' average delta row
        self._seen = 0
        self._since = 0  # own placements since the snapshot
        self._added = 0  # projected placements since the snapshot
        self._heap: list[tuple[float, float, int]] | None = None
        self.projected = 0  # over the whole run, for reports

    def on_snapshot(self) -> None:
        """A snapshot replaced the cache's matrix (and with it every projection)."""
        self._since = 0
        self._added = 0
        self._heap = None

    def on_placement(self, task: Task) -> None:
        """This scheduler placed ``task`` (after recording it in the cache)."""
        self._since += 1
        row = np.asarray(delta_row((task.cores, task.memory_mb, task.disk_mb),
                                   task.duration_ms), dtype=np.float64)
        self._seen += 1
        if self._mean is None:
            self._mean = row
        else:
            self._mean += max(self.weight, 1.0 / self._seen) * (row - self._mean)

    def advance(self) -> None:
        """Add the placements projected up to now (call before each decision)."""
        mean = self._mean
        if mean is None:
            return
        target = int(self.others * self._since)
        if self._added >= target:
            return
        if self._heap is None:
            self._heap = self._keys()
        heap, state = self._heap, self.cache.state
        while self._added < target and heap:
            key = heapq.heappop(heap)
            node = key[2]
            now = self._key(node)
            if now > key:  # placed on since it was pushed: back, at its new key
                heapq.heappush(heap, now)
                continue
            state[node] += mean
            self._added += 1
            self.projected += 1
            heapq.heappush(heap, self._key(node))

    def _keys(self) -> list[tuple[float, float, int]]:
        cache, mean = self.cache, self._mean
        assert mean is not None
        waits = expected_wait(mean[:N_RESOURCES], cache.capacity, cache.state, cache.slots)
        fill = cache.state[:, TASKS] / np.maximum(cache.slots, 1.0)
        heap = list(zip(waits.tolist(), fill.tolist(), range(cache.n_nodes)))
        heapq.heapify(heap)
        return heap

    def _key(self, node: int) -> tuple[float, float, int]:
        cache, mean = self.cache, self._mean
        assert mean is not None
        at = slice(node, node + 1)
        wait = expected_wait(mean[:N_RESOURCES], cache.capacity[at], cache.state[at],
                             cache.slots[at])
        return (float(wait[0]), float(cache.state[node, TASKS]) / max(float(cache.slots[node]), 1.0),
                node)
