"""Scoring a run of tasks' candidates in one numpy call, deciding as one at a time would.

A cache-based policy decides each task from the scheduler's load cache, which
changes only when the scheduler places a task (its own delta on that node) or
installs a snapshot. A host that has a run of tasks to decide — the live
scheduler's batch between two yields, the simulator's lookahead — samples
their candidates first, scores them all against the cache in one stacked
:func:`dodoor.score.load_score` call (numpy's fixed cost per call, not the
arithmetic, dominates scoring a few candidates), and then decides them in
order from those scores. A task whose candidates include a node placed on
since the scoring (its cached row changed) is scored again on its own, so
every decision is the one scoring that task alone against the cache as it is
then would give. After a snapshot the host calls :meth:`ChunkScores.score`
again for the tasks not yet decided.

The stacked score adds in the same order as the one-task score only for up to
``MAX_STACKED_D`` candidates; above that every task is scored alone.

Only policies whose ``choose`` is the tie-random argmin of
:meth:`~dodoor.policies.base.SampledPolicy.scores` over every candidate
(``scores_decide``) can be decided this way.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np

from dodoor.cache import LoadCache
from dodoor.policies import PlacementPolicy

# numpy sums a row of 8 or more values pairwise, not in order as the one-task score does
# (the last bit then differs in about a third of the rows)
MAX_STACKED_D = 7


def decides_by_scores(policy: PlacementPolicy) -> bool:
    """Whether ``policy``'s choice is the tie-random argmin of its scores."""
    return bool(getattr(policy, "scores_decide", False))


class ChunkScores:
    """The candidates of a run of tasks, their stacked scores, and the nodes placed on since.

    Positions are the tasks' places in the run; :attr:`cands` holds each one's
    candidate node indices (a host may drop a tail with :meth:`truncate`).
    """

    def __init__(self, policy: PlacementPolicy, cache: LoadCache) -> None:
        if not decides_by_scores(policy):
            raise ValueError(f"policy {policy.name!r} does not decide by its scores alone")
        self.policy = policy
        self.cache = cache
        self.cands: list[list[int]] = []
        self._scores: list[list[float] | None] = []  # per position; None: score when due
        self._changed: set[int] = set()  # nodes whose cached row changed since scoring

    def reset(self, cands: list[list[int]], demands: Sequence[np.ndarray]) -> None:
        """Start a new run: these candidates (one list per task), scored now."""
        self.cands = cands
        self._scores = []
        self.score(0, demands)

    def score(self, first: int, demands: Sequence[np.ndarray]) -> None:
        """Score positions ``first`` on against the cache as it is now, in one call.

        ``demands[p]`` is the demand of position ``first + p``. Tasks with fewer
        candidates than the most (β sampled one) are scored when due.
        """
        cands = self.cands
        self._changed.clear()
        self._scores[first:] = [None] * (len(cands) - first)
        if len(cands) - first < 2:
            return
        d = max(len(c) for c in cands[first:])
        if d < 2 or d > MAX_STACKED_D:
            return
        full = [p for p in range(first, len(cands)) if len(cands[p]) == d]
        if len(full) < 2:
            return  # nothing worth a batched call: each is scored when due
        nodes = np.array([cands[p] for p in full], dtype=np.intp)
        demand = np.array([demands[p - first] for p in full])
        rows = self.policy.scores(demand[:, None, :], self.cache.view(nodes)).tolist()
        for p, row in zip(full, rows):
            self._scores[p] = row

    def decide(self, pos: int, demand: np.ndarray, rng: random.Random,
               before_tie: Callable[[int], None] | None = None) -> int:
        """The node for position ``pos``: the lowest score, a tie drawn from ``rng``.

        ``before_tie(pos)`` runs before that draw (the simulator rewinds its
        stream there). The chosen node counts as placed on: the host records the
        placement in the cache before deciding the next position.
        """
        cands = self.cands[pos]
        if len(cands) == 1:
            node = cands[0]
        else:
            scores = self._scores[pos]
            if scores is None or not self._changed.isdisjoint(cands):
                scores = self.policy.scores(demand, self.cache.view(cands)).tolist()
            best = min(scores)
            if scores.count(best) == 1:  # the usual case: no tie, no random draw
                node = cands[scores.index(best)]
            else:
                if before_tie is not None:
                    before_tie(pos)
                ties = [i for i, v in enumerate(scores) if v == best]
                node = cands[ties[rng.randrange(len(ties))]]
        self._changed.add(node)
        return node

    def truncate(self, positions: int) -> None:
        """Drop every position from ``positions`` on."""
        del self.cands[positions:]
        del self._scores[positions:]
