"""One id, one placement cluster-wide: claims at the load store's task index.

Before placing ids it does not hold, a scheduler claims them at the store in
one request per submission (:mod:`dodoor.taskindex`): an id another scheduler
placed or is placing comes back with that node or as busy, and is not placed a
second time. Without the store, the scheduler asks every agent in its view
which of the ids it holds (one request per agent), so an id journaled anywhere
that answers is not placed again (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from dodoor.taskindex import PLACED
from dodoor.wire import Lookup, LookupReply
from scheduler.agents import PeerClient, PeerError
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

    async def claim(self, ids: list[str]) -> Claimed:
        """Claim ``ids``; the store's verdict per id, or what the agents hold."""
        if not self.claiming():
            self.skipped += 1
            return await self.ask_agents(ids)
        try:
            reply = await self.peers.send(
                self.settings.loadstore_url.rstrip("/") + "/internal/lookup",
                Lookup(self.instance, tuple(ids), claim=True), expect=LookupReply)
        except PeerError as exc:
            log.warning("claiming %d id(s) at the load store failed; asking the agents: %s",
                        len(ids), exc)
            self.skipped += 1
            return await self.ask_agents(ids)
        if len(reply.outcomes) != len(ids):
            log.warning("load store answered %d outcomes for %d ids; asking the agents",
                        len(reply.outcomes), len(ids))
            return await self.ask_agents(ids)
        return {i: (o, n, w) for i, o, n, w in zip(ids, reply.outcomes, reply.nodes, reply.owners)}

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
