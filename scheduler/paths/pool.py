"""Prequal's probe pool: place from the pool at once, refill it by probing in the background.

Every placed task sends ``probe_rate`` probes (beyond ``max_probe_inflight`` in
flight, the rest are skipped); replies enter the policy's pool. Pool entries
name node indices, so a new node table starts a new policy, and replies for
the old table are dropped.
"""

from __future__ import annotations

import logging
import random

import numpy as np

from dodoor.clock import Clock
from dodoor.policies import make_policy_spec
from dodoor.resources import Task
from dodoor.service.http import BackgroundTasks
from dodoor.service.peers import PeerClient, PeerError
from dodoor.wire import Probe, ProbeReply
from scheduler.paths.base import Decisions
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)


class PoolPath:
    """The POOL kind's :class:`~scheduler.paths.base.PlacementPath`."""

    def __init__(self, settings: SchedulerSettings, view: ClusterView, peers: PeerClient,
                 background: BackgroundTasks, rng: random.Random, clock: Clock) -> None:
        self.settings = settings
        self.view = view
        self.peers = peers
        self.background = background
        self.rng = rng
        self.clock = clock
        self.policy = make_policy_spec(settings.policy, settings.policy_settings)
        self._generation = view.generation

    def begin(self, stack: bool) -> Decisions:
        return Decisions()

    def add(self, i: int, task: Task, demand: np.ndarray, decisions: Decisions) -> None:
        view = self.view
        if self._generation != view.generation:
            self.policy = make_policy_spec(self.settings.policy, self.settings.policy_settings)
            self._generation = view.generation
        chosen = self.policy.place_from_pool(task, demand, view.sampler, self.clock.now_ms(),
                                             self.rng)
        decisions.add(i, task, (chosen,))

    def flush(self, decisions: Decisions) -> None:
        pass

    def after(self, placed: int) -> None:
        """Probe ``probe_rate`` nodes per placed task; beyond the in-flight bound, skip."""
        for _ in range(placed):
            for idx in self.policy.probe_targets(self.view.sampler, self.rng):
                if len(self.background) >= self.settings.max_probe_inflight:
                    return
                node_id, url = self.view.node_ids[idx], self.view.urls[idx]
                self.background.spawn(self._probe(node_id, url), name=f"probe-{node_id}")

    async def _probe(self, node_id: str, url: str) -> None:
        try:
            reply = await self.peers.send(url + "/internal/probe",
                                          Probe(self.settings.scheduler_id), expect=ProbeReply)
        except PeerError as exc:
            log.debug("pool probe of %s failed: %s", node_id, exc)
            return
        idx = self.view.index.get(node_id)
        if idx is not None and self._generation == self.view.generation:
            self.policy.on_probe_reply(idx, reply.state, self.clock.now_ms())
