"""The report generator on fixed summaries: exact values and ratios."""

from __future__ import annotations

import math

import pytest

from dodoor.tools.report import (
    markdown_placement_messages, markdown_table, placement_messages, ranking, ranking_agreement,
    render, sim_vs_live, table_rows,
)


def summary(policy, per_task, tps, mean, p50, p99, p999, sched):
    return {"policy": policy, "messages": {"per_task": per_task}, "throughput_tps": tps,
            "makespan_ms": {"mean": mean, "p50": p50, "p99": p99, "p999": p999},
            "sched_latency_ms": {"mean": sched, "p99": sched}}


SIM = [summary("dodoor", 2.0, 10.0, 1000.0, 800.0, 4000.0, 5000.0, 2.0),
       summary("random", 1.0, 8.0, 1500.0, 900.0, 8000.0, 12000.0, 1.0)]
LIVE = [summary("dodoor", 2.5, 9.0, 1100.0, 800.0, 4400.0, 5000.0, 4.0),
        summary("random", 1.0, 8.0, 1050.0, 900.0, 6000.0, 9000.0, 3.0)]


def test_ratios_to_dodoor_are_exact():
    rows = {r["policy"]: r for r in table_rows(SIM)}
    r = rows["random"]
    assert r["msgs_per_task_ratio"] == 0.5
    assert r["throughput_ratio"] == 0.8
    assert r["mean_ratio"] == 1.5
    assert r["p50_ratio"] == 900.0 / 800.0
    assert r["p99_ratio"] == 2.0
    assert r["p999_ratio"] == 2.4
    assert r["sched_ratio"] == 0.5
    assert all(rows["dodoor"][k] == 1.0 for k in rows["dodoor"] if k.endswith("_ratio"))


def test_markdown_table_prints_values_and_ratios():
    lines = markdown_table(SIM).splitlines()
    assert lines[0].startswith("| policy | msgs/task | ×dodoor | tasks/s | ×dodoor |")
    assert lines[3] == ("| random | 1.000 | 0.50 | 8.000 | 0.80 | 1.500 | 1.50 | 0.900 | 1.12 "
                        "| 8.000 | 2.00 | 12.000 | 2.40 | 1.00 | 0.50 |")


def test_no_dodoor_row_gives_no_ratio():
    rows = table_rows(SIM[1:])
    assert math.isnan(rows[0]["mean_ratio"])
    assert "| – |" in markdown_table(SIM[1:])


def test_sim_versus_live_and_ranking():
    diff = {r["policy"]: r for r in sim_vs_live(SIM, LIVE)}
    assert diff["dodoor"]["mean"] == pytest.approx(0.1, abs=1e-12)
    assert diff["dodoor"]["msgs_per_task"] == 0.25
    assert diff["random"]["mean"] == pytest.approx(-0.3, abs=1e-12)
    assert diff["random"]["p999"] == -0.25
    assert ranking(SIM) == ["dodoor", "random"] and ranking(LIVE) == ["random", "dodoor"]
    text = render(SIM, LIVE, "dodoor evaluate --limit 10", ["latency_cdf.png"])
    assert "(DIFFERENT; ordered oppositely: dodoor/random)." in text
    assert "dodoor: msgs/task live vs sim +25.0% (OUTSIDE ±15%)." in text
    assert "random: makespan mean s live vs sim -30.0% (OUTSIDE ±15%)." in text
    assert "dodoor: makespan mean s live vs sim +10.0% (within ±15%)." in text
    assert "Command: `dodoor evaluate --limit 10`" in text
    assert "![latency_cdf.png](latency_cdf.png)" in text


def means(**by_policy: float) -> list[dict]:
    return [summary(p, 1.0, 1.0, m, m, m, m, 1.0) for p, m in by_policy.items()]


def test_ranking_swaps_inside_a_tie_are_not_a_different_ranking():
    sim = means(sparrow=14.36, dodoor=14.74, prequal=17.5, random=18.8)
    live = means(dodoor=14.69, sparrow=14.84, prequal=17.36, random=17.37)
    assert ranking_agreement(sim, live) == ("same up to ties", [], [("sparrow", "dodoor")])
    assert ranking_agreement(sim, sim) == ("same", [], [])
    # Separated by more than the tie in both runs, and swapped: a real disagreement;
    # sparrow/dodoor, 2.6% apart in the simulation, stays a tie however far apart live.
    live = means(dodoor=14.0, sparrow=16.0, prequal=19.0, random=17.37)
    assert ranking_agreement(sim, live) == ("DIFFERENT", [("prequal", "random")],
                                            [("sparrow", "dodoor")])
    assert ranking_agreement(sim, live, tie=0.2)[0] == "same up to ties"
    assert "(same up to ties; swapped within a tie (< 3% or 2 sd over seeds): sparrow/dodoor)." \
        in render(sim, means(dodoor=14.69, sparrow=14.84, prequal=17.36, random=17.37), "x")


def test_the_seed_spread_widens_the_tie():
    sim = means(prequal=17.5, random=18.8)  # 7.4% apart
    live = means(random=17.37, prequal=18.0)
    assert ranking_agreement(sim, live)[0] == "DIFFERENT"
    for s, sd in zip(sim, (0.4, 0.6)):  # relative sds 2.3% and 3.2%: 2 sd combined is 7.9%
        s["seed_spread"] = {"seeds": 10, "makespan_mean_ms": {"mean": s["makespan_ms"]["mean"],
                                                              "sd": sd, "min": 0, "max": 0}}
    assert ranking_agreement(sim, live) == ("same up to ties", [], [("prequal", "random")])
    assert "over 10 seeds (mean ± sd): prequal 0.018 ± 0.000 s; random 0.019 ± 0.001 s." in \
        render(sim, live, "x")


def test_placement_messages_leave_out_node_state():
    sim = summary("dodoor", 2.0, 10.0, 1000.0, 800.0, 4000.0, 5000.0, 2.0)
    sim["tasks"] = 10
    sim["messages"]["by_type"] = {"enqueue": 10, "node_state": 9, "deltas": 2, "completion": 10}
    live = {**sim, "messages": {"per_task": 3.0, "by_type": {
        "enqueue": 10, "node_state": 40, "deltas": 3, "task_status": 99}}}
    assert placement_messages(sim) == 1.2 and placement_messages(live) == 1.3
    assert markdown_placement_messages([sim], [live]).splitlines()[2] == (
        "| dodoor | 1.200 | 1.300 | +8.3% |")
    assert math.isnan(placement_messages(SIM[0]))
