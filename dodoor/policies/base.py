"""The placement-policy seam shared by the live scheduler and the simulator.

A policy decides; its host (simulator or daemon) gathers the information the
policy's :class:`PolicyKind` calls for and pays the messages that costs:

* ``NONE``    — no information: ``choose`` takes the single sampled candidate.
* ``CACHED``  — the host builds the view from its :class:`~dodoor.cache.LoadCache`
  and records the placement there (own delta, k-batching).
* ``PROBE``   — the host probes each candidate and builds the view from replies.
* ``RESERVE`` — late binding (Sparrow): the host reserves on every candidate and
  the first node with room confirms; ``choose`` is not called.
* ``POOL``    — asynchronous probe pool (Prequal): see :class:`PoolPolicy`.
* ``ORACLE``  — simulator only: candidates are every feasible node and the
  view carries each node's true state and the task's earliest start.
"""

from __future__ import annotations

import enum
import random
from typing import Protocol, runtime_checkable

import numpy as np

from dodoor.cache import PENDING, CandidateView
from dodoor.resources import N_RESOURCES, Task
from dodoor.sampling import FeasibleSampler
from dodoor.score import argmin_random, load_score
from dodoor.settings import PolicySettings


class PolicyKind(enum.Enum):
    NONE = "none"
    CACHED = "cached"
    PROBE = "probe"
    RESERVE = "reserve"
    POOL = "pool"
    ORACLE = "oracle"


@runtime_checkable
class PlacementPolicy(Protocol):
    """Chooses a node for a task from sampled candidates and what is known of them."""

    name: str
    kind: PolicyKind
    settings: PolicySettings

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        """Node indices to look at (and, for PROBE/RESERVE, to message)."""
        ...

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        """The chosen node index, one of ``view.nodes``."""
        ...


@runtime_checkable
class PoolPolicy(PlacementPolicy, Protocol):
    """A policy that keeps its own pool of asynchronous probe results."""

    def place_from_pool(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, now_ms: float,
        rng: random.Random,
    ) -> int:
        """Choose from the pool (falling back to a random feasible node)."""
        ...

    def probe_targets(self, sampler: FeasibleSampler, rng: random.Random) -> list[int]:
        """Nodes to probe now, after a placement."""
        ...

    def on_probe_reply(self, node: int, state: np.ndarray, now_ms: float) -> None:
        """Record a probe reply (state in STATE_COLUMNS order)."""
        ...


def count_for(settings: PolicySettings, rng: random.Random) -> int:
    """How many candidates to sample: d, or only one with probability 1 − β."""
    if settings.d <= 1 or settings.beta >= 1.0 or rng.random() < settings.beta:
        return settings.d
    return 1


class SampledPolicy:
    """Shared plumbing of the concrete policies.

    A name, the settings, and ``candidates`` = ``samples`` feasible nodes
    uniformly at random — by default d of them under the β rule. Subclasses
    set ``kind`` and ``default_name``, and either ``decision_keys`` (with
    ``scores_decide``; ``choose`` is derived from it) or their own ``choose``.
    """

    kind: PolicyKind
    default_name: str
    samples: int | None = None  # a fixed candidate count; None means d (with β)
    # True: choose is the tie-random argmin of decision_keys() over all candidates,
    # so a host may decide a run of tasks from stacked keys (dodoor.batch_scoring)
    scores_decide = False

    def __init__(self, settings: PolicySettings, name: str | None = None) -> None:
        self.name = name or self.default_name
        self.settings = settings
        self._weights = settings.weight_vector()

    def candidates(
        self, task: Task, demand: np.ndarray, sampler: FeasibleSampler, rng: random.Random
    ) -> list[int]:
        count = self.samples if self.samples is not None else count_for(self.settings, rng)
        return sampler.sample(demand, count, rng)

    def scores(self, demand: np.ndarray, view: CandidateView) -> np.ndarray:
        """The load score of every candidate in ``view`` (stacked views: of every task)."""
        return load_score(demand, view.capacity, view.load, view.pending, self._weights,
                          self.settings.alpha, view.sq_capacity)

    def decision_keys(self, demand: np.ndarray, view: CandidateView) -> np.ndarray:
        """Values whose tie-random argmin is the choice (policies with ``scores_decide``).

        The load scores here; a policy that filters first gives +inf to what it
        left out. Stacked views give one row per task.
        """
        return self.scores(demand, view)

    def choose(
        self, task: Task, demand: np.ndarray, view: CandidateView, rng: random.Random
    ) -> int:
        """The candidate with the lowest :meth:`decision_keys`, ties at random."""
        if view.nodes.size == 1:
            return int(view.nodes[0])
        return int(view.nodes[argmin_random(self.decision_keys(demand, view), rng)])

    def keys_among(self, demand: np.ndarray, view: CandidateView,
                   among: np.ndarray) -> np.ndarray:
        """One task's load scores of view positions ``among``, scored among themselves;
        +inf for the others."""
        keys = np.full(view.nodes.shape, np.inf)
        state = view.state[among]
        sq_capacity = None if view.sq_capacity is None else view.sq_capacity[among]
        keys[among] = load_score(demand, view.capacity[among], state[:, :N_RESOURCES],
                                 state[:, PENDING], self._weights, self.settings.alpha,
                                 sq_capacity)
        return keys
