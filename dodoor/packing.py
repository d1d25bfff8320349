"""The packing fallback: an exact placement of the tasks random sampling could not fit.

When a task fits none of its sampled candidates (no room beside what is
committed there), a host hands this module a window of such tasks, its view of
the nodes and the queued (not running) lower-class tasks it may move. CP-SAT
(OR-Tools) then chooses, within a time limit, where each window task starts
at once and which queued tasks move to which node to make that room,
maximizing the placed work weighted by class and, second, moving as little
as possible. The simulator (``dodoor/sim/fallback.py``) and the scheduler
daemon share it; the rule is docs/design.md §12.

The model, per node j used by some window task: the demands of the window
tasks placed there and of the queued tasks assigned there fit the node's
capacity less what stays (committed load minus every movable task), and the
entries fit its slots. Quantities are made integers conservatively: demands
rounded up, room rounded down (``_SCALE`` units per resource).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dodoor.resources import FIT_TOLERANCE, N_RESOURCES, TASKS

_SCALE = np.array([1000.0, 1.0, 1.0])  # milli-cores, MiB, MiB
# weight of a class in the objective: one task of class p outweighs three of p − 1
CLASS_WEIGHT = (1, 4, 16, 64)


@dataclass(frozen=True)
class PackingSettings:
    """time_limit_s: the solver's bound per call; max_nodes: the nodes with the
    most room the model looks at (a 10,000-node model does not fit in the
    bound); window: most tasks per call; workers: solver threads (1 keeps a
    seeded run repeatable); seed: the solver's seed."""

    time_limit_s: float = 1.0
    max_nodes: int = 64
    window: int = 16
    workers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValueError(f"time_limit_s must be > 0 and finite, got {self.time_limit_s!r}")
        for name in ("max_nodes", "window", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PackingProblem:
    """The host's view: nodes (N), window tasks (T) and movable queued tasks (M)."""

    capacity: np.ndarray  # (N, R)
    slots: np.ndarray  # (N,)
    load: np.ndarray  # (N, R) committed, movable tasks included
    entries: np.ndarray  # (N,) queued and running entries, movable ones included
    demands: np.ndarray  # (T, R)
    priorities: np.ndarray  # (T,) int
    work: np.ndarray  # (T,) e.g. core-seconds; weighted by class in the objective
    movable_node: np.ndarray  # (M,) int: where each movable task waits now
    movable_demand: np.ndarray  # (M, R)


@dataclass(frozen=True)
class PackingResult:
    """``placed[t]`` is the node of window task t or -1; ``moves`` (movable, from, to)."""

    placed: tuple[int, ...]
    moves: tuple[tuple[int, int, int], ...]
    status: str  # "optimal" (proven), "feasible" (time limit hit), "infeasible" (error)
    objective: float
    solve_s: float

    @property
    def proven(self) -> bool:
        return self.status == "optimal"


def task_values(priorities: np.ndarray, work: np.ndarray) -> list[int]:
    """Each window task's integer value in the objective: class weight × work (≥ 1)."""
    return [CLASS_WEIGHT[int(p)] * max(1, int(round(float(w) * 100))) for p, w in
            zip(priorities, work)]


def integer_instance(problem: PackingProblem) -> dict[str, list]:
    """The model's integer data (also what a brute-force check enumerates)."""
    base = problem.load.copy()
    base_entries = problem.entries.astype(np.int64).copy()
    for m, node in enumerate(problem.movable_node.tolist()):
        base[node] -= problem.movable_demand[m]
        base_entries[node] -= 1
    room = np.floor((problem.capacity - base) * _SCALE + 1e-6).astype(np.int64)
    return {
        "room": room.tolist(),
        "free_slots": (problem.slots.astype(np.int64) - base_entries).tolist(),
        "demand": np.ceil(problem.demands * _SCALE - 1e-6).astype(np.int64).tolist(),
        "movable": np.ceil(problem.movable_demand * _SCALE - 1e-6).astype(np.int64).tolist(),
        "origin": problem.movable_node.astype(np.int64).tolist(),
        "value": task_values(problem.priorities, problem.work),
    }


def solve(problem: PackingProblem, settings: PackingSettings) -> PackingResult:
    """The best placement CP-SAT finds within ``settings.time_limit_s``."""
    from ortools.sat.python import cp_model  # the import costs ~0.3 s: only when used

    data = integer_instance(problem)
    room, free_slots, demand = data["room"], data["free_slots"], data["demand"]
    movable, origin, value = data["movable"], data["origin"], data["value"]
    n, t_count, m_count = len(room), len(demand), len(movable)
    cap = np.floor(problem.capacity * _SCALE + 1e-6).astype(np.int64).tolist()
    model = cp_model.CpModel()
    y = {(t, j): model.new_bool_var(f"y{t}_{j}") for t in range(t_count) for j in range(n)
         if _within(demand[t], cap[j]) and free_slots[j] > 0}
    x = {(k, j): model.new_bool_var(f"x{k}_{j}") for k in range(m_count) for j in range(n)
         if j == origin[k] or _within(movable[k], cap[j])}
    for t in range(t_count):
        model.add_at_most_one(v for (tt, _), v in y.items() if tt == t)
    for k in range(m_count):
        model.add_exactly_one(v for (kk, _), v in x.items() if kk == k)
    for j in range(n):
        here = [(t, v) for (t, jj), v in y.items() if jj == j]
        if not here:
            continue
        used = model.new_bool_var(f"used{j}")
        model.add_max_equality(used, [v for _, v in here])
        incoming = [(k, v) for (k, jj), v in x.items() if jj == j]
        for r in range(N_RESOURCES):
            model.add(sum(demand[t][r] * v for t, v in here)
                      + sum(movable[k][r] * v for k, v in incoming) <= room[j][r]
                      ).only_enforce_if(used)
        model.add(sum(v for _, v in here) + sum(v for _, v in incoming)
                  <= free_slots[j]).only_enforce_if(used)
    stays = [x[k, origin[k]] for k in range(m_count)]
    model.maximize(sum(value[t] * v for (t, _), v in y.items()) * (m_count + 1) + sum(stays))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = settings.time_limit_s
    solver.parameters.num_workers = settings.workers
    solver.parameters.random_seed = settings.seed
    started = time.perf_counter()
    status = solver.solve(model)
    elapsed = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return PackingResult((-1,) * t_count, (), "infeasible", 0.0, elapsed)
    placed = [-1] * t_count
    for (t, j), v in y.items():
        if solver.boolean_value(v):
            placed[t] = j
    moves = tuple((k, origin[k], j) for (k, j), v in x.items()
                  if j != origin[k] and solver.boolean_value(v))
    objective = float(sum(value[t] for t in range(t_count) if placed[t] >= 0))
    return PackingResult(tuple(placed), moves,
                         "optimal" if status == cp_model.OPTIMAL else "feasible",
                         objective, elapsed)


def view_has_room(view: Any, demand: np.ndarray) -> bool:
    """Whether any node of ``view`` (a ``dodoor.cache.CandidateView``: capacity, state
    and slots of the sampled candidates) has room for ``demand`` beside what is
    committed there, and a free slot: a task for which this is False goes to the
    fallback, in the simulator and live alike."""
    state = view.state
    room = np.all(state[..., :N_RESOURCES] + demand <= view.capacity + FIT_TOLERANCE, axis=-1)
    return bool(np.any(room & (state[..., TASKS] < view.slots)))


def node_has_room(capacity: np.ndarray, state: np.ndarray, slots: np.ndarray, node: int,
                  demand: np.ndarray) -> bool:
    """:func:`view_has_room` for one node of a cache's arrays, in plain floats: a host
    asks it first of the candidate its policy chose, which usually has room, and
    builds the candidates' view only when it has not."""
    row = state[node].tolist()
    if not row[TASKS] < slots[node]:
        return False
    cap = capacity[node].tolist()
    return all(row[r] + d <= cap[r] + FIT_TOLERANCE for r, d in enumerate(demand.tolist()))


def free_room_problem(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray,
                      demands: np.ndarray, priorities: np.ndarray,
                      work: np.ndarray) -> PackingProblem:
    """The problem of a host that moves nothing: no movable tasks, so the model places
    the window's tasks into free room only (state rows as ``dodoor.cache`` keeps them)."""
    return PackingProblem(
        capacity=capacity, slots=slots, load=state[:, :N_RESOURCES], entries=state[:, TASKS],
        demands=demands, priorities=priorities, work=work,
        movable_node=np.zeros(0, dtype=np.int64),
        movable_demand=np.zeros((0, N_RESOURCES)))


def _within(demand: list[int], capacity: list[int]) -> bool:
    return all(d <= c for d, c in zip(demand, capacity))


def select_nodes(capacity: np.ndarray, load: np.ndarray, slots: np.ndarray,
                 entries: np.ndarray, demands: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` nodes whose capacity could hold the most window tasks, most room first.

    Room is capacity less committed load, over the window's total demand; a
    node no window task fits even when empty is left out.
    """
    smallest = demands.min(axis=0)
    holds = np.all(capacity + 1e-6 >= smallest, axis=1)
    total = demands.sum(axis=0)
    asked = total > 0  # a resource the window does not ask for ranks no node
    room = (capacity[:, asked] - load[:, asked]) / total[asked]
    slack = room.min(axis=1) + (slots - entries)
    slack[~holds] = -np.inf
    order = np.argsort(-slack, kind="stable")
    keep = order[: min(limit, int(holds.sum()))]
    return np.sort(keep)
