"""PNG figures of the evaluation report (matplotlib, Agg backend).

Runs are labelled ``POLICY sim`` and ``POLICY live``. Line figures draw the
simulated and the live runs side by side in panels that share their axes, a
policy in one style throughout (:mod:`dodoor.sim.plotstyle`). Legends sit
outside the panels, where they cannot cover data. Each figure has a builder
(``*_figure``) that returns it and a function that writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dodoor.sim.plotstyle import UTILIZATION_LABELS, policy_styles, pyplot, save, split_run
from dodoor.sim.records import TaskRecords
from dodoor.sim.summary import UTILIZATION_RESOURCES
from dodoor.tools.report import METRICS, PLACED

# sim and live bars, the same pair in every bar chart
BAR_COLORS = {"sim": "#4c72b0", "live": "#dd8452"}
# A panel whose positive values span more than this factor gets a log axis, so a
# Sparrow confirm wait of seconds does not flatten sub-millisecond bars to nothing.
LOG_SPAN = 100.0
KIND_TITLES = {"sim": "simulated", "live": "live"}
DPI = 100


def _by_kind(labels) -> tuple[list[str], dict[str, dict], list[str]]:
    """The runs' policies (in order), a style per policy and the kinds present
    (``sim`` before ``live``), for figures with one column per kind."""
    runs = [split_run(label) for label in labels]
    policies = list(dict.fromkeys(policy for policy, _ in runs))
    kinds = [k for k in ("sim", "live") if any(kind == k for _, kind in runs)] or ["sim"]
    return policies, policy_styles(policies), kinds


def latency_figure(records: Mapping[str, TaskRecords]):
    """Scheduling latency (placed − submit) CDF per run: simulated runs on the
    left, live runs on the right, one style per policy in both."""
    plt = pyplot()
    _, styles, kinds = _by_kind(records)
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds) + 2, 4.5), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    column = dict(zip(kinds, axes[0]))
    for label, rec in records.items():
        policy, kind = split_run(label)
        arr = rec.arrays()
        lat = np.sort((arr["placed_ms"] - arr["submit_ms"])[~np.isnan(arr["placed_ms"])])
        if lat.size:
            column[kind].plot(np.maximum(lat, 1e-3), np.arange(1, lat.size + 1) / lat.size,
                              **styles[policy])
    for kind, ax in column.items():
        ax.set_xscale("log")
        ax.set_xlabel(f"{PLACED} (log scale)")
        ax.set_ylim(0, 1.02)
        ax.set_title(KIND_TITLES[kind], fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("fraction of tasks placed within x")
    _policy_legend(fig, axes.flat)
    fig.suptitle("Scheduling latency")
    return fig


def latency_cdf(records: Mapping[str, TaskRecords], path: Path) -> None:
    """Write :func:`latency_figure` to ``path``."""
    save(latency_figure(records), path, DPI)


def _policy_legend(fig, axes) -> None:
    """One legend entry per policy, gathered from every panel, outside on the right."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside right upper",
               fontsize="small", title="policy", title_fontsize="small", frameon=False)


def messages_figure(sim: Sequence[dict], live: Sequence[dict]):
    """Scheduling messages per task, simulated and live side by side, values on the bars."""
    plt = pyplot()
    policies = list(dict.fromkeys([s["policy"] for s in sim] + [s["policy"] for s in live]))
    x = np.arange(len(policies))
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for offset, (kind, runs) in zip((-0.2, 0.2), (("sim", sim), ("live", live))):
        by = {s["policy"]: s["messages"]["per_task"] for s in runs}
        bars = ax.bar(x + offset, [by.get(p, np.nan) for p in policies], width=0.4,
                      label=kind, color=BAR_COLORS[kind])
        ax.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    ax.set_xticks(x, policies, rotation=20)
    ax.set_ylabel("scheduling messages per task")
    ax.margins(y=0.12)  # room for the values above the tallest bars
    fig.legend(loc="outside upper center", ncols=2, frameon=False)
    return fig


def messages_bars(sim: Sequence[dict], live: Sequence[dict], path: Path) -> None:
    """Write :func:`messages_figure` to ``path``."""
    save(messages_figure(sim, live), path, DPI)


def utilization_figure(summaries: Mapping[str, dict]):
    """Fraction of the slots, cores and memory in use over time per run.

    One row per resource the summaries carry (older summaries have cores only),
    one column per kind of run (simulated, live), one style per policy.
    """
    plt = pyplot()
    present = [name for name in UTILIZATION_RESOURCES
               if any(f"busy_{name}_fraction" in s["utilization"] for s in summaries.values())]
    present = present or ["cores"]
    _, styles, kinds = _by_kind(summaries)
    fig, axes = plt.subplots(len(present), len(kinds),
                             figsize=(4.8 * len(kinds) + 2, 2.3 * len(present) + 1),
                             sharex=True, sharey=True, squeeze=False, layout="constrained")
    for label, s in summaries.items():
        policy, kind = split_run(label)
        times = np.asarray(s["utilization"]["times_ms"], dtype=float)
        if not times.size:
            continue
        for row, name in enumerate(present):
            curve = s["utilization"].get(f"busy_{name}_fraction")
            if curve is not None:
                axes[row, kinds.index(kind)].plot((times - times[0]) / 1000.0, curve,
                                                  **styles[policy])
    for row, name in enumerate(present):
        axes[row, 0].set_ylabel(f"{UTILIZATION_LABELS[name]}\n(fraction of cluster)",
                                fontsize="small")
    for col, kind in enumerate(kinds):
        axes[0, col].set_title(KIND_TITLES[kind], fontsize="medium")
        axes[-1, col].set_xlabel("time since first submission (s)")
    for ax in axes.flat:
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
    _policy_legend(fig, axes.flat)
    fig.suptitle("Cluster utilization" + (": each task holds one slot" if "slots" in present
                                          else ""))
    return fig


def utilization(summaries: Mapping[str, dict], path: Path) -> None:
    """Write :func:`utilization_figure` to ``path``."""
    save(utilization_figure(summaries), path, DPI)


def sim_vs_live_figure(sim: Sequence[dict], live: Sequence[dict]):
    """One panel per metric: simulated versus live value per policy.

    The legend is the figure's, right of the panels; a panel whose values span
    more than ``LOG_SPAN`` is drawn on a log axis.
    """
    plt = pyplot()
    by_sim = {s["policy"]: s for s in sim}
    pairs = [(by_sim[s["policy"]], s) for s in live if s["policy"] in by_sim]
    cols = 4
    rows = -(-len(METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.1 * rows + 0.6), squeeze=False,
                             layout="constrained")
    x = np.arange(len(pairs))
    for ax, m in zip(axes.flat, METRICS):
        values = {"sim": [m.read(a) * m.scale for a, _ in pairs],
                  "live": [m.read(b) * m.scale for _, b in pairs]}
        for offset, kind in zip((-0.2, 0.2), ("sim", "live")):
            ax.bar(x + offset, values[kind], width=0.4, label=kind, color=BAR_COLORS[kind])
        positive = [v for v in values["sim"] + values["live"] if v > 0]
        if positive and max(positive) / min(positive) > LOG_SPAN:
            ax.set_yscale("log")
            m_label = f"{m.label} (log scale)"
        else:
            m_label = m.label
        ax.set_xticks(x, [b["policy"] for _, b in pairs], rotation=30, fontsize="x-small")
        ax.set_title(m_label, fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(METRICS):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    fig.suptitle("Simulated versus live, per policy")
    return fig


def sim_vs_live_bars(sim: Sequence[dict], live: Sequence[dict], path: Path) -> None:
    """Write :func:`sim_vs_live_figure` to ``path``."""
    save(sim_vs_live_figure(sim, live), path, DPI)
