"""Scoring a scheduler's next tasks in one numpy call, with the result of scoring one at a time.

The simulator knows the arrivals ahead, so it samples the candidates of a
scheduler's next tasks, scores them in one call and decides each at its
arrival (:class:`dodoor.batch_scoring.ChunkScores`: a task whose candidate
was placed on since is scored again). A snapshot rescores the rest of
the batch in one call.

The random stream stays the one the task-at-a-time path draws: sampling is
drawn in task order (and does not depend on the cache), and a tie — the only
other draw — needs the stream as it was right after that task's sampling.
Then the stream is rewound to the batch start, the decided tasks' sampling
replayed and the rest of the batch dropped. Runs are therefore identical to
scoring task by task.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from dodoor.batch_scoring import ChunkScores
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
        self.chunk = ChunkScores(policy, cache)  # refuses a policy not deciding by scores
        self.policy = policy
        self.sampler = sampler
        self.rng = rng
        self.tasks = tasks
        self.demands = demands
        self.step = step
        self.size = MIN_BATCH  # adapts: doubles after a batch without a tie, halves at a tie
        self._start = 0  # trace index of the batch's first task
        self._decided = 0  # positions decided so far
        self._rng_state: object = None  # the stream at the batch start
        self._clean = True  # no tie in this batch
        self.batches = 0
        self.rewinds = 0

    def invalidate(self) -> None:
        """The cache was replaced (a snapshot): rescore the batch's remaining tasks.

        Their candidates stand — sampling does not depend on the cache — so
        the stream needs no rewind.
        """
        if self._decided < len(self.chunk.cands):
            self._score(self._decided)

    def decide(self, index: int) -> int:
        """The node for trace task ``index`` (this scheduler's next task)."""
        pos = self._decided
        if pos >= len(self.chunk.cands) or index != self._start + pos * self.step:
            self._fill(index)
            pos = 0
        self._decided = pos + 1
        node = self.chunk.decide(pos, self.rng, self._tie)
        if self._decided == len(self.chunk.cands) and self._clean:
            self.size = min(2 * self.size, MAX_BATCH)
        return node

    def _tie(self, pos: int) -> None:
        """A tie draws from the stream right after this task's sampling."""
        self._rewind(pos + 1)
        self._clean = False
        self.size = max(self.size // 2, MIN_BATCH)

    def _fill(self, index: int) -> None:
        """Sample the next ``size`` tasks from ``index`` on and score them in one call."""
        self.batches += 1
        self._start = index
        self._decided = 0
        self._clean = True
        self._rng_state = self.rng.getstate()
        last = min(len(self.tasks), index + self.size * self.step)
        batch = range(index, last, self.step)
        cands = [self._sample(j) for j in batch]
        self.chunk.reset(cands, [self.demands[j] for j in batch])

    def _score(self, first: int) -> None:
        """Score the batch's tasks from position ``first`` on in one call."""
        self.chunk.rescore_from(first)

    def _sample(self, j: int) -> list[int]:
        return self.policy.candidates(self.tasks[j], self.demands[j], self.sampler, self.rng)

    def _rewind(self, positions: int) -> None:
        """Reset the stream to just after the sampling of the batch's first
        ``positions`` tasks and drop the rest of the batch."""
        self.rewinds += 1
        self.rng.setstate(self._rng_state)
        for p in range(positions):
            self._sample(self._start + p * self.step)
        self.chunk.truncate(positions)
