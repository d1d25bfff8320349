"""PNG plots of simulator runs: the makespan distribution and cluster utilization.

Each figure has a builder that returns it (``makespan_figure``,
``utilization_figure``), which the tests inspect, and a ``plot_*`` function
that writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dodoor.sim.plotstyle import (
    UTILIZATION_LABELS, display_label, policy_styles, pyplot, save,
)
from dodoor.sim.simulation import SimResult
from dodoor.sim.summary import UTILIZATION_RESOURCES, utilization_curves

# Makespans may be drawn on a log axis, where a zero (a task of no duration) vanishes.
_FLOOR_S = 1e-3
# A linear axis squeezes everything below p1 when p99 is this many times p1.
LOG_X_SPAN = 100.0


def _makespans_s(result: SimResult) -> np.ndarray:
    arr = result.records.arrays()
    makespan = (arr["end_ms"] - arr["submit_ms"]) / 1000.0
    return np.sort(np.maximum(makespan[~np.isnan(makespan)], _FLOOR_S))


def spans_decades(samples: Iterable[np.ndarray], ratio: float = LOG_X_SPAN) -> bool:
    """Whether the bulk of the pooled samples (p1 to p99) spans more than ``ratio``:
    a log axis shows such data best, a linear one spreads out a narrower bulk."""
    pooled = np.concatenate([np.asarray(s, dtype=float) for s in samples] or [np.zeros(0)])
    if not pooled.size:
        return False
    low, high = np.percentile(pooled, [1, 99])
    return high / max(low, _FLOOR_S) > ratio


def makespan_figure(results: Sequence[SimResult]):
    """Makespan distribution per policy: the CDF and its tail (log y).

    The left panel shows where most tasks finish; policies differ mostly in the
    slowest few percent, which the right panel (fraction of tasks slower than x)
    spreads out. The legend, outside both panels, ranks the policies by mean
    makespan and gives that mean.
    """
    plt = pyplot()
    makespans = {r.policy: _makespans_s(r) for r in results}
    styles = policy_styles(list(makespans))
    fig, (cdf, tail) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    lines = {}
    for policy, values in makespans.items():
        if not values.size:
            continue
        style = dict(styles[policy])
        style["label"] = f"{display_label(policy)}  (mean {np.mean(values):,.0f} s)"
        frac = np.arange(1, values.size + 1) / values.size
        (lines[policy],) = cdf.plot(values, frac, **style)
        # 1 - F is 0 at the last point, which a log axis cannot show: stop before it
        tail.plot(values[:-1], 1.0 - frac[:-1], **style)
    if spans_decades(makespans.values()):
        cdf.set_xscale("log")
        cdf.set_xlabel("makespan: submit to end (s, log scale)")
    else:
        cdf.set_xlabel("makespan: submit to end (s)")
        cdf.set_xlim(left=0)
    cdf.set_ylabel("fraction of tasks done within x")
    cdf.set_ylim(0, 1.02)
    cdf.set_title("Makespan CDF", fontsize="medium")
    tail.set_yscale("log")
    tail.set_xlabel("makespan: submit to end (s)")
    tail.set_ylabel("fraction of tasks slower than x (log scale)")
    tail.set_title("Tail: the slowest tasks", fontsize="medium")
    for ax in (cdf, tail):
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    for q in (0.5, 0.99):
        tail.axhline(1 - q, color="0.5", linewidth=0.8, linestyle=":", zorder=1)
        tail.annotate(f"p{100 * q:g}", (1.0, 1 - q), xycoords=("axes fraction", "data"),
                      xytext=(3, 0), textcoords="offset points", va="center",
                      fontsize="x-small", color="0.35")
    # the legend in the order of the mean, so that it reads as a ranking
    ranked = sorted(lines, key=lambda p: (np.mean(makespans[p]), p))
    fig.legend([lines[p] for p in ranked], [lines[p].get_label() for p in ranked],
               loc="outside right upper", fontsize="small", title="policy (best mean first)",
               title_fontsize="small", frameon=False)
    tasks = max((v.size for v in makespans.values()), default=0)
    fig.suptitle(f"Task makespan per policy ({tasks:,} tasks each)")
    return fig


def plot_makespan_cdf(results: Sequence[SimResult], path: str | Path) -> None:
    """Write :func:`makespan_figure` to ``path``."""
    save(makespan_figure(results), path)


def utilization_figure(results: Sequence[SimResult], points: int = 200):
    """Fraction of the cluster's slots, cores and memory in use over time, per policy.

    One panel per resource, sharing the axes: a task holds one slot whatever its
    size, so a cluster whose slots are all taken is full even with most cores
    idle, and only the slot panel shows it.
    """
    plt = pyplot()
    styles = policy_styles([r.policy for r in results])
    fig, axes = plt.subplots(len(UTILIZATION_RESOURCES), 1, figsize=(10, 7.5), sharex=True,
                             sharey=True, layout="constrained")
    for result in results:
        times, curves = utilization_curves(result.records, result.nodes, points)
        if not times.size:
            continue
        elapsed_s = (times - times[0]) / 1000.0
        for ax, name in zip(axes, UTILIZATION_RESOURCES):
            ax.plot(elapsed_s, curves[name], **styles[result.policy])
    for ax, name in zip(axes, UTILIZATION_RESOURCES):
        ax.set_ylabel(f"{UTILIZATION_LABELS[name]}\n(fraction of cluster)", fontsize="small")
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time since first arrival (s)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper",
               fontsize="small", title="policy", title_fontsize="small", frameon=False)
    fig.suptitle("Cluster utilization: each task holds one slot")
    return fig


def plot_utilization(results: Sequence[SimResult], path: str | Path, points: int = 200) -> None:
    """Write :func:`utilization_figure` to ``path``."""
    save(utilization_figure(results, points), path)
