"""Placing tasks live: what every policy kind shares, around one path chosen from the policy.

The placer settles ids already placed (by this scheduler, by another one through the
load store's claims, :mod:`scheduler.claims`, or by a concurrent request) and sends
decided tasks grouped by agent. Choosing nodes is the path's (:mod:`scheduler.paths`,
picked once from ``dodoor.policies.base.PolicyKind``): NONE/CACHED and POOL decide at
once, in order, so a batch's later tasks see the earlier ones' deltas; PROBE and
RESERVE (Sparrow) place each task alone after asking agents. Sending, failover and
unknown outcomes are the :class:`~scheduler.paths.forwarder.Forwarder`'s
(docs/design.md §6). With ``--fallback`` a CACHED path leaves the tasks it finds
no room for to the packing fallback (:mod:`scheduler.fallback`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Callable

import numpy as np

from dodoor.clock import Clock
from dodoor.policies import PolicyKind, make_policy_spec
from dodoor.resources import Task
from dodoor.service.http import BackgroundTasks
from dodoor.service.peers import PeerClient
from dodoor.taskindex import BUSY, ENDED, MINE, NEW, PLACED
from dodoor.wire import Deltas, Enqueue
from scheduler.claims import Claims
from scheduler.fallback import FallbackStats, FallbackWindow
from scheduler.fallback_moves import AgentMoveOrders, probe_movable
from scheduler.learning import LearnedDurations
from scheduler.outbox import declared
from scheduler.paths import make_path
from scheduler.paths.base import CachedDeltas, Counters, Decided, Decisions, Target, target
from scheduler.paths.forwarder import Forwarder, Sent
from scheduler.paths.reservation import ReservationPath
from scheduler.placements import Placement, PlacementLog, ReasonLog
from scheduler.reservations import Reservations
from scheduler.sender import AgentSender
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
_DECISIONS_PER_YIELD = 256
# how long a resubmission waits for the view to list the node holding its id
_VIEW_CATCH_UP_S = 2.0


class Placer:
    """Places tasks for one scheduler (see module docstring)."""

    def __init__(
        self, settings: SchedulerSettings, view: ClusterView, peers: PeerClient,
        rng: random.Random, clock: Clock, emit_deltas: Callable[[Deltas], None],
        background: BackgroundTasks,
    ) -> None:
        self.settings = settings
        self.view = view
        self.rng = rng  # shared with the paths and the forwarder: one stream of choices
        policy = make_policy_spec(settings.policy, settings.policy_settings)
        self.kind = policy.kind
        self.placed = PlacementLog(settings.idempotency_entries)
        self.reservations = Reservations()
        self.counters = Counters()
        self._inflight: dict[str, asyncio.Future] = {}
        # False: decide every task alone (benchmarks/placement_cpu.py's baseline)
        self.stack_decisions = True
        # this process, for the store's claims: a restarted scheduler is another claimer
        self.instance = f"{settings.scheduler_id}/{uuid.uuid4().hex[:12]}"
        self.claims = Claims(peers, settings, view, self.instance)
        # learned durations (dodoor.estimates), fed by the ends of this scheduler's tasks
        # that scheduler.status resolves; only a cache-based policy counts pending work
        self.learned = (LearnedDurations(settings.idempotency_entries)
                        if policy.settings.learn_durations and self.kind is PolicyKind.CACHED
                        else None)
        self.sender = AgentSender(peers, settings, view,
                                  declared if self.learned is None else self.learned.estimate_ms)
        deltas = CachedDeltas(view, emit_deltas, self.kind is PolicyKind.CACHED, self.learned)
        self.forwarder = Forwarder(settings, view, self.sender, self.placed, self.counters,
                                   deltas, rng)
        # confirms are answered whatever the kind: an agent may hold an older reservation
        self.reserving = ReservationPath(policy, settings, view, peers, self.reservations,
                                         self.placed, self.forwarder, self._claim,
                                         self.counters, background, rng)
        self.fallback_stats = FallbackStats()
        # why the packing fallback placed an id nowhere: its status says so (scheduler.status)
        self.unplaced = ReasonLog(settings.idempotency_entries)
        fallback = (FallbackWindow(
            settings.packing, settings.fallback_window_ms / 1000.0, view, background,
            self.fallback_stats, AgentMoveOrders(peers, view.life_at, self.fallback_stats),
            prober=lambda urls, excess, below: probe_movable(
                peers, settings.scheduler_id, urls, excess, below),
            reasons=self.unplaced)
            if settings.fallback else None)
        self.path = make_path(policy, settings, view, peers, self.forwarder, deltas,
                              self.reserving, background, rng, clock, fallback)

    @property
    def policy(self):
        """The policy spec deciding now (a pool's is replaced with the node table)."""
        return self.path.policy

    # the /metrics counters (scheduler.metrics), kept by the paths and the forwarder
    placements = property(lambda self: self.counters.placements)
    failovers = property(lambda self: self.counters.failovers)
    confirms = property(lambda self: self.counters.confirms)

    @property
    def resolves(self) -> int:
        """Tasks whose enqueue outcome was unknown, asked of the same agent again."""
        return self.sender.resolves

    async def close(self) -> None:
        """Stop the enqueue senders (their waiting callers get a PeerError)."""
        await self.claims.close()
        await self.sender.close()

    def check_fits(self, tasks: list[Task], batch: bool) -> None:
        """Raise NoFitError (field ``tasks[i].<resource>``) or NoNodesError."""
        self.view.check_fits(tasks, batch)

    async def place(self, tasks: list[Task], made: frozenset[str] | set[str] = frozenset()
                    ) -> list[Placement]:
        """Place every task; already placed ids return their existing placement.

        An id that another request is placing right now waits for that
        placement instead of being placed twice. Ids in ``made`` were generated by
        this scheduler (scheduler.intake), so they cannot collide: their claim goes
        out together with their enqueue, and the call returns once both are done
        (docs/guarantees.md "Ids"); other ids are claimed first.
        """
        out: list[Placement | None] = [None] * len(tasks)
        coros = []
        targets: dict[Target, list[tuple[int, Task, Decided]]] = {}
        mine: list[str] = []
        # one future for every id this request places: waiters look their id up in the
        # result (a per-task future costs more than the decision itself on large batches)
        done_fut: asyncio.Future = asyncio.get_running_loop().create_future()
        demands: dict[tuple[float, float, float], np.ndarray | None] = {}
        generation = self.view.generation
        path, forwarder = self.path, self.forwarder
        decisions = path.begin(self.stack_decisions)
        placed_get, reservations, unresolved = self.placed.get, self.reservations, forwarder.unresolved
        claims = await self._claim(tasks, made)
        try:
            for i, task in enumerate(tasks):
                task_id = task.task_id
                node = placed_get(task_id)
                if node is not None and node not in self.view.dead and task_id not in unresolved:
                    # resubmitted: the node holding it confirms (or 409s a different body)
                    coros.append(_indexed(i, forwarder.confirm_at(task, node, _VIEW_CATCH_UP_S)))
                    continue
                if reservations:
                    existing = self.existing(task_id)
                    if existing is not None:
                        out[i] = existing
                        continue
                claimed = claims.get(task_id)
                if claimed is not None and claimed[0] == PLACED:
                    coros.append(_indexed(i, forwarder.confirm_at(task, claimed[1],
                                                                  _VIEW_CATCH_UP_S)))
                    continue
                if claimed is not None and claimed[0] == ENDED:
                    # it ended on a node since declared dead, and every scheduler answers
                    # that end: a resubmission is the same task, already done
                    out[i] = Placement(task_id, claimed[1])
                    continue
                if claimed is not None and claimed[0] == BUSY:
                    who = (f"is being placed by scheduler {claimed[2]}" if claimed[2] else
                           "may be held by a node that has not resent its ids to the load "
                           "store yet")
                    out[i] = Placement(task_id, None, f"id {task_id!r} {who}; retry later")
                    continue
                pending = self._inflight.get(task_id)
                if pending is not None:
                    coros.append(self._wait_other(i, task_id, pending))
                    continue
                if generation != self.view.generation:
                    demands.clear()  # node table replaced during a yield: recheck fits
                    generation = self.view.generation
                key = (task.cores, task.memory_mb, task.disk_mb)
                if key in demands:
                    demand = demands[key]
                else:
                    demand = task.demand()
                    # read-only: the sampler then knows the array by identity
                    demand.flags.writeable = False
                    if not self.view.sampler.feasible(demand).size:
                        demand = None
                    demands[key] = demand
                if demand is None:
                    # the node set changed since admission (a snapshot during a yield)
                    out[i] = Placement(task_id, None, "no live node can hold the task")
                    continue
                self._inflight[task_id] = done_fut
                mine.append(task_id)
                alone = (forwarder.place_unresolved(task) if task_id in unresolved
                         else path.add(i, task, demand, decisions))
                if alone is not None:
                    coros.append(_indexed(i, alone))
                elif len(mine) % _DECISIONS_PER_YIELD == 0:
                    # a long batch must not starve other requests and snapshots;
                    # node indices become node ids before the yield: a snapshot in
                    # between may replace the node table
                    self._resolve(decisions, targets, coros)
                    await asyncio.sleep(0)
            self._resolve(decisions, targets, coros)
            coros.extend(self._send_group(t, items) for t, items in targets.items())
            fresh = [task_id for task_id in mine if task_id in made] if made else None
            if fresh:
                sent, verdicts = await asyncio.gather(
                    asyncio.gather(*coros), self.claims.claim(fresh, made_here=True))
                _check_made(verdicts)
            else:
                sent = await asyncio.gather(*coros)
            for done in sent:
                for i, placement in done:
                    out[i] = placement
        finally:
            by_id = {p.task_id: p for p in out if p is not None}
            for task_id in mine:
                del self._inflight[task_id]
            if mine:
                done_fut.set_result(by_id)
        path.after(sum(1 for p in out if p is not None and p.node is not None))
        return [p for p in out if p is not None]

    def _send_group(self, to: Target, items: list[tuple[int, Task, Decided]]):
        """Enqueue one agent's share of a request (the forwarder's; a seam for tests)."""
        return self.forwarder.send_group(to, items)

    def _resolve(self, decisions: Decisions,
                 into: dict[Target, list[tuple[int, Task, Decided]]], alone: list) -> None:
        """Decide what is pending, then move the decisions (node indices of the current
        table) into ``into`` by target, and the tasks left to be placed alone into
        ``alone``."""
        self.path.flush(decisions)
        alone.extend(_indexed(i, coro) for i, coro in decisions.alone)
        decisions.alone.clear()
        table = (self.view.node_ids, self.view.urls)  # kept for a failover's other candidates
        for idx, items in decisions.groups.items():
            into.setdefault(target(self.view, idx), []).extend(
                (i, task, (prefs, table)) for i, task, prefs in items)
        decisions.groups.clear()

    async def _wait_other(self, i: int, task_id: str, fut: asyncio.Future) -> Sent:
        """Wait for another request's placement of the same id."""
        placed = (await asyncio.shield(fut)).get(task_id)
        if placed is None:  # that request was interrupted before placing this id
            found = self.existing(task_id)
            return [(i, found or Placement(task_id, None,
                                           "the concurrent submission of this id was interrupted"))]
        return [(i, placed)]

    async def _claim(self, tasks: list[Task], made: frozenset[str] | set[str] = frozenset()
                     ) -> dict[str, tuple[str, str, str]]:
        """Claim the ids this scheduler does not hold and did not make
        (:class:`scheduler.claims.Claims`); id → (outcome, node, owner)."""
        placed_get, dead, inflight = self.placed.get, self.view.dead, self._inflight
        ids = []
        for task in tasks:
            if task.task_id in made:
                continue
            node = placed_get(task.task_id)
            if (node is None or node in dead) and task.task_id not in inflight:
                ids.append(task.task_id)
        return await self.claims.claim(ids) if ids else {}

    def existing(self, task_id: str) -> Placement | None:
        """The open Sparrow reservation of ``task_id``, or its placement by this
        scheduler on a node not declared dead (then the id is not placed again)."""
        node = self.placed.get(task_id)
        # an id whose enqueue stayed unknown is not placed: a resubmission asks its node again
        if (node is not None and node not in self.view.dead
                and task_id not in self.forwarder.unresolved):
            return Placement(task_id, node)
        res = self.reservations.get(task_id)
        if res is not None:
            return Placement(task_id, res.bound)
        return None

    async def confirm(self, node_id: str, task_id: str, task: Task | None) -> Enqueue | None | str:
        """A Sparrow confirm (:meth:`scheduler.paths.reservation.ReservationPath.confirm`)."""
        return await self.reserving.confirm(node_id, task_id, task)

    def forget_dead_targets(self, dead: frozenset[str]) -> None:
        """Place again the reservations held only by dead nodes (see the reservation path)."""
        self.reserving.forget_dead_targets(dead)


def _check_made(verdicts: dict[str, tuple[str, str, str]]) -> None:
    """The store's verdicts on ids made here. Only ``new``/``mine`` (claimed) or ``placed``
    (the agent's report came first) are expected; anything else (``busy``: the index is
    incomplete after a store restart) leaves the placement standing, since the task is
    already journaled at its agent and the index learns it from that agent's report."""
    odd = [(i, v[0]) for i, v in verdicts.items() if v[0] not in (NEW, MINE, PLACED)]
    if odd:
        log.info("load store did not register %d id(s) made here (first: %s %s); their "
                 "agents' reports will", len(odd), *odd[0])


async def _indexed(i: int, coro) -> Sent:
    return [(i, await coro)]
