"""Whole runs: k/b batching counts, determinism, the summary schema, the oracle."""

import numpy as np
import pytest

from dodoor.resources import NodeSpec, Task
from dodoor.settings import PolicySettings
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import paper100, scaled
from workloads.dodoor_csv import bundled_trace, load_dodoor_csv
from workloads.load import scale_to_load


@pytest.fixture(scope="module")
def slice500():
    nodes = paper100()
    return scale_to_load(load_dodoor_csv(bundled_trace(), limit=500), nodes, 0.9), nodes


def small_tasks(n, gap=5.0):
    return [Task(f"t{i}", 1, 256, 0, 50 + (i * 37) % 200, gap * i) for i in range(n)]


@pytest.mark.parametrize("policy", ["dodoor", "cached-power-of-two"])
def test_k_b_batching_one_scheduler(policy):
    res = simulate(small_tasks(80), scaled(10), policy,
                   SimSettings(policy=PolicySettings(k=8, b=80)))
    counts = res.counter.counts
    assert counts["deltas"] == 10 and counts["snapshot"] == 1 and res.snapshots == 1
    assert counts["enqueue"] == 80 and counts["node_state"] <= 80


def test_snapshots_go_to_every_scheduler():
    res = simulate(small_tasks(160), scaled(10), "dodoor",
                   SimSettings(schedulers=2, policy=PolicySettings(k=8, b=80)))
    counts = res.counter.counts
    # 80 placements per scheduler -> 10 deltas each; 160 placements -> 2 snapshots x 2 schedulers
    assert counts["deltas"] == 20 and res.snapshots == 2 and counts["snapshot"] == 4


def test_probe_policies_send_no_state_reports(slice500):
    tasks, nodes = slice500
    counts = simulate(tasks, nodes, "power-of-two").counter.counts
    assert counts["node_state"] == 0 and counts["probe"] == counts["probe_reply"] == 1000


def test_same_seed_same_run_different_seed_differs(slice500):
    tasks, nodes = slice500
    a = simulate(tasks, nodes, "dodoor", SimSettings(seed=5))
    b = simulate(tasks, nodes, "dodoor", SimSettings(seed=5))
    c = simulate(tasks, nodes, "dodoor", SimSettings(seed=6))
    assert a.records.node == b.records.node and a.records.end == b.records.end
    assert a.counter.counts == b.counter.counts
    assert a.records.node != c.records.node


def test_every_task_runs_once_on_a_node_that_holds_it(slice500):
    tasks, nodes = slice500
    for policy in ("dodoor", "sparrow", "prequal", "ideal", "random"):
        rec = simulate(tasks, nodes, policy).records
        by_id = {t.task_id: t for t in tasks}
        for i, tid in enumerate(rec.task_ids):
            t, node = by_id[tid], nodes[rec.node[i]]
            assert t.cores <= node.cores and t.memory_mb <= node.memory_mb
            assert rec.submit[i] <= rec.placed[i] <= rec.start[i]
            assert rec.end[i] == pytest.approx(rec.start[i] + t.duration_ms)


@pytest.mark.parametrize("policy", ["dodoor", "sparrow", "ideal"])
def test_never_more_running_than_slots_or_cores(slice500, policy):
    tasks, nodes = slice500
    rec = simulate(tasks, nodes, policy).records
    for j, node in enumerate(nodes):
        mine = [i for i in range(len(rec)) if rec.node[i] == j]
        for i in mine:  # at each start, what is running there
            t = rec.start[i]
            live = [k for k in mine if rec.start[k] <= t < rec.end[k]]
            assert len(live) <= node.slots
            assert sum(rec.cores[k] for k in live) <= node.cores + 1e-6


def test_summary_schema(slice500):
    tasks, nodes = slice500
    s = simulate(tasks, nodes, "dodoor").summary()
    assert set(s) >= {"policy", "tasks", "nodes", "makespan_ms", "sched_latency_ms",
                      "throughput_tps", "messages", "wall_s"}
    assert set(s) - {"settings", "utilization"} == {
        "policy", "tasks", "nodes", "makespan_ms", "sched_latency_ms", "throughput_tps",
        "messages", "wall_s", "snapshots"}
    assert set(s["snapshots"]) == {"pushes", "resyncs", "mean_age_ms"}
    assert set(s["makespan_ms"]) == {"mean", "p50", "p99", "p999"}
    assert set(s["sched_latency_ms"]) == {"mean", "p99"}
    assert set(s["messages"]) == {"total", "per_task", "by_type", "bytes_by_type",
                                  "bytes_per_task"}
    assert s["policy"] == "dodoor" and s["tasks"] == 500 and s["nodes"] == 100
    m = s["messages"]
    assert m["total"] == sum(v for k, v in m["by_type"].items() if k != "completion")
    assert m["by_type"]["completion"] == 500
    assert s["sched_latency_ms"] == {"mean": 0.5, "p99": 0.5}
    mk = s["makespan_ms"]
    assert 0 < mk["p50"] <= mk["p99"] <= mk["p999"]
    util = s["utilization"]["busy_cores_fraction"]
    assert len(util) == 200 and 0 < max(util) <= 1.0


def test_oracle_counts_tasks_in_flight():
    # one node, two tasks submitted together: the second must see the first
    # (still in flight) ahead of it and start after it, not at once
    nodes = [NodeSpec("A", 2, 4096, 0, 1), NodeSpec("B", 2, 4096, 0, 1)]
    tasks = [Task("a", 1, 100, 0, 100, 0), Task("b", 1, 100, 0, 100, 0),
             Task("c", 1, 100, 0, 100, 0)]
    res = simulate(tasks, nodes, "ideal", SimSettings(delay_ms=1.0))
    rec = res.records
    assert sorted(rec.start) == [1.0, 1.0, 101.0]
    assert rec.node[0] != rec.node[1]


def test_ideal_beats_random_on_the_trace(slice500):
    tasks, nodes = slice500
    ideal = simulate(tasks, nodes, "ideal").summary()["makespan_ms"]["mean"]
    rand = simulate(tasks, nodes, "random").summary()["makespan_ms"]["mean"]
    assert ideal < rand
    assert np.isfinite(ideal)


def test_several_schedulers_are_deterministic_and_share_the_work(slice500):
    tasks, nodes = slice500
    settings = SimSettings(schedulers=3, seed=2)
    a = simulate(tasks, nodes, "dodoor", settings)
    b = simulate(tasks, nodes, "dodoor", settings)
    assert a.records.node == b.records.node and a.records.start == b.records.start
    # 500 placements split 167/167/166 over 3 schedulers: 20+20+20 full batches of 8;
    # 6 snapshots (every 80 placements) pushed to 3 schedulers each
    assert a.counter.counts["deltas"] == 60 and a.counter.counts["snapshot"] == 18


def test_utilization_curve_exact():
    from dodoor.sim.summary import utilization_curve

    nodes = [NodeSpec("A", 4, 4096, 0, 2)]
    tasks = [Task("a", 2, 100, 0, 100, 0), Task("b", 1, 100, 0, 50, 0)]
    res = simulate(tasks, nodes, "random", SimSettings(delay_ms=0.0, util_points=5))
    times, busy = utilization_curve(res.records, nodes, 5)
    # grid 0, 25, 50, 75, 100: both run until 50, then only a, and a ends at 100
    assert times.tolist() == [0, 25, 50, 75, 100]
    assert busy.tolist() == [0.75, 0.75, 0.5, 0.5, 0.0]
    s = res.summary()
    assert s["utilization"]["mean_cores"] == pytest.approx((2 * 100 + 1 * 50) / (4 * 100))
    assert s["throughput_tps"] == pytest.approx(2 / 0.1)
