"""The simulator's figures and table, checked for structure rather than pixels:
every policy a line of its own style, the bound marked, legends clear of the
data, slot use beside core use, heatmap labels that contrast with their cells."""

from __future__ import annotations

import numpy as np
import pytest

from dodoor.policies import DEFAULT_POLICY, POLICIES
from dodoor.resources import NodeSpec, Task
from dodoor.sim.heatmaps import heatmap_figure, plot_heatmaps
from dodoor.sim.plots import makespan_figure, spans_decades, utilization_figure
from dodoor.sim.plotstyle import (
    BOUND_LABEL, policy_styles, pyplot, relative_luminance, text_color_on,
)
from dodoor.sim.report import PLACED, format_table
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from dodoor.sim.summary import utilization_curves

ALL = [*POLICIES, DEFAULT_POLICY]  # what `dodoor simulate` runs by default: twelve policies


@pytest.fixture(scope="module")
def overloaded():
    """Every policy on 400 tasks of the bundled trace at its own timing: ~2.5x the
    slots of paper100, so slots are full while most cores are idle."""
    from dodoor.tools.inputs import load_inputs

    tasks, nodes = load_inputs(None, "paper100", 400, None)
    return [simulate(tasks, nodes, spec) for spec in ALL]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    pyplot().close("all")


def _extent(artist, fig):
    return artist.get_window_extent(fig.canvas.get_renderer())


def _data_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_policy_styles_are_all_different_and_mark_the_bound():
    styles = policy_styles(ALL)
    others = [styles[p] for p in ALL if p != "ideal"]
    keys = {(s["color"], repr(s["linestyle"]), s["marker"]) for s in others}
    assert len(keys) == len(others)
    assert len({s["color"] for s in others}) == len(others)  # colour alone tells them apart
    assert all(styles[p]["linestyle"] == "-" for p in ALL if p.startswith("dodoor"))
    assert all(styles[p]["linestyle"] != "-" for p in ALL
               if not p.startswith("dodoor") and p != "ideal")
    bound = styles["ideal"]
    assert bound["label"] == BOUND_LABEL
    # a wide band beneath everything: a policy that matches it stays visible, and so does it
    assert bound["linewidth"] > 2 * max(s["linewidth"] for s in others)
    assert bound["zorder"] < min(s["zorder"] for s in others)


def test_makespan_cdf_draws_every_policy_in_its_own_style(overloaded):
    fig = makespan_figure(overloaded)
    cdf, tail = fig.axes
    for ax in (cdf, tail):
        lines = _data_lines(ax)
        assert len(lines) == len(ALL) == 12
        others = [line for line in lines if BOUND_LABEL not in line.get_label()]
        assert len({line.get_color() for line in others}) == 11
        assert len({line.get_marker() for line in others}) == 11
    bound = next(line for line in _data_lines(cdf) if BOUND_LABEL in line.get_label())
    best = next(line for line in _data_lines(cdf) if line.get_label().startswith(DEFAULT_POLICY))
    assert bound.get_linewidth() > best.get_linewidth() and bound.get_zorder() < best.get_zorder()
    assert "makespan" in cdf.get_xlabel() and "(s" in cdf.get_xlabel()
    assert "(s)" in tail.get_xlabel() and tail.get_yscale() == "log"


def test_makespan_legend_is_outside_the_data_and_ranked_by_mean(overloaded):
    fig = makespan_figure(overloaded)
    fig.canvas.draw()
    (legend,) = fig.legends
    box = _extent(legend, fig)
    for ax in fig.axes:
        assert not box.overlaps(_extent(ax, fig))
    labels = [t.get_text() for t in legend.get_texts()]
    means = [float(label.rsplit("mean ", 1)[1].split(" s")[0].replace(",", "")) for label in labels]
    assert len(labels) == 12 and means == sorted(means)
    assert any(BOUND_LABEL in label for label in labels)


def test_log_x_only_when_the_makespans_span_decades():
    assert spans_decades([np.array([0.1, 1, 10, 100, 1000])])
    assert not spans_decades([np.linspace(50, 3000, 100)])
    assert not spans_decades([])


def test_utilization_shows_slots_beside_cores_and_memory(overloaded):
    fig = utilization_figure(overloaded, points=50)
    slots, cores, memory = fig.axes
    assert "slots" in slots.get_ylabel() and "cores" in cores.get_ylabel()
    assert "memory" in memory.get_ylabel()
    for ax in fig.axes:
        assert len(_data_lines(ax)) == 12
    fig.canvas.draw()
    (legend,) = fig.legends
    assert not any(_extent(legend, fig).overlaps(_extent(ax, fig)) for ax in fig.axes)
    # what the figure is for: on this overloaded run the slots fill, the cores do not
    _, curves = utilization_curves(overloaded[0].records, overloaded[0].nodes, 50)
    assert curves["slots"].max() > 0.95
    assert curves["cores"].max() < 0.6


def test_utilization_curves_are_exact_per_resource():
    nodes = [NodeSpec("A", 4, 1000, 0, 2), NodeSpec("B", 4, 1000, 0, 2)]
    tasks = [Task("a", 2, 500, 0, 100, 0), Task("b", 1, 250, 0, 50, 0)]
    res = simulate(tasks, nodes, "random", SimSettings(delay_ms=0.0, util_points=5))
    times, curves = utilization_curves(res.records, nodes, 5)
    assert times.tolist() == [0, 25, 50, 75, 100]
    assert curves["slots"].tolist() == [0.5, 0.5, 0.25, 0.25, 0.0]
    assert curves["cores"].tolist() == [0.375, 0.375, 0.25, 0.25, 0.0]
    assert curves["memory"].tolist() == [0.375, 0.375, 0.25, 0.25, 0.0]
    util = res.summary()["utilization"]
    assert util["busy_slots_fraction"] == [0.5, 0.5, 0.25, 0.25, 0.0]
    assert util["mean_slots"] == pytest.approx((100 + 50) / (4 * 100))
    assert util["mean_memory"] == pytest.approx((500 * 100 + 250 * 50) / (2000 * 100))


def test_text_colour_follows_the_background_luminance():
    assert relative_luminance((1, 1, 1)) == pytest.approx(1.0)
    assert text_color_on((0.99, 0.91, 0.14)) == "black"  # viridis' yellow
    assert text_color_on((0.27, 0.0, 0.33)) == "white"   # viridis' purple
    assert text_color_on((0.13, 0.57, 0.55)) == "black"  # viridis' teal: black contrasts more


def _sweep_rows():
    rows = []
    for load in (0.5, 0.9):
        for d in ("2", "4", "8"):
            for b in ("8", "80"):
                rows.append({"load": load, "d": d, "b": b,
                             "mean_makespan_s": 40.0 + 60 * load / int(d) + int(b) / 20,
                             "snapshot_age_ms": 1300.0 * int(b)})
    return rows


def test_heatmap_labels_contrast_with_their_cells():
    fig = heatmap_figure(_sweep_rows(), ["d", "b"], "mean_makespan_s", "mean makespan (s)")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    for ax in panels:
        image = ax.images[0]
        grid = image.get_array()
        assert len(ax.texts) == grid.size
        colours = set()
        for text in ax.texts:
            x, y = text.get_position()
            background = image.cmap(image.norm(grid[int(y), int(x)]))
            assert text.get_color() == text_color_on(background)
            colours.add(text.get_color())
        # the brightest cell (yellow) is labelled in black, the darkest in white
        top = np.unravel_index(np.argmax(grid), grid.shape)
        low = np.unravel_index(np.argmin(grid), grid.shape)
        by_cell = {(int(t.get_position()[1]), int(t.get_position()[0])): t for t in ax.texts}
        assert by_cell[top].get_color() == "black" and by_cell[low].get_color() == "white"
        assert colours == {"black", "white"}


def test_heatmap_numbers_stay_short(tmp_path):
    written = plot_heatmaps(_sweep_rows(), ["d", "b"], tmp_path,
                            [("snapshot_age_ms", "mean snapshot age (ms)")])
    assert [p.name for p in written] == ["heatmap_snapshot_age_ms.png"]
    fig = heatmap_figure(_sweep_rows(), ["d", "b"], "snapshot_age_ms", "age")
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert "104,000" in texts and "10,400" in texts  # not 1.04e+05


def _summary(policy, sched_ms):
    return {"policy": policy, "messages": {"per_task": 5.0}, "throughput_tps": 3.0,
            "makespan_ms": {"mean": 898_500.0, "p50": 794_700.0, "p99": 1_970_300.0},
            "sched_latency_ms": {"mean": sched_ms}}


def test_the_table_says_what_the_placement_column_holds_for_sparrow():
    text = format_table([_summary("dodoor", 0.5), _summary("sparrow", 856188.93)])
    header, rule, dodoor, sparrow, *note = text.splitlines()
    assert PLACED in header and "sched ms" not in header
    assert sparrow.rstrip().split()[-2] == "856188.93*"
    assert "*" not in dodoor
    # the digits of marked and unmarked values stay in one column
    assert dodoor.index("0.50") + len("0.50") == sparrow.index("856188.93") + len("856188.93")
    assert note and note[0].startswith("* sparrow: late binding")
    assert "reservation" in " ".join(note) and "confirm" in " ".join(note)
    plain = format_table([_summary("dodoor", 0.5)])
    assert "*" not in plain and len(plain.splitlines()) == 3
