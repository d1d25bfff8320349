"""The omniscient bound (simulator only): earliest start, ties by the load score."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind
from dodoor.resources import Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random, load_score
from dodoor.settings import PolicySettings


class IdealPolicy:
    """Knows every node's true state and exact durations.

    Candidates are all feasible nodes; the host fills ``view.start_ms`` with the
    time the task would start on each (FIFO + backfill replayed with the known
    durations). The earliest start wins; ties go to the lowest load score.
    """

    kind = PolicyKind.ORACLE

    def __init__(self, settings: PolicySettings, name: str = "ideal") -> None:
        self.name = name
        self.settings = settings
        self._weights = settings.weight_vector()

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.feasible(demand).tolist()

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if view.start_ms is None:
            raise ValueError("the ideal policy needs view.start_ms from an oracle")
        earliest = float(view.start_ms.min())
        tied = np.flatnonzero(view.start_ms <= earliest + 1e-9)
        if tied.size == 1:
            return int(view.nodes[tied[0]])
        scores = load_score(
            demand, view.capacity[tied], view.load[tied], view.pending[tied],
            self._weights, self.settings.alpha,
        )
        return int(view.nodes[tied[argmin_random(scores, rng)]])
