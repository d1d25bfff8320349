"""The evaluation report's figures and tables on fixed summaries: legends clear of
the bars, log axes where values span decades, slot use beside core use, the
late-binding mark."""

from __future__ import annotations

import math

import pytest

from dodoor.resources import Task
from dodoor.sim.plotstyle import pyplot
from dodoor.sim.records import TaskRecords
from dodoor.sim.report import PLACED
from dodoor.tools import report_plots
from dodoor.tools.report import METRICS, markdown_table, render


def summary(policy, per_task, mean_s, sched_ms, resources=("slots", "cores", "memory")):
    times = [0.0, 1000.0, 2000.0, 3000.0]
    util = {"mean_cores": 0.2, "times_ms": times}
    for i, name in enumerate(resources):
        util[f"busy_{name}_fraction"] = [0.0, 1.0 / (i + 1), 0.5 / (i + 1), 0.0]
    return {"policy": policy, "tasks": 200, "messages": {"per_task": per_task},
            "throughput_tps": 8.0,
            "makespan_ms": {"mean": mean_s * 1000, "p50": mean_s * 900, "p99": mean_s * 3000,
                            "p999": mean_s * 3200},
            "sched_latency_ms": {"mean": sched_ms, "p99": sched_ms * 3},
            "utilization": util}


# Measured shapes (dodoor evaluate --limit 200 --live local): simulated Sparrow waits
# seconds for its confirms while every other placement takes a millisecond or less.
SIM = [summary("dodoor", 2.13, 9.6, 0.5), summary("power-of-two", 5.0, 11.8, 1.5),
       summary("sparrow", 5.01, 9.5, 8497.2), summary("random", 1.0, 13.1, 0.5)]
LIVE = [summary("dodoor", 2.10, 9.8, 6.7), summary("power-of-two", 5.0, 12.1, 7.2),
        summary("sparrow", 5.05, 9.6, 8.6), summary("random", 1.0, 11.6, 8.9)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    pyplot().close("all")


def _boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [legend.get_window_extent(renderer) for legend in fig.legends]
    bars = [patch.get_window_extent(renderer) for ax in fig.axes for patch in ax.patches]
    return legends, bars, renderer


def test_sim_vs_live_legend_covers_no_bar_and_no_title():
    fig = report_plots.sim_vs_live_figure(SIM, LIVE)
    legends, bars, renderer = _boxes(fig)
    assert len(legends) == 1 and len(bars) == 2 * len(SIM) * len(METRICS)
    assert not any(legends[0].overlaps(bar) for bar in bars)
    assert not legends[0].overlaps(fig._suptitle.get_window_extent(renderer))
    assert not any(ax.get_legend() for ax in fig.axes)  # no legend inside a panel


def test_a_panel_spanning_decades_gets_a_log_axis():
    fig = report_plots.sim_vs_live_figure(SIM, LIVE)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    placed = panels[f"{PLACED} (log scale)"]
    assert placed.get_yscale() == "log"
    assert panels["makespan mean s"].get_yscale() == "linear"


def test_messages_legend_covers_no_bar_and_values_are_printed():
    fig = report_plots.messages_figure(SIM, LIVE)
    legends, bars, _ = _boxes(fig)
    assert len(bars) == 2 * len(SIM)
    assert not any(legends[0].overlaps(bar) for bar in bars)
    printed = {t.get_text() for t in fig.axes[0].texts}
    assert {"2.13", "2.10", "5.01", "5.05"} <= printed


def _labels(kind, runs):
    return {f"{s['policy']} {kind}": s for s in runs}


def test_utilization_has_slots_beside_cores_for_sim_and_live():
    fig = report_plots.utilization_figure(_labels("sim", SIM) | _labels("live", LIVE))
    assert len(fig.axes) == 6  # slots, cores, memory × simulated, live
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert [r.split(" in use")[0] for r in rows] == ["slots", "cores", "memory"]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["simulated", "live"]
    for ax in fig.axes:
        assert len([line for line in ax.get_lines()]) == len(SIM)
    legends, _, renderer = _boxes(fig)
    assert not any(legends[0].overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert len(fig.legends[0].get_texts()) == len(SIM)  # one entry per policy


def test_utilization_of_older_summaries_draws_the_cores_they_have():
    old = {f"{s['policy']} sim": summary(s["policy"], 1, 1, 1, resources=("cores",))
           for s in SIM}
    fig = report_plots.utilization_figure(old)
    assert len(fig.axes) == 1 and "cores" in fig.axes[0].get_ylabel()


def test_latency_cdf_puts_sim_and_live_side_by_side():
    def records(latency_ms):
        rec = TaskRecords([Task(f"t{i}", 1, 1) for i in range(3)])
        rec.submit[:] = [0.0, 10.0, 20.0]
        rec.placed[:] = [latency_ms, 10.0 + latency_ms, math.nan]
        return rec

    runs = {"dodoor sim": records(0.5), "random sim": records(0.5), "dodoor live": records(7.0)}
    fig = report_plots.latency_figure(runs)
    sim_ax, live_ax = fig.axes
    assert (sim_ax.get_title(), live_ax.get_title()) == ("simulated", "live")
    assert len(sim_ax.get_lines()) == 2 and len(live_ax.get_lines()) == 1
    dodoor, random = sim_ax.get_lines()
    # the same latency everywhere: the two lines must still look different
    assert (dodoor.get_color(), dodoor.get_linestyle()) != (random.get_color(),
                                                            random.get_linestyle())
    assert live_ax.get_lines()[0].get_color() == dodoor.get_color()  # one colour per policy


def test_the_simulated_table_marks_late_binding_and_says_why():
    table = markdown_table(SIM, mark_late=True)
    assert f"| {PLACED} |" in table.splitlines()[0]
    sparrow = next(line for line in table.splitlines() if line.startswith("| sparrow"))
    assert "8497.20\\*" in sparrow
    assert "\\*" not in markdown_table(LIVE)
    text = render(SIM, LIVE, "dodoor evaluate")
    assert "\\* sparrow: late binding." in text
    assert text.index("late binding") < text.index("## Live")
