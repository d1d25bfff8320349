"""Sending decided tasks to agents, with failover (docs/design.md §6).

An enqueue that the agent definitely refused (see
:class:`~dodoor.service.peers.PeerError`) moves the task to the next candidate,
then to other random feasible nodes, taking back the cached delta of the failed
node. An enqueue whose outcome is unknown (a timeout: the agent may have
journaled the task) is first settled with the same agent
(:meth:`scheduler.sender.AgentSender.settle`), so that a slow agent's task does
not run twice; when it stays unknown the id is remembered against that node,
and a resubmission asks it there first.
"""

from __future__ import annotations

import asyncio
import logging
import random

from dodoor.resources import Task
from dodoor.service.peers import PeerError
from scheduler.outbox import BatchRefused
from scheduler.paths.base import CachedDeltas, Counters, Decided, Target, target
from scheduler.placements import Placement, PlacementLog
from scheduler.sender import AgentSender
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
Sent = list[tuple[int, Placement]]  # (position in the request, its placement)


def _targets(decided: Decided) -> list[Target]:
    """The preference order as targets (built only when a task goes alone or fails over)."""
    prefs, (node_ids, urls) = decided
    return [(node_ids[c], urls[c]) for c in prefs]


class Forwarder:
    """Enqueues tasks on their chosen agents and fails over (see the module docstring)."""

    def __init__(self, settings: SchedulerSettings, view: ClusterView, sender: AgentSender,
                 placed: PlacementLog, counters: Counters, deltas: CachedDeltas,
                 rng: random.Random) -> None:
        self.settings = settings
        self.view = view
        self.sender = sender
        self.placed = placed
        self.counters = counters
        self.deltas = deltas
        self.rng = rng
        # id -> node of tasks whose enqueue stayed unknown: a resubmission asks that node first
        self.unresolved: dict[str, str] = {}

    async def send_group(self, to: Target, items: list[tuple[int, Task, Decided]]) -> Sent:
        """Enqueue one agent's share of a batch: one request (or a share of one, see
        :mod:`scheduler.outbox`) when the agent takes batches."""
        node_id, url = to
        if len(items) == 1 or not self.sender.batching(url):
            results = await asyncio.gather(
                *(self.forward(task, _targets(d), recorded=True) for _, task, d in items))
            return [(i, p) for (i, _, _), p in zip(items, results)]
        try:
            await self.sender.outbox.enqueue(url, [task for _, task, _ in items])
        except BatchRefused:
            log.info("agent %s takes no batched enqueues; sending one by one", node_id)
            self.sender.no_batch.add(url)
            return await self.send_group(to, items)
        except PeerError as exc:
            return await self._group_failed(to, items, exc)
        return self._taken(node_id, items)

    def _taken(self, node_id: str, items: list[tuple[int, Task, Decided]]) -> Sent:
        """Book ``items`` as placed on ``node_id`` (its agent accepted them)."""
        self.placed.put_many([task.task_id for _, task, _ in items], node_id)
        self.counters.placements += len(items)
        return [(i, Placement(task.task_id, node_id)) for i, task, _ in items]

    async def _group_failed(self, to: Target, items: list[tuple[int, Task, Decided]],
                            error: PeerError) -> Sent:
        """The batched enqueue of ``items`` on ``to`` failed with ``error``: settle an
        unknown outcome with that agent, then fail over what it refused."""
        node_id, url = to
        outcomes = ([error] * len(items) if error.refused else
                    await self.sender.settle(node_id, url, [task for _, task, _ in items], error))
        taken: list[tuple[int, Task, Decided]] = []
        moved: list[tuple[int, Task, Decided]] = []
        out: Sent = []
        refusal = error
        for item, outcome in zip(items, outcomes):
            if outcome is None:
                taken.append(item)
            elif outcome.outcome_unknown:
                self.deltas.undo(node_id, item[1])
                out.append((item[0], self.outcome_unknown(item[1].task_id, node_id, outcome)))
            else:
                moved.append(item)
                refusal = outcome
        if taken:
            out.extend(self._taken(node_id, taken))
        if moved:
            log.warning("batched enqueue of %d tasks on %s failed: %s", len(moved), node_id,
                        refusal)
            self.counters.failovers += len(moved)
            for _, task, _ in moved:
                self.deltas.undo(node_id, task)
            results = await asyncio.gather(
                *(self.forward(task, _targets(d), recorded=False, tried={node_id})
                  for _, task, d in moved))
            out.extend((i, p) for (i, _, _), p in zip(moved, results))
        return out

    async def forward(self, task: Task, prefs: list[Target], recorded: bool,
                      tried: set[str] | None = None) -> Placement:
        """Enqueue on the first target that accepts; fall over to random feasible nodes.

        ``recorded``: the cached delta of ``prefs[0]`` is already applied. Only a
        definite refusal moves the task on: an unknown outcome is settled with the
        same agent and, when it stays unknown, returned as an error naming that node.
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
                        self.deltas.undo(node_id, task)
                    if error.outcome_unknown:  # nobody else may get it: it may run there
                        return self.outcome_unknown(task.task_id, node_id, error)
                    last_error = str(error)
                    log.warning("enqueue of %s on %s failed: %s", task.task_id, node_id, error)
                    self.counters.failovers += 1
                    continue
                if node_id != first:
                    self.deltas.record(node_id, task)
                self.placed.put(task.task_id, node_id)
                self.unresolved.pop(task.task_id, None)
                self.counters.placements += 1
                return Placement(task.task_id, node_id)
            if extra_rounds <= 0 or self.settings.max_failover == 0 or self.view.n_nodes == 0:
                return Placement(task.task_id, None, f"no agent accepted the task: {last_error}")
            extra_rounds -= 1
            picks = self.view.sampler.sample(task.demand(), self.settings.max_failover + len(tried),
                                             self.rng)
            queue = [target(self.view, i) for i in picks if self.view.node_ids[i] not in tried]
            queue = queue[: self.settings.max_failover]

    def outcome_unknown(self, task_id: str, node_id: str, error: PeerError) -> Placement:
        """The answer for a task whose enqueue on ``node_id`` stayed unknown: an error
        naming the node. The id stays recorded against the node, so its status is asked
        there and a resubmission goes back to it first (:meth:`place_unresolved`)."""
        self.placed.put(task_id, node_id)
        unresolved = self.unresolved
        unresolved.pop(task_id, None)
        unresolved[task_id] = node_id  # newest last: past the bound the oldest go
        while len(unresolved) > self.settings.idempotency_entries:
            del unresolved[next(iter(unresolved))]
        return Placement(task_id, None, f"outcome unknown on node {node_id}: {error}; "
                         f"resubmit the same id to ask {node_id} again")

    async def place_unresolved(self, task: Task) -> Placement:
        """A resubmitted id whose last enqueue stayed unknown: its node first, unless given
        up, then failover as usual."""
        node_id = self.unresolved.get(task.task_id)  # None when trimmed meanwhile
        prefs: list[Target] = []
        if node_id is not None and not self.sender.gave_up_on(node_id):
            idx = self.view.index.get(node_id)
            if idx is not None:
                prefs.append(target(self.view, idx))
        return await self.forward(task, prefs, recorded=False)

    async def confirm_at(self, task: Task, node: str, catch_up_s: float) -> Placement:
        """An id already placed on ``node``: send it there again, alone. The agent
        deduplicates (202, nothing runs twice; a task it ended ``lost`` runs again) or
        answers 409 for a different body. Never fails over: the id lives there.
        ``catch_up_s``: how long to wait for the view to list ``node``."""
        task_id = task.task_id
        idx = self.view.index.get(node)
        if idx is None:  # back after a fence, say: the next snapshot lists it
            idx = await self.view.wait_for_node(node, catch_up_s)
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
        self.counters.confirms += 1
        return Placement(task_id, node)
