"""Deciding from the cached load (CACHED policies) or from nothing (NONE: random).

Each task is decided at once, in request order, so a batch's later tasks see
the earlier ones' cached deltas. A CACHED policy that decides by its scores
alone takes the tasks between two yields of the placer as one chunk, scored in
stacked calls (:mod:`dodoor.batch_scoring`), with the decisions one at a time
would give (``tests/daemons/test_placer_chunk.py``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from dodoor.batch_scoring import ChunkScores, worth_stacking
from dodoor.policies import PolicyKind
from dodoor.resources import Task
from scheduler.paths.base import CachedDeltas, Decisions, Prefs
from scheduler.view import ClusterView


class CachedPath:
    """The NONE and CACHED kinds' :class:`~scheduler.paths.base.PlacementPath`."""

    def __init__(self, policy: Any, view: ClusterView, deltas: CachedDeltas,
                 rng: random.Random) -> None:
        self.policy = policy
        self.view = view
        self.deltas = deltas
        self.rng = rng
        self.cached = policy.kind is PolicyKind.CACHED

    def begin(self, stack: bool) -> Decisions:
        chunked = self.cached and stack and worth_stacking(self.policy, self.view.n_nodes)
        return Decisions(pending=[] if chunked else None)

    def add(self, i: int, task: Task, demand: np.ndarray, decisions: Decisions) -> None:
        if decisions.pending is not None:
            decisions.pending.append((i, task, demand))
        else:
            decisions.add(i, task, self.decide(task, demand))

    def after(self, placed: int) -> None:
        pass

    def decide(self, task: Task, demand: np.ndarray) -> Prefs:
        """Preference order (node indices); a CACHED policy records its delta."""
        view, policy = self.view, self.policy
        cands = policy.candidates(task, demand, view.sampler, self.rng)
        chosen = policy.choose(task, demand, view.cache.view(cands), self.rng)
        if self.cached:
            self.deltas.record_at(chosen, task)
        return (chosen, *(c for c in cands if c != chosen))

    def flush(self, decisions: Decisions) -> None:
        """Decide (and record) the pending chunk in order, as :meth:`decide` one at a
        time would for the same candidates: all are sampled first, then scored a window
        at a time in stacked calls; ties draw from the rng in task order.

        Runs without a yield, so no snapshot changes the cache or node table meanwhile.
        """
        chunk = decisions.pending
        if not chunk:
            return
        policy, rng = self.policy, self.rng
        sampler = self.view.sampler
        cands = [policy.candidates(task, demand, sampler, rng) for _, task, demand in chunk]
        scores = ChunkScores(policy, self.view.cache)
        scores.reset(cands, [demand for _, _, demand in chunk])
        decide, record, add = scores.decide, self.deltas.record_at, decisions.add
        for pos, (i, task, _) in enumerate(chunk):
            chosen = decide(pos, rng)
            record(chosen, task)
            add(i, task, (chosen, *[c for c in cands[pos] if c != chosen]))
        chunk.clear()
