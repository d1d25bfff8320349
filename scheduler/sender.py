"""Enqueues from one scheduler to its agents, and settling the ones whose outcome is unknown.

Per agent: at most ``agent_inflight`` requests at a time, batches through the
:class:`~scheduler.outbox.Outbox` when the agent takes them, and every enqueue
names the node life it aims at (the fencing token of docs/guarantees.md).

A definite refusal (:class:`~dodoor.service.peers.PeerError` ``refused``) lets the
placer move a task elsewhere. An unknown outcome (a timeout: the agent may have
journaled it) must not: :meth:`AgentSender.settle` asks the same agent again
with the same ids, which it deduplicates, until it answers, the load store
declares the node dead, or ``resolve_timeout_ms`` runs out.
"""

from __future__ import annotations

import asyncio
import logging

from dodoor.resources import Task
from dodoor.service.peers import PeerClient, PeerError
from scheduler.outbox import BatchRefused, Estimate, Outbox, declared, enqueue_message
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
# enqueue requests in flight per agent; more tasks for it wait and share the next request
_BATCHES_IN_FLIGHT = 2
# pause before resending an enqueue whose outcome is unknown, doubling up to the cap:
# short, as a paused agent often answers within a second; capped, to notice its return
_RESOLVE_BACKOFF_S = 0.05
_RESOLVE_BACKOFF_MAX_S = 1.0


class AgentSender:
    """Sends enqueues to agents for one scheduler; see the module docstring."""

    def __init__(self, peers: PeerClient, settings: SchedulerSettings, view: ClusterView,
                 estimate: Estimate = declared) -> None:
        """``estimate``: each task's pending work the enqueue tells the agent to count."""
        self.peers = peers
        self.estimate = estimate
        self.settings = settings
        self.view = view
        self.no_batch: set[str] = set()  # agents without /internal/enqueue_batch
        self.resolves = 0  # tasks whose outcome was unknown, asked of the same agent again
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.outbox = Outbox(peers, settings.scheduler_id,
                             min(_BATCHES_IN_FLIGHT, settings.agent_inflight), view.life_at,
                             estimate)

    async def close(self) -> None:
        await self.outbox.close()

    def batching(self, url: str) -> bool:
        return self.settings.batch_enqueue and url not in self.no_batch

    def _limit(self, url: str) -> asyncio.Semaphore:
        sem = self._limits.get(url)
        if sem is None:
            sem = self._limits[url] = asyncio.Semaphore(self.settings.agent_inflight)
        return sem

    def gave_up_on(self, node_id: str) -> bool:
        """True once ``node_id`` is no longer worth waiting for: the load store declared
        it dead (and fenced that life), so its tasks read ``lost`` and may run elsewhere.
        A node that is only out of view may still hold the task: keep asking."""
        return node_id in self.view.dead

    async def enqueue(self, url: str, task: Task, coalesce: bool = False) -> None:
        """One task to one agent; ``coalesce``: may share a request (first choice only,
        failover attempts go alone). Raises PeerError."""
        if coalesce and self.batching(url):
            try:
                await self.outbox.enqueue(url, [task])
                return
            except BatchRefused:
                log.info("agent %s takes no batched enqueues; sending one by one", url)
                self.no_batch.add(url)  # (the refused batch was not counted as sent)
        path, msg = enqueue_message((task,), self.settings.scheduler_id, self.view.life_at(url),
                                    self.estimate)
        async with self._limit(url):
            await self.peers.send(url + path, msg)

    async def enqueue_settled(self, node_id: str, url: str, task: Task,
                              coalesce: bool) -> PeerError | None:
        """:meth:`enqueue`, with an unknown outcome settled on the same agent: None when
        the agent took the task, else the error as :meth:`settle` returns it."""
        try:
            await self.enqueue(url, task, coalesce=coalesce)
        except PeerError as exc:
            if exc.refused:
                return exc
            return (await self.settle(node_id, url, [task], exc))[0]
        return None

    async def settle(self, node_id: str, url: str, tasks: list[Task],
                     error: PeerError) -> list[PeerError | None]:
        """Find out whether the agent on ``node_id`` took ``tasks``, after an enqueue
        whose outcome is unknown (``error``).

        The agent may have journaled them, so they go to it again with the same ids
        (agents deduplicate: a known id is answered 202 and not run twice), after a
        short pause growing between rounds, until it answers. Returns each task's
        outcome, in order: None when the agent took it; a PeerError with
        ``outcome_unknown`` False when it may go elsewhere (the agent refused it, or
        the node was given up, :meth:`gave_up_on`); one with ``outcome_unknown``
        still set when ``resolve_timeout_ms`` ran out first.
        """
        self.resolves += len(tasks)
        log.warning("enqueue of %d task(s) on %s has an unknown outcome (%s); asking it again",
                    len(tasks), node_id, error)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.resolve_timeout_ms / 1000.0
        outcomes: list[PeerError | None] = [error] * len(tasks)
        pending = list(range(len(tasks)))
        delay = _RESOLVE_BACKOFF_S
        while pending:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(delay, left))
            delay = min(2 * delay, _RESOLVE_BACKOFF_MAX_S)
            if self.gave_up_on(node_id):
                gone = PeerError(f"node {node_id} was declared dead while the outcome of its "
                                 f"enqueue was unknown: {error}")
                for j in pending:
                    outcomes[j] = gone
                pending = []
                break
            answers = await self._resend(url, [tasks[j] for j in pending])
            still: list[int] = []
            for j, answer in zip(pending, answers):
                outcomes[j] = answer
                if answer is not None and answer.outcome_unknown:
                    still.append(j)
            pending = still
        for j in pending:
            outcomes[j] = PeerError(
                f"no verdict from {node_id} within resolve_timeout_ms="
                f"{self.settings.resolve_timeout_ms:g}: {outcomes[j]}", outcome_unknown=True)
        log.info("unknown enqueue outcome on %s settled: %d taken, %d to place elsewhere, "
                 "%d still unknown", node_id, sum(o is None for o in outcomes),
                 sum(o is not None and o.refused for o in outcomes), len(pending))
        return outcomes

    async def _resend(self, url: str, tasks: list[Task]) -> list[PeerError | None]:
        """Send ``tasks`` to ``url`` again, in a request of their own: each one's outcome.

        Not through the outbox: merged with other callers' new tasks, the request could
        be refused (503: cannot journal) for their sake although these ids were
        journaled by the earlier attempt, and the refusal would move them elsewhere.
        """
        if len(tasks) > 1 and self.batching(url):
            try:
                path, msg = enqueue_message(tasks, self.settings.scheduler_id,
                                            self.view.life_at(url), self.estimate)
                async with self._limit(url):
                    await self.peers.send(url + path, msg, count=len(tasks), kind="enqueue")
            except PeerError as exc:
                if exc.status not in (404, 405):
                    return [exc] * len(tasks)
                # an agent without batches on the same journal (restarted as an older one)
                log.info("agent %s takes no batched enqueues; sending one by one", url)
                self.no_batch.add(url)  # (the refused batch was not counted as sent)
            else:
                return [None] * len(tasks)
        return list(await asyncio.gather(*(self._resend_one(url, task) for task in tasks)))

    async def _resend_one(self, url: str, task: Task) -> PeerError | None:
        try:
            await self.enqueue(url, task)
        except PeerError as exc:
            return exc
        return None
