"""The variants against herding: a random pick among near-least waits, and echoes of
own placements in the cache (docs/evaluation.md, "Herding")."""

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dodoor.batch_scoring import decides_by_scores
from dodoor.cache import N_STATE, CandidateView, LoadCache, task_delta
from dodoor.errors import ValidationError
from dodoor.policies import make_policy_spec
from dodoor.resources import Task
from dodoor.settings import PolicySettings

CAP = np.array([[16.0, 16384.0, 0.0]] * 4)
TASK = Task("t", 4.0, 2048.0, 0.0, 1000.0)
# waits (4 slots each): 0 (room, loaded), 0 (room, empty), 500 ms, 3000 ms
STATE = np.array([[12.0, 4096.0, 0.0, 3.0, 9000.0], [0.0, 0.0, 0.0, 0.0, 0.0],
                  [16.0, 4096.0, 0.0, 4.0, 2000.0], [16.0, 4096.0, 0.0, 4.0, 12000.0]])


def _view() -> CandidateView:
    nodes = np.arange(4)
    return CandidateView(nodes, CAP, STATE.copy(), np.full(4, 4.0))


def _picks(spec: str, n: int = 400) -> Counter:
    policy, rng = make_policy_spec(spec), random.Random(7)
    return Counter(policy.choose(TASK, TASK.demand(), _view(), rng) for _ in range(n))


def test_the_default_takes_the_least_wait_and_then_the_least_load():
    assert _picks("dodoor-wait:d=4") == Counter({1: 400})


def test_tolerance_zero_picks_at_random_among_the_least_waits_only():
    picks = _picks("dodoor-wait:d=4,tolerance_ms=0")
    assert set(picks) == {0, 1} and min(picks.values()) > 150


def test_a_tolerance_takes_in_the_waits_within_it_and_no_others():
    picks = _picks("dodoor-wait:d=4,tolerance_ms=600")
    assert set(picks) == {0, 1, 2} and min(picks.values()) > 100


def test_a_random_pick_is_no_argmin_so_hosts_do_not_stack_it():
    assert decides_by_scores(make_policy_spec("dodoor-wait:d=16"))
    assert not decides_by_scores(make_policy_spec("dodoor-wait:d=16,tolerance_ms=0"))


@pytest.mark.parametrize("values, field", [({"echo": -1}, "echo"), ({"echo": "nan"}, "echo"),
                                           ({"tolerance_ms": "inf"}, "tolerance_ms")])
def test_bad_herding_settings_are_named(values, field):
    with pytest.raises(ValidationError) as info:
        PolicySettings.from_mapping(values)
    assert info.value.field == field


tasks = st.builds(Task, task_id=st.just("x"), cores=st.floats(0.1, 4.0),
                  memory_mb=st.integers(1, 500).map(float), disk_mb=st.just(0.0),
                  duration_ms=st.floats(1.0, 1e5))


@given(st.lists(st.tuples(st.integers(0, 3), tasks), max_size=30), st.integers(1, 8),
       st.sampled_from([0.5, 1.0, 3.0]))
def test_echoes_show_locally_but_never_reach_the_store_and_a_snapshot_drops_them(plan, k, echo):
    cache = LoadCache(CAP, np.full(4, 4.0), k=k, echo=echo)
    plain = LoadCache(CAP, np.full(4, 4.0), k=k)
    sent, sent_plain = np.zeros((4, N_STATE)), np.zeros((4, N_STATE))
    placed = np.zeros((4, N_STATE))
    for node, task in plan:
        for c, into in ((cache, sent), (plain, sent_plain)):
            batch = c.record_placement(node, task)
            if batch is not None:
                for n, delta in zip(batch.nodes, batch.deltas):
                    into[n] += delta
        placed[node] += task_delta(task)
    # the view counts each own placement 1 + echo times; the deltas count it once
    np.testing.assert_allclose(cache.state, placed * (1.0 + echo), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(sent, sent_plain)
    # a snapshot holding what was sent: the view is snapshot + unflushed, echoes gone
    cache.replace(sent.copy())
    plain.replace(sent_plain.copy())
    np.testing.assert_array_equal(cache.state, plain.state)


# -- projection of the others' placements (dodoor.projection) ----------------------

from dodoor.projection import Projection  # noqa: E402

SMALL = Task("s", 1.0, 100.0, 0.0, 1000.0)


def _projected_cache(others: float, k: int = 100):
    # 3 nodes of 2 slots: node 0 full (4000 ms pending), node 1 one task, node 2 empty
    cache = LoadCache(np.array([[4.0, 4096.0, 0.0]] * 3), np.full(3, 2.0), k=k)
    cache.replace(np.array([[2.0, 200.0, 0.0, 2.0, 4000.0], [1.0, 100.0, 0.0, 1.0, 1000.0],
                            [0.0, 0.0, 0.0, 0.0, 0.0]]))
    return cache, Projection(cache, others)


def test_nothing_is_projected_before_an_own_placement():
    cache, projection = _projected_cache(3)
    before = cache.state.copy()
    projection.advance()
    np.testing.assert_array_equal(cache.state, before)


def test_the_others_fill_the_least_waits_first_as_many_as_own_placements_times_others():
    cache, projection = _projected_cache(2)
    cache.record_placement(2, SMALL)
    projection.on_placement(SMALL)  # own: node 2 now 1 task; others place 2 more
    projection.advance()
    # free slots first, the fewest tasks per slot first: node 1 (1 of 2)... then node 2
    np.testing.assert_array_equal(cache.state[:, 3], [2.0, 2.0, 2.0])
    assert projection.projected == 2
    cache.record_placement(1, SMALL)
    projection.on_placement(SMALL)
    # every node is full now: the least pending per slot waits least — node 2 (1000 ms),
    # then nodes 1 and 2 tie at 1500 ms and 1.5 tasks per slot: the lower index
    projection.advance()
    np.testing.assert_array_equal(cache.state[:, 3], [2.0, 4.0, 3.0])
    np.testing.assert_array_equal(cache.state[:, 4], [4000.0, 4000.0, 3000.0])


@given(st.lists(st.tuples(st.integers(0, 2), tasks), min_size=1, max_size=20),
       st.sampled_from([0.5, 1.0, 3.0]))
def test_projections_never_reach_the_deltas_and_a_snapshot_drops_them(plan, others):
    cache, projection = _projected_cache(others, k=3)
    plain, _ = _projected_cache(others, k=3)
    sent, sent_plain = [], []
    for node, task in plan:
        projection.advance()
        for c, into in ((cache, sent), (plain, sent_plain)):
            batch = c.record_placement(node, task)
            if batch is not None:
                into.append((batch.nodes, batch.deltas.tolist()))
        projection.on_placement(task)
    projection.advance()
    assert sent == sent_plain
    assert projection.projected == int(others * len(plan))
    assert cache.state[:, 3].sum() == pytest.approx(plain.state[:, 3].sum() + projection.projected)
    snapshot = plain.state.copy()
    cache.replace(snapshot)
    plain.replace(snapshot)
    projection.on_snapshot()
    np.testing.assert_array_equal(cache.state, plain.state)
    projection.advance()  # no own placement since the snapshot: nothing projected
    np.testing.assert_array_equal(cache.state, plain.state)


def test_projecting_needs_other_schedulers():
    with pytest.raises(ValueError, match="others must be > 0"):
        Projection(LoadCache(CAP, np.ones(4)), 0.0)
