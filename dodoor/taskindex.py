"""The load store's cluster-wide task index: which node holds each id, who claimed it.

Pure state (time from an injected clock), so every rule is tested exactly. It
serves two promises of docs/guarantees.md:

* any scheduler can answer for any task: a scheduler that did not place an id
  looks it up here (``lookup``) and asks the node that reported it;
* one id, one placement: before placing an id it does not know, a scheduler
  claims it here. An id that a node has reported, or that another scheduler
  claimed moments ago, is not placed a second time.

Nodes report the ids they accept in their state reports (``placed``), so an
id reaches the index within one report interval of its enqueue, and the ids
that ended since their last answered report, with the terminal state. When a
node is declared dead, an id whose end the index holds keeps that state
(``ENDED``): only ids unfinished as far as the store knows are ``lost``, and
the fenced agent is told which of its ends the store holds (``kept``), so it
ends the others ``lost`` too (docs/guarantees.md). The index is
soft state: after a store restart the agents send every id of their journals
again. It is bounded (least recently touched entries go first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterable, Sequence

from dodoor.clock import Clock
from dodoor.taskstates import LOST as LOST_STATE, TERMINAL

# Outcomes per id (LookupReply.outcomes)
NEW = "new"          # claimed for the asking scheduler just now: place it
MINE = "mine"        # already claimed by the asking scheduler, no node reported yet
PLACED = "placed"    # a node reported it (nodes[i]); that node answers for it
LOST = LOST_STATE     # the node that reported it was declared dead (lookup only)
BUSY = "busy"        # claimed by another scheduler moments ago, no node reported yet
UNKNOWN = "unknown"  # never seen (lookup only)
ENDED = "ended"      # its node was declared dead after reporting its end (states[i])
OUTCOMES = (NEW, MINE, PLACED, LOST, BUSY, UNKNOWN, ENDED)


class _Entry:
    __slots__ = ("node", "owner", "claimed_ms", "state")

    def __init__(self, node: str, owner: str, claimed_ms: float, state: str = "") -> None:
        self.node = node
        self.owner = owner
        self.claimed_ms = claimed_ms
        self.state = state  # the terminal state its node reported, "" while unfinished


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

    def placed(self, node_id: str, task_ids: Sequence[str], states: Sequence[str] = ()) -> None:
        """A node reports holding these ids (the latest report wins), each with its
        terminal state when it ended, else "" (``states`` empty: none ended).

        A ``lost`` end never takes an id from another node, nor from a scheduler's
        claim: it only says that this node's copy will not run. Nor does an
        unfinished copy take an id whose end another node reported (a Sparrow
        reservation that lost the race, resent by its restarted agent)."""
        if states and len(states) != len(task_ids):
            raise ValueError(f"{len(states)} task states for {len(task_ids)} task ids "
                             f"from node {node_id!r}")
        for task_id, state in zip(task_ids, states):  # all checked before any is taken
            if state and state not in TERMINAL:
                raise ValueError(f"node {node_id!r} reported task {task_id!r} in state "
                                 f"{state!r}; expected '' or one of {', '.join(TERMINAL)}")
        entries = self._entries
        for i, task_id in enumerate(task_ids):
            state = states[i] if states else ""
            entry = entries.get(task_id)
            if entry is None:
                entries[task_id] = _Entry(node_id, "", 0.0, state)
            elif entry.node != node_id and (
                    (state == LOST_STATE and (entry.node or entry.owner))
                    or (not state and entry.state and entry.state != LOST_STATE)):
                # Another node's copy that will not run: a fence voided it (a Sparrow
                # reservation, a run its dead life never finished), or it is a Sparrow
                # reservation resent after a restart for a task that already ended
                # where the entry points (an ended id is never placed again). Taking
                # the entry would read the live copy, or the end heard from it, as
                # ``lost`` once this node dies, and void that end at its fence.
                continue
            else:
                entry.node, entry.state = node_id, state
                entries.move_to_end(task_id)
        self._trim()

    def ended_at(self, node_id: str, task_ids: Iterable[str]) -> tuple[str, ...]:
        """Those of ``task_ids`` whose end ``node_id`` reported here (a fenced life's
        kept results: every scheduler answers them with their state)."""
        entries = self._entries
        return tuple(t for t in task_ids if (e := entries.get(t)) is not None
                     and e.node == node_id and e.state)

    def lookup(self, task_ids: Iterable[str], scheduler: str, claim: bool,
               dead: Callable[[str], bool], complete: bool = True,
               ended: bool = False) -> tuple[list[str], list[str], list[str], list[str]]:
        """Per id: (outcome, node or "", owner or "", ended state or ""); ``claim``
        takes the free ids.

        ``dead(node)`` says whether the store declared that node dead: with
        ``claim`` its unfinished ids may be placed again (their clients were told
        ``lost``). With ``ended`` (the asker reads it), a dead node's id whose end
        was reported is ``ended`` with its state, never placed again; without,
        ``lost`` as older schedulers expect.
        ``complete`` False (some node has not resent its ids yet): an id never seen
        is ``busy``, not free, since that node may hold it.
        """
        now = self.clock.now_ms()
        entries = self._entries
        outcomes: list[str] = []
        nodes: list[str] = []
        owners: list[str] = []
        states: list[str] = []
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
                if dead(entry.node) and ended and entry.state and entry.state != LOST_STATE:
                    outcome = ENDED
                elif dead(entry.node):
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
            states.append(entry.state if outcome == ENDED else "")
            if entry is not None:
                entries.move_to_end(task_id)
        self._trim()
        return outcomes, nodes, owners, states

    def _trim(self) -> None:
        entries = self._entries
        while len(entries) > self.limit:
            entries.popitem(last=False)
