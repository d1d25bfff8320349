"""The rebalancing rule (dodoor.rebalance), shared by the simulator and the load store."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dodoor.cache import PENDING, TASKS
from dodoor.rebalance import longest_queue, plan_moves


def rows(tasks, pending, cores=None):
    n = len(tasks)
    view = np.zeros((n, 5))
    view[:, TASKS] = tasks
    view[:, PENDING] = pending
    if cores is not None:
        view[:, 0] = cores
    return view


def test_the_longest_wait_per_slot_among_queues_of_min_queue_is_the_victim():
    slots = np.array([2.0, 2.0, 1.0, 2.0])
    # node 1: 2 queued, 4000 ms over 2 slots; node 2: 2 queued, 3000 ms over 1 slot
    view = rows([0, 4, 3, 3], [0, 4000, 3000, 9000])
    # node 3 has the most work but only one task queued beyond its slots
    assert longest_queue(view, slots, 0, 2.0, 10.0) == 2
    assert longest_queue(view, slots, 0, 1.0, 10.0) == 3
    assert longest_queue(view, slots, 0, 2.0, 5000.0) is None  # not worth the messages
    assert longest_queue(view, slots, 2, 2.0, 10.0) == 1  # never the asking node


def test_one_order_per_free_slot_each_charged_before_the_next():
    slots = np.array([2.0, 1.0, 1.0])
    capacity = np.array([[4.0, 1000.0, 0.0]] * 3)
    view = rows([0, 4, 3], [0, 4000, 2400], cores=[1.0, 1.0, 1.0])
    plans = plan_moves(view, slots, capacity, 0, 2.0, 10.0)
    # 4000/1 > 2400/1: node 1 first; charged (3 tasks, 3000 ms) it still leads
    assert [(p.victim, p.room, p.share) for p in plans] == [
        (1, (3.0, 1000.0, 0.0), 1000.0), (1, (3.0, 1000.0, 0.0), 1000.0)]
    assert view[0, TASKS] == 2 and view[0, PENDING] == 2000
    assert view[1, TASKS] == 2 and view[1, PENDING] == 2000
    # the asking node is full now: no order
    assert plan_moves(view, slots, capacity, 0, 2.0, 10.0) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.floats(0, 1e5), st.integers(1, 4)),
                min_size=2, max_size=8),
       st.integers(1, 3), st.data())
def test_plans_conserve_work_and_never_empty_a_queue_below_min_queue(nodes, min_queue, data):
    thief = data.draw(st.integers(0, len(nodes) - 1))
    view = rows([n[0] for n in nodes], [n[1] for n in nodes])
    slots = np.array([float(n[2]) for n in nodes])
    capacity = np.full((len(nodes), 3), 8.0)
    before = view.copy()
    also = np.zeros_like(view)
    plans = plan_moves(view, slots, capacity, thief, float(min_queue), 0.0, also=also)
    assert len(plans) <= max(0, slots[thief] - before[thief, TASKS])
    assert np.allclose(view.sum(axis=0), before.sum(axis=0))  # moved, not made
    assert np.allclose(view, before + also)  # the caller's rows got the same charges
    for p in plans:
        assert p.victim != thief
    # every victim still had min_queue tasks beyond its slots when its last order came
    taken = np.bincount([p.victim for p in plans], minlength=len(nodes))
    for v in {p.victim for p in plans}:
        assert before[v, TASKS] - (taken[v] - 1) - slots[v] >= min_queue
