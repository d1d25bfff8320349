"""Placement paths that ask the agents first: probing, Sparrow reservations, Prequal's pool.

A mixin of :class:`scheduler.placer.Placer`, which owns the state these paths use
(policy, view, peers, reservations, placement log) and the shared forwarding.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import numpy as np

from dodoor.cache import CandidateView
from dodoor.clock import Clock
from dodoor.resources import Task
from dodoor.taskindex import BUSY, PLACED
from dodoor.wire import Cancel, Enqueue, Probe, ProbeReply, Reserve
from dodoor.service.peers import PeerClient, PeerError
from dodoor.service.http import BackgroundTasks
from scheduler.placements import Placement, PlacementLog
from scheduler.reservations import Reservations
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

if TYPE_CHECKING:
    from scheduler.placer import Target

log = logging.getLogger(__name__)
ASK_AGAIN = "ask again"  # a confirm without a verdict yet (503; the agent asks again)


class AskingPaths:
    """PROBE, RESERVE and POOL placement; see the ``Placer`` for the rest."""

    settings: SchedulerSettings
    view: ClusterView
    peers: PeerClient
    rng: random.Random
    clock: Clock
    policy: Any
    reservations: Reservations
    placed: PlacementLog
    background: BackgroundTasks
    placements: int
    _policy_generation: int

    # provided by the Placer
    _target: Callable[[int], Target]
    _forward: Callable[..., Awaitable[Placement]]
    _claim: Callable[..., Awaitable[dict]]

    async def _place_probed(self, task: Task) -> Placement:
        demand = task.demand()
        view = self.view
        cands = self.policy.candidates(task, demand, view.sampler, self.rng)
        targets = [self._target(c) for c in cands]
        replies = await asyncio.gather(
            *(self.peers.send(url + "/internal/probe", Probe(self.settings.scheduler_id),
                              expect=ProbeReply) for _, url in targets),
            return_exceptions=True,
        )
        answered = [(t, r) for t, r in zip(targets, replies) if isinstance(r, ProbeReply)]
        idx = [self.view.index.get(t[0]) for t, _ in answered]
        if not answered or any(i is None for i in idx):
            return await self._forward(task, [], recorded=False)
        nodes = np.array(idx, dtype=np.intp)
        cache = self.view.cache
        candidate_view = CandidateView(nodes, cache.capacity[nodes],
                                       np.stack([r.state for _, r in answered]),
                                       cache.slots[nodes])
        chosen = self.policy.choose(task, demand, candidate_view, self.rng)
        chosen_target = self._target(chosen)
        prefs = [chosen_target] + [t for t, _ in answered if t != chosen_target]
        return await self._forward(task, prefs, recorded=False)

    async def _place_reserved(self, task: Task) -> Placement:
        demand = task.demand()
        cands = self.policy.candidates(task, demand, self.view.sampler, self.rng)
        targets = [self._target(c) for c in cands]
        res = self.reservations.open(task, targets)
        reply_url = self.settings.url + "/internal/confirm"
        msg = Reserve(task, self.settings.scheduler_id, reply_url)
        sent = await asyncio.gather(
            *(self.peers.send(url + "/internal/reserve", msg) for _, url in targets),
            return_exceptions=True,
        )
        failed = {t[0] for t, r in zip(targets, sent) if isinstance(r, BaseException)}
        if failed:
            res.drop(failed)
        if not res.targets and res.bound is None:
            self.reservations.close(task.task_id)
            return await self._forward(task, [], recorded=False)
        try:
            await asyncio.wait_for(res.event.wait(), self.settings.sparrow_wait_ms / 1000.0)
        except asyncio.TimeoutError:
            pass
        return Placement(task.task_id, res.bound)

    async def confirm(self, node_id: str, task_id: str, task: Task | None) -> Enqueue | None | str:
        """A Sparrow confirm: the task for the first confirming node, None (409) for the
        others, ASK_AGAIN (503) when no verdict can be given yet.

        Agents journal their reservations, so a confirm may come after a restart of
        either side: for the node already bound the answer is yes again; for a
        reservation this scheduler no longer holds (it restarted) the load store's
        claim decides, so one node gets the task.
        """
        res = self.reservations.bind(task_id, node_id)
        if res is not None:
            for other, url in res.targets:
                if other != node_id:
                    self.background.spawn(self._cancel(url, task_id), name=f"cancel-{task_id}")
            return self._bound(task_id, node_id, res.task)
        placed = self.placed.get(task_id)
        if placed is not None or self.reservations.get(task_id) is not None or task is None:
            return self._bound(task_id, node_id, task) if placed == node_id and task else None
        outcome = (await self._claim([task])).get(task_id)
        if outcome is None or outcome[0] == BUSY:
            return ASK_AGAIN  # the store cannot say, or another scheduler may be placing it
        if outcome[0] == PLACED and outcome[1] != node_id:
            return None
        return self._bound(task_id, node_id, task)

    def _bound(self, task_id: str, node_id: str, task: Task) -> Enqueue:
        if self.placed.get(task_id) != node_id:
            self.placements += 1
        self.placed.put(task_id, node_id)
        self.peers.counter.sent("enqueue")  # the confirm's answer
        return Enqueue(task, self.settings.scheduler_id)

    def forget_dead_targets(self, dead: frozenset[str]) -> None:
        """Reservations held only by nodes the store declared dead (their agents end
        them ``lost`` when fenced) are placed again by enqueue, exactly once: the
        reservation is closed first, so no late confirm can bind it."""
        for task_id in self.reservations.ids():
            res = self.reservations.get(task_id)
            if res is None or res.bound is not None:
                continue
            res.drop(dead)
            if not res.targets:
                self.reservations.close(task_id)
                log.warning("every node holding the reservation of %s was declared dead; "
                            "placing it again", task_id)
                self.background.spawn(self._forward(res.task, [], recorded=False),
                                      name=f"replace-{task_id}")

    async def _cancel(self, url: str, task_id: str) -> None:
        try:
            await self.peers.send(url + "/internal/cancel", Cancel(task_id))
        except PeerError as exc:
            log.info("cancel of %s at %s failed: %s", task_id, url, exc)

    # -- Prequal probe pool ------------------------------------------------

    def _feed_pool(self, placed: int) -> None:
        """Probe ``probe_rate`` nodes per placed task; beyond the in-flight bound, skip."""
        for _ in range(placed):
            for idx in self.policy.probe_targets(self.view.sampler, self.rng):
                if len(self.background) >= self.settings.max_probe_inflight:
                    return
                node_id, url = self._target(idx)
                self.background.spawn(self._pool_probe(node_id, url), name=f"probe-{node_id}")

    async def _pool_probe(self, node_id: str, url: str) -> None:
        try:
            reply = await self.peers.send(url + "/internal/probe",
                                          Probe(self.settings.scheduler_id), expect=ProbeReply)
        except PeerError as exc:
            log.debug("pool probe of %s failed: %s", node_id, exc)
            return
        idx = self.view.index.get(node_id)
        if idx is not None and self._policy_generation == self.view.generation:
            self.policy.on_probe_reply(idx, reply.state, self.clock.now_ms())
