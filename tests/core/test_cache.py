"""Cache and delta arithmetic: snapshot replace, own deltas, k-batching."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from dodoor.cache import N_STATE, LoadCache, task_delta
from dodoor.resources import Task

CAP = np.array([[8.0, 1000.0, 100.0], [16.0, 2000.0, 100.0], [4.0, 500.0, 100.0]])

tasks = st.builds(
    Task,
    task_id=st.text(min_size=1, max_size=4),
    cores=st.floats(0.1, 4.0),
    memory_mb=st.integers(1, 500).map(float),
    disk_mb=st.integers(0, 50).map(float),
    duration_ms=st.floats(1.0, 1e5),
)
placements = st.lists(st.tuples(st.integers(0, 2), tasks), max_size=60)


@given(placements, st.integers(1, 10))
def test_batches_carry_exactly_the_placements_made(plan, k):
    cache = LoadCache(CAP, np.ones(3), k=k)
    sent = np.zeros((3, N_STATE))
    batches = 0
    for node, task in plan:
        batch = cache.record_placement(node, task)
        if batch is not None:
            batches += 1
            assert batch.placements == k
            for n, delta in zip(batch.nodes, batch.deltas):
                sent[n] += delta
    assert batches == len(plan) // k
    assert cache.unflushed_placements == len(plan) % k
    rest = cache.flush()
    if rest is not None:
        for n, delta in zip(rest.nodes, rest.deltas):
            sent[n] += delta
    np.testing.assert_allclose(sent, _sum_deltas(plan))
    np.testing.assert_allclose(cache.state, _sum_deltas(plan))


@given(placements, placements, st.integers(1, 10))
def test_snapshot_keeps_unflushed_own_deltas(before, after, k):
    """After a snapshot that already holds the flushed deltas, the view equals snapshot + unflushed."""
    cache = LoadCache(CAP, np.ones(3), k=k)
    store = np.zeros((3, N_STATE))  # what the load store knows: only flushed batches
    for node, task in before:
        batch = cache.record_placement(node, task)
        if batch is not None:
            for n, delta in zip(batch.nodes, batch.deltas):
                store[n] += delta
    cache.replace(store.copy())
    np.testing.assert_allclose(cache.state, _sum_deltas(before))
    for node, task in after:
        cache.record_placement(node, task)
    np.testing.assert_allclose(cache.state, _sum_deltas(before + after))


def _sum_deltas(plan):
    total = np.zeros((3, N_STATE))
    for node, task in plan:
        total[node] += task_delta(task)
    return total


def test_replace_rejects_a_snapshot_of_another_shape():
    cache = LoadCache(CAP, np.ones(3))
    try:
        cache.replace(np.zeros((2, N_STATE)))
    except ValueError as exc:
        assert "(2, 5)" in str(exc)
    else:
        raise AssertionError("a wrong-shaped snapshot was accepted")


def test_view_returns_rows_of_the_candidates():
    cache = LoadCache(CAP, np.array([1, 2, 1]))
    cache.record_placement(1, Task("a", 2.0, 100.0, 0.0, 500.0))
    view = cache.view([1, 0])
    np.testing.assert_array_equal(view.nodes, [1, 0])
    np.testing.assert_array_equal(view.capacity, CAP[[1, 0]])
    np.testing.assert_array_equal(view.tasks, [1.0, 0.0])
    np.testing.assert_array_equal(view.pending, [500.0, 0.0])
    np.testing.assert_array_equal(view.slots, [2, 1])
