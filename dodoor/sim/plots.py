"""PNG plots of simulator runs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dodoor.sim.simulation import SimResult
from dodoor.sim.summary import utilization_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_makespan_cdf(results: Sequence[SimResult], path: str | Path) -> None:
    """Makespan CDF per policy, log x axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        arr = result.records.arrays()
        makespan = np.sort(arr["end_ms"] - arr["submit_ms"]) / 1000.0
        frac = np.arange(1, makespan.size + 1) / max(makespan.size, 1)
        ax.plot(np.maximum(makespan, 1e-3), frac, label=result.policy)
    ax.set_xscale("log")
    ax.set_xlabel("makespan (s, log)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("Task makespan CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_utilization(results: Sequence[SimResult], path: str | Path, points: int = 200) -> None:
    """Fraction of the cluster's cores busy over time, per policy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        times, busy = utilization_curve(result.records, result.nodes, points)
        if times.size:
            ax.plot((times - times[0]) / 1000.0, busy, label=result.policy)
    ax.set_xlabel("time since first arrival (s)")
    ax.set_ylabel("busy cores / total cores")
    ax.set_ylim(0, 1.05)
    ax.set_title("Cluster utilization")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
