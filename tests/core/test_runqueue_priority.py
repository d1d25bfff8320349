"""The run queue with priority classes: exact event logs on the simulated clock, and
hypothesis properties (capacity, FIFO within a class, no higher class passed over)."""

from hypothesis import given, settings, strategies as st

from dodoor.priority import effective_priority
from dodoor.resources import FIT_TOLERANCE, NodeSpec, Task
from dodoor.runqueue import QueueEntry, RunQueue, order_key
from dodoor.sim.engine import EventLoop
from dodoor.sim.network import Network
from dodoor.sim.node import Entry, SimNode
from dodoor.sim.records import TaskRecords


def run(tasks, aging_ms=0.0, preempt=False, spec=NodeSpec("n", 4, 4096, 0, 1)):
    loop = EventLoop()
    records = TaskRecords(tasks)
    node = SimNode(0, spec, loop, Network(loop, 0.0), records, aging_ms=aging_ms,
                   preempt=preempt)
    for i, t in enumerate(tasks):
        loop.call_at(t.arrival_ms, node.enqueue,
                     Entry(i, (t.cores, t.memory_mb, t.disk_mb), t.duration_ms))
    loop.run()
    return records


def test_a_higher_class_is_served_first_fifo_within_a_class():
    tasks = [Task("a", 1, 10, 0, 100, 0, priority=1),  # runs 0..100
             Task("b", 1, 10, 0, 10, 1, priority=0),
             Task("c", 1, 10, 0, 10, 2, priority=1),
             Task("d", 1, 10, 0, 10, 3, priority=3),
             Task("e", 1, 10, 0, 10, 4, priority=1)]
    rec = run(tasks)
    assert rec.start == [0, 130, 110, 100, 120]
    assert rec.end == [100, 140, 120, 110, 130]


def test_aging_lifts_a_long_waiting_low_task_one_class_per_period():
    tasks = [Task("a", 1, 10, 0, 200, 0, priority=1),  # runs 0..200
             Task("low", 1, 10, 0, 10, 1, priority=0),  # waits 199 ms: one class up at 200
             Task("normal", 1, 10, 0, 10, 150, priority=1)]
    assert run(tasks, aging_ms=0.0).start == [0, 210, 200]  # no aging: class order
    assert run(tasks, aging_ms=100.0).start == [0, 200, 210]  # aged to normal, arrived first
    # two periods would lift it above a newer high task too, never past the top class
    assert effective_priority(0, 250.0, 100.0) == 2 and effective_priority(2, 1e9, 1.0) == 3


def test_preemption_requeues_a_lower_running_task_only_when_enabled():
    tasks = [Task("low", 4, 10, 0, 100, 0, priority=0),
             Task("high", 4, 10, 0, 10, 20, priority=2)]
    assert run(tasks).start == [0, 100]
    rec = run(tasks, preempt=True)
    # high stops low at 20; low starts again when high ends and runs its whole duration
    assert (rec.start, rec.end, rec.preempted) == ([30, 20], [130, 30], 1)


def test_victims_are_the_lowest_class_latest_started_and_only_as_many_as_needed():
    rq = RunQueue((4, 100, 0), 4, aging_ms=0.0)
    entries = [QueueEntry((1, 1, 0), 100, p) for p in (0, 0, 1, 2)]
    for t, e in enumerate(entries):
        rq.admit(e, float(t))
    assert rq.victims((2, 1, 0), 2) == [entries[1], entries[0]]
    assert rq.victims((4, 1, 0), 2) is None  # the class-2 entry is no victim of its class
    assert rq.victims((4, 1, 0), 3) == [entries[1], entries[0], entries[2], entries[3]]


ops = st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(0, 3), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("finish"), st.integers(0, 10), st.just(0), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 80), st.just(0), st.just(0)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops, st.sampled_from([0.0, 50.0]))
def test_run_queue_properties(script, aging_ms):
    rq = RunQueue((4, 100, 0), 3, aging_ms=aging_ms)
    now = 0.0
    starts: list[QueueEntry] = []
    for op, a, b, c in script:
        if op == "push":
            rq.push(QueueEntry((float(b), 1.0, 0.0), 10.0 * c, a), now)
        elif op == "finish" and rq.running:
            rq.finish(list(rq.running)[a % len(rq.running)])
        elif op == "tick":
            now += a
        before = rq.ranked(now)
        started = rq.backfill(now)
        starts += started
        # capacity never exceeded, slots never over-used
        assert all(f >= -FIT_TOLERANCE for f in rq.free) and 0 <= rq.free_slots <= 3
        assert len(rq.running) + rq.free_slots == 3
        # a waiting entry ranked before a started one did not fit the room it met then
        for pos, w in enumerate(before):
            if w in started:
                continue
            later = [s for s in before[pos + 1:] if s in started]
            room = [rq.free[r] + sum(s.demand[r] for s in later) for r in range(3)]
            slots = rq.free_slots + len(later)
            assert not (slots > 0 and all(w.demand[r] <= room[r] + FIT_TOLERANCE
                                          for r in range(3)))
        if aging_ms == 0.0:  # the ranking is the static order
            assert before == sorted(before, key=order_key)
    # within a class, equal sizes start in arrival order
    for p in range(4):
        for size in range(1, 5):
            seqs = [e.seq for e in starts if e.priority == p and e.demand[0] == size
                    and e.duration_ms >= 0]
            assert seqs == sorted(seqs)
