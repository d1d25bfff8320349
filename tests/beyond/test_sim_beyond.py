"""Simulator: snapshot age, bytes on the wire, delta snapshots and adaptive b in whole runs."""

from __future__ import annotations

import pytest

from dodoor.resources import NodeSpec, Task
from dodoor.settings import PolicySettings
from dodoor.sim.network import wire_sizes
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import scaled
from workloads.synthetic import synthetic_tasks


def _nodes(n=4):
    return [NodeSpec(f"n{i}", 8.0, 8192.0, 0.0, 2) for i in range(n)]


def test_snapshot_age_is_exact_on_the_simulated_clock():
    # k=1, b=1: each placement's delta reaches the store 0.5 ms later, whose
    # snapshot (built then) reaches the scheduler at +1.0 ms
    tasks = [Task(f"t{i}", 1.0, 10.0, 0.0, 100.0, arrival_ms=10.0 * i) for i in range(3)]
    res = simulate(tasks, _nodes(), "dodoor:k=1,b=1", SimSettings(delay_ms=0.5))
    # decisions at 0, 10, 20 use snapshots built at 0 (start), 0.5, 10.5
    assert res.snapshot_age_ms == pytest.approx((0.0 + 9.5 + 9.5) / 3)
    assert res.summary()["snapshots"] == {"pushes": 3, "resyncs": 0,
                                          "mean_age_ms": pytest.approx(19.0 / 3)}


def test_probe_policies_have_no_snapshot_age():
    tasks = [Task(f"t{i}", 1.0, 10.0, 0.0, 100.0, arrival_ms=10.0 * i) for i in range(3)]
    assert simulate(tasks, _nodes(), "power-of-two").snapshot_age_ms is None


def test_bytes_follow_the_wire_size_model():
    tasks = [Task(f"t{i}", 1.0, 10.0, 0.0, 100.0, arrival_ms=10.0 * i) for i in range(16)]
    s = simulate(tasks, _nodes(), "power-of-two").summary()["messages"]
    fixed = wire_sizes().fixed
    assert s["bytes_by_type"]["enqueue"] == 16 * fixed["enqueue"]
    assert s["bytes_by_type"]["probe"] == 32 * fixed["probe"]
    assert s["bytes_per_task"] == pytest.approx(
        fixed["enqueue"] + 2 * fixed["probe"] + 2 * fixed["probe_reply"])
    base, per_row = wire_sizes().full_snapshot
    d = simulate(tasks, _nodes(), "dodoor:k=8,b=8").summary()["messages"]
    assert d["bytes_by_type"]["snapshot"] == 2 * (base + 4 * per_row)


@pytest.fixture(scope="module")
def synthetic():
    nodes = scaled(300)
    return synthetic_tasks(3000, nodes, load=0.9, seed=3), nodes


def test_delta_snapshots_place_exactly_like_full_ones_with_fewer_bytes(synthetic):
    tasks, nodes = synthetic
    full = simulate(tasks, nodes, "dodoor:d=4")
    delta = simulate(tasks, nodes, "dodoor:d=4,delta_snapshots=1")
    # constant delay and no loss: the delta view equals the full view at every decision
    assert delta.records.node == full.records.node
    assert delta.records.end == full.records.end
    assert delta.counter.counts == full.counter.counts
    assert delta.resyncs == 0
    fs, ds = full.summary()["messages"], delta.summary()["messages"]
    assert ds["bytes_by_type"]["snapshot"] < 0.5 * fs["bytes_by_type"]["snapshot"]


def test_delta_snapshots_with_several_schedulers_agree(synthetic):
    tasks, nodes = synthetic
    knobs = SimSettings(schedulers=3)
    full = simulate(tasks, nodes, "dodoor", knobs)
    delta = simulate(tasks, nodes, "dodoor:delta_snapshots=1", knobs)
    assert delta.records.node == full.records.node


def test_adaptive_b_holds_age_nearer_the_target_than_a_large_fixed_b(synthetic):
    tasks, nodes = synthetic
    settings = SimSettings(policy=PolicySettings(k=1))
    fixed = simulate(tasks, nodes, "dodoor:b=800", settings)
    auto = simulate(tasks, nodes, "dodoor:b=auto,adaptive_b_target_ms=200", settings)
    assert auto.settings.policy.adaptive_b_target_ms == 200.0
    assert abs(auto.snapshot_age_ms - 200.0) < abs(fixed.snapshot_age_ms - 200.0)
    assert auto.snapshot_age_ms < 2 * 200.0
