"""Resource vectors, node capacities and task specifications.

A resource vector is a float64 numpy array over ``RESOURCES`` (cores, memory in
MiB, disk in MiB). Slots are kept apart from the vector: they bound how many
tasks run at once on a node but carry no per-task demand.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from dodoor.errors import NoFitError
from dodoor.priority import DEFAULT_PRIORITY

RESOURCES: tuple[str, ...] = ("cores", "memory_mb", "disk_mb")
N_RESOURCES = len(RESOURCES)

# A node's state row, as agents report it and schedulers cache it: committed demand
# per resource (queued and running), the task count, and the pending duration in ms.
# The one definition of that order (built by ``dodoor.cache.state_row``).
STATE_COLUMNS: tuple[str, ...] = RESOURCES + ("tasks", "pending_ms")
N_STATE = len(STATE_COLUMNS)
TASKS = N_RESOURCES
PENDING = N_RESOURCES + 1

# How far a demand may exceed the room and still fit, in each resource's unit: the
# one tolerance of every fit test (scheduler, simulator, agent). Room is kept by
# adding and subtracting trace demands such as 0.42000000000000004 cores, whose
# rounding drifts; 1e-6 of a core or MiB is far above that drift and far below any
# real demand.
FIT_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node's advertised capacity."""

    node_id: str
    cores: float
    memory_mb: float
    disk_mb: float
    slots: int = 1

    def capacity(self) -> np.ndarray:
        return np.array([self.cores, self.memory_mb, self.disk_mb], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Task:
    """One task: its demands, the duration estimate the score uses, and what to run.

    ``arrival_ms`` is the submission time in a trace (0 for live submissions);
    ``priority`` its class (``dodoor.priority``, higher is more important).
    """

    task_id: str
    cores: float
    memory_mb: float
    disk_mb: float = 0.0
    duration_ms: float = 1000.0
    arrival_ms: float = 0.0
    image: str | None = None
    command: tuple[str, ...] | None = None
    function: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY

    def demand(self) -> np.ndarray:
        return np.array([self.cores, self.memory_mb, self.disk_mb], dtype=np.float64)

    def with_arrival(self, arrival_ms: float) -> "Task":
        return dataclasses.replace(self, arrival_ms=arrival_ms)

    def to_dict(self) -> dict[str, Any]:
        """The task as plain data (the API's field names)."""
        out: dict[str, Any] = {
            "id": self.task_id,
            "cores": self.cores,
            "memory_mb": self.memory_mb,
            "disk_mb": self.disk_mb,
            "duration_ms": self.duration_ms,
        }
        if self.image is not None:
            out["image"] = self.image
        if self.command is not None:
            out["command"] = list(self.command)
        if self.function is not None:
            out["function"] = self.function
        if self.env:
            out["env"] = dict(self.env)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.priority != DEFAULT_PRIORITY:  # absent means the default: older peers agree
            out["priority"] = self.priority
        return out


def demand_matrix(tasks: Sequence[Task]) -> np.ndarray:
    """n×R demand matrix in task order, built in one call (not an array per task)."""
    if not tasks:
        return np.zeros((0, N_RESOURCES), dtype=np.float64)
    return np.array([(t.cores, t.memory_mb, t.disk_mb) for t in tasks], dtype=np.float64)


def capacity_matrix(nodes: Sequence[NodeSpec]) -> np.ndarray:
    """N×R capacity matrix in node order."""
    if not nodes:
        return np.zeros((0, N_RESOURCES), dtype=np.float64)
    return np.array([[n.cores, n.memory_mb, n.disk_mb] for n in nodes], dtype=np.float64)


def fits(demand: np.ndarray, capacity: np.ndarray) -> np.ndarray | bool:
    """Whether ``demand`` fits within ``capacity`` (a vector or an N×R matrix)."""
    return np.all(demand <= capacity + FIT_TOLERANCE, axis=-1)


def fits_free(demand: Sequence[float], free: Sequence[float]) -> bool:
    """:func:`fits` for one demand and one room given as plain floats (no numpy call)."""
    return (demand[0] <= free[0] + FIT_TOLERANCE and demand[1] <= free[1] + FIT_TOLERANCE
            and demand[2] <= free[2] + FIT_TOLERANCE)


def check_fits_somewhere(demand: np.ndarray, capacity: np.ndarray) -> None:
    """Raise :class:`NoFitError` naming the resource when no node can hold ``demand``.

    Checks each resource on its own first, so the error names the resource whose
    largest capacity is too small; then the combination.
    """
    if capacity.shape[0] == 0:
        raise NoFitError("cluster", "there are no live nodes to place on")
    largest = capacity.max(axis=0)
    for i, name in enumerate(RESOURCES):
        if demand[i] > largest[i] + FIT_TOLERANCE:
            raise NoFitError(
                name,
                f"requested {_fmt(demand[i])} but the largest node has {_fmt(largest[i])}",
            )
    if not bool(np.any(fits(demand, capacity))):
        raise NoFitError(
            "cores",
            "no single node has all of cores={}, memory_mb={}, disk_mb={} at once".format(
                *(_fmt(v) for v in demand)
            ),
        )


def _fmt(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:g}"
