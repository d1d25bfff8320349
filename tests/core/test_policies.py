"""Policy decisions on hand-built views; settings validation."""

import random

import numpy as np
import pytest

from dodoor.cache import CandidateView, LoadCache
from dodoor.errors import ValidationError
from dodoor.policies import POLICIES, PolicyKind, count_for, make_policy
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.settings import PolicySettings

CAP = np.array([[8.0, 8192.0, 0.0], [16.0, 16384.0, 0.0], [2.0, 1024.0, 0.0], [16.0, 16384.0, 0.0]])
TASK = Task("t", 4.0, 2048.0, 0.0, 1000.0)


def view(nodes, state, start=None):
    nodes = np.array(nodes)
    return CandidateView(nodes, CAP[nodes], np.array(state, dtype=float), np.ones(len(nodes)),
                         None if start is None else np.array(start, dtype=float))


def test_dodoor_prefers_less_relative_load_and_less_pending_work():
    policy = make_policy("dodoor")
    rng = random.Random(0)
    # Same absolute load: the bigger node is relatively emptier.
    v = view([0, 1], [[4, 2048, 0, 1, 1000], [4, 2048, 0, 1, 1000]])
    assert policy.choose(TASK, TASK.demand(), v, rng) == 1
    # Equal relative load, but node 0 has far less pending work (alpha = 0.5 decides).
    v = view([0, 1], [[4, 4096, 0, 1, 100], [8, 8192, 0, 1, 9000]])
    assert policy.choose(TASK, TASK.demand(), v, rng) == 0


def test_cached_power_of_two_takes_fewest_tasks():
    policy = make_policy("cached-power-of-two")
    v = view([0, 1], [[0, 0, 0, 3, 0], [0, 0, 0, 2, 0]])
    assert policy.choose(TASK, TASK.demand(), v, random.Random(0)) == 1


def test_power_of_two_variants_use_their_metric():
    v = view([0, 1], [[0, 0, 0, 1, 9000], [0, 0, 0, 5, 10]])
    assert make_policy("power-of-two").choose(TASK, TASK.demand(), v, random.Random(0)) == 0
    assert make_policy("power-of-two-duration").choose(TASK, TASK.demand(), v, random.Random(0)) == 1


def test_ideal_takes_earliest_start_then_lowest_score():
    policy = make_policy("ideal")
    rng = random.Random(0)
    state = [[4, 2048, 0, 1, 500]] * 3
    assert policy.choose(TASK, TASK.demand(), view([0, 1, 3], state, [50.0, 10.0, 20.0]), rng) == 1
    state = [[4, 2048, 0, 1, 500], [8, 4096, 0, 1, 500], [2, 1024, 0, 1, 500]]
    assert policy.choose(TASK, TASK.demand(), view([0, 1, 3], state, [0.0, 0.0, 0.0]), rng) == 3
    with pytest.raises(ValueError, match="start_ms"):
        policy.choose(TASK, TASK.demand(), view([0], [[0] * 5]), rng)


def test_candidates_never_include_nodes_too_small():
    sampler = FeasibleSampler(CAP)
    rng = random.Random(5)
    for name in POLICIES:
        policy = make_policy(name, PolicySettings(d=3))
        for _ in range(30):
            assert 2 not in policy.candidates(TASK, TASK.demand(), sampler, rng)


def test_sampler_is_uniform_over_feasible_nodes():
    sampler = FeasibleSampler(CAP)
    rng = random.Random(11)
    counts = np.zeros(4)
    for _ in range(3000):
        picks = sampler.sample(TASK.demand(), 2, rng)
        assert len(set(picks)) == 2
        counts[picks] += 1
    assert counts[2] == 0
    assert all(1800 < c < 2200 for c in counts[[0, 1, 3]])


def test_beta_takes_a_second_choice_with_that_probability():
    rng = random.Random(2)
    draws = [count_for(PolicySettings(d=2, beta=0.25), rng) for _ in range(4000)]
    assert set(draws) == {1, 2}
    assert 0.2 < draws.count(2) / len(draws) < 0.3
    assert {count_for(PolicySettings(d=4), rng) for _ in range(50)} == {4}


def test_prequal_pool_hot_cold_rule_and_fallback():
    policy = make_policy("prequal", PolicySettings(probe_reuse=1, hot_quantile=0.5))
    sampler = FeasibleSampler(CAP)
    rng = random.Random(1)
    # Empty pool: a random feasible node.
    assert policy.place_from_pool(TASK, TASK.demand(), sampler, 0.0, rng) in {0, 1, 3}
    policy.on_probe_reply(0, np.array([0, 0, 0, 9, 10.0]), 0.0)  # hot: many in flight
    policy.on_probe_reply(1, np.array([0, 0, 0, 1, 800.0]), 0.0)  # cold, slower
    policy.on_probe_reply(3, np.array([0, 0, 0, 1, 300.0]), 0.0)  # cold, fastest
    policy.on_probe_reply(2, np.array([0, 0, 0, 0, 0.0]), 0.0)  # cannot hold the task
    assert policy.place_from_pool(TASK, TASK.demand(), sampler, 1.0, rng) == 3
    assert policy.place_from_pool(TASK, TASK.demand(), sampler, 1.0, rng) == 1  # 3 was retired
    # Stale probes are dropped.
    assert policy.place_from_pool(TASK, TASK.demand(), sampler, 5000.0, rng) in {0, 1, 3}
    assert policy.pool_size == 0


def test_prequal_sends_probe_rate_probes_per_placement():
    policy = make_policy("prequal", PolicySettings(probe_rate=1.5))
    sampler = FeasibleSampler(CAP)
    rng = random.Random(0)
    assert [len(policy.probe_targets(sampler, rng)) for _ in range(4)] == [1, 2, 1, 2]


def test_every_policy_has_its_kind():
    kinds = {name: make_policy(name).kind for name in POLICIES}
    assert kinds["dodoor"] is PolicyKind.CACHED and kinds["sparrow"] is PolicyKind.RESERVE
    assert kinds["prequal"] is PolicyKind.POOL and kinds["ideal"] is PolicyKind.ORACLE
    assert kinds["random"] is PolicyKind.NONE and kinds["power-of-two"] is PolicyKind.PROBE


@pytest.mark.parametrize(
    "values, field",
    [({"d": 0}, "d"), ({"alpha": 1.5}, "alpha"), ({"beta": -0.1}, "beta"), ({"k": 0}, "k"),
     ({"weights": "1,1"}, "weights"), ({"weights": "1,-1,0"}, "weights"), ({"zz": 1}, "zz"),
     ({"d": "two"}, "d")],
)
def test_bad_settings_are_named(values, field):
    with pytest.raises(ValidationError) as info:
        PolicySettings.from_mapping(values)
    assert info.value.field == field


def test_settings_from_strings():
    s = PolicySettings.from_mapping({"d": "8", "alpha": "0.25", "weights": "1,1,1"})
    assert (s.d, s.alpha, s.weights) == (8, 0.25, (1.0, 1.0, 1.0))
    with pytest.raises(ValidationError, match="unknown policy"):
        make_policy("best-effort")


def test_cache_placements_feed_the_next_decision():
    # Two consecutive tasks from one scheduler must not both land on the same "empty" node.
    cache = LoadCache(CAP[[0, 3]], np.ones(2))
    policy = make_policy("dodoor")
    rng = random.Random(4)
    first = policy.choose(TASK, TASK.demand(), cache.view([0, 1]), rng)
    cache.record_placement(first, TASK)
    second = policy.choose(TASK, TASK.demand(), cache.view([0, 1]), rng)
    assert {first, second} == {0, 1}


def test_expected_wait_is_zero_where_the_task_fits_now_and_per_slot_otherwise():
    from dodoor.score import expected_wait

    capacity = np.array([[8.0, 8192.0, 0.0], [16.0, 16384.0, 0.0], [16.0, 16384.0, 0.0]])
    state = np.array([
        [4.0, 2048.0, 0.0, 1.0, 6000.0],   # 1 slot taken: must wait 6000 ms
        [8.0, 4096.0, 0.0, 1.0, 6000.0],   # 4 slots, room: starts now
        [14.0, 4096.0, 0.0, 3.0, 6000.0],  # 4 slots but cores full: 6000/4
    ])
    slots = np.array([1.0, 4.0, 4.0])
    waits = expected_wait(TASK.demand(), capacity, state, slots)
    np.testing.assert_array_equal(waits, [6000.0, 0.0, 1500.0])


def test_dodoor_wait_prefers_the_node_that_drains_sooner():
    policy = make_policy("dodoor-wait")
    # Both must wait; node 1 has more pending work but 4 slots to drain it (2500 vs 4000 ms).
    nodes = np.array([0, 1])
    v = CandidateView(nodes, CAP[nodes], np.array([[8, 2048, 0, 1, 4000], [16, 4096, 0, 4, 10000]],
                                                  dtype=float), np.array([1.0, 4.0]))
    assert policy.choose(TASK, TASK.demand(), v, random.Random(0)) == 1
    # The paper's score would pick node 0 here (less relative load counts as much as pending).
    paper = make_policy("dodoor").choose(TASK, TASK.demand(), v, random.Random(0))
    assert paper == 0


def test_policy_spec_overrides_settings_and_keeps_the_spec_as_name():
    from dodoor.policies import make_policy_spec

    policy = make_policy_spec("dodoor-wait:d=8,alpha=0.25", PolicySettings(k=4))
    assert policy.name == "dodoor-wait:d=8,alpha=0.25"
    assert (policy.settings.d, policy.settings.alpha, policy.settings.k) == (8, 0.25, 4)
    with pytest.raises(ValidationError, match="expected key=value, got .d8. in"):
        make_policy_spec("dodoor:d8")
    with pytest.raises(ValidationError):
        make_policy_spec("dodoor:q=1")
