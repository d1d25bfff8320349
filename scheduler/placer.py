"""Placing tasks live: the configured policy, its messages, forwarding and failover.

Each policy kind (``dodoor.policies.base.PolicyKind``) is served here:

* NONE / CACHED / POOL decide synchronously, one task after the other, so a
  batch's later tasks see the earlier ones' deltas; the enqueues then go out
  concurrently. A CACHED policy that decides by its scores alone takes the
  tasks between two yields as one chunk scored in stacked calls
  (:mod:`dodoor.batch_scoring`), with the decisions one at a time would give.
* PROBE probes the candidates and chooses from the replies.
* RESERVE (Sparrow) reserves on the candidates; the first agent to confirm gets
  the task in the confirm's reply (see :mod:`scheduler.reservations`).

The paths that ask agents first (PROBE, RESERVE, POOL's probes) live in
:mod:`scheduler.asking`.

An enqueue that the agent definitely refused (see
:class:`~dodoor.service.peers.PeerError`) moves the task to the next candidate,
then to other random feasible nodes (docs/design.md §6), taking back the cached delta
of the failed node. An enqueue whose outcome is unknown (a timeout: the agent
may have journaled the task) is first settled with the same agent
(:meth:`scheduler.sender.AgentSender.settle`), so that a slow agent's task does
not run twice. Ids this scheduler does not hold are claimed cluster-wide first
(:mod:`scheduler.claims`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from typing import Callable

import numpy as np

from dodoor.batch_scoring import ChunkScores, worth_stacking
from dodoor.clock import Clock
from dodoor.errors import NoFitError
from dodoor.policies import PolicyKind, make_policy_spec
from dodoor.resources import Task, check_fits_somewhere
from dodoor.taskindex import BUSY, ENDED, PLACED
from dodoor.wire import Deltas
from dodoor.service.peers import PeerClient, PeerError
from scheduler.asking import AskingPaths
from scheduler.claims import Claims
from dodoor.service.http import BackgroundTasks
from scheduler.outbox import BatchRefused
from scheduler.sender import AgentSender
from scheduler.placements import Placement, PlacementLog
from scheduler.reservations import Reservations
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
Target = tuple[str, str]  # (node id, agent url)
Prefs = tuple[int, ...]  # node indices, chosen first, of the node table at decision time
Decided = tuple[Prefs, tuple[tuple[str, ...], tuple[str, ...]]]  # + that table (ids, urls)


def _targets(decided: Decided) -> list[Target]:
    """The preference order as targets (built only when a task goes alone or fails over)."""
    prefs, (node_ids, urls) = decided
    return [(node_ids[c], urls[c]) for c in prefs]


_DECISIONS_PER_YIELD = 256
# how long a resubmission waits for the view to list the node holding its id
_VIEW_CATCH_UP_S = 2.0


class NoNodesError(Exception):
    """No live node is known (no snapshot yet, or every node is dead)."""


class Placer(AskingPaths):
    """Places tasks for one scheduler (see module docstring)."""

    def __init__(
        self, settings: SchedulerSettings, view: ClusterView, peers: PeerClient,
        rng: random.Random, clock: Clock, emit_deltas: Callable[[Deltas], None],
        background: BackgroundTasks,
    ) -> None:
        self.settings = settings
        self.view = view
        self.peers = peers
        self.rng = rng
        self.clock = clock
        self.emit_deltas = emit_deltas
        self.background = background
        self.policy = make_policy_spec(settings.policy, settings.policy_settings)
        self.kind = self.policy.kind
        self._policy_generation = view.generation
        self.placed = PlacementLog(settings.idempotency_entries)
        self.reservations = Reservations()
        self.placements = 0
        self.failovers = 0
        # id -> node of tasks whose enqueue stayed unknown: a resubmission asks that node first
        self._unresolved: dict[str, str] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        # False: decide every task alone (benchmarks/placement_cpu.py's baseline)
        self.stack_decisions = True
        self.sender = AgentSender(peers, settings, view)
        # this process, for the store's claims: a restarted scheduler is another claimer
        self.instance = f"{settings.scheduler_id}/{uuid.uuid4().hex[:12]}"
        self.claims = Claims(peers, settings, view, self.instance)
        self.confirms = 0  # resubmitted ids confirmed by the node holding them

    @property
    def resolves(self) -> int:
        """Tasks whose enqueue outcome was unknown, asked of the same agent again."""
        return self.sender.resolves

    async def close(self) -> None:
        """Stop the enqueue senders (their waiting callers get a PeerError)."""
        await self.claims.close()
        await self.sender.close()

    # -- admission ---------------------------------------------------------

    def check_fits(self, tasks: list[Task], batch: bool) -> None:
        """Raise NoFitError (field ``tasks[i].<resource>``) or NoNodesError."""
        capacity = self.view.cache.capacity
        if capacity.shape[0] == 0:
            raise NoNodesError("no live nodes are known yet")
        sampler = self.view.sampler
        fitting: set[tuple[float, float, float]] = set()  # batches repeat a few demands
        for i, task in enumerate(tasks):
            key = (task.cores, task.memory_mb, task.disk_mb)
            if key in fitting:
                continue
            if sampler.feasible(task.demand()).size:
                fitting.add(key)
                continue
            try:
                check_fits_somewhere(task.demand(), capacity)
            except NoFitError as exc:
                field = f"tasks[{i}].{exc.field}" if batch else exc.field
                raise NoFitError(field, exc.reason) from exc

    # -- placement ---------------------------------------------------------

    async def place(self, tasks: list[Task]) -> list[Placement]:
        """Place every task; already placed ids return their existing placement.

        An id that another request is placing right now waits for that
        placement instead of being placed twice.
        """
        out: list[Placement | None] = [None] * len(tasks)
        sync_kind = self.kind in (PolicyKind.CACHED, PolicyKind.NONE, PolicyKind.POOL)
        coros = []
        groups: dict[int, list[tuple[int, Task, Prefs]]] = {}  # by chosen node index
        targets: dict[Target, list[tuple[int, Task, Decided]]] = {}
        mine: list[str] = []
        # one future for every id this request places: waiters look their id up in the
        # result (a per-task future costs more than the decision itself on large batches)
        done_fut: asyncio.Future = asyncio.get_running_loop().create_future()
        demands: dict[tuple[float, float, float], np.ndarray | None] = {}
        generation = self.view.generation
        # CACHED policies that decide by their scores alone take the tasks between two
        # yields as one chunk, scored in one call (see _decide_chunk)
        chunk: list[tuple[int, Task, np.ndarray]] | None = (
            [] if self.kind is PolicyKind.CACHED and self.stack_decisions
            and worth_stacking(self.policy, self.view.n_nodes) else None)
        placed_get, reservations = self.placed.get, self.reservations
        claims = await self._claim(tasks)
        try:
            for i, task in enumerate(tasks):
                task_id = task.task_id
                node = placed_get(task_id)
                if node is not None and node not in self.view.dead and task_id not in self._unresolved:
                    # resubmitted: the node holding it confirms (or 409s a different body)
                    coros.append(self._indexed(i, self._confirm_at(task, node)))
                    continue
                if reservations:
                    existing = self.existing(task_id)
                    if existing is not None:
                        out[i] = existing
                        continue
                claimed = claims.get(task_id)
                if claimed is not None and claimed[0] == PLACED:
                    coros.append(self._indexed(i, self._confirm_at(task, claimed[1])))
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
                if task_id in self._unresolved:
                    coros.append(self._indexed(i, self._place_unresolved(task)))
                    continue
                if self.kind is PolicyKind.PROBE:
                    coros.append(self._indexed(i, self._place_probed(task)))
                    continue
                if not sync_kind:
                    coros.append(self._indexed(i, self._place_reserved(task)))
                    continue
                if chunk is not None:
                    chunk.append((i, task, demand))
                else:
                    prefs = self._decide(task, demand)
                    groups.setdefault(prefs[0], []).append((i, task, prefs))
                if len(mine) % _DECISIONS_PER_YIELD == 0:
                    # a long batch must not starve other requests and snapshots;
                    # node indices become node ids before the yield: a snapshot in
                    # between may replace the node table
                    self._decide_chunk(chunk, groups)
                    self._resolve(groups, targets)
                    await asyncio.sleep(0)
            self._decide_chunk(chunk, groups)
            self._resolve(groups, targets)
            coros.extend(self._send_group(t, items) for t, items in targets.items())
            for done in await asyncio.gather(*coros):
                for i, placement in done:
                    out[i] = placement
        finally:
            by_id = {p.task_id: p for p in out if p is not None}
            for task_id in mine:
                del self._inflight[task_id]
            if mine:
                done_fut.set_result(by_id)
        if self.kind is PolicyKind.POOL:
            self._feed_pool(sum(1 for p in out if p is not None and p.node is not None))
        return [p for p in out if p is not None]

    def _resolve(self, groups: dict[int, list[tuple[int, Task, Prefs]]],
                 into: dict[Target, list[tuple[int, Task, Decided]]]) -> None:
        """Move decisions (node indices of the current table) into ``into`` by target."""
        table = (self.view.node_ids, self.view.urls)  # kept for a failover's other candidates
        for idx, items in groups.items():
            into.setdefault(self._target(idx), []).extend(
                (i, task, (prefs, table)) for i, task, prefs in items)
        groups.clear()

    @staticmethod
    async def _indexed(i: int, coro) -> list[tuple[int, Placement]]:
        return [(i, await coro)]

    async def _wait_other(self, i: int, task_id: str,
                          fut: asyncio.Future) -> list[tuple[int, Placement]]:
        """Wait for another request's placement of the same id."""
        placed = (await asyncio.shield(fut)).get(task_id)
        if placed is None:  # that request was interrupted before placing this id
            found = self.existing(task_id)
            return [(i, found or Placement(task_id, None,
                                           "the concurrent submission of this id was interrupted"))]
        return [(i, placed)]

    async def _send_group(
        self, target: Target, items: list[tuple[int, Task, Decided]]
    ) -> list[tuple[int, Placement]]:
        """Enqueue one agent's share of a batch: one request (or a share of one, see
        :mod:`scheduler.outbox`) when the agent takes batches."""
        node_id, url = target
        if len(items) == 1 or not self.sender.batching(url):
            results = await asyncio.gather(
                *(self._forward(task, _targets(d), recorded=True) for _, task, d in items))
            return [(i, p) for (i, _, _), p in zip(items, results)]
        try:
            await self.sender.outbox.enqueue(url, [task for _, task, _ in items])
        except BatchRefused:
            log.info("agent %s takes no batched enqueues; sending one by one", node_id)
            self.sender.no_batch.add(url)
            return await self._send_group(target, items)
        except PeerError as exc:
            return await self._group_failed(target, items, exc)
        return self._taken(node_id, items)

    def _taken(self, node_id: str, items: list[tuple[int, Task, Decided]]
               ) -> list[tuple[int, Placement]]:
        """Book ``items`` as placed on ``node_id`` (its agent accepted them)."""
        self.placed.put_many([task.task_id for _, task, _ in items], node_id)
        self.placements += len(items)
        return [(i, Placement(task.task_id, node_id)) for i, task, _ in items]

    async def _claim(self, tasks: list[Task]) -> dict[str, tuple[str, str, str]]:
        """Claim the ids this scheduler does not hold (:class:`scheduler.claims.Claims`);
        id → (outcome, node, owner)."""
        placed_get, dead, inflight = self.placed.get, self.view.dead, self._inflight
        ids = []
        for task in tasks:
            node = placed_get(task.task_id)
            if (node is None or node in dead) and task.task_id not in inflight:
                ids.append(task.task_id)
        return await self.claims.claim(ids) if ids else {}

    async def _confirm_at(self, task: Task, node: str) -> Placement:
        """An id already placed on ``node``: send it there again, alone. The agent
        deduplicates (202, nothing runs twice; a task it ended ``lost`` runs again) or
        answers 409 for a different body. Never fails over: the id lives there."""
        task_id = task.task_id
        idx = self.view.index.get(node)
        if idx is None:  # back after a fence, say: the next snapshot lists it
            idx = await self.view.wait_for_node(node, _VIEW_CATCH_UP_S)
        if idx is None:
            return Placement(task_id, None, f"id {task_id!r} was placed on node {node}, which is "
                             "out of this scheduler's view but not declared dead; retry later")
        error = await self.sender.enqueue_settled(node, self.view.urls[idx], task, coalesce=False)
        if error is not None:
            if error.status == 409:
                return Placement(task_id, None, f"id {task_id!r} is already used by a different "
                                 f"task (held by node {node})", conflict=True)
            return Placement(task_id, None, f"id {task_id!r} is placed on node {node}, "
                             f"which did not confirm it: {error}")
        self.placed.put(task_id, node)
        self.confirms += 1
        return Placement(task_id, node)

    async def _group_failed(self, target: Target, items: list[tuple[int, Task, Decided]],
                            error: PeerError) -> list[tuple[int, Placement]]:
        """The batched enqueue of ``items`` on ``target`` failed with ``error``: settle an
        unknown outcome with that agent, then fail over what it refused."""
        node_id, url = target
        outcomes = ([error] * len(items) if error.refused else
                    await self.sender.settle(node_id, url, [task for _, task, _ in items], error))
        taken: list[tuple[int, Task, Decided]] = []
        moved: list[tuple[int, Task, Decided]] = []
        out: list[tuple[int, Placement]] = []
        refusal = error
        for item, outcome in zip(items, outcomes):
            if outcome is None:
                taken.append(item)
            elif outcome.outcome_unknown:
                self._undo(node_id, item[1])
                out.append((item[0], self._outcome_unknown(item[1].task_id, node_id, outcome)))
            else:
                moved.append(item)
                refusal = outcome
        if taken:
            out.extend(self._taken(node_id, taken))
        if moved:
            log.warning("batched enqueue of %d tasks on %s failed: %s", len(moved), node_id,
                        refusal)
            self.failovers += len(moved)
            for _, task, _ in moved:
                self._undo(node_id, task)
            results = await asyncio.gather(
                *(self._forward(task, _targets(d), recorded=False, tried={node_id})
                  for _, task, d in moved))
            out.extend((i, p) for (i, _, _), p in zip(moved, results))
        return out

    def existing(self, task_id: str) -> Placement | None:
        """The open Sparrow reservation of ``task_id``, or its placement by this
        scheduler on a node not declared dead (then the id is not placed again)."""
        node = self.placed.get(task_id)
        # an id whose enqueue stayed unknown is not placed: a resubmission asks its node again
        if node is not None and node not in self.view.dead and task_id not in self._unresolved:
            return Placement(task_id, node)
        res = self.reservations.get(task_id)
        if res is not None:
            return Placement(task_id, res.bound)
        return None

    def _target(self, idx: int) -> Target:
        return self.view.node_ids[idx], self.view.urls[idx]

    def _decide(self, task: Task, demand: np.ndarray) -> Prefs:
        """Preference order (node indices) for NONE/CACHED/POOL; records the cached delta."""
        view = self.view
        if self.kind is PolicyKind.POOL:
            if self._policy_generation != view.generation:
                # pool entries hold node indices of the old node table
                self.policy = make_policy_spec(self.settings.policy, self.settings.policy_settings)
                self._policy_generation = view.generation
            return (self.policy.place_from_pool(task, demand, view.sampler,
                                                self.clock.now_ms(), self.rng),)
        cands = self.policy.candidates(task, demand, view.sampler, self.rng)
        chosen = self.policy.choose(task, demand, view.cache.view(cands), self.rng)
        if self.kind is PolicyKind.CACHED:
            self._record_at(chosen, task)
        return (chosen, *(c for c in cands if c != chosen))

    def _decide_chunk(self, chunk: list[tuple[int, Task, np.ndarray]] | None,
                      groups: dict[int, list[tuple[int, Task, Prefs]]]) -> None:
        """Decide (and record) a chunk's tasks in order, as :meth:`_decide` one at a
        time would for the same candidates: all are sampled first, then scored a window
        at a time in stacked calls (:mod:`dodoor.batch_scoring`); ties draw from the
        rng in task order.

        Runs without a yield, so no snapshot changes the cache or node table meanwhile.
        """
        if not chunk:
            return
        policy, view, rng = self.policy, self.view, self.rng
        sampler = view.sampler
        cands = [policy.candidates(task, demand, sampler, rng) for _, task, demand in chunk]
        demands = [demand for _, _, demand in chunk]
        scores = ChunkScores(policy, view.cache)
        scores.reset(cands, demands)
        decide, record = scores.decide, self._record_at
        for pos, (i, task, _) in enumerate(chunk):
            chosen = decide(pos, rng)
            record(chosen, task)
            prefs = (chosen, *[c for c in cands[pos] if c != chosen])
            group = groups.get(chosen)
            if group is None:
                groups[chosen] = [(i, task, prefs)]
            else:
                group.append((i, task, prefs))
        chunk.clear()

    def _record(self, node_id: str, task: Task) -> None:
        if self.kind is not PolicyKind.CACHED:
            return
        idx = self.view.index.get(node_id)
        if idx is not None:
            self._record_at(idx, task)

    def _record_at(self, idx: int, task: Task) -> None:
        batch = self.view.cache.record_placement(idx, task)
        if batch is not None:
            deltas = self.view.take_deltas(batch)
            if deltas is not None:
                self.emit_deltas(deltas)

    def _undo(self, node_id: str, task: Task) -> None:
        if self.kind is not PolicyKind.CACHED:
            return
        idx = self.view.index.get(node_id)
        if idx is not None:
            self.view.cache.undo_placement(idx, task)

    async def _forward(self, task: Task, prefs: list[Target], recorded: bool,
                       tried: set[str] | None = None) -> Placement:
        """Enqueue on the first target that accepts; fall over to random feasible nodes.

        ``recorded``: the cached delta of ``prefs[0]`` is already applied. Only a
        definite refusal moves the task on: an unknown outcome is settled with the
        same agent (:meth:`_settle`) and, when it stays unknown, returned as an error
        naming that node.
        """
        tried = set() if tried is None else set(tried)
        first = prefs[0][0] if (prefs and recorded) else None
        queue = list(prefs)
        extra_rounds = 1
        last_error = "no candidate"
        while True:
            for node_id, url in queue:
                if node_id in tried:
                    continue
                tried.add(node_id)
                error = await self.sender.enqueue_settled(node_id, url, task, node_id == first)
                if error is not None:
                    if node_id == first:
                        self._undo(node_id, task)
                    if error.outcome_unknown:  # nobody else may get it: it may run there
                        return self._outcome_unknown(task.task_id, node_id, error)
                    last_error = str(error)
                    log.warning("enqueue of %s on %s failed: %s", task.task_id, node_id, error)
                    self.failovers += 1
                    continue
                if node_id != first:
                    self._record(node_id, task)
                self.placed.put(task.task_id, node_id)
                self._unresolved.pop(task.task_id, None)
                self.placements += 1
                return Placement(task.task_id, node_id)
            if extra_rounds <= 0 or self.settings.max_failover == 0 or self.view.n_nodes == 0:
                return Placement(task.task_id, None, f"no agent accepted the task: {last_error}")
            extra_rounds -= 1
            picks = self.view.sampler.sample(task.demand(), self.settings.max_failover + len(tried),
                                             self.rng)
            queue = [self._target(i) for i in picks if self.view.node_ids[i] not in tried]
            queue = queue[: self.settings.max_failover]

    def _outcome_unknown(self, task_id: str, node_id: str, error: PeerError) -> Placement:
        """The answer for a task whose enqueue on ``node_id`` stayed unknown: an error
        naming the node. The id stays recorded against the node, so its status is asked
        there and a resubmission goes back to it first (:meth:`_place_unresolved`)."""
        self.placed.put(task_id, node_id)
        unresolved = self._unresolved
        unresolved.pop(task_id, None)
        unresolved[task_id] = node_id  # newest last: past the bound the oldest go
        while len(unresolved) > self.settings.idempotency_entries:
            del unresolved[next(iter(unresolved))]
        return Placement(task_id, None, f"outcome unknown on node {node_id}: {error}; "
                         f"resubmit the same id to ask {node_id} again")

    async def _place_unresolved(self, task: Task) -> Placement:
        """A resubmitted id whose last enqueue stayed unknown: its node first, unless given
        up, then failover as usual."""
        node_id = self._unresolved.get(task.task_id)  # None when trimmed meanwhile
        prefs: list[Target] = []
        if node_id is not None and not self.sender.gave_up_on(node_id):
            idx = self.view.index.get(node_id)
            if idx is not None:
                prefs.append(self._target(idx))
        return await self._forward(task, prefs, recorded=False)
