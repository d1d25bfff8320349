"""The learned duration estimator (dodoor.estimates): convergence and invariants."""

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from dodoor.errors import ValidationError
from dodoor.estimates import DurationLearner, duration_key
from dodoor.resources import Task
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import cluster_by_name
from workloads.synthetic import synthetic_tasks


def test_a_biased_kind_converges_to_its_true_durations():
    # every declaration 3x too long: after a warm-up the estimate is the true duration
    learner = DurationLearner()
    rng = random.Random(0)
    for _ in range(200):
        true = rng.uniform(1000, 60_000)
        learner.observe("f", 3 * true, true)
    assert learner.estimate("f", 30_000.0) == pytest.approx(10_000.0, rel=1e-9)
    assert learner.estimate("other", 30_000.0) == 30_000.0  # nothing learned of it


def test_noisy_declarations_are_pulled_towards_the_kind():
    # true durations log-normal around 10 s (s = 0.5), declarations off by exp(N(0, 1))
    learner = DurationLearner()
    rng = random.Random(1)
    declared_err, learned_err = [], []
    for i in range(4000):
        true = 10_000 * math.exp(rng.gauss(0, 0.5))
        declared = true * math.exp(rng.gauss(0, 1.0))
        if i >= 1000:  # score what it would have said before seeing this one
            declared_err.append(math.log(declared / true) ** 2)
            learned_err.append(math.log(learner.estimate("k", declared) / true) ** 2)
        learner.observe("k", declared, true)
    # the posterior's mean squared log error is s²σ²/(s²+σ²) = 0.2 against σ² = 1
    assert sum(declared_err) / len(declared_err) == pytest.approx(1.0, rel=0.1)
    assert sum(learned_err) / len(learned_err) == pytest.approx(0.2, rel=0.2)


durations = st.floats(1.0, 1e7)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(durations, durations), min_size=0, max_size=60), durations,
       st.integers(1, 10))
def test_estimate_invariants(stream, declared, warmup):
    learner = DurationLearner(warmup=warmup)
    for d, t in stream:
        learner.observe("k", d, t)
    est = learner.estimate("k", declared)
    assert math.isfinite(est) and est > 0
    if len(stream) < warmup:
        assert est == declared
    else:
        # a weighted mean, in log space, of the bias-corrected declaration and the
        # kind's typical duration: never outside the range they span
        trues = [math.log(t) for _, t in stream]
        ratios = [math.log(d / t) for d, t in stream]
        low = min(min(trues), math.log(declared) - max(ratios)) - 1e-9
        high = max(max(trues), math.log(declared) - min(ratios)) + 1e-9
        assert low <= math.log(est) <= high


@settings(max_examples=100, deadline=None)
@given(st.lists(durations, min_size=1, max_size=60), durations)
def test_exact_declarations_come_back_unchanged(trues, declared):
    learner = DurationLearner(warmup=1)
    for t in trues:
        learner.observe("k", t, t)
    assert learner.estimate("k", declared) == declared


def test_keys_and_bad_input():
    assert duration_key(Task("a", 1, 2, 0, 5, function="f")) == ("function", "f")
    assert duration_key(Task("a", 1, 2, 0, 5, image="img")) == ("image", "img")
    assert duration_key(Task("a", 1, 2, 0, 5)) == ("shape", 1, 2, 0)
    with pytest.raises(ValidationError, match="learn_weight"):
        DurationLearner(weight=0.0)
    with pytest.raises(ValidationError, match="duration_ms"):
        DurationLearner().observe("k", 0.0, 1.0)


def test_learning_with_exact_estimates_changes_no_decision():
    nodes = cluster_by_name("scaled:12")
    tasks = synthetic_tasks(400, nodes, 0.9, seed=5)
    plain = simulate(tasks, nodes, "dodoor-wait:d=4", SimSettings(seed=1))
    learned = simulate(tasks, nodes, "dodoor-wait:d=4,learn_durations=1", SimSettings(seed=1))
    assert learned.records.start == plain.records.start
    assert learned.records.node == plain.records.node
