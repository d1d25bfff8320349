"""The load store's cluster-wide task index: which node holds each id, who claimed it.

Pure state (time from an injected clock), so every rule is tested exactly. It
serves two promises of docs/guarantees.md:

* any scheduler can answer for any task: a scheduler that did not place an id
  looks it up here (``lookup``) and asks the node that reported it;
* one id, one placement: before placing an id it does not know, a scheduler
  claims it here. An id that a node has reported, or that another scheduler
  claimed moments ago, is not placed a second time.

Nodes report the ids they accept in their state reports (``placed``), so an
id reaches the index within one report interval of its enqueue. The index is
soft state: after a store restart the agents send every id of their journals
again. It is bounded (least recently touched entries go first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable

from dodoor.clock import Clock

# Outcomes per id (LookupReply.outcomes)
NEW = "new"          # claimed for the asking scheduler just now: place it
MINE = "mine"        # already claimed by the asking scheduler, no node reported yet
PLACED = "placed"    # a node reported it (nodes[i]); that node answers for it
LOST = "lost"        # the node that reported it was declared dead (lookup only)
BUSY = "busy"        # claimed by another scheduler moments ago, no node reported yet
UNKNOWN = "unknown"  # never seen (lookup only)
OUTCOMES = (NEW, MINE, PLACED, LOST, BUSY, UNKNOWN)


class _Entry:
    __slots__ = ("node", "owner", "claimed_ms")

    def __init__(self, node: str, owner: str, claimed_ms: float) -> None:
        self.node = node
        self.owner = owner
        self.claimed_ms = claimed_ms


class TaskIndex:
    """id → (node, claiming scheduler); see the module docstring.

    ``claim_ttl_ms``: how long a claim without a reporting node keeps other
    schedulers off the id. It must outlast a placement's worst case (the
    scheduler's enqueue resolution plus one agent report), since past it the id
    can be placed again.
    """

    def __init__(self, clock: Clock, limit: int = 1_000_000, claim_ttl_ms: float = 60_000.0) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        if not claim_ttl_ms > 0:
            raise ValueError(f"claim_ttl_ms must be > 0, got {claim_ttl_ms!r}")
        self.clock = clock
        self.limit = limit
        self.claim_ttl_ms = claim_ttl_ms
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def node_of(self, task_id: str) -> str | None:
        entry = self._entries.get(task_id)
        return entry.node or None if entry is not None else None

    def placed(self, node_id: str, task_ids: Iterable[str]) -> None:
        """A node reports holding these ids (the latest report wins)."""
        entries = self._entries
        for task_id in task_ids:
            entry = entries.get(task_id)
            if entry is None:
                entries[task_id] = _Entry(node_id, "", 0.0)
            else:
                entry.node = node_id
                entries.move_to_end(task_id)
        self._trim()

    def lookup(self, task_ids: Iterable[str], scheduler: str, claim: bool,
               dead: Callable[[str], bool],
               complete: bool = True) -> tuple[list[str], list[str], list[str]]:
        """Per id: (outcome, node or "", owner or ""); ``claim`` takes the free ids.

        ``dead(node)`` says whether the store declared that node dead: with
        ``claim`` its ids may be placed again (their clients were told ``lost``).
        ``complete`` False (some node has not resent its ids yet): an id never seen
        is ``busy``, not free, since that node may hold it.
        """
        now = self.clock.now_ms()
        entries = self._entries
        outcomes: list[str] = []
        nodes: list[str] = []
        owners: list[str] = []
        for task_id in task_ids:
            entry = entries.get(task_id)
            if entry is None:
                outcome = UNKNOWN
                if not complete:
                    outcome = BUSY
                elif claim:
                    entry = entries[task_id] = _Entry("", scheduler, now)
                    outcome = NEW
            elif entry.node:
                outcome = PLACED
                if dead(entry.node):
                    outcome = LOST
                    if claim:
                        entry.node, entry.owner, entry.claimed_ms = "", scheduler, now
                        outcome = NEW
            elif entry.owner == scheduler:
                outcome = MINE
            elif claim and now - entry.claimed_ms > self.claim_ttl_ms:
                # the claimer never got it reported: it died before enqueueing, or
                # every enqueue failed
                entry.owner, entry.claimed_ms = scheduler, now
                outcome = NEW
            else:
                outcome = BUSY
            outcomes.append(outcome)
            nodes.append(entry.node if entry is not None else "")
            owners.append(entry.owner if entry is not None else "")
            if entry is not None:
                entries.move_to_end(task_id)
        self._trim()
        return outcomes, nodes, owners

    def _trim(self) -> None:
        entries = self._entries
        while len(entries) > self.limit:
            entries.popitem(last=False)
