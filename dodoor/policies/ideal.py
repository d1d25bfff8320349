"""The omniscient bound (simulator only): earliest start, ties by the load score."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import FIT_TOLERANCE, Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random


class IdealPolicy(SampledPolicy):
    """Knows every node's true state and exact durations.

    Candidates are all feasible nodes; the host fills ``view.start_ms`` with the
    time the task would start on each (FIFO + backfill replayed with the known
    durations). The earliest start wins; ties go to the lowest load score.
    """

    kind = PolicyKind.ORACLE
    default_name = "ideal"

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        return sampler.feasible(demand).tolist()

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        if view.start_ms is None:
            raise ValueError("the ideal policy needs view.start_ms from an oracle")
        if view.nodes.size == 1:
            return int(view.nodes[0])
        # starts within the fit tolerance of the earliest tie
        among = np.flatnonzero(view.start_ms <= float(view.start_ms.min()) + FIT_TOLERANCE)
        return int(view.nodes[argmin_random(self.keys_among(demand, view, among), rng)])
