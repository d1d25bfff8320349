"""FeasibleSampler.sample's inlined draws equal rng.randrange's, so results never change."""

import random

import numpy as np
import pytest

from dodoor.sampling import FeasibleSampler


def _reference(pool: list[int], count: int, rng: random.Random) -> list[int]:
    """sample() as written with randrange (the stream the simulator's results hold)."""
    if len(pool) <= count:
        picks = pool.copy()
        rng.shuffle(picks)
        return picks
    chosen: list[int] = []
    while len(chosen) < count:
        j = pool[rng.randrange(len(pool))]
        if j not in chosen:
            chosen.append(j)
    return chosen


class _Subclass(random.Random):
    pass


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 16, 17, 100, 255, 256, 1000, 4097])
@pytest.mark.parametrize("kind", [random.Random, _Subclass])
def test_sample_draws_like_randrange(n, kind):
    capacity = np.tile([8.0, 8192.0, 100.0], (n, 1))
    capacity[::3, 0] = 1.0  # a third cannot hold 2 cores: pools of different sizes
    sampler = FeasibleSampler(capacity)
    fast, slow = kind(n), kind(n)
    for i in range(300):
        demand = np.array([2.0 if i % 2 else 0.5, 1.0, 0.0])
        pool = np.flatnonzero(np.all(demand <= capacity + 1e-9, axis=-1)).tolist()
        count = 1 + i % 4
        assert sampler.sample(demand, count, fast) == _reference(pool, count, slow)
    assert fast.getstate() == slow.getstate()
