"""PNG figures of the evaluation report (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dodoor.sim.records import TaskRecords
from scheduler.report import METRICS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    fig.clf()
    _pyplot().close(fig)


def latency_cdf(records: Mapping[str, TaskRecords], path: Path) -> None:
    """Scheduling latency (placed − submit) CDF per run label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rec in records.items():
        arr = rec.arrays()
        lat = np.sort((arr["placed_ms"] - arr["submit_ms"])[~np.isnan(arr["placed_ms"])])
        if lat.size:
            ax.plot(np.maximum(lat, 1e-3), np.arange(1, lat.size + 1) / lat.size, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("scheduling latency (ms, log)")
    ax.set_ylabel("fraction of tasks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)


def messages_bars(sim: Sequence[dict], live: Sequence[dict], path: Path) -> None:
    """Scheduling messages per task, simulated and live side by side."""
    plt = _pyplot()
    policies = list(dict.fromkeys([s["policy"] for s in sim] + [s["policy"] for s in live]))
    x = np.arange(len(policies))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for offset, (label, runs) in zip((-0.2, 0.2), (("sim", sim), ("live", live))):
        by = {s["policy"]: s["messages"]["per_task"] for s in runs}
        ax.bar(x + offset, [by.get(p, 0.0) for p in policies], width=0.4, label=label)
    ax.set_xticks(x, policies, rotation=20)
    ax.set_ylabel("scheduling messages per task")
    ax.legend()
    _save(fig, path)


def utilization(summaries: Mapping[str, dict], path: Path) -> None:
    """Busy-core fraction over time from each summary's utilization curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, s in summaries.items():
        times = np.asarray(s["utilization"]["times_ms"], dtype=float)
        if times.size:
            ax.plot((times - times[0]) / 1000.0, s["utilization"]["busy_cores_fraction"],
                    label=label)
    ax.set_xlabel("time since first submission (s)")
    ax.set_ylabel("busy cores / total cores")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")
    _save(fig, path)


def sim_vs_live_bars(sim: Sequence[dict], live: Sequence[dict], path: Path) -> None:
    """One panel per metric: simulated versus live value per policy."""
    plt = _pyplot()
    by_sim = {s["policy"]: s for s in sim}
    pairs = [(by_sim[s["policy"]], s) for s in live if s["policy"] in by_sim]
    fig, axes = plt.subplots(2, 4, figsize=(13, 6))
    x = np.arange(len(pairs))
    for ax, m in zip(axes.flat, METRICS):
        ax.bar(x - 0.2, [m.read(a) * m.scale for a, _ in pairs], width=0.4, label="sim")
        ax.bar(x + 0.2, [m.read(b) * m.scale for _, b in pairs], width=0.4, label="live")
        ax.set_xticks(x, [b["policy"] for _, b in pairs], rotation=30, fontsize="x-small")
        ax.set_title(m.label, fontsize="small")
    axes.flat[0].legend(fontsize="x-small")
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    _save(fig, path)
