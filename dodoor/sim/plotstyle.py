"""Shared look of the PNG figures: one style per policy, the bound, readable labels.

Every figure that draws one line per policy asks :func:`policy_styles` for its
line styles, so a policy looks the same in the makespan CDF and in the
utilization curves, and no two lines look alike even when they coincide.
"""

from __future__ import annotations

from typing import Iterable, Sequence

# The lower bound every other policy is measured against (simulator only).
BOUND = "ideal"
BOUND_LABEL = "ideal (bound)"
# matplotlib's tab10 without its grey (grey is the bound's band), then two dark
# tab20b shades, so that every policy of `dodoor simulate` has a colour of its own.
COLORS: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                           "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939")
# Dodoor's own policies are solid; the policies they are compared with are broken,
# so the subject stands out before the legend is read.
SUBJECT_LINESTYLE = "-"
OTHER_LINESTYLES: tuple = ((0, (5, 2)), (0, (1, 1.2)), (0, (6, 2, 1, 2)),
                           (0, (3, 1, 1, 1, 1, 1)))
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h")
MARKS_PER_LINE = 4
# Row labels of utilization panels (keys of dodoor.sim.summary.UTILIZATION_RESOURCES).
UTILIZATION_LABELS = {"slots": "slots in use", "cores": "cores in use",
                      "memory": "memory in use"}


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi: int = 110) -> None:
    """Write a figure as PNG and release it (pyplot keeps every open figure alive)."""
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def base_policy(label: str) -> str:
    """``dodoor-wait:d=16 sim`` -> ``dodoor-wait``."""
    return label.split(" ")[0].partition(":")[0]


def is_bound(label: str) -> bool:
    return base_policy(label) == BOUND


def display_label(label: str) -> str:
    """The legend text: the bound says that it is one."""
    return label.replace(BOUND, BOUND_LABEL, 1) if is_bound(label) else label


def policy_styles(labels: Sequence[str]) -> dict[str, dict]:
    """Keyword arguments for ``Axes.plot`` per label, all different.

    The bound is a wide grey band drawn under everything: a policy that matches
    it runs through its middle instead of hiding it. The others get a colour
    each (in order), a line style by family (solid for ``dodoor*``) and a
    marker, placed sparsely and staggered so that marks of coinciding lines do
    not land on one another.
    """
    styles: dict[str, dict] = {}
    others = [label for label in labels if not is_bound(label)]
    broken = 0
    for i, label in enumerate(others):
        if base_policy(label).startswith("dodoor"):
            linestyle = SUBJECT_LINESTYLE
        else:
            linestyle = OTHER_LINESTYLES[broken % len(OTHER_LINESTYLES)]
            broken += 1
        start = (0.5 + i) / (max(len(others), 1) * MARKS_PER_LINE)
        styles[label] = dict(
            color=COLORS[i % len(COLORS)], linestyle=linestyle, linewidth=1.6,
            marker=MARKERS[i % len(MARKERS)], markersize=5, markevery=(start, 1 / MARKS_PER_LINE),
            label=label, zorder=3,
        )
    for label in labels:
        if is_bound(label):
            styles[label] = dict(color="black", alpha=0.25, linewidth=7, linestyle="-",
                                 solid_capstyle="butt", label=display_label(label), zorder=2)
    return styles


def split_run(label: str) -> tuple[str, str]:
    """``dodoor sim`` -> (``dodoor``, ``sim``); a label without a kind is a simulation."""
    policy, _, kind = label.rpartition(" ")
    return (policy, kind) if policy and kind in ("sim", "live") else (label, "sim")


def relative_luminance(rgb: Iterable[float]) -> float:
    """WCAG relative luminance of an sRGB colour with channels in 0..1."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
              for c in list(rgb)[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def text_color_on(rgb: Iterable[float]) -> str:
    """Black or white, whichever contrasts more with a background colour (WCAG ratio)."""
    lum = relative_luminance(rgb)
    on_white = 1.05 / (lum + 0.05)
    on_black = (lum + 0.05) / 0.05
    return "black" if on_black >= on_white else "white"
