"""Policies that score candidates from the scheduler's load cache."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import Task
from dodoor.score import argmin_random, expected_wait


class DodoorPolicy(SampledPolicy):
    """The paper's policy: d cached candidates, weighted load + duration score."""

    kind = PolicyKind.CACHED
    default_name = "dodoor"
    # choose is the tie-random argmin of scores() over every candidate, so a host
    # may score tasks ahead in batches (dodoor.sim.lookahead)
    scores_decide = True

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

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if len(view.nodes) == 1:
            return int(view.nodes[0])
        waits = expected_wait(demand, view.capacity, view.state, view.slots)
        return self.lowest_score(demand, view, np.flatnonzero(waits <= waits.min() + 1e-9), rng)
