"""Edge cases of the expected-wait estimate and the dodoor-wait policy on hand-built states."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies import make_policy_spec
from dodoor.resources import Task
from dodoor.score import expected_wait

CAP = np.array([[8.0, 1000.0, 0.0]])


def _state(cores, mem, tasks, pending, disk=0.0):
    return np.array([[cores, mem, disk, tasks, pending]])


def test_exact_fit_counts_as_room():
    # 6 + 2 cores on 8 and 600 + 400 MiB on 1000: fits exactly, so no wait
    w = expected_wait(np.array([2.0, 400.0, 0.0]), CAP, _state(6.0, 600.0, 1, 9000.0), np.array([2.0]))
    assert w.tolist() == [0.0]


def test_float_drift_within_tolerance_still_fits():
    demand = np.array([0.42000000000000004, 100.0, 0.0])
    w = expected_wait(demand, CAP, _state(8.0 - 0.42, 900.0, 1, 5000.0), np.array([2.0]))
    assert w.tolist() == [0.0]


def test_a_free_slot_without_room_waits_pending_per_slot():
    w = expected_wait(np.array([4.0, 10.0, 0.0]), CAP, _state(6.0, 10.0, 1, 9000.0), np.array([3.0]))
    assert w.tolist() == [3000.0]


def test_room_without_a_free_slot_waits():
    w = expected_wait(np.array([1.0, 10.0, 0.0]), CAP, _state(1.0, 10.0, 2, 4000.0), np.array([2.0]))
    assert w.tolist() == [2000.0]


def test_disk_counts_only_where_the_node_has_disk():
    demand = np.array([1.0, 10.0, 50.0])
    capacity = np.array([[8.0, 1000.0, 0.0], [8.0, 1000.0, 100.0]])
    state = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 60.0, 1.0, 800.0]])
    w = expected_wait(demand, capacity, state, np.array([1.0, 4.0]))
    # node 0 cannot hold 50 MiB of disk at all (the sampler filters it); node 1 lacks room now
    assert w.tolist() == [0.0, 200.0]


def test_zero_slots_is_treated_as_one_not_a_division_by_zero():
    w = expected_wait(np.array([1.0, 1.0, 0.0]), CAP, _state(8.0, 0.0, 0, 700.0), np.array([0.0]))
    assert w.tolist() == [700.0]


def test_full_node_with_nothing_pending_waits_zero():
    # committed to the brim but the estimate has no pending work: the score knows no wait
    w = expected_wait(np.array([1.0, 1.0, 0.0]), CAP, _state(8.0, 1000.0, 1, 0.0), np.array([1.0]))
    assert w.tolist() == [0.0]


def _view(state, slots):
    n = len(slots)
    return CandidateView(np.arange(n), np.repeat(CAP, n, axis=0), np.array(state, dtype=float),
                         np.array(slots, dtype=float))


def test_wait_ties_fall_back_to_the_load_score():
    policy = make_policy_spec("dodoor-wait:d=3")
    task = Task("t", 1.0, 100.0, 0.0, 1000.0)
    # all three have room now (wait 0); node 2 has the least relative load and pending
    view = _view([[4, 400, 0, 1, 5000], [2, 200, 0, 1, 3000], [1, 100, 0, 1, 1000]], [4, 4, 4])
    assert policy.choose(task, task.demand(), view, random.Random(0)) == 2


def test_four_slots_beat_one_slot_with_less_pending_work():
    policy = make_policy_spec("dodoor-wait:d=2")
    paper = make_policy_spec("dodoor:d=2")
    task = Task("t", 8.0, 100.0, 0.0, 1000.0)
    # neither has room; node 0: 6000 ms pending on 4 slots (1500 each), node 1: 3000 on 1
    view = _view([[8, 400, 0, 4, 6000], [8, 400, 0, 1, 3000]], [4, 1])
    assert policy.choose(task, task.demand(), view, random.Random(0)) == 0
    # the paper's score compares raw pending duration and picks the 1-slot node
    assert paper.choose(task, task.demand(), view, random.Random(0)) == 1


def test_exact_wait_ties_are_broken_uniformly():
    policy = make_policy_spec("dodoor-wait:d=2,alpha=0.5")
    task = Task("t", 1.0, 100.0, 0.0, 1000.0)
    view = _view([[2, 200, 0, 1, 1000], [2, 200, 0, 1, 1000]], [2, 2])
    picks = {policy.choose(task, task.demand(), view, random.Random(seed)) for seed in range(40)}
    assert picks == {0, 1}
