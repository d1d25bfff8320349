"""Coalescing enqueues per agent: group commit for the scheduler → agent hop.

At most ``in_flight`` enqueue requests go to one agent at a time. Tasks for
an agent whose requests are all in flight wait in its outbox and leave
together, as one ``EnqueueBatch``, when a request returns. An idle agent's
tasks leave at once, so a lone submission pays no added delay; under load the
requests grow instead of multiplying (fewer HTTP round trips per task in the
scheduler and in the agents).

Every caller learns the outcome of the request that carried its tasks: None,
or the :class:`~dodoor.service.peers.PeerError` of that request. A definite
refusal lets the caller fail over, as for a request of its own; an unknown
outcome (``PeerError.outcome_unknown``: a timeout, say) reaches every caller the
request carried, and each must settle it with the same agent before placing
its tasks anywhere else (:meth:`scheduler.sender.AgentSender.settle`). An agent
answering 404/405 to a batch takes no batches; its callers get
:class:`BatchRefused` and resend one by one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from dodoor.resources import Task
from dodoor.wire import Enqueue, EnqueueBatch
from dodoor.service.peers import PeerClient, PeerError
from dodoor.service.http import BackgroundTasks

log = logging.getLogger(__name__)
MAX_TASKS_PER_REQUEST = 2000  # callers' lists are merged up to this many tasks
# a task's pending work to tell the agent, None for its declared duration
# (scheduler.learning.LearnedDurations.estimate_ms)
Estimate = Callable[[Task], "float | None"]


def declared(task: Task) -> None:
    """The :data:`Estimate` of a scheduler that learns no durations."""
    return None


def enqueue_message(tasks: Sequence[Task], scheduler_id: str, life: str,
                    estimate: Estimate) -> tuple[str, Enqueue | EnqueueBatch]:
    """The agent path and message that enqueue ``tasks``, with their estimates."""
    estimates = [estimate(t) for t in tasks]
    if len(tasks) == 1:
        return "/internal/enqueue", Enqueue(tasks[0], scheduler_id, life,
                                            estimate_ms=estimates[0])
    if all(e is None for e in estimates):
        return "/internal/enqueue_batch", EnqueueBatch(tuple(tasks), scheduler_id, life)
    return "/internal/enqueue_batch", EnqueueBatch(
        tuple(tasks), scheduler_id, life,
        tuple(t.duration_ms if e is None else e for t, e in zip(tasks, estimates)))


class BatchRefused(PeerError):
    """The agent has no /internal/enqueue_batch (404/405); nothing was delivered."""


@dataclass
class _Agent:
    waiting: list[tuple[list[Task], asyncio.Future]] = field(default_factory=list)
    sending: int = 0


class Outbox:
    """Per-agent enqueue queues of one scheduler (see module docstring)."""

    def __init__(self, peers: PeerClient, scheduler_id: str, in_flight: int,
                 life_at: Callable[[str], str] = lambda url: "",
                 estimate: Estimate = declared) -> None:
        """``life_at(url)``: the node life enqueues to ``url`` aim at (fencing token);
        ``estimate``: each task's pending work to tell the agent."""
        if in_flight < 1:
            raise ValueError(f"in_flight must be >= 1, got {in_flight!r}")
        self.peers = peers
        self.scheduler_id = scheduler_id
        self.in_flight = in_flight
        self.life_at = life_at
        self.estimate = estimate
        self.requests = 0
        self._agents: dict[str, _Agent] = {}
        self._senders = BackgroundTasks()

    async def enqueue(self, url: str, tasks: list[Task]) -> None:
        """Deliver ``tasks`` to the agent at ``url``; raises the carrying request's PeerError."""
        agent = self._agents.get(url)
        if agent is None:
            agent = self._agents[url] = _Agent()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        agent.waiting.append((tasks, fut))
        if agent.sending < self.in_flight:
            agent.sending += 1
            self._senders.spawn(self._drain(url, agent), name="enqueue-sender")
        await fut

    async def _drain(self, url: str, agent: _Agent) -> None:
        """Send what waits for ``url`` until nothing does; one request per round."""
        taken: list[tuple[list[Task], asyncio.Future]] = []
        try:
            while agent.waiting:
                # callers cancelled before their turn do not want their tasks sent
                taken = [w for w in _take(agent.waiting) if not w[1].done()]
                if not taken:
                    continue
                try:
                    error: BaseException | None = await self._send(
                        url, [t for tasks, _ in taken for t in tasks])
                except Exception as exc:  # not a peer failure: the callers raise it as their own
                    error = exc
                for _, fut in taken:
                    if fut.done():  # that caller was cancelled meanwhile; its tasks went anyway
                        continue
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)
                taken = []
        except asyncio.CancelledError:  # scheduler shutting down
            # the request in flight may have reached the agent; the waiting tasks were never sent
            for waiters, unknown in ((taken, True), (agent.waiting, False)):
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(PeerError(f"{url}: scheduler shutting down",
                                                    outcome_unknown=unknown))
            agent.waiting.clear()
            raise
        finally:
            agent.sending -= 1

    async def _send(self, url: str, tasks: list[Task]) -> PeerError | None:
        self.requests += 1
        try:
            path, msg = enqueue_message(tasks, self.scheduler_id, self.life_at(url),
                                        self.estimate)
            await self.peers.send(url + path, msg, count=len(tasks), kind="enqueue")
        except PeerError as exc:
            if len(tasks) > 1 and exc.status in (404, 405):
                # not counted as sent: PeerClient.send leaves out what was not delivered
                return BatchRefused(str(exc), exc.status)
            return exc
        return None

    async def close(self) -> None:
        await self._senders.close()


def _take(waiting: list[tuple[list[Task], asyncio.Future]]
          ) -> list[tuple[list[Task], asyncio.Future]]:
    """Remove and return the first waiters, up to MAX_TASKS_PER_REQUEST tasks (at least one)."""
    total = 0
    n = 0
    for tasks, fut in waiting:
        if n and total + len(tasks) > MAX_TASKS_PER_REQUEST:
            break
        total += len(tasks)
        n += 1
    taken = waiting[:n]
    del waiting[:n]
    return taken
