"""Sparrow late binding: reserve on the candidates, give the task to the first to confirm.

Each task is reserved on its candidates (:mod:`scheduler.reservations` keeps
the book); the agent whose reservation reaches the head of its queue confirms,
and the first confirm gets the task in its reply while the others are
cancelled. Agents journal their reservations, so confirms may arrive after a
restart of either side (:meth:`ReservationPath.confirm`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable

from dodoor.resources import Task
from dodoor.service.http import BackgroundTasks
from dodoor.service.peers import PeerClient, PeerError
from dodoor.taskindex import BUSY, PLACED
from dodoor.wire import Cancel, Enqueue, Reserve
from scheduler.paths.base import Counters, PlacesAlone, target
from scheduler.paths.forwarder import Forwarder
from scheduler.placements import Placement, PlacementLog
from scheduler.reservations import Reservations
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
ASK_AGAIN = "ask again"  # a confirm without a verdict yet (503; the agent asks again)
# id -> (outcome, node, owner) from the load store's claims (scheduler.claims)
Claim = Callable[[list[Task]], Awaitable[dict[str, tuple[str, str, str]]]]


class ReservationPath(PlacesAlone):
    """The RESERVE kind's :class:`~scheduler.paths.base.PlacementPath`, and the
    answer to every agent's confirm."""

    def __init__(self, policy: Any, settings: SchedulerSettings, view: ClusterView,
                 peers: PeerClient, reservations: Reservations, placed: PlacementLog,
                 forwarder: Forwarder, claim: Claim, counters: Counters,
                 background: BackgroundTasks, rng: random.Random) -> None:
        self.policy = policy
        self.settings = settings
        self.view = view
        self.peers = peers
        self.reservations = reservations
        self.placed = placed
        self.forwarder = forwarder
        self.claim = claim
        self.counters = counters
        self.background = background
        self.rng = rng

    async def place(self, task: Task) -> Placement:
        """Reserve ``task`` on its candidates; its placement once one confirms (or the
        wait runs out: then it stays reserved, with no node yet)."""
        demand = task.demand()
        targets = [target(self.view, c)
                   for c in self.policy.candidates(task, demand, self.view.sampler, self.rng)]
        res = self.reservations.open(task, targets)
        msg = Reserve(task, self.settings.scheduler_id, self.settings.url + "/internal/confirm")
        sent = await asyncio.gather(
            *(self.peers.send(url + "/internal/reserve", msg) for _, url in targets),
            return_exceptions=True,
        )
        failed = {t[0] for t, r in zip(targets, sent) if isinstance(r, BaseException)}
        if failed:
            res.drop(failed)
        if not res.targets and res.bound is None:
            self.reservations.close(task.task_id)
            return await self.forwarder.forward(task, [], recorded=False)
        try:
            await asyncio.wait_for(res.event.wait(), self.settings.sparrow_wait_ms / 1000.0)
        except asyncio.TimeoutError:
            pass
        return Placement(task.task_id, res.bound)

    async def confirm(self, node_id: str, task_id: str, task: Task | None) -> Enqueue | None | str:
        """A Sparrow confirm: the task for the first confirming node, None (409) for the
        others, ASK_AGAIN (503) when no verdict can be given yet.

        For the node already bound the answer is yes again; for a reservation this
        scheduler no longer holds (it restarted) the load store's claim decides, so
        one node gets the task.
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
        outcome = (await self.claim([task])).get(task_id)
        if outcome is None or outcome[0] == BUSY:
            return ASK_AGAIN  # the store cannot say, or another scheduler may be placing it
        if outcome[0] == PLACED and outcome[1] != node_id:
            return None
        return self._bound(task_id, node_id, task)

    def _bound(self, task_id: str, node_id: str, task: Task) -> Enqueue:
        if self.placed.get(task_id) != node_id:
            self.counters.placements += 1
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
                self.background.spawn(self.forwarder.forward(res.task, [], recorded=False),
                                      name=f"replace-{task_id}")

    async def _cancel(self, url: str, task_id: str) -> None:
        try:
            await self.peers.send(url + "/internal/cancel", Cancel(task_id))
        except PeerError as exc:
            log.info("cancel of %s at %s failed: %s", task_id, url, exc)
