"""Power-of-two with live probes: queue length, or pending duration."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import Task
from dodoor.score import argmin_random


class PowerOfTwo(SampledPolicy):
    """Probe two feasible nodes, send the task to the one with fewer tasks."""

    kind = PolicyKind.PROBE
    default_name = "power-of-two"
    samples = 2

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.tasks

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[argmin_random(self._metric(view), rng)])


class PowerOfTwoDuration(PowerOfTwo):
    """Probe two feasible nodes, send the task to the one with less pending work."""

    default_name = "power-of-two-duration"

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.pending
