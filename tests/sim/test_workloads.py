"""Load scaling (a hypothesis property) and the synthetic generator."""

import pytest
from hypothesis import given, settings, strategies as st

from dodoor.errors import ValidationError
from dodoor.resources import Task
from workloads.clusters import paper100, scaled, total_slots
from workloads.load import offered_load, scale_to_load
from workloads.synthetic import Durations, synthetic_tasks

task_lists = st.lists(
    st.tuples(st.floats(1, 1e6), st.floats(0, 1e7)), min_size=2, max_size=40,
).filter(lambda rows: max(a for _, a in rows) - min(a for _, a in rows) > 1.0)


@settings(max_examples=60, deadline=None)
@given(task_lists, st.floats(0.05, 20.0), st.integers(1, 300))
def test_scaled_trace_has_the_asked_load(rows, load, n_nodes):
    tasks = [Task(f"t{i}", 1, 1, 0, d, a) for i, (d, a) in enumerate(rows)]
    nodes = scaled(n_nodes)
    out = scale_to_load(tasks, nodes, load)
    # rel 1e-6: arrivals near 1e7 ms over a span of a few ms lose float digits
    assert offered_load(out, nodes) == pytest.approx(load, rel=1e-6)
    # only arrivals move: order, first arrival, durations and ids stay
    assert [t.duration_ms for t in out] == [t.duration_ms for t in tasks]
    assert min(t.arrival_ms for t in out) == pytest.approx(min(t.arrival_ms for t in tasks))
    # Order is kept, though arrivals closer than float resolution may merge (5e-324 ms
    # scaled by 0.5 is 0): the rescaled arrivals never decrease along the original order.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].arrival_ms, i))
    rescaled = [out[i].arrival_ms for i in order]
    assert rescaled == sorted(rescaled)


def test_bundled_trace_load_matches_the_design():
    from workloads.dodoor_csv import bundled_trace, load_dodoor_csv

    tasks = load_dodoor_csv(bundled_trace("azure_data_60.csv"))
    assert offered_load(tasks, paper100()) == pytest.approx(2.5, abs=0.01)


def test_scale_rejects_bad_load_and_zero_span():
    tasks = [Task("a", 1, 1, 0, 10, 5), Task("b", 1, 1, 0, 10, 5)]
    with pytest.raises(ValidationError, match="load"):
        scale_to_load(tasks, paper100(), 0.9)
    with pytest.raises(ValidationError, match="load"):
        scale_to_load([Task("a", 1, 1, 0, 10, 0), Task("b", 1, 1, 0, 10, 9)], paper100(), -1)


def test_synthetic_is_seeded_and_hits_the_load():
    nodes = scaled(200)
    a = synthetic_tasks(20000, nodes, load=0.9, seed=4)
    assert a == synthetic_tasks(20000, nodes, load=0.9, seed=4)
    assert a != synthetic_tasks(20000, nodes, load=0.9, seed=5)
    assert offered_load(a, nodes) == pytest.approx(0.9, rel=0.05)
    assert all(0 < t.duration_ms <= 60000 for t in a)
    assert [t.arrival_ms for t in a] == sorted(t.arrival_ms for t in a)
    assert total_slots(nodes) > 0


def test_synthetic_given_mix_and_durations():
    nodes = scaled(10)
    tasks = synthetic_tasks(500, nodes, seed=1, mix=[(3.0, 100.0, 0.0, 1.0)],
                            durations=Durations("exponential", 2000.0, 10000.0))
    assert {(t.cores, t.memory_mb, t.disk_mb) for t in tasks} == {(3.0, 100.0, 0.0)}
    assert max(t.duration_ms for t in tasks) <= 10000.0
    with pytest.raises(ValidationError, match="durations"):
        Durations("pareto")
