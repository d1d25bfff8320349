"""Run summary (the objects of summary.json) and cluster utilization over time."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dodoor.messages import messages_summary
from dodoor.priority import DEFAULT_PRIORITY, class_name
from dodoor.resources import NodeSpec
from dodoor.sim.records import TaskRecords


# The resources a utilization curve is drawn for, with the node capacity each is a
# fraction of. Slots come first: they bound how many tasks run at once, so on a
# trace of small tasks they fill while cores and memory stay far from full.
UTILIZATION_RESOURCES: tuple[str, ...] = ("slots", "cores", "memory")
_CAPACITY = {"slots": "slots", "cores": "cores", "memory": "memory_mb"}  # NodeSpec fields


def utilization_curves(records: TaskRecords, nodes: Sequence[NodeSpec],
                       points: int = 200) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fraction of the cluster's slots, cores and memory in use at ``points`` even times.

    Computed afterwards from the task records (busy(t) = the demand of tasks with
    start <= t < end; each task holds one slot), so the run itself pays nothing
    for it. Returns the times and one curve per name of ``UTILIZATION_RESOURCES``;
    both are empty when no task finished.
    """
    arr = records.arrays()
    done = ~np.isnan(arr["end_ms"])
    start, end = arr["start_ms"][done], arr["end_ms"][done]
    demand = {"slots": np.ones(start.size), "cores": arr["cores"][done],
              "memory": arr["memory_mb"][done]}
    total = {name: _total(nodes, attribute) for name, attribute in _CAPACITY.items()}
    if start.size == 0 or total["cores"] <= 0:
        return np.zeros(0), {name: np.zeros(0) for name in UTILIZATION_RESOURCES}
    times = np.linspace(float(arr["submit_ms"].min()), float(end.max()), points)
    s_order, e_order = np.argsort(start, kind="stable"), np.argsort(end, kind="stable")
    s_at = np.searchsorted(start[s_order], times, side="right")
    e_at = np.searchsorted(end[e_order], times, side="right")
    curves = {}
    for name in UTILIZATION_RESOURCES:
        if total[name] <= 0:
            curves[name] = np.zeros(times.size)
            continue
        started = np.concatenate(([0.0], np.cumsum(demand[name][s_order])))
        ended = np.concatenate(([0.0], np.cumsum(demand[name][e_order])))
        curves[name] = np.clip((started[s_at] - ended[e_at]) / total[name], 0.0, 1.0)
    return times, curves


def utilization_curve(records: TaskRecords, nodes: Sequence[NodeSpec],
                      points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of the cluster's cores busy at ``points`` evenly spaced times."""
    times, curves = utilization_curves(records, nodes, points)
    return times, curves["cores"]


def summarize(policy: str, records: TaskRecords, nodes: Sequence[NodeSpec],
              counts: Mapping[str, int], wall_s: float,
              settings: Mapping[str, Any] | None = None, util_points: int = 200) -> dict:
    """The per-run summary object of docs/design.md §7 (schema fixed by the brief)."""
    arr = records.arrays()
    n = len(records)
    makespan = arr["end_ms"] - arr["submit_ms"]
    latency = arr["placed_ms"] - arr["submit_ms"]
    if n and not np.isnan(arr["end_ms"]).any():
        span_ms = float(arr["end_ms"].max() - arr["submit_ms"].min())
    else:
        span_ms = 0.0
    held_ms = arr["end_ms"] - arr["start_ms"]
    times, curves = utilization_curves(records, nodes, util_points)
    out: dict[str, Any] = {
        "policy": policy,
        "tasks": n,
        "nodes": len(nodes),
        "makespan_ms": {
            "mean": _mean(makespan),
            "p50": _pct(makespan, 50),
            "p99": _pct(makespan, 99),
            "p999": _pct(makespan, 99.9),
        },
        "sched_latency_ms": {"mean": _mean(latency), "p99": _pct(latency, 99)},
        "throughput_tps": (n / (span_ms / 1000.0)) if span_ms > 0 else 0.0,
        "messages": messages_summary(counts, n),
        "wall_s": wall_s,
        "utilization": {
            "mean_cores": _mean_use(held_ms * arr["cores"], _total(nodes, "cores"), span_ms),
            "mean_slots": _mean_use(held_ms, _total(nodes, "slots"), span_ms),
            "mean_memory": _mean_use(held_ms * arr["memory_mb"], _total(nodes, "memory_mb"),
                                     span_ms),
            "times_ms": [round(float(t), 3) for t in times],
            **{f"busy_{name}_fraction": [round(float(b), 5) for b in curves[name]]
               for name in UTILIZATION_RESOURCES},
        },
    }
    classes = np.unique(arr["priority"])
    if classes.size > 1 or (classes.size == 1 and int(classes[0]) != DEFAULT_PRIORITY):
        out["by_priority"] = {
            class_name(int(p)): {"tasks": int(np.sum(arr["priority"] == p)),
                                 "makespan_ms": {"mean": _mean(makespan[arr["priority"] == p]),
                                                 "p50": _pct(makespan[arr["priority"] == p], 50),
                                                 "p99": _pct(makespan[arr["priority"] == p], 99)}}
            for p in classes.tolist()}
    if settings is not None:
        out["settings"] = dict(settings)
    return out


def _total(nodes: Sequence[NodeSpec], attribute: str) -> float:
    return float(sum(getattr(node, attribute) for node in nodes))


def _mean_use(held: np.ndarray, total: float, span_ms: float) -> float:
    """Resource-ms held over resource-ms available in the run's span (0 when unknown)."""
    return float(np.nansum(held)) / (total * span_ms) if total > 0 and span_ms > 0 else 0.0


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else 0.0


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else 0.0
