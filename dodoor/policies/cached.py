"""Policies that score candidates from the scheduler's load cache."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import FIT_TOLERANCE, Task
from dodoor.score import argmin_random, expected_wait, load_score
from dodoor.settings import PolicySettings


class DodoorPolicy(SampledPolicy):
    """The paper's policy: d cached candidates, weighted load + duration score."""

    kind = PolicyKind.CACHED
    default_name = "dodoor"
    scores_decide = True  # decision_keys are the load scores


class CachedPowerOfTwo(SampledPolicy):
    """Power-of-d choices on the cached task count (no probes)."""

    kind = PolicyKind.CACHED
    default_name = "cached-power-of-two"

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[argmin_random(view.tasks, rng)])


class ExpectedWaitPolicy(SampledPolicy):
    """Beyond the paper: d cached candidates, least expected wait, ties by the load score.

    Scoring from the cache costs no message per candidate, so d can grow at no
    message cost; the expected wait (see :func:`dodoor.score.expected_wait`)
    accounts for slots and for whether the task fits beside what is there.
    """

    kind = PolicyKind.CACHED
    default_name = "dodoor-wait"
    scores_decide = True  # see decision_keys

    def __init__(self, settings: PolicySettings, name: str | None = None) -> None:
        super().__init__(settings, name)
        # a random pick among the near-least waits is no argmin of keys: hosts must
        # call choose (dodoor.batch_scoring stacks only policies deciding by scores)
        self.scores_decide = settings.tolerance_ms < 0.0

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        """The least expected wait, ties by the load score; or, with ``tolerance_ms``
        set, any candidate whose wait is within it of the least, uniformly at random
        — schedulers sharing one stale snapshot then spread instead of all taking
        the few nodes that look emptiest in it."""
        tolerance = self.settings.tolerance_ms
        if tolerance < 0.0 or view.nodes.size == 1:
            return super().choose(task, demand, view, rng)
        waits = expected_wait(demand, view.capacity, view.state, view.slots).tolist()
        bound = min(waits) + max(tolerance, FIT_TOLERANCE)
        near = [i for i, w in enumerate(waits) if w <= bound]
        return int(view.nodes[near[rng.randrange(len(near))] if len(near) > 1 else near[0]])

    def decision_keys(self, demand: np.ndarray, view: CandidateView) -> np.ndarray:
        """The load score among the least-wait candidates (scored among themselves),
        +inf for the others. Waits within the fit tolerance of the least tie."""
        waits = expected_wait(demand, view.capacity, view.state, view.slots)
        if demand.ndim == 1:  # one task: score only the least-wait candidates
            return self.keys_among(demand, view, np.flatnonzero(waits <= waits.min() + FIT_TOLERANCE))
        among = waits <= waits.min(axis=-1, keepdims=True) + FIT_TOLERANCE
        scores = load_score(demand, view.capacity, view.load, view.pending, self._weights,
                            self.settings.alpha, view.sq_capacity, among)
        return np.where(among, scores, np.inf)
