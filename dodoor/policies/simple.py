"""Baselines without load information: random, and late-binding Sparrow."""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import Task


class RandomPolicy(SampledPolicy):
    """A uniformly random node that can hold the task. No messages."""

    kind = PolicyKind.NONE
    default_name = "random"
    samples = 1

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[0])


class SparrowPolicy(RandomPolicy):
    """Late binding: reserve on two nodes; the first with room confirms, the other is cancelled.

    The decision is made by the nodes' queues, so ``choose`` only serves hosts
    that must pick without reservations (it takes the first candidate).
    """

    kind = PolicyKind.RESERVE
    default_name = "sparrow"
    samples = 2
