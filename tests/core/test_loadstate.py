"""The core load state (dodoor.loadstate): reports supersede deltas, b-counting, versions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dodoor.cache import N_STATE
from dodoor.loadstate import LoadState

N = 6
rows = st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=N_STATE, max_size=N_STATE)
delta_batches = st.lists(st.tuples(st.lists(st.integers(0, N - 1), min_size=1, max_size=4),
                                   st.integers(0, 20)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(first=st.lists(rows, min_size=N, max_size=N), batches=delta_batches,
       node=st.integers(0, N - 1), report=rows)
def test_deltas_then_a_report_equal_the_report(first, batches, node, report):
    state = LoadState(N, b=10)
    state.report(list(range(N)), first)
    expected = np.array(first, dtype=np.float64)
    for nodes, placements in batches:
        deltas = np.full((len(nodes), N_STATE), 1.5)
        state.add_deltas(nodes, deltas)
        np.add.at(expected, nodes, deltas)  # a node named twice gets both
        state.count(placements, 0.0)
    # report + (sum of deltas) vs a running sum: equal up to rounding
    np.testing.assert_allclose(state.view(), expected, rtol=1e-12)
    state.report([node], [report])
    np.testing.assert_array_equal(state.view([node]), [report])  # exactly: deltas dropped
    expected[node] = report
    np.testing.assert_allclose(state.view(), expected, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 30), max_size=60), b=st.integers(1, 40),
       adaptive=st.booleans())
def test_pushes_are_due_every_b_and_versions_only_grow(counts, b, adaptive):
    state = LoadState(0, b, adaptive_target_ms=50.0 if adaptive else 0.0)
    since, total, seqs = 0, 0, [state.seq]
    for i, n in enumerate(counts):
        bound = state.b
        since += n
        total += n
        due = state.count(n, float(10 * i))
        assert due == (since >= bound)  # due exactly when b were counted since the last
        if due:
            since = 0
            seqs.append(state.next_seq())
        assert state.since_push == since and state.placements == total
    assert seqs == sorted(set(seqs)) and seqs == list(range(len(seqs)))


def test_grow_keeps_rows_and_adds_zeros():
    state = LoadState(2, b=80)
    state.report([0, 1], [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    for _ in range(40):  # one join at a time, past the buffers' room
        state.grow()
    assert state.n_rows == 42
    np.testing.assert_array_equal(state.view([1, 0, 41]),
                                  [[6, 7, 8, 9, 10], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])


def test_b_below_one_is_named():
    with pytest.raises(ValueError, match="b must be >= 1, got 0"):
        LoadState(1, b=0)


def test_changed_is_set_by_a_report_that_changes_the_view_and_cleared_by_a_snapshot():
    state = LoadState(2, b=80)
    assert not state.changed
    state.report([0, 1], [[0] * N_STATE, [0] * N_STATE])  # what the zero rows already show
    assert not state.changed
    state.add_deltas([0], np.ones((1, N_STATE)))
    state.report([0], [[1] * N_STATE])  # the report counts what the delta did: same view
    assert not state.changed
    state.report([1], [[0, 0, 0, 1, 0]])
    assert state.changed
    state.report([1], [[0, 0, 0, 1, 0]])
    assert state.changed  # until a snapshot is taken
    state.next_seq()
    assert not state.changed
    state.add_deltas([0], np.ones((1, N_STATE)))
    state.report([0], [[1] * N_STATE])  # the report supersedes a delta it does not count
    assert state.changed
