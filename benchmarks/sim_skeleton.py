"""The interpreter's ceiling for a discrete-event simulation of this workload.

A deliberately bare simulator of the same tasks on the same nodes: one
arrival event, one fixed-delay delivery and one completion per task (the
three events every task costs in :mod:`dodoor.sim`), power-of-two choices on
a scalar per-node load, a slot count per node, a FIFO without backfill. No
multi-resource fit, load score, cache, deltas, snapshots, reports, message
accounting or per-task records. It is what CPython does per task before any
of the scheduling model is paid for, so ``sim_scale.py`` prints the real
simulator's rate as a fraction of it.

Not a model of anything: its placements are not meant to be good.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from typing import Sequence

from dodoor.resources import NodeSpec, Task


def skeleton_rate(tasks: Sequence[Task], nodes: Sequence[NodeSpec], seed: int = 0,
                  delay_ms: float = 0.5) -> tuple[float, int]:
    """Run the skeleton; returns (tasks per wall second, events run)."""
    rng = random.Random(seed)
    arrivals = [t.arrival_ms for t in tasks]
    durations = [t.duration_ms for t in tasks]
    n, n_nodes = len(tasks), len(nodes)
    free = [int(s.slots) for s in nodes]
    waiting: list[deque[int]] = [deque() for _ in range(n_nodes)]
    load = [0.0] * n_nodes
    heap: list[tuple[float, int, object, tuple]] = []
    wire: deque[tuple[float, int, object, tuple]] = deque()  # one delay: FIFO, no heap
    seq = itertools.count()
    clock = [0.0]

    def start(node: int, i: int) -> None:
        heapq.heappush(heap, (clock[0] + durations[i], next(seq), finish, (node, i)))

    def finish(node: int, i: int) -> None:
        load[node] -= durations[i]
        queue = waiting[node]
        if queue:
            start(node, queue.popleft())
        else:
            free[node] += 1

    def deliver(node: int, i: int) -> None:
        if free[node]:
            free[node] -= 1
            start(node, i)
        else:
            waiting[node].append(i)

    def arrive(i: int) -> None:
        a, b = rng.randrange(n_nodes), rng.randrange(n_nodes)
        node = a if load[a] <= load[b] else b
        load[node] += durations[i]
        wire.append((clock[0] + delay_ms, next(seq), deliver, (node, i)))
        if i + 1 < n:
            heapq.heappush(heap, (arrivals[i + 1], next(seq), arrive, (i + 1,)))

    if n:
        heap.append((arrivals[0], next(seq), arrive, (0,)))
    events = 0
    started = time.perf_counter()
    while heap or wire:
        if wire and (not heap or wire[0] < heap[0]):
            event = wire.popleft()
        else:
            event = heapq.heappop(heap)
        clock[0] = event[0]
        event[2](*event[3])
        events += 1
    wall = time.perf_counter() - started
    return n / wall, events
