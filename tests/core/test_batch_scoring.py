"""Stacked chunk scores equal scoring each task alone; the walk rescoring rules."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dodoor.batch_scoring import ChunkScores, worth_stacking
from dodoor.cache import LoadCache
from dodoor.policies import make_policy_spec
from dodoor.score import load_score


def _cache(nodes: int, seed: int) -> LoadCache:
    gen = np.random.default_rng(seed)
    capacity = gen.choice([4.0, 8.0, 16.0], size=(nodes, 3)) * [1.0, 1024.0, 50.0]
    capacity[0, 2] = 0.0  # a zero capacity scores zero there
    cache = LoadCache(capacity, np.full(nodes, 4.0))
    cache.replace(np.abs(gen.normal(size=cache.state.shape)) * [2, 2048, 10, 3, 500])
    return cache


@pytest.mark.parametrize("name", ["dodoor", "dodoor-wait"])
@pytest.mark.parametrize("d", [2, 3, 5, 7, 8, 9, 16, 24])
def test_stacked_keys_equal_scoring_each_task_alone(d, name):
    policy = make_policy_spec(f"{name}:d={d},alpha=0.3")
    cache = _cache(40, d)
    rng = random.Random(d)
    cands = [rng.sample(range(40), d) for _ in range(50)]
    demands = [np.array([rng.choice([0.5, 1.0, 2.0]), rng.choice([256.0, 1024.0]), 1.0])
               for _ in cands]
    chunk = ChunkScores(policy, cache)
    chunk.reset(cands, demands)
    for pos, (c, demand) in enumerate(zip(cands, demands)):
        assert chunk._scores[pos] == policy.decision_keys(demand, cache.view(c)).tolist()
        keys = chunk._scores[pos]
        if keys.count(min(keys)) == 1:  # the keys' argmin is the policy's own choice
            assert c[keys.index(min(keys))] == policy.choose(None, demand, cache.view(c),
                                                             random.Random(0))


def test_sums_of_eight_or_more_candidates_stack_bit_for_bit():
    # numpy's own row sum of >= 8 values differs in the last bit from adding in order
    rng = random.Random(1)
    rows = [[rng.uniform(0, 1e-3) for _ in range(16)] for _ in range(200)]
    stacked = load_score(np.ones((200, 1, 3)), np.ones((200, 16, 3)),
                         np.array(rows)[:, :, None] * np.ones(3), np.zeros((200, 16)), np.ones(3), 0.0)
    for row, got in zip(rows, stacked):
        alone = load_score(np.ones(3), np.ones((16, 3)), np.array(row)[:, None] * np.ones(3),
                           np.zeros(16), np.ones(3), 0.0)
        assert got.tolist() == alone.tolist()


def test_a_node_placed_on_rescores_later_tasks_that_share_it():
    policy = make_policy_spec("dodoor:alpha=0")
    cache = LoadCache(np.tile([8.0, 8192.0, 100.0], (3, 1)), np.full(3, 4.0))
    state = np.zeros(cache.state.shape)
    state[:, 0] = [1.0, 2.0, 3.0]
    cache.replace(state)
    task_demand = np.array([1.0, 1.0, 0.0])
    chunk = ChunkScores(policy, cache)
    chunk.reset([[0, 1], [0, 1], [1, 2]], [task_demand] * 3)
    rng = random.Random(0)
    assert chunk.decide(0, rng) == 0
    cache.state[0, 0] += 5.0  # the host records the placement: node 0 now loaded most
    assert chunk.decide(1, rng) == 1  # rescored, not the stale scores' node 0
    assert chunk.decide(2, rng) == 1  # node 1 changed, yet still lower


def test_ties_run_the_hook_then_draw():
    policy = make_policy_spec("dodoor")
    cache = LoadCache(np.ones((3, 3)), np.ones(3))  # empty: every score ties
    chunk = ChunkScores(policy, cache)
    chunk.reset([[2, 0, 1]], [np.ones(3)])
    hooked: list[int] = []
    rng, twin = random.Random(4), random.Random(4)
    node = chunk.decide(0, rng, before_tie=hooked.append)
    assert hooked == [0]
    assert node == [2, 0, 1][twin.randrange(3)]


def test_refuses_a_policy_that_does_not_decide_by_scores():
    with pytest.raises(ValueError, match="cached-power-of-two"):
        ChunkScores(make_policy_spec("cached-power-of-two"),
                    LoadCache(np.ones((2, 3)), np.ones(2)))


@pytest.mark.parametrize("nodes", [5, 16, 300])
def test_walk_decides_as_one_at_a_time_in_few_calls(nodes):
    policy = make_policy_spec("dodoor:alpha=0.5")
    walked, plain = _cache(nodes, 1), _cache(nodes, 1)
    rng = random.Random(nodes)
    cands = [rng.sample(range(nodes), 2) for _ in range(256)]
    demands = [np.array([rng.choice([0.5, 1.0]), 512.0, 0.0]) for _ in cands]
    durations = [rng.choice([10.0, 100.0]) for _ in cands]
    chunk = ChunkScores(policy, walked)
    chunk.reset(cands, demands)
    walk_rng, plain_rng = random.Random(1), random.Random(1)
    for pos, (c, demand, duration) in enumerate(zip(cands, demands, durations)):
        node = chunk.decide(pos, walk_rng)
        expected = policy.choose(None, demand, plain.view(c), plain_rng)
        assert node == expected, pos
        for cache in (walked, plain):  # what record_placement adds
            cache.state[node] += [*demand, 1.0, duration]
    # a window per few tasks on a small cluster, one call on a large one
    assert chunk.calls <= {5: 160, 16: 96, 300: 24}[nodes]


def test_stacking_is_for_score_deciding_policies_on_clusters_of_4_d_nodes_or_more():
    assert worth_stacking(make_policy_spec("dodoor-wait:d=16"), 64)
    assert not worth_stacking(make_policy_spec("dodoor-wait:d=16"), 63)
    assert worth_stacking(make_policy_spec("dodoor"), 8)
    assert not worth_stacking(make_policy_spec("cached-power-of-two"), 1000)


def test_a_candidate_mask_is_refused_when_scoring_one_task():
    with pytest.raises(ValueError, match="among restricts stacked tasks only"):
        load_score(np.ones(3), np.ones((2, 3)), np.ones((2, 3)), np.ones(2), np.ones(3), 0.5,
                   among=np.array([True, False]))
