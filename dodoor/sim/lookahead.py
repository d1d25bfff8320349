"""Scoring a scheduler's next tasks in one numpy call, with the result of scoring one at a time.

A cache-based policy decides each task from the scheduler's load cache, which
changes only when the scheduler places a task (its own delta on that node) or
installs a snapshot. The simulator knows the arrivals ahead, so it samples
the candidates of a scheduler's next tasks, scores them all against the cache
in one batched :func:`dodoor.score.load_score` call, and at each arrival uses
the precomputed scores — unless a candidate's row has changed since (the
scheduler placed a task there: that task is scored on its own, as usual). A
snapshot rescores the rest of the batch in one call. numpy's fixed cost per
call, not the arithmetic, dominates scoring two candidates, so this removes
most of it.

The random stream stays the one the task-at-a-time path draws: sampling is
drawn in task order (and does not depend on the cache), and a tie — the only
other draw — needs the stream as it was right after that task's sampling.
Then the stream is rewound to the batch start, the decided tasks' sampling
replayed and the rest of the batch dropped. Runs are therefore identical to
scoring task by task (the batched score adds in the same order for d <= 8).

Only policies whose ``choose`` is the tie-random argmin of
:meth:`~dodoor.policies.base.SampledPolicy.scores` over every candidate
(``scores_decide``) can be decided this way.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from dodoor.cache import LoadCache
from dodoor.policies import PlacementPolicy
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler

MAX_BATCH = 32  # a tie wastes the sampling of the rest of its batch; ties are a few %
MIN_BATCH = 2


class Lookahead:
    """Decides one scheduler's tasks ``first, first + step, ...`` in batches."""

    def __init__(self, policy: PlacementPolicy, cache: LoadCache, sampler: FeasibleSampler,
                 rng: random.Random, tasks: Sequence[Task], demands: Sequence[np.ndarray],
                 step: int) -> None:
        if not getattr(policy, "scores_decide", False):
            raise ValueError(f"policy {policy.name!r} does not decide by its scores alone")
        self.policy = policy
        self.cache = cache
        self.sampler = sampler
        self.rng = rng
        self.tasks = tasks
        self.demands = demands
        self.step = step
        self.size = MIN_BATCH  # adapts: doubles after a batch without a tie, halves at a tie
        self._start = 0  # trace index of the batch's first task
        self._cands: list[list[int]] = []  # per batch position
        self._scores: list[list[float] | None] = []  # per position; None: score when due
        self._decided = 0  # positions decided so far
        self._rng_state: object = None  # the stream at the batch start
        self._changed: set[int] = set()  # nodes whose cached row changed since scoring
        self._clean = True  # no tie in this batch
        self.batches = 0
        self.rewinds = 0

    def invalidate(self) -> None:
        """The cache was replaced (a snapshot): rescore the batch's remaining tasks.

        Their candidates stand — sampling does not depend on the cache — so
        the stream needs no rewind.
        """
        if self._decided < len(self._cands):
            self._score(self._decided)

    def decide(self, index: int) -> int:
        """The node for trace task ``index`` (this scheduler's next task)."""
        pos = self._decided
        if pos >= len(self._cands) or index != self._start + pos * self.step:
            self._fill(index)
            pos = 0
        self._decided = pos + 1
        cands = self._cands[pos]
        if len(cands) == 1:
            node = cands[0]
        else:
            scores = self._scores[pos]
            if scores is None or not self._changed.isdisjoint(cands):
                view = self.cache.view(cands)
                scores = self.policy.scores(self.demands[index], view).tolist()
            best = min(scores)
            if scores.count(best) == 1:
                node = cands[scores.index(best)]
            else:
                # a tie draws from the stream right after this task's sampling
                self._rewind(pos + 1)
                self._clean = False
                self.size = max(self.size // 2, MIN_BATCH)
                ties = [i for i, v in enumerate(scores) if v == best]
                node = cands[ties[self.rng.randrange(len(ties))]]
        self._changed.add(node)  # its placement changes the node's cached row
        if self._decided == len(self._cands) and self._clean:
            self.size = min(2 * self.size, MAX_BATCH)
        return node

    def _fill(self, index: int) -> None:
        """Sample the next ``size`` tasks from ``index`` on and score them in one call."""
        self.batches += 1
        self._start = index
        self._decided = 0
        self._clean = True
        self._rng_state = self.rng.getstate()
        last = min(len(self.tasks), index + self.size * self.step)
        batch = range(index, last, self.step)
        self._cands = [self._sample(j) for j in batch]
        self._score(0)

    def _score(self, first: int) -> None:
        """Score the batch's tasks from position ``first`` on in one call."""
        self._changed.clear()
        self._scores[first:] = [None] * (len(self._cands) - first)
        d = max(len(c) for c in self._cands[first:])
        full = [p for p in range(first, len(self._cands)) if len(self._cands[p]) == d]
        if d < 2 or len(full) < 2:
            return  # nothing worth a batched call: each is scored when due
        nodes = np.array([self._cands[p] for p in full], dtype=np.intp)
        demand = np.array([self.demands[self._start + p * self.step] for p in full])
        view = self.cache.view(nodes)
        for p, row in zip(full, self.policy.scores(demand[:, None, :], view).tolist()):
            self._scores[p] = row

    def _sample(self, j: int) -> list[int]:
        return self.policy.candidates(self.tasks[j], self.demands[j], self.sampler, self.rng)

    def _rewind(self, positions: int) -> None:
        """Reset the stream to just after the sampling of the batch's first
        ``positions`` tasks and drop the rest of the batch."""
        self.rewinds += 1
        self.rng.setstate(self._rng_state)
        for p in range(positions):
            self._sample(self._start + p * self.step)
        del self._cands[positions:]
        del self._scores[positions:]
