"""Policies that score candidates from the scheduler's load cache."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, count_for
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random, load_score
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
