"""Heatmaps of a parameter sweep: one PNG per metric, one panel per load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from matplotlib.ticker import FuncFormatter

from dodoor.sim.plotstyle import pyplot, save, text_color_on

CMAP = "viridis"


def cell_text(value: float) -> str:
    """A cell's number, short enough to fit: 45.5, 108, 2,390, 206,000."""
    if math.isnan(value):
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def plot_heatmaps(rows: Sequence[dict], keys: Sequence[str], out: Path,
                  metrics: Sequence[tuple[str, str]]) -> list[Path]:
    """One PNG per ``(metric, label)`` of :func:`heatmap_figure`; returns the paths."""
    written = []
    for metric, label in metrics:
        path = out / f"heatmap_{metric}.png"
        save(heatmap_figure(rows, keys, metric, label), path)
        written.append(path)
    return written


def heatmap_figure(rows: Sequence[dict], keys: Sequence[str], metric: str, label: str):
    """A heatmap of ``metric`` over the first two swept keys, one panel per load
    and per combination of any further keys.

    Each cell is annotated with its value in black or white, whichever stands
    out more from the cell's colour.
    """
    plt = pyplot()
    xkey = keys[0] if keys else None
    ykey = keys[1] if len(keys) > 1 else None
    rest = list(keys[2:])
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["load"], *(r[k] for k in rest)), []).append(r)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False,
                             layout="constrained")
    for ax, (group, members) in zip(axes[0], groups.items()):
        xs, ys = _ordered(members, xkey), _ordered(members, ykey)
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in members:
            grid[ys.index(str(r.get(ykey, ""))), xs.index(str(r.get(xkey, "")))] = r[metric]
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap=CMAP)
        annotate_cells(ax, image, grid)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(xkey or "")
        ax.set_ylabel(ykey or "")
        title = f"load {group[0]}" + "".join(f", {k}={v}" for k, v in zip(rest, group[1:]))
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, format=FuncFormatter(lambda v, _: cell_text(v)))
    fig.suptitle(label)
    return fig


def annotate_cells(ax, image, grid: np.ndarray) -> None:
    """Write each cell's value in the text colour that contrasts with the cell."""
    for (yi, xi), value in np.ndenumerate(grid):
        if np.isnan(value):
            continue
        background = image.cmap(image.norm(value))
        ax.text(xi, yi, cell_text(value), ha="center", va="center", fontsize=8,
                color=text_color_on(background))


def _ordered(rows: Iterable[dict], key: str | None) -> list[str]:
    if key is None:
        return [""]
    return list(dict.fromkeys(str(r[key]) for r in rows))
