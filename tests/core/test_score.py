"""Properties of the one load-score implementation (docs/design.md §3)."""

import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dodoor.score import argmin_random, load_score, squared_capacity

W = np.array([1.0, 1.0, 0.0])

positive = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
nonneg = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
# The score's documented domain: a capacity is 0 (resource absent) or at least 1e-6.
capacities = st.just(0.0) | st.floats(min_value=1e-6, max_value=1e6)


@st.composite
def candidates(draw, d=None):
    d = d or draw(st.integers(min_value=1, max_value=8))
    demand = np.array([draw(positive), draw(positive), draw(nonneg)])
    capacity = np.array([[draw(positive), draw(positive), draw(capacities)] for _ in range(d)])
    load = np.array([[draw(nonneg) for _ in range(3)] for _ in range(d)])
    pending = np.array([draw(nonneg) for _ in range(d)])
    alpha = draw(st.floats(min_value=0.0, max_value=1.0))
    return demand, capacity, load, pending, alpha


@given(candidates())
def test_scores_are_finite_and_in_unit_interval(case):
    demand, capacity, load, pending, alpha = case
    scores = load_score(demand, capacity, load, pending, W, alpha)
    assert scores.shape == (capacity.shape[0],)
    assert np.all(np.isfinite(scores))
    assert np.all(scores >= 0.0) and np.all(scores <= 1.0 + 1e-12)


@given(candidates(), st.integers(min_value=0, max_value=7), st.floats(min_value=0.0, max_value=1e5))
def test_score_is_monotone_in_own_load_and_pending(case, which, extra):
    demand, capacity, load, pending, alpha = case
    j = which % capacity.shape[0]
    before = load_score(demand, capacity, load, pending, W, alpha)[j]
    more_load = load.copy()
    more_load[j] += extra
    more_pending = pending.copy()
    more_pending[j] += extra
    after = load_score(demand, capacity, more_load, more_pending, W, alpha)[j]
    assert after >= before - 1e-9


@given(candidates(), st.floats(min_value=0.1, max_value=100.0))
def test_score_is_invariant_to_scaling_every_capacity_and_load(case, factor):
    demand, capacity, load, pending, alpha = case
    base = load_score(demand, capacity, load, pending, W, alpha)
    scaled = load_score(demand, capacity * factor, load * factor, pending, W, alpha)
    np.testing.assert_allclose(base, scaled, rtol=1e-7, atol=1e-9)


def test_each_candidate_uses_its_own_capacity():
    # The Java reference scored the second candidate with the first one's capacity.
    demand = np.array([1.0, 1.0, 0.0])
    capacity = np.array([[4.0, 4.0, 0.0], [8.0, 8.0, 0.0]])
    load = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0]])
    scores = load_score(demand, capacity, load, np.zeros(2), W, alpha=0.0)
    # RL = L·r/C²: 2/16 = 0.125 vs 2/64 = 0.03125 -> shares 0.8 and 0.2.
    np.testing.assert_allclose(scores, [0.8, 0.2])


def test_zero_sums_give_zero_terms_not_nan():
    demand = np.array([1.0, 1.0, 0.0])
    capacity = np.array([[4.0, 4.0, 0.0], [8.0, 8.0, 0.0]])
    scores = load_score(demand, capacity, np.zeros((2, 3)), np.zeros(2), W, alpha=0.5)
    np.testing.assert_array_equal(scores, [0.0, 0.0])


def test_hand_computed_mix_of_load_and_duration():
    demand = np.array([2.0, 1024.0, 0.0])
    capacity = np.array([[8.0, 8192.0, 0.0], [16.0, 16384.0, 0.0]])
    load = np.array([[4.0, 2048.0, 0.0], [4.0, 2048.0, 0.0]])
    pending = np.array([3000.0, 1000.0])
    # RL0 = (4*2/64 + 2048*1024/8192²)/2 = (0.125 + 0.03125)/2; RL1 is a quarter of that.
    scores = load_score(demand, capacity, load, pending, W, alpha=0.5)
    np.testing.assert_allclose(scores, [0.5 * 0.8 + 0.5 * 0.75, 0.5 * 0.2 + 0.5 * 0.25])


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=6), st.integers(0, 1000))
def test_argmin_random_picks_a_minimum(values, seed):
    scores = np.array(values)
    pick = argmin_random(scores, random.Random(seed))
    assert scores[pick] == scores.min()


def test_argmin_random_breaks_ties_uniformly():
    rng = random.Random(3)
    picks = [argmin_random(np.array([0.2, 0.1, 0.1, 0.1]), rng) for _ in range(3000)]
    counts = np.bincount(picks, minlength=4)
    assert counts[0] == 0
    assert all(900 < c < 1100 for c in counts[1:])


@given(st.lists(candidates(d=2), min_size=1, max_size=6))
def test_stacked_tasks_score_exactly_as_one_at_a_time(cases):
    # the simulator's lookahead relies on equality, not closeness
    alpha = cases[0][4]
    demand = np.array([c[0] for c in cases])[:, None, :]
    capacity, load, pending = (np.array([c[i] for c in cases]) for i in (1, 2, 3))
    stacked = load_score(demand, capacity, load, pending, W, alpha)
    for row, (d, cap, ld, pend, _) in zip(stacked, cases):
        np.testing.assert_array_equal(row, load_score(d, cap, ld, pend, W, alpha))


def test_precomputed_squared_capacity_gives_the_same_scores():
    demand = np.array([2.0, 1024.0, 5.0])
    capacity = np.array([[8.0, 8192.0, 0.0], [16.0, 16384.0, 100.0]])
    load = np.array([[4.0, 2048.0, 1.0], [4.0, 2048.0, 1.0]])
    pending = np.array([3000.0, 1000.0])
    sq = squared_capacity(capacity)
    assert sq[0, 2] == np.inf  # a zero capacity contributes zero, not NaN
    np.testing.assert_array_equal(load_score(demand, capacity, load, pending, W, 0.5, sq),
                                  load_score(demand, capacity, load, pending, W, 0.5))
