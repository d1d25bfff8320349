import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dodoor.cache import task_delta
from dodoor.resources import Task
from node_agent.queue import RESERVATION, Entry, QueueError, TaskQueue


def task(tid, cores, mem=100.0, dur=1000.0, disk=0.0):
    return Task(tid, cores, mem, disk, dur)


def make(cores=4.0, mem=1000.0, disk=0.0, slots=2):
    return TaskQueue(np.array([cores, mem, disk]), slots)


def started(q, now=0.0):
    return [e.task_id for e in q.schedule(now)]


def test_fifo_start_order_limited_by_slots():
    q = make(slots=2)
    for i in range(4):
        q.add(Entry(task(f"t{i}", 1.0)))
    assert started(q) == ["t0", "t1"]
    assert started(q) == []
    q.finish("t1")
    assert started(q) == ["t2"]
    q.finish("t0")
    assert started(q) == ["t3"]


def test_backfill_starts_later_small_task_past_a_big_head():
    q = make(cores=4.0, slots=3)
    q.add(Entry(task("a", 3.0)))
    q.add(Entry(task("big", 2.0)))  # does not fit next to a
    q.add(Entry(task("small", 1.0)))  # fits: backfilled past big
    assert started(q) == ["a", "small"]
    q.finish("small")
    assert started(q) == []  # big still blocked by a
    q.finish("a")
    assert started(q) == ["big"]


def test_memory_blocks_as_well_as_cores():
    q = make(cores=8.0, mem=1000.0, slots=4)
    q.add(Entry(task("m1", 1.0, mem=600.0)))
    q.add(Entry(task("m2", 1.0, mem=600.0)))
    q.add(Entry(task("m3", 1.0, mem=400.0)))
    assert started(q) == ["m1", "m3"]


def test_state_vector_exact_with_pending_time():
    q = make(cores=4.0, mem=1000.0, disk=10.0, slots=1)
    q.add(Entry(task("a", 1.0, mem=100.0, dur=1000.0, disk=5.0)))
    q.add(Entry(task("b", 2.0, mem=200.0, dur=500.0)))
    assert started(q, now=10_000.0) == ["a"]
    # a has run 300 of its 1000 ms; b waits with its full 500.
    np.testing.assert_array_equal(q.state(10_300.0), [3.0, 300.0, 5.0, 2.0, 700.0 + 500.0])
    # an overrunning task contributes 0, never a negative remainder
    np.testing.assert_array_equal(q.state(20_000.0), [3.0, 300.0, 5.0, 2.0, 500.0])
    q.finish("a")
    assert started(q, now=20_000.0) == ["b"]
    np.testing.assert_array_equal(q.state(20_100.0), [2.0, 200.0, 0.0, 1.0, 400.0])
    q.finish("b")
    np.testing.assert_array_equal(q.state(0.0), np.zeros(5))


def test_state_after_one_task_equals_the_schedulers_delta():
    q = make(disk=10.0)
    t = task("a", 1.5, mem=300.0, dur=750.0, disk=7.0)
    q.add(Entry(t))
    np.testing.assert_array_equal(q.state(0.0), task_delta(t))


def test_reservation_holds_then_promotes_or_releases():
    q = make(cores=4.0, slots=2)
    q.add(Entry(task("r", 2.0), kind=RESERVATION, reply_url="http://x"))
    q.add(Entry(task("w", 1.0)))
    assert started(q) == ["r", "w"]
    assert [e.kind for e in q.running] == [RESERVATION, "task"]
    q.promote("r", task("r", 3.0))
    np.testing.assert_array_equal(q.committed, [4.0, 200.0, 0.0])
    np.testing.assert_array_equal(q.free, [0.0, 800.0, 0.0])
    with pytest.raises(QueueError):
        q.promote("w", task("w", 1.0))


def test_cancel_drops_only_waiting_entries():
    q = make(cores=1.0, slots=1)
    q.add(Entry(task("a", 1.0)))
    q.add(Entry(task("r", 1.0), kind=RESERVATION))
    started(q)
    assert q.drop_waiting("a") is None  # running
    assert q.drop_waiting("r").task_id == "r"
    assert len(q) == 1
    np.testing.assert_array_equal(q.committed, [1.0, 100.0, 0.0])


def test_duplicates_and_unknown_ids_are_errors():
    q = make()
    q.add(Entry(task("a", 1.0)))
    with pytest.raises(QueueError, match="'a'"):
        q.add(Entry(task("a", 1.0)))
    with pytest.raises(QueueError, match="'zz'"):
        q.finish("zz")


def test_fits_node_checks_the_capacity_not_the_free_space():
    q = make(cores=4.0, mem=1000.0)
    assert q.fits_node(task("x", 4.0, mem=1000.0))
    assert not q.fits_node(task("x", 4.5))
    assert not q.fits_node(task("x", 1.0, mem=1001.0))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.floats(0.1, 4.0), st.integers(1, 1000), st.booleans(),
                  st.floats(1.0, 1e6)),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("drop"), st.integers(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, slots=st.integers(1, 4))
def test_committed_load_is_the_sum_of_live_demands(ops, slots):
    cap = np.array([4.0, 1000.0, 0.0])
    q = TaskQueue(cap, slots)
    n = 0
    for op in ops:
        if op[0] == "add":
            _, cores, mem, reservation, dur = op
            q.add(Entry(task(f"t{n}", cores, float(mem), dur=dur), kind=RESERVATION if reservation else "task"))
            n += 1
        elif op[0] == "finish":
            running = list(q.running)
            if running:
                q.finish(running[op[1] % len(running)].task_id)
        else:
            waiting = list(q.waiting)
            if waiting:
                q.drop_waiting(waiting[op[1] % len(waiting)].task_id)
        for e in q.schedule(0.0):
            assert q.is_running(e.task_id)
        live = list(q.waiting) + list(q.running)
        expected = sum((e.task.demand() for e in live), np.zeros(3))
        np.testing.assert_allclose(q.committed, expected, atol=1e-9)
        in_use = sum((e.task.demand() for e in q.running), np.zeros(3))
        assert np.all(in_use <= cap + 1e-9)
        assert q.n_running <= slots
        assert q.state(0.0)[3] == len(live)
        # started at 0 and observed at 0: every live entry still owes its full estimate
        assert q.state(0.0)[4] == pytest.approx(sum(e.task.duration_ms for e in live), abs=1e-6)
        # work-conserving: nothing waiting could have started
        free = cap - in_use
        if q.n_running < slots:
            assert all(np.any(e.task.demand() > free + 1e-9) for e in q.waiting)


def test_an_entry_counts_the_schedulers_estimate_as_pending_work_and_runs_as_declared():
    q = make(cores=1.0, slots=1)
    q.add(Entry(task("run", 1.0, dur=1000.0), estimate_ms=100.0))
    q.add(Entry(task("wait", 1.0, dur=1000.0), estimate_ms=250.0))
    q.add(Entry(task("plain", 1.0, dur=1000.0)))
    assert started(q) == ["run"]
    pending = q.state(now_ms=40.0)[-1]
    assert pending == (100.0 - 40.0) + 250.0 + 1000.0
    # the task itself keeps its declared duration: the executor runs that
    assert q.get("run").task.duration_ms == 1000.0
