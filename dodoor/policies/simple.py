"""Baselines without load information: random, and late-binding Sparrow."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.settings import PolicySettings


class RandomPolicy:
    """A uniformly random node that can hold the task. No messages."""

    kind = PolicyKind.NONE

    def __init__(self, settings: PolicySettings, name: str = "random") -> None:
        self.name = name
        self.settings = settings

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, 1, rng)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[0])


class SparrowPolicy:
    """Late binding: reserve on two nodes; the first with room confirms, the other is cancelled.

    The decision is made by the nodes' queues, so ``choose`` only serves hosts
    that must pick without reservations (it takes the first candidate).
    """

    kind = PolicyKind.RESERVE
    reservations = 2

    def __init__(self, settings: PolicySettings, name: str = "sparrow") -> None:
        self.name = name
        self.settings = settings

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, self.reservations, rng)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[0])
