"""Policies that score candidates from the scheduler's load cache."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import FIT_TOLERANCE, Task
from dodoor.score import argmin_random, expected_wait, load_score


class DodoorPolicy(SampledPolicy):
    """The paper's policy: d cached candidates, weighted load + duration score."""

    kind = PolicyKind.CACHED
    default_name = "dodoor"
    scores_decide = True  # decision_keys are the load scores

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return self.lowest_score(demand, view, None, rng)


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

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if len(view.nodes) == 1:
            return int(view.nodes[0])
        waits = expected_wait(demand, view.capacity, view.state, view.slots)
        return self.lowest_score(demand, view, np.flatnonzero(waits <= waits.min() + FIT_TOLERANCE), rng)

    def decision_keys(self, demand: np.ndarray, view: CandidateView) -> np.ndarray:
        """:meth:`choose` as keys: the load score among the least-wait candidates
        (scored among themselves), +inf for the others."""
        if demand.ndim == 1:  # one task: as a stack of one
            one = CandidateView(view.nodes[None], view.capacity[None], view.state[None],
                                view.slots[None], None,
                                None if view.sq_capacity is None else view.sq_capacity[None])
            return self.decision_keys(demand[None, None, :], one)[0]
        waits = expected_wait(demand, view.capacity, view.state, view.slots)
        among = waits <= waits.min(axis=-1, keepdims=True) + FIT_TOLERANCE
        scores = load_score(demand, view.capacity, view.load, view.pending, self._weights,
                            self.settings.alpha, view.sq_capacity, among)
        return np.where(among, scores, np.inf)
