"""Power-of-two with live probes: queue length, or pending duration."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random
from dodoor.settings import PolicySettings


class PowerOfTwo:
    """Probe two feasible nodes, send the task to the one with fewer tasks."""

    kind = PolicyKind.PROBE
    probes = 2

    def __init__(self, settings: PolicySettings, name: str = "power-of-two") -> None:
        self.name = name
        self.settings = settings

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.sample(demand, self.probes, rng)

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.tasks

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[argmin_random(self._metric(view), rng)])


class PowerOfTwoDuration(PowerOfTwo):
    """Probe two feasible nodes, send the task to the one with less pending work."""

    def __init__(self, settings: PolicySettings, name: str = "power-of-two-duration") -> None:
        super().__init__(settings, name)

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.pending
