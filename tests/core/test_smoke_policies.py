import random

import numpy as np
import pytest

from dodoor.cache import LoadCache
from dodoor.policies import POLICIES, PolicyKind, make_policy
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler


@pytest.mark.parametrize("name", [n for n in POLICIES if n != "ideal"])
def test_every_policy_places_only_on_nodes_that_fit(name):
    capacity = np.array([[8, 65536, 0], [2, 1024, 0], [28, 131072, 0]], dtype=float)
    cache = LoadCache(capacity, np.array([1, 1, 4]))
    sampler = FeasibleSampler(capacity)
    policy = make_policy(name)
    rng = random.Random(7)
    task = Task("t", 4.0, 4096.0, 0.0, 1000.0)
    demand = task.demand()
    chosen = set()
    for _ in range(50):
        if policy.kind is PolicyKind.POOL:
            node = policy.place_from_pool(task, demand, sampler, 0.0, rng)
        else:
            node = policy.choose(task, demand, cache.view(policy.candidates(task, demand, sampler, rng)), rng)
        chosen.add(node)
    assert chosen <= {0, 2}
