"""Power-of-two with live probes, as strong as the reference and as in the paper.

``power-of-two`` and ``power-of-two-duration`` choose as Sparrow's reference
simulator does: the candidate with more free slots first, and only among
those with as many free slots, the shorter queue (tasks beyond the slots: a
4-slot node with 5 tasks queues as many as a 1-slot node with 2) or the less
pending work. The paper's variants compare the one metric alone and ignore
slots, so a 4-slot node with 3 tasks loses to a 1-slot node with 2:
``power-of-two-count`` (task count) and ``power-of-two-pending`` (pending
duration). docs/simulator.md says which is which and what each costs.
"""

from __future__ import annotations

import random

import numpy as np

from dodoor.cache import CandidateView
from dodoor.policies.base import PolicyKind, SampledPolicy
from dodoor.resources import Task
from dodoor.score import argmin_random


def free_slots(view: CandidateView) -> np.ndarray:
    """Slots not taken by a queued or running task on each candidate (never below 0)."""
    return np.maximum(view.slots - view.tasks, 0.0)


def argmin_lexical(first: np.ndarray, then: np.ndarray, rng: random.Random) -> int:
    """Index of the lowest ``first``, ties by the lowest ``then``, further ties at random."""
    among = np.flatnonzero(first <= first.min())
    if among.size == 1:
        return int(among[0])
    return int(among[argmin_random(then[among], rng)])


class PowerOfTwo(SampledPolicy):
    """Probe two feasible nodes: the one with more free slots, then the shorter queue."""

    kind = PolicyKind.PROBE
    default_name = "power-of-two"
    samples = 2

    def _metric(self, view: CandidateView) -> np.ndarray:
        """What breaks a tie in free slots (lower wins): the queue length."""
        return np.maximum(view.tasks - view.slots, 0.0)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        pos = argmin_lexical(-free_slots(view), self._metric(view), rng)
        return int(view.nodes[pos])


class PowerOfTwoDuration(PowerOfTwo):
    """Probe two feasible nodes: the one with more free slots, then less pending work."""

    default_name = "power-of-two-duration"

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.pending


class PowerOfTwoCount(PowerOfTwo):
    """The paper's variant: probe two feasible nodes, fewer tasks wins (slots ignored)."""

    default_name = "power-of-two-count"

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.tasks

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        return int(view.nodes[argmin_random(self._metric(view), rng)])


class PowerOfTwoPending(PowerOfTwoCount):
    """The paper's variant: probe two feasible nodes, less pending work wins (slots ignored)."""

    default_name = "power-of-two-pending"

    def _metric(self, view: CandidateView) -> np.ndarray:
        return view.pending
