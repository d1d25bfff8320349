"""Uniform sampling of distinct candidate nodes that can hold a task."""

from __future__ import annotations

import random

import numpy as np

from dodoor.resources import fits

_MEMO_LIMIT = 4096


class FeasibleSampler:
    """Samples candidates uniformly among the nodes whose capacity fits a demand.

    Traces repeat a few demand vectors many times, so the feasible set of each
    distinct demand is computed once (one vectorized comparison) and memoized.
    """

    def __init__(self, capacity: np.ndarray) -> None:
        self.capacity = np.asarray(capacity, dtype=np.float64)
        # demand values (the array's bytes: half the cost of a tuple of floats) ->
        # (feasible indices, the same as a list of ints)
        self._memo: dict[bytes, tuple[np.ndarray, list[int]]] = {}

    @property
    def n_nodes(self) -> int:
        return int(self.capacity.shape[0])

    def feasible(self, demand: np.ndarray) -> np.ndarray:
        """Indices of every node that can hold ``demand`` (possibly empty)."""
        return self._lookup(demand)[0]

    def _lookup(self, demand: np.ndarray) -> tuple[np.ndarray, list[int]]:
        key = demand.tobytes()
        found = self._memo.get(key)
        if found is None:
            pool = np.flatnonzero(fits(demand, self.capacity))
            found = (pool, pool.tolist())
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = found
        return found

    def sample(self, demand: np.ndarray, count: int, rng: random.Random) -> list[int]:
        """Up to ``count`` distinct feasible node indices, uniformly at random."""
        pool = self._lookup(demand)[1]
        size = len(pool)
        if size <= count:
            picks = pool.copy()
            rng.shuffle(picks)
            return picks
        chosen: list[int] = []
        while len(chosen) < count:
            j = pool[rng.randrange(size)]
            if j not in chosen:
                chosen.append(j)
        return chosen

    def sample_any(self, count: int, rng: random.Random) -> list[int]:
        """``count`` node indices uniformly at random, fit ignored (probe targets)."""
        n = self.n_nodes
        if n == 0:
            return []
        return [rng.randrange(n) for _ in range(count)]
