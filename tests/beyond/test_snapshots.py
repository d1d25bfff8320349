"""Delta snapshots (dodoor.snapshots): deltas compose to the full state; gaps and restarts resync."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dodoor.cache import LoadCache
from dodoor.resources import Task
from dodoor.snapshots import AdaptiveBatch, DeltaPublisher, DeltaReceiver, Outcome, SnapshotUpdate

N, S = 6, 5

# an operation: ("set", node, value) changes a row at the store; ("push", sub) sends one update
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, N - 1), st.floats(-1e6, 1e6, allow_nan=False)),
        st.tuples(st.just("push"), st.integers(0, 2), st.just(0.0)),
    ),
    max_size=60,
)


def _store_apply(state, pub, node, value):
    state[node] = value
    pub.mark([node])


@settings(max_examples=200, deadline=None)
@given(ops)
def test_any_sequence_of_deltas_equals_the_full_snapshot(seq):
    state = np.zeros((N, S))
    pub = DeltaPublisher(N, epoch="e")
    receivers = [DeltaReceiver(N, S) for _ in range(3)]
    for op, a, value in seq:
        if op == "set":
            _store_apply(state, pub, a, value)
        else:
            update = pub.update_for(a, state)
            assert receivers[a].accept(update) is Outcome.APPLIED
            np.testing.assert_array_equal(receivers[a].base, state)
    for sub, receiver in enumerate(receivers):
        assert receiver.accept(pub.update_for(sub, state)) is Outcome.APPLIED
        np.testing.assert_array_equal(receiver.base, state)


@settings(max_examples=100, deadline=None)
@given(ops, st.integers(0, 59))
def test_a_lost_update_forces_a_resync_that_restores_the_state(seq, lose_at):
    state = np.zeros((N, S))
    pub = DeltaPublisher(N, epoch="e")
    rx = DeltaReceiver(N, S)
    assert rx.accept(pub.update_for(0, state)) is Outcome.APPLIED  # the first one is full
    lost = False
    for i, (op, node, value) in enumerate(seq):
        if op == "set":
            _store_apply(state, pub, node, value)
            continue
        update = pub.update_for(0, state)
        if i >= lose_at and not lost:
            lost = True  # dropped on the way: the receiver never sees it
            continue
        outcome = rx.accept(update)
        if lost and outcome is Outcome.RESYNC:
            assert not update.full
            pub.resync(0)
            full = pub.update_for(0, state)
            assert full.full and rx.accept(full) is Outcome.APPLIED
            lost = False
        else:
            assert outcome is Outcome.APPLIED
        assert not lost
        np.testing.assert_array_equal(rx.base, state)


def test_gap_is_refused_even_when_the_rows_look_harmless():
    state = np.zeros((N, S))
    pub = DeltaPublisher(N, epoch="e")
    rx = DeltaReceiver(N, S)
    rx.accept(pub.update_for("s", state))
    pub.update_for("s", state)  # seq 2, lost
    third = pub.update_for("s", state)  # seq 3 extends 2, which rx never had
    assert (third.seq, third.base_seq, third.n_rows) == (3, 2, 0)
    assert rx.accept(third) is Outcome.RESYNC
    assert rx.seq == 1 and rx.resyncs == 1


def test_store_restart_new_epoch_forces_a_resync():
    state = np.arange(N * S, dtype=float).reshape(N, S)
    old = DeltaPublisher(N, epoch="old")
    rx = DeltaReceiver(N, S)
    rx.accept(old.update_for("s", state))
    new = DeltaPublisher(N, epoch="new")  # restarted: rebuilt, knows no subscriber
    first = new.update_for("s", np.zeros((N, S)))
    assert first.full  # a new store never sends a delta to someone it has not synced
    # a delta from another epoch that happens to carry a matching seq is still refused
    foreign = SnapshotUpdate("new", 2, 1, np.array([0]), np.ones((1, S)), False)
    assert rx.accept(foreign) is Outcome.RESYNC
    assert rx.accept(first) is Outcome.APPLIED
    assert rx.epoch == "new"
    np.testing.assert_array_equal(rx.base, np.zeros((N, S)))


def test_delta_carries_only_changed_rows_and_force_full_resends_all():
    state = np.zeros((N, S))
    pub = DeltaPublisher(N, epoch="e")
    pub.update_for(0, state)
    _store_apply(state, pub, 4, 7.0)
    _store_apply(state, pub, 1, 3.0)
    delta = pub.update_for(0, state)
    assert not delta.full and delta.nodes.tolist() == [1, 4]
    assert pub.update_for(0, state).n_rows == 0
    pub.force_full()
    assert pub.update_for(0, state).full
    with pytest.raises(ValueError, match="rows"):
        pub.update_for(0, np.zeros((N + 1, S)))


def test_cache_replace_rows_keeps_unflushed_own_deltas():
    cache = LoadCache(np.full((3, 3), 100.0), np.ones(3), k=100)
    task = Task("t", 2.0, 10.0, 0.0, 500.0)
    cache.record_placement(1, task)
    cache.record_placement(2, task)
    rows = np.array([[5.0, 5.0, 0.0, 1.0, 50.0], [1.0, 1.0, 0.0, 1.0, 10.0]])
    cache.replace_rows(np.array([0, 1]), rows)
    np.testing.assert_array_equal(cache.state[0], rows[0])
    np.testing.assert_array_equal(cache.state[1], rows[1] + [2.0, 10.0, 0.0, 1.0, 500.0])
    np.testing.assert_array_equal(cache.state[2], [2.0, 10.0, 0.0, 1.0, 500.0])  # untouched


def test_adaptive_b_moves_toward_the_target_on_a_rate_change():
    ab = AdaptiveBatch(target_ms=50.0, b_initial=80, smoothing=0.5)
    now = 0.0
    assert ab.observe(now, 0) == 80  # first push: no interval yet
    # 1 placement per ms: b -> 2 * 1 * 50 = 100
    for _ in range(3):
        now += ab.b / 1.0
        ab.observe(now, ab.b)
    assert ab.b == 100 and ab.rate_per_ms == pytest.approx(1.0)
    # the rate quadruples: the EWMA moves half way each push, b follows toward 400
    seen = []
    for _ in range(12):
        now += ab.b / 4.0
        seen.append(ab.observe(now, ab.b))
    assert seen[:3] == [250, 325, 362]
    assert seen == sorted(seen) and seen[-1] == 400
    # the rate collapses: b drops to its floor
    for _ in range(20):
        now += ab.b / 0.001
        ab.observe(now, ab.b)
    assert ab.b == 1


def test_adaptive_b_rejects_bad_settings():
    with pytest.raises(ValueError, match="target"):
        AdaptiveBatch(0.0)
    with pytest.raises(ValueError, match="b_min"):
        AdaptiveBatch(10.0, b_min=5, b_max=2)
