"""Scoring a run of tasks' candidates in one numpy call, deciding as one at a time would.

A cache-based policy decides each task from the scheduler's load cache, which
changes only when the scheduler places a task (its own delta on that node) or
installs a snapshot. A host that has a run of tasks to decide — the live
scheduler's batch between two yields, the simulator's lookahead — samples
their candidates first, scores them against the cache in stacked
:func:`dodoor.score.load_score` calls (numpy's fixed cost per call, not the
arithmetic, dominates scoring a few candidates), and then decides them in
order from those scores. A task whose candidates include a node placed on
since its scoring (its cached row changed) is scored again, with the next
few tasks in one call, so every decision is the one scoring that task alone
against the cache as it is then would give. After a snapshot the host calls
:meth:`ChunkScores.rescore_from` for the tasks not yet decided.

Only policies whose ``choose`` is the tie-random argmin of
:meth:`~dodoor.policies.base.SampledPolicy.decision_keys` over every candidate
(``scores_decide``) can be decided this way; the stacked keys equal the
one-task ones bit for bit (:func:`dodoor.score.load_score` totals stacked rows
in the same order).
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np

from dodoor.cache import LoadCache
from dodoor.policies import PlacementPolicy

MIN_WINDOW = 1  # a task that shares a node with its predecessor is rescored alone
# Stacking pays while a run of tasks rarely samples a node placed on just before:
# with d candidates of N nodes that takes about N / d tasks. Below this many
# (measured: dodoor-wait d=16 on 16 nodes ran slower stacked) tasks are decided alone.
MIN_NODES_PER_CANDIDATE = 4


def decides_by_scores(policy: PlacementPolicy) -> bool:
    """Whether ``policy``'s choice is the tie-random argmin of its decision keys."""
    return bool(getattr(policy, "scores_decide", False))


def worth_stacking(policy: PlacementPolicy, n_nodes: int) -> bool:
    """Whether to decide ``policy``'s tasks in stacked runs on a cluster of ``n_nodes``."""
    return decides_by_scores(policy) and n_nodes >= MIN_NODES_PER_CANDIDATE * policy.settings.d


class ChunkScores:
    """The candidates of a run of tasks, their stacked scores, and the nodes placed on since.

    Positions are the tasks' places in the run; :attr:`cands` holds each one's
    candidate node indices (a host may drop a tail with :meth:`truncate`).

    A scoring call covers a window of positions. A task whose candidate was
    placed on since is not scored alone but starts the next window with it:
    on a small cluster nearly every task shares a node with one placed on a
    few tasks before, and one call for several tasks still costs less than
    one for each. The window follows how long scores stayed valid: twice the
    last such run, at least ``MIN_WINDOW``.
    """

    def __init__(self, policy: PlacementPolicy, cache: LoadCache) -> None:
        if not decides_by_scores(policy):
            raise ValueError(f"policy {policy.name!r} does not decide by its scores alone")
        self.policy = policy
        self.cache = cache
        self.cands: list[list[int]] = []
        self.calls = 0  # stacked scoring calls made
        self._demands: Sequence[np.ndarray] = []
        self._scores: list[list[float] | None] = []  # per position; None: score alone
        self._changed: set[int] = set()  # nodes whose cached row changed since scoring
        self._first = 0  # the window scored last: [_first, _stop)
        self._stop = 0
        self._window = MIN_WINDOW
        self._d = 0
        self._nodes: np.ndarray | None = None  # (run, d) when every task has d candidates
        self._demand_rows: np.ndarray | None = None  # (run or 1, 1, R)

    def reset(self, cands: list[list[int]], demands: Sequence[np.ndarray]) -> None:
        """Start a new run: ``cands[p]`` and ``demands[p]`` of each position ``p``.

        The first window is the whole run (no placement has changed the cache yet).
        """
        self.cands = cands
        self._demands = demands
        self._scores = [None] * len(cands)
        d = self._d = max(map(len, cands), default=0)  # the candidates of a full sample
        self._window = max(len(cands), MIN_WINDOW)
        # the arrays every window slices, built once when every task has d candidates
        # (β = 1 samples fewer); tasks sharing one demand array broadcast it
        self._nodes = self._demand_rows = None
        if len(cands) > 1 and d >= 2 and all(len(c) == d for c in cands):
            self._nodes = np.array(cands, dtype=np.intp)
            one = demands[0]
            if all(dm is one for dm in demands):
                self._demand_rows = np.asarray(one)[None, None, :]
            else:
                self._demand_rows = np.array(demands)[:, None, :]
        self.rescore_from(0)

    def rescore_from(self, first: int) -> None:
        """Score the window from position ``first`` on against the cache as it is now.

        One call for the positions with the run's most candidates; others (β
        sampled fewer) are scored alone when due. Call it again after the cache
        was replaced (a snapshot).
        """
        cands = self.cands
        self._changed.clear()
        stop = min(len(cands), first + self._window)
        self._first, self._stop = first, stop
        self._scores[first:stop] = [None] * (stop - first)
        d = self._d
        if stop - first < 2 or d < 2:
            return
        if self._nodes is not None:
            self.calls += 1
            demand = self._demand_rows
            if demand.shape[0] > 1:
                demand = demand[first:stop]
            view = self.cache.view(self._nodes[first:stop])
            self._scores[first:stop] = self.policy.decision_keys(demand, view).tolist()
            return
        full = [p for p in range(first, stop) if len(cands[p]) == d]
        if len(full) < 2:
            return  # nothing worth a batched call: each is scored when due
        self.calls += 1
        nodes = np.array([cands[p] for p in full], dtype=np.intp)
        demands = self._demands
        demand = np.array([demands[p] for p in full])
        rows = self.policy.decision_keys(demand[:, None, :], self.cache.view(nodes)).tolist()
        for p, row in zip(full, rows):
            self._scores[p] = row

    def decide(self, pos: int, rng: random.Random,
               before_tie: Callable[[int], None] | None = None) -> int:
        """The node for position ``pos``: the lowest score, a tie drawn from ``rng``.

        ``before_tie(pos)`` runs before that draw (the simulator rewinds its
        stream there). The chosen node counts as placed on: the host records
        the placement in the cache before deciding the next position.
        """
        cands = self.cands[pos]
        if len(cands) == 1:
            node = cands[0]
        else:
            if pos >= self._stop or not self._changed.isdisjoint(cands):
                # the scores stayed valid for pos - _first positions
                self._window = max(2 * (pos - self._first), MIN_WINDOW)
                self.rescore_from(pos)
            scores = self._scores[pos]
            if scores is None:
                scores = self.policy.decision_keys(self._demands[pos],
                                            self.cache.view(cands)).tolist()
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
        self._stop = min(self._stop, positions)
