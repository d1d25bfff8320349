"""The packing fallback in the simulator: ``dodoor.packing`` when sampling finds no room.

A cache-based scheduler calls :meth:`SimFallback.place` for a task none of
whose sampled candidates has room beside what the cache says is committed
there (docs/design.md §12). The fallback picks the nodes with the most room
(``dodoor.packing.select_nodes``), probes them (one ``probe`` and one
``probe_reply`` each: their state and their queued tasks of a lower class),
and solves. A move is a ``cancel`` to the origin — it takes effect only while
the task still waits there, as the agent's cancel path — followed by an
``enqueue`` to the destination. The task itself is then enqueued on its node;
without a placement the caller keeps its policy's choice. The window is the
one task: the simulator places each task at its arrival.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dodoor.cache import TASKS, LoadCache
from dodoor.packing import (PackingProblem, PackingSettings, select_nodes, solve,
                            view_has_room)
from dodoor.resources import N_RESOURCES, Task
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode


@dataclass
class FallbackStats:
    """Calls and outcomes: ``placed``, ``none_proven`` (nothing better exists) and
    ``none_unproven`` (the time limit ended the search); moves made and skipped."""

    calls: int = 0
    placed: int = 0
    none_proven: int = 0
    none_unproven: int = 0
    moves: int = 0
    solve_s: float = 0.0
    max_solve_s: float = 0.0
    reasons: dict[int, str] = field(default_factory=dict)  # task index -> why not placed
    placed_tasks: list[int] = field(default_factory=list)  # task indices it placed

    def summary(self) -> dict:
        exists = self.placed + self.none_unproven  # a placement may exist where not proven none
        return {"calls": self.calls, "placed": self.placed, "none_proven": self.none_proven,
                "none_unproven": self.none_unproven, "moves": self.moves,
                "solve_s_total": self.solve_s, "solve_s_mean":
                    self.solve_s / self.calls if self.calls else 0.0,
                "solve_s_max": self.max_solve_s,
                "placed_of_possible": self.placed / exists if exists else 1.0}


def has_room(cache: LoadCache, candidates: Sequence[int], demand: np.ndarray) -> bool:
    """Whether any candidate has room for ``demand`` now, by the cache."""
    return view_has_room(cache.view(candidates), demand)


class SimFallback:
    """One scheduler's fallback; see the module docstring."""

    def __init__(self, settings: PackingSettings, cache: LoadCache, nodes: Sequence[SimNode],
                 net: Network, stats: FallbackStats) -> None:
        self.settings = settings
        self.cache = cache
        self.nodes = nodes
        self.net = net
        self.stats = stats

    def place(self, index: int, task: Task, demand: np.ndarray) -> int | None:
        """The node the task starts on at once (moves sent), or None."""
        stats = self.stats
        stats.calls += 1
        cache = self.cache
        chosen = select_nodes(cache.capacity, cache.state[:, :N_RESOURCES], cache.slots,
                              cache.state[:, TASKS], demand[None, :], self.settings.max_nodes)
        self.net.count_only("probe", len(chosen))
        self.net.count_only("probe_reply", len(chosen))
        rows = np.array([self.nodes[j].state_row() for j in chosen.tolist()]).reshape(-1, 5)
        movable: list[tuple[int, Entry]] = []
        for pos, j in enumerate(chosen.tolist()):
            for entry in self.nodes[j].rq.waiting:
                if entry.priority < task.priority and entry.job is None:
                    movable.append((pos, entry))
        problem = PackingProblem(
            capacity=cache.capacity[chosen], slots=cache.slots[chosen],
            load=rows[:, :N_RESOURCES], entries=rows[:, TASKS],
            demands=demand[None, :], priorities=np.array([task.priority]),
            work=np.array([task.cores * task.duration_ms / 1000.0]),
            movable_node=np.array([pos for pos, _ in movable], dtype=np.int64),
            movable_demand=np.array([e.demand for _, e in movable]).reshape(-1, N_RESOURCES))
        result = solve(problem, self.settings)
        stats.solve_s += result.solve_s
        stats.max_solve_s = max(stats.max_solve_s, result.solve_s)
        if result.placed[0] < 0:
            if result.proven:
                stats.none_proven += 1
                stats.reasons[index] = ("fallback: proven that no node has room now, even "
                                        "moving queued lower-class tasks")
            else:
                stats.none_unproven += 1
                stats.reasons[index] = ("fallback: no placement found within "
                                        f"{self.settings.time_limit_s:g} s")
            return None
        for k, origin, dest in result.moves:
            entry = movable[k][1]
            self.net.send("cancel", self._move, entry, int(chosen[origin]), int(chosen[dest]))
        stats.moves += len(result.moves)
        stats.placed += 1
        return int(chosen[result.placed[0]])

    def _move(self, entry: Entry, origin: int, dest: int) -> None:
        """The cancel reaches the origin: a task still waiting there goes to ``dest``."""
        node = self.nodes[origin]
        if node.rq.drop(entry):
            node.version += 1
            self.net.send("enqueue", self.nodes[dest].enqueue, entry)
