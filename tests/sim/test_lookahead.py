"""Batched lookahead scoring decides exactly as scoring task by task."""

import random

import numpy as np
import pytest

from dodoor.cache import LoadCache
from dodoor.policies import make_policy_spec
from dodoor.resources import capacity_matrix
from dodoor.sampling import FeasibleSampler
from dodoor.sim.lookahead import Lookahead
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import scaled
from workloads.synthetic import synthetic_tasks


@pytest.mark.parametrize("spec,schedulers", [
    ("dodoor", 1),
    ("dodoor:d=3,beta=0.5", 2),
    ("dodoor:delta_snapshots=true,k=4,b=24", 3),
    ("dodoor:d=9", 1),
    ("dodoor-wait:d=8", 2),
    ("dodoor-wait:d=3,beta=0.5", 1),
])
def test_runs_match_task_by_task_scoring(spec, schedulers):
    nodes = scaled(40)
    tasks = synthetic_tasks(3000, nodes, load=0.9, seed=4)
    runs = [simulate(tasks, nodes, spec, SimSettings(seed=7, schedulers=schedulers, lookahead=on))
            for on in (True, False)]
    batched, single = (r.records.arrays() for r in runs)
    for column in batched:
        np.testing.assert_array_equal(batched[column], single[column])
    assert runs[0].counter.counts == runs[1].counter.counts


def test_lookahead_batches_and_rewinds_on_ties_and_snapshots():
    nodes = scaled(200)
    cap = capacity_matrix(nodes)
    slots = np.array([n.slots for n in nodes], dtype=np.float64)
    tasks = synthetic_tasks(400, nodes, seed=1)
    demands = []
    for t in tasks:
        arr = t.demand()
        arr.setflags(write=False)
        demands.append(arr)
    policy = make_policy_spec("dodoor")
    # the same decisions, drawn task by task from an identical stream and cache
    ahead_cache, plain_cache = LoadCache(cap, slots), LoadCache(cap, slots)
    ahead_rng, plain_rng = random.Random(3), random.Random(3)
    sampler = FeasibleSampler(cap)
    ahead = Lookahead(policy, ahead_cache, sampler, ahead_rng, tasks, demands, 1)
    for i, task in enumerate(tasks):
        if i == 250:  # a snapshot: both caches replaced, the batch dropped
            snapshot = np.abs(np.random.default_rng(0).normal(size=plain_cache.state.shape))
            ahead_cache.replace(snapshot)
            plain_cache.replace(snapshot)
            ahead.invalidate()
        node = ahead.decide(i)
        cands = policy.candidates(task, demands[i], sampler, plain_rng)
        expected = policy.choose(task, demands[i], plain_cache.view(cands), plain_rng)
        assert node == expected, i
        ahead_cache.record_placement(node, task)
        plain_cache.record_placement(expected, task)
    assert ahead_rng.getstate() == plain_rng.getstate()
    # the empty cache ties at first (rewinds); later tasks share batches
    assert ahead.rewinds > 0
    assert ahead.batches < len(tasks) / 2


def test_lookahead_refuses_a_policy_that_does_not_decide_by_scores():
    cap = np.ones((2, 3))
    with pytest.raises(ValueError, match="cached-power-of-two"):
        Lookahead(make_policy_spec("cached-power-of-two"), LoadCache(cap, np.ones(2)),
                  FeasibleSampler(cap), random.Random(0), [], [], 1)
