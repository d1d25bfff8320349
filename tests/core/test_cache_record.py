"""LoadCache.record_placement adds through flat doubles: the same sums as numpy rows."""

import dataclasses
import random

import numpy as np
import pytest

from dodoor.cache import CandidateView, LoadCache, task_delta
from dodoor.resources import Task


def _cache(n: int = 6, k: int = 5) -> LoadCache:
    return LoadCache(np.tile([8.0, 8192.0, 100.0], (n, 1)), np.full(n, 4.0), k=k)


def test_record_matches_numpy_row_adds_bit_for_bit():
    rng = random.Random(7)
    cache = _cache()
    cache.replace(np.array([[rng.random() * 3 for _ in range(5)] for _ in range(6)]))
    expected = cache.state.copy()
    for i in range(400):
        task = Task(f"t{i}", rng.random() / 3, float(rng.randrange(1, 900)),
                    float(rng.randrange(0, 5)), rng.random() * 1e4)
        node = rng.randrange(-6, 6)
        if i % 3 == 0:
            node = np.intp(node)
        expected[node] += task_delta(task)
        cache.record_placement(node, task)
        assert cache.state.tobytes() == expected.tobytes()


@pytest.mark.parametrize("node", [6, -7, 100])
def test_record_outside_the_cache_raises_and_changes_nothing(node):
    cache = _cache()
    before = cache.state.copy()
    with pytest.raises(IndexError):
        cache.record_placement(node, Task("t", 1.0, 1.0))
    assert (cache.state == before).all()
    assert cache.unflushed_placements == 0 and cache.flush() is None


def test_snapshot_after_records_keeps_own_deltas():
    cache = _cache(k=100)
    cache.record_placement(2, Task("t", 0.5, 10.0, 1.0, 20.0))
    cache.replace(np.ones((6, 5)))
    assert cache.state[2].tolist() == [1.5, 11.0, 2.0, 2.0, 21.0]
    assert cache.state[1].tolist() == [1.0] * 5


def test_an_empty_cache_builds_and_refuses_records():
    cache = _cache(n=0)
    with pytest.raises(IndexError):
        cache.record_placement(0, Task("t", 1.0, 1.0))


def test_undo_matches_numpy_and_joins_the_batch_bit_for_bit():
    rng = random.Random(3)
    cache = _cache(k=10_000)
    cache.replace(np.array([[rng.random() * 3 for _ in range(5)] for _ in range(6)]))
    expected = cache.state.copy()
    sums: dict[int, np.ndarray] = {}
    for i in range(300):
        task = Task(f"t{i}", rng.random(), float(rng.randrange(1, 900)), 0.0, rng.random() * 50)
        node = rng.randrange(6)
        delta = task_delta(task)
        if i % 4 == 3:
            cache.undo_placement(node, task)
            expected[node] -= delta
            sums[node] = sums[node] - delta if node in sums else -1.0 * delta
        else:
            cache.record_placement(node, task)
            expected[node] += delta
            sums[node] = sums[node] + delta if node in sums else 1.0 * delta
        assert cache.state.tobytes() == expected.tobytes()
    batch = cache.flush()
    for node, row in zip(batch.nodes, batch.deltas):
        assert row.tobytes() == sums[node].tobytes()


def test_view_equals_the_dataclass_built_view():
    cache = _cache()
    cache.replace(np.arange(30, dtype=np.float64).reshape(6, 5))
    for nodes in ([1, 4], [[0, 5], [2, 3]], np.array([3], dtype=np.intp)):
        view = cache.view(nodes)
        idx = np.asarray(nodes, dtype=np.intp)
        ref = CandidateView(idx, cache.capacity[idx], cache.state[idx], cache.slots[idx], None,
                            cache.sq_capacity[idx])
        assert type(view) is CandidateView
        for name in ("nodes", "capacity", "state", "slots", "sq_capacity"):
            assert np.array_equal(getattr(view, name), getattr(ref, name))
        assert view.start_ms is None
        assert np.array_equal(view.load, ref.load) and np.array_equal(view.pending, ref.pending)
        with pytest.raises(dataclasses.FrozenInstanceError):
            view.state = None  # type: ignore[misc]
