"""Probing (power-of-d, Prequal-style one-shot): ask the candidates for their load, then choose.

Each task probes its candidates concurrently and chooses among those that
answered, with their replies as the load; the rest of the answering candidates
follow as failover. No answer (or a node that left the view meanwhile) sends
the task to random feasible nodes.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np

from dodoor.cache import CandidateView
from dodoor.resources import Task
from dodoor.service.peers import PeerClient
from dodoor.wire import Probe, ProbeReply
from scheduler.paths.base import PlacesAlone, target
from scheduler.paths.forwarder import Forwarder
from scheduler.placements import Placement
from scheduler.view import ClusterView


class ProbingPath(PlacesAlone):
    """The PROBE kind's :class:`~scheduler.paths.base.PlacementPath`."""

    def __init__(self, policy: Any, scheduler_id: str, view: ClusterView, peers: PeerClient,
                 forwarder: Forwarder, rng: random.Random) -> None:
        self.policy = policy
        self.scheduler_id = scheduler_id
        self.view = view
        self.peers = peers
        self.forwarder = forwarder
        self.rng = rng

    async def place(self, task: Task) -> Placement:
        """Probe ``task``'s candidates, choose from the replies, enqueue with failover."""
        demand = task.demand()
        view = self.view
        targets = [target(view, c)
                   for c in self.policy.candidates(task, demand, view.sampler, self.rng)]
        replies = await asyncio.gather(
            *(self.peers.send(url + "/internal/probe", Probe(self.scheduler_id),
                              expect=ProbeReply) for _, url in targets),
            return_exceptions=True,
        )
        answered = [(t, r) for t, r in zip(targets, replies) if isinstance(r, ProbeReply)]
        idx = [view.index.get(t[0]) for t, _ in answered]
        if not answered or any(i is None for i in idx):
            return await self.forwarder.forward(task, [], recorded=False)
        nodes = np.array(idx, dtype=np.intp)
        cache = view.cache
        candidate_view = CandidateView(nodes, cache.capacity[nodes],
                                       np.stack([r.state for _, r in answered]),
                                       cache.slots[nodes])
        chosen = target(view, self.policy.choose(task, demand, candidate_view, self.rng))
        prefs = [chosen] + [t for t, _ in answered if t != chosen]
        return await self.forwarder.forward(task, prefs, recorded=False)
