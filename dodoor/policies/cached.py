"""Policies that score candidates from the scheduler's load cache."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, count_for
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random, expected_wait, load_score
from dodoor.settings import PolicySettings


class DodoorPolicy:
    """The paper's policy: d cached candidates, weighted load + duration score."""

    kind = PolicyKind.CACHED

    def __init__(self, settings: PolicySettings, name: str = "dodoor") -> None:
        self.name = name
        self.settings = settings
        self._weights = settings.weight_vector()

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, count_for(self.settings, rng), rng)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if len(view.nodes) == 1:
            return int(view.nodes[0])
        scores = load_score(
            demand, view.capacity, view.load, view.pending, self._weights, self.settings.alpha
        )
        return int(view.nodes[argmin_random(scores, rng)])


class CachedPowerOfTwo:
    """Power-of-d choices on the cached task count (no probes)."""

    kind = PolicyKind.CACHED

    def __init__(self, settings: PolicySettings, name: str = "cached-power-of-two") -> None:
        self.name = name
        self.settings = settings

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, count_for(self.settings, rng), rng)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[argmin_random(view.tasks, rng)])


class ExpectedWaitPolicy:
    """Beyond the paper: d cached candidates, least expected wait, ties by the load score.

    Scoring from the cache costs no message per candidate, so d can grow at no
    message cost; the expected wait (see :func:`dodoor.score.expected_wait`)
    accounts for slots and for whether the task fits beside what is there.
    """

    kind = PolicyKind.CACHED

    def __init__(self, settings: PolicySettings, name: str = "dodoor-wait") -> None:
        self.name = name
        self.settings = settings
        self._weights = settings.weight_vector()

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, count_for(self.settings, rng), rng)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if len(view.nodes) == 1:
            return int(view.nodes[0])
        waits = expected_wait(demand, view.capacity, view.state, view.slots)
        tied = np.flatnonzero(waits <= float(waits.min()) + 1e-9)
        if tied.size == 1:
            return int(view.nodes[tied[0]])
        scores = load_score(
            demand, view.capacity[tied], view.load[tied], view.pending[tied],
            self._weights, self.settings.alpha,
        )
        return int(view.nodes[tied[argmin_random(scores, rng)]])
