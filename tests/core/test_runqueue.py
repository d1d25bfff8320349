"""The core run queue (dodoor.runqueue): FIFO with backfill, as properties and exact cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from dodoor.resources import FIT_TOLERANCE
from dodoor.runqueue import QueueEntry, RunQueue

CAPACITY = (4.0, 1000.0, 10.0)

demands = st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]),
                    st.sampled_from([100.0, 250.0, 600.0, 1000.0]),
                    st.sampled_from([0.0, 5.0]))
# an operation: ("add", demand, duration, admit?) or ("finish", which running entry)
ops = st.lists(st.one_of(
    st.tuples(st.just("add"), demands, st.integers(1, 500).map(float), st.booleans()),
    st.tuples(st.just("finish"), st.integers(0, 10)),
), max_size=60)


def run_ops(rq: RunQueue, ops, check) -> list[QueueEntry]:
    """Apply ``ops`` as a host would (backfill after every change); ``check`` after each."""
    added = []
    for op in ops:
        if op[0] == "add":
            entry = QueueEntry(op[1], op[2])
            added.append(entry)
            if op[3]:
                rq.admit(entry, 0.0)
            else:
                rq.push(entry)
        elif rq.running:
            running = list(rq.running)
            rq.finish(running[op[1] % len(running)])
        rq.backfill(0.0)
        check(rq)
    return added


def in_use(rq: RunQueue) -> list[float]:
    return [sum(e.demand[i] for e in rq.running) for i in range(3)]


@settings(max_examples=200, deadline=None)
@given(ops=ops, slots=st.integers(1, 4))
def test_never_exceeds_capacity_or_slots(ops, slots):
    def check(rq):
        assert len(rq.running) <= slots
        for used, cap in zip(in_use(rq), CAPACITY):
            assert used <= cap + FIT_TOLERANCE
        # work-conserving: after a backfill nothing waiting fits the room left
        assert not any(rq.fits(e.demand) for e in rq.waiting)

    run_ops(RunQueue(CAPACITY, slots), ops, check)


@settings(max_examples=200, deadline=None)
@given(ops=ops, slots=st.integers(1, 4))
def test_equal_demands_start_in_arrival_order(ops, slots):
    rq: RunQueue[QueueEntry] = RunQueue(CAPACITY, slots)
    starts: list[QueueEntry] = []
    seen: set[int] = set()

    def check(rq):
        for e in rq.running:
            if id(e) not in seen:
                seen.add(id(e))
                starts.append(e)

    added = run_ops(rq, ops, check)
    for demand in {e.demand for e in added}:
        same = [e for e in added if e.demand == demand]
        began = [e for e in starts if e.demand == demand]
        assert began == same[:len(began)]  # a prefix of the arrivals, in order


@given(demand=demands, duration=st.floats(0.0, 1e6), slots=st.integers(1, 4),
       now=st.floats(0.0, 1e9))
def test_a_task_that_fits_an_idle_node_starts_at_once(demand, duration, slots, now):
    rq: RunQueue[QueueEntry] = RunQueue(CAPACITY, slots)
    entry = QueueEntry(demand, duration)
    assert rq.admit(entry, now) is True
    assert list(rq.running) == [entry] and entry.end_ms == now + duration


@settings(max_examples=200, deadline=None)
@given(adds=st.lists(st.tuples(demands, st.integers(1, 500).map(float)), max_size=30),
       slots=st.integers(1, 4), picks=st.lists(st.integers(0, 10), max_size=100))
def test_every_task_starts_once_the_running_ones_finish(adds, slots, picks):
    rq: RunQueue[QueueEntry] = RunQueue(CAPACITY, slots)
    entries = [QueueEntry(d, dur) for d, dur in adds]
    started: list[QueueEntry] = []
    for e in entries:
        if rq.admit(e, 0.0):
            started.append(e)
    picks = list(picks)
    while rq.running:
        running = list(rq.running)
        rq.finish(running[(picks.pop() if picks else 0) % len(running)])
        started.extend(rq.backfill(0.0))
    assert sorted(map(id, started)) == sorted(map(id, entries))
    assert len(rq) == 0 and rq.free == list(CAPACITY) and rq.committed == [0.0, 0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(ops=ops, slots=st.integers(1, 4), new=demands)
def test_admit_starts_exactly_what_a_backfill_would(ops, slots, new):
    # two queues in the same state; one admits a newcomer, the other pushes and backfills
    a: RunQueue[QueueEntry] = RunQueue(CAPACITY, slots)
    b: RunQueue[QueueEntry] = RunQueue(CAPACITY, slots)
    for op in ops:  # the same history; a finish is not followed by a backfill here
        if op[0] == "add":
            for rq in (a, b):
                rq.push(QueueEntry(op[1], op[2]))
                if op[3]:
                    rq.backfill(0.0)
        elif a.running:
            for rq in (a, b):
                running = list(rq.running)
                rq.finish(running[op[1] % len(running)])
    x, y = QueueEntry(new, 1.0), QueueEntry(new, 1.0)
    a.admit(x, 0.0)
    a.backfill(0.0)
    b.push(y)
    b.backfill(0.0)
    assert [e.demand for e in a.running] == [e.demand for e in b.running]
    assert (x in a.running) == (y in b.running)


def test_state_row_commits_every_entry_and_pends_what_remains():
    rq: RunQueue[QueueEntry] = RunQueue(CAPACITY, 1, overhead_ms=40.0)
    a, b = QueueEntry((1.0, 100.0, 5.0), 1000.0), QueueEntry((2.0, 200.0, 0.0), 500.0)
    assert rq.admit(a, 10_000.0) and not rq.admit(b, 10_000.0)
    # a: 1000 + 40 overhead from 10,000, so 740 left at 10,300; b waits with its 500
    assert rq.state_row(10_300.0) == [3.0, 300.0, 5.0, 2.0, 740.0 + 500.0]
    assert rq.state_row(20_000.0) == [3.0, 300.0, 5.0, 2.0, 500.0]  # an overrun adds 0
    rq.finish(a)
    assert rq.backfill(20_000.0) == [b]
    rq.finish(b)
    assert rq.state_row(0.0) == [0.0, 0.0, 0.0, 0.0, 0.0]


def test_restart_moves_the_held_room_to_the_task():
    rq: RunQueue[QueueEntry] = RunQueue(CAPACITY, 2)
    held = QueueEntry((2.0, 100.0, 0.0), 100.0)
    rq.admit(held, 0.0)
    rq.restart(held, (3.0, 100.0, 0.0), 50.0, 7.0)
    assert rq.free == [1.0, 900.0, 10.0] and rq.committed == [3.0, 100.0, 0.0]
    assert held.end_ms == 57.0
    with pytest.raises(ValueError, match="not running"):
        rq.restart(QueueEntry((1.0, 1.0, 0.0), 1.0), (1.0, 1.0, 0.0), 1.0, 0.0)


def test_bad_capacity_and_slots_are_named():
    with pytest.raises(ValueError, match=r"\[1.0, 2.0\]"):
        RunQueue((1.0, 2.0), 1)
    with pytest.raises(ValueError, match="slots must be >= 1, got 0"):
        RunQueue(CAPACITY, 0)
