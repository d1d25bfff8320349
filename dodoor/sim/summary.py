"""Run summary (the objects of summary.json) and cluster utilization over time."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dodoor.messages import messages_summary
from dodoor.resources import NodeSpec
from dodoor.sim.records import TaskRecords


def utilization_curve(records: TaskRecords, nodes: Sequence[NodeSpec],
                      points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of the cluster's cores busy at ``points`` evenly spaced times.

    Computed afterwards from the task records (busy(t) = cores of tasks with
    start <= t < end), so the run itself pays nothing for it.
    """
    arr = records.arrays()
    done = ~np.isnan(arr["end_ms"])
    start, end, cores = arr["start_ms"][done], arr["end_ms"][done], arr["cores"][done]
    total = float(sum(n.cores for n in nodes))
    if start.size == 0 or total <= 0:
        return np.zeros(0), np.zeros(0)
    times = np.linspace(float(arr["submit_ms"].min()), float(end.max()), points)
    s_order, e_order = np.argsort(start, kind="stable"), np.argsort(end, kind="stable")
    started = np.concatenate(([0.0], np.cumsum(cores[s_order])))
    ended = np.concatenate(([0.0], np.cumsum(cores[e_order])))
    busy = (started[np.searchsorted(start[s_order], times, side="right")]
            - ended[np.searchsorted(end[e_order], times, side="right")])
    return times, np.clip(busy / total, 0.0, 1.0)


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
    total_cores = float(sum(node.cores for node in nodes))
    busy_core_ms = float(np.nansum((arr["end_ms"] - arr["start_ms"]) * arr["cores"]))
    times, busy = utilization_curve(records, nodes, util_points)
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
            "mean_cores": (busy_core_ms / (total_cores * span_ms)) if span_ms > 0 else 0.0,
            "times_ms": [round(float(t), 3) for t in times],
            "busy_cores_fraction": [round(float(b), 5) for b in busy],
        },
    }
    if settings is not None:
        out["settings"] = dict(settings)
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else 0.0


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else 0.0
