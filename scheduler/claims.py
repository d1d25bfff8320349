"""One id, one placement cluster-wide: claims at the load store's task index.

Before placing ids it does not hold, a scheduler claims them at the store in
one request per submission (:mod:`dodoor.taskindex`): an id another scheduler
placed or is placing comes back with that node or as busy, and is not placed a
second time. Without the store, the scheduler asks every agent in its view
which of the ids it holds (one request per agent), so an id journaled anywhere
that answers is not placed again (docs/guarantees.md).

Claims of concurrent submissions share requests, as enqueues share them in the
outbox: while one claim request is in flight, later callers wait and leave
together in the next. Under a load of single-task submissions this turns one
store round trip per task into one per batch of waiting tasks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from dodoor.taskindex import PLACED
from dodoor.wire import Lookup, LookupReply
from dodoor.service.peers import PeerClient, PeerError
from dodoor.service.http import BackgroundTasks
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

log = logging.getLogger(__name__)
Claimed = dict[str, tuple[str, str, str]]  # id -> (outcome, node, owner)


class Claims:
    """Claims for one scheduler process (``instance``: its id and a per-process tag)."""

    def __init__(self, peers: PeerClient, settings: SchedulerSettings, view: ClusterView,
                 instance: str) -> None:
        self.peers = peers
        self.settings = settings
        self.view = view
        self.instance = instance
        # whether the store is worth asking (the app says False while it is unreachable)
        self.claiming: Callable[[], bool] = lambda: True
        self.skipped = 0  # submissions checked with the agents instead of the store
        self.requests = 0  # claim requests sent to the store
        self._waiting: list[tuple[list[str], asyncio.Future]] = []
        self._in_flight = False
        self._senders = BackgroundTasks()

    async def claim(self, ids: list[str], made_here: bool = False) -> Claimed:
        """Claim ``ids``; the store's verdict per id, or what the agents hold.

        ``made_here``: ids this scheduler generated, which no one else can hold, claimed
        only so that the store's index names their owner before any agent reports them
        (docs/guarantees.md "Ids"). Without the store they are not looked up at the
        agents: the verdict is then empty."""
        if not self.claiming():
            self.skipped += 1
            return {} if made_here else await self.ask_agents(ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting.append((ids, fut))
        if not self._in_flight:
            # its own task: a caller cancelled mid-request must not strand the others
            self._in_flight = True
            self._senders.spawn(self._drain(), name="claims")
        verdict = await fut
        if verdict is None:
            self.skipped += 1
            return {} if made_here else await self.ask_agents(ids)
        return verdict

    async def close(self) -> None:
        await self._senders.close()

    async def _drain(self) -> None:
        batch: list[tuple[list[str], asyncio.Future]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._send(batch)
                batch = []
        finally:
            self._in_flight = False
            for _, fut in batch + self._waiting:  # cancelled (shutdown): no verdict
                if not fut.done():
                    fut.set_result(None)
            self._waiting = []

    async def _send(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        """One claim request for every waiting caller; each future gets its ids' verdicts
        (None: the store could not be asked)."""
        ids = list(dict.fromkeys(i for part, _ in batch for i in part))
        verdicts: Claimed | None = None
        self.requests += 1
        try:
            reply = await self.peers.send(
                self.settings.loadstore_url.rstrip("/") + "/internal/lookup",
                Lookup(self.instance, tuple(ids), claim=True, ended=True), expect=LookupReply)
            if len(reply.outcomes) == len(ids):
                verdicts = {i: (o, n, w) for i, o, n, w
                            in zip(ids, reply.outcomes, reply.nodes, reply.owners)}
            else:
                log.warning("load store answered %d outcomes for %d ids; asking the agents",
                            len(reply.outcomes), len(ids))
        except PeerError as exc:
            log.warning("claiming %d id(s) at the load store failed; asking the agents: %s",
                        len(ids), exc)
        for part, fut in batch:
            if not fut.done():
                fut.set_result(None if verdicts is None else {i: verdicts[i] for i in part})

    async def ask_agents(self, ids: list[str]) -> Claimed:
        """Without the store's index: which agents in view hold any of ``ids`` (one
        request per agent). Ids held nowhere that answered are placed; an agent that
        does not answer cannot tell (docs/guarantees.md)."""
        msg = Lookup(self.instance, tuple(ids))
        targets = list(zip(self.view.node_ids, self.view.urls))
        replies = await asyncio.gather(
            *(self.peers.send(url + "/internal/lookup", msg, expect=LookupReply)
              for _, url in targets), return_exceptions=True)
        found: Claimed = {}
        for (node, _), reply in zip(targets, replies):
            if isinstance(reply, BaseException):
                log.info("agent %s could not say which ids it holds: %s", node, reply)
                continue
            for task_id, outcome in zip(ids, reply.outcomes):
                if outcome == PLACED:
                    found[task_id] = (PLACED, node, "")
        return found
