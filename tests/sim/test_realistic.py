"""Realistic conditions in the simulator: wrong estimates and bursty arrivals."""

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task
from dodoor.sim.arrivals import Bursts, bursty
from dodoor.sim.engine import EventLoop
from dodoor.sim.estimates import declared
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.records import TaskRecords
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import cluster_by_name
from workloads.synthetic import synthetic_tasks


def test_node_counts_the_estimate_and_runs_the_true_duration():
    # a: declared 1000 ms, really 300; b: declared 200, really 900 (one slot each, two slots)
    tasks = [Task("a", 1, 100, 0, 300, 0), Task("b", 1, 100, 0, 900, 0)]
    loop = EventLoop()
    records = TaskRecords(tasks)
    node = SimNode(0, NodeSpec("n", 4, 4096, 0, 2), loop, Network(loop, 0.0), records)
    node.enqueue(Entry(0, (1, 100, 0), 300.0, estimate=1000.0))
    node.enqueue(Entry(1, (1, 100, 0), 900.0, estimate=200.0))
    assert node.rq.pending_ms(0.0) == 1200.0
    loop.run(until_ms=250.0)
    assert node.rq.pending_ms(250.0) == 750.0  # b is past its estimate: 0, not -50
    loop.run()
    assert records.end == [300.0, 900.0]


def test_sigma_zero_changes_nothing_and_runs_keep_true_durations():
    nodes = cluster_by_name("scaled:12")
    tasks = synthetic_tasks(300, nodes, 0.9, seed=3)
    base = simulate(tasks, nodes, "dodoor-wait:d=4", SimSettings(seed=2))
    same = simulate(tasks, nodes, "dodoor-wait:d=4", SimSettings(seed=2, estimate_sigma=0.0))
    assert same.records.start == base.records.start and same.records.node == base.records.node
    wrong = simulate(tasks, nodes, "dodoor-wait:d=4", SimSettings(seed=2, estimate_sigma=1.0))
    by_id = {t.task_id: t.duration_ms for t in tasks}
    r = wrong.records
    ran = [r.end[i] - r.start[i] for i in range(len(r))]
    assert ran == pytest.approx([by_id[tid] for tid in r.task_ids])
    assert r.node != base.records.node  # the wrong estimates changed decisions
    again = simulate(tasks, nodes, "dodoor-wait:d=4", SimSettings(seed=2, estimate_sigma=1.0))
    assert again.records.start == r.start  # seeded: the same errors every run


def test_ideal_ignores_wrong_estimates():
    nodes = cluster_by_name("scaled:12")
    tasks = synthetic_tasks(200, nodes, 0.9, seed=4)
    exact = simulate(tasks, nodes, "ideal", SimSettings(seed=1))
    told = simulate(tasks, nodes, "ideal", SimSettings(seed=1, estimate_sigma=2.0))
    assert told.records.start == exact.records.start


def test_declared_errors_are_log_normal_with_sigma():
    tasks = [Task(f"t{i}", 1, 1, 0, 1000.0, i) for i in range(20_000)]
    logs = [math.log(t.duration_ms / 1000.0) for t in declared(tasks, 0.5, random.Random(0))]
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs))
    assert abs(mean) < 0.02 and abs(sd - 0.5) < 0.02
    with pytest.raises(ValidationError, match="estimate_sigma"):
        SimSettings(estimate_sigma=-1.0)


arrivals = st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=200)


@settings(max_examples=60, deadline=None)
@given(arrivals, st.floats(1, 1e5), st.floats(1, 1e5), st.integers(0, 10**6))
def test_bursts_keep_order_span_and_tasks(times, on, off, seed):
    tasks = [Task(f"t{i}", 1, 1, 0, 10.0, a) for i, a in enumerate(sorted(times))]
    out = bursty(tasks, Bursts(on, off), random.Random(seed))
    assert [t.task_id for t in out] == [t.task_id for t in tasks]
    assert all(a.arrival_ms <= b.arrival_ms for a, b in zip(out, out[1:]))
    assert out[0].arrival_ms == tasks[0].arrival_ms
    assert out[-1].arrival_ms == pytest.approx(tasks[-1].arrival_ms, rel=1e-9, abs=1e-6)
    assert [t.duration_ms for t in out] == [t.duration_ms for t in tasks]


def test_bursts_crowd_a_steady_stream_into_on_periods():
    # one arrival a second for 10,000 s; ON 10 s / OFF 30 s: peak rate 4x, silences ~30 s
    tasks = [Task(f"t{i}", 1, 1, 0, 10.0, 1000.0 * i) for i in range(10_000)]
    out = bursty(tasks, Bursts(10_000, 30_000), random.Random(0))
    gaps = [b.arrival_ms - a.arrival_ms for a, b in zip(out, out[1:])]
    short = [g for g in gaps if g < 1000.0]
    assert len(short) > 0.9 * len(gaps)  # most arrivals come faster than steady
    assert sorted(short)[len(short) // 2] == pytest.approx(250.0, rel=0.05)  # 4x the rate
    silences = [g for g in gaps if g > 5000.0]
    # exponential OFF periods: 250 cycles, e^(-5/30) of them over 5 s, those 5 + 30 s long
    assert 170 < len(silences) < 260
    assert sum(silences) / len(silences) == pytest.approx(35_000, rel=0.1)
    with pytest.raises(ValidationError, match="burst_off_ms"):
        Bursts(10_000, 0)
    with pytest.raises(ValidationError, match="burst_ms"):
        Bursts.parse("10000")
