"""Deciding from the cached load (CACHED policies) or from nothing (NONE: random).

Each task is decided at once, in request order, so a batch's later tasks see
the earlier ones' cached deltas. A CACHED policy that decides by its scores
alone takes the tasks between two yields of the placer as one chunk, scored in
stacked calls (:mod:`dodoor.batch_scoring`), with the decisions one at a time
would give (``tests/daemons/test_placer_chunk.py``).

With the packing fallback (:mod:`scheduler.fallback`), a task none of whose
candidates has room by the cache is not decided here: its policy's choice is
kept as the fallback's last resort, no delta is recorded, and a coroutine that
awaits the fallback's window places it.
"""

from __future__ import annotations

import random
from typing import Any, Awaitable

import numpy as np

from dodoor.batch_scoring import ChunkScores, worth_stacking
from dodoor.packing import node_has_room, view_has_room
from dodoor.policies import PolicyKind
from dodoor.resources import Task
from scheduler.fallback import FallbackWindow
from scheduler.paths.base import CachedDeltas, Decisions, Prefs, target
from scheduler.paths.forwarder import Forwarder
from scheduler.placements import Placement
from scheduler.view import ClusterView


class CachedPath:
    """The NONE and CACHED kinds' :class:`~scheduler.paths.base.PlacementPath`."""

    def __init__(self, policy: Any, view: ClusterView, deltas: CachedDeltas,
                 rng: random.Random, fallback: FallbackWindow | None = None,
                 forwarder: Forwarder | None = None) -> None:
        self.policy = policy
        self.view = view
        self.deltas = deltas
        self.rng = rng
        self.cached = policy.kind is PolicyKind.CACHED
        if fallback is not None and (not self.cached or forwarder is None):
            raise ValueError("the packing fallback needs a CACHED policy and a forwarder")
        self.fallback = fallback
        self.forwarder = forwarder

    def begin(self, stack: bool) -> Decisions:
        chunked = self.cached and stack and worth_stacking(self.policy, self.view.n_nodes)
        return Decisions(pending=[] if chunked else None)

    def add(self, i: int, task: Task, demand: np.ndarray,
            decisions: Decisions) -> Awaitable[Placement] | None:
        if decisions.pending is not None:
            decisions.pending.append((i, task, demand))
            return None
        if self.fallback is None:
            decisions.add(i, task, self.decide(task, demand))
            return None
        view, policy = self.view, self.policy
        cands = policy.candidates(task, demand, view.sampler, self.rng)
        candidate_view = view.cache.view(cands)
        chosen = policy.choose(task, demand, candidate_view, self.rng)
        prefs = (chosen, *(c for c in cands if c != chosen))
        if not self._room(chosen, cands, demand, candidate_view):
            return self._packed(task, demand, prefs)
        self.deltas.record_at(chosen, task)
        decisions.add(i, task, prefs)
        return None

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
        fallback = self.fallback
        for pos, (i, task, demand) in enumerate(chunk):
            chosen = decide(pos, rng)
            prefs = (chosen, *[c for c in cands[pos] if c != chosen])
            if fallback is not None and not self._room(chosen, cands[pos], demand):
                decisions.alone.append((i, self._packed(task, demand, prefs)))
                continue
            record(chosen, task)
            add(i, task, prefs)
        chunk.clear()

    def _room(self, chosen: int, cands, demand: np.ndarray, candidate_view=None) -> bool:
        """Whether some candidate has room for ``demand`` by the cache (the chosen one
        is asked first: when it has room, no view is built)."""
        cache = self.view.cache
        if node_has_room(cache.capacity, cache.state, cache.slots, chosen, demand):
            return True
        return view_has_room(cache.view(cands) if candidate_view is None else candidate_view,
                             demand)

    def _packed(self, task: Task, demand: np.ndarray, prefs: Prefs) -> Awaitable[Placement]:
        """Place ``task`` through the fallback's window: the solver's node first, then its
        policy's choice and candidates, by the forwarder's usual enqueue and failover."""
        # node indices as targets now: the coroutine runs after a yield, when a snapshot
        # may have replaced the node table
        return self._pack(task, demand, [target(self.view, c) for c in prefs])

    async def _pack(self, task: Task, demand: np.ndarray, policy_order: list) -> Placement:
        assert self.fallback is not None and self.forwarder is not None
        verdict = await self.fallback.place(task, demand)
        order = policy_order if verdict.target is None else (
            [verdict.target] + [t for t in policy_order if t != verdict.target])
        placement = await self.forwarder.forward(task, order, recorded=False)
        placement.reason = verdict.reason
        return placement
