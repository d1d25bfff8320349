"""The packing fallback's moves live: the agents' movable tasks in, their move orders out.

Before a window is solved, :func:`probe_movable` asks the few model nodes that
must hold queued tasks for their queued, never started tasks of a class below the
window's highest (``Probe.movable_below``, answered by node_agent/movable.py with
the node's state read at the same moment), with a short timeout: a node that does
not answer in time only offers nothing to move. An agent starts every waiting task
that fits (backfill), so a node holds queued tasks only where its committed load
exceeds its capacity or its entries its slots (:func:`queued_excess`); the
``PROBE_NODES`` with the most excess are asked, and the model gets at most
``MAX_MOVABLE`` tasks, lowest class first: each is a variable per model node, and
the model must stay within the solver's time limit.

After the solve, :class:`AgentMoveOrders` sends each proposed move as the agents'
move order (``MoveOrder`` naming the task id and the target agent and life,
``POST /internal/move`` at the task's agent: node_agent/handover.py, the same
journaled, exactly-once hand-over rebalancing uses) and waits for every answer. 202
means the task left its agent's queue for the target; 204 (it started meanwhile,
or the target refused), any other answer, no answer or a timeout count as failed:
the task stays where it was, or its agent resolves the hand-over on its own
(docs/guarantees.md "Moved tasks"), and the window task that needed the room goes
its normal way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dodoor.resources import N_RESOURCES, TASKS
from dodoor.service.peers import PeerClient, PeerError
from dodoor.wire import MoveOrder, Probe, ProbeReply

if TYPE_CHECKING:
    from scheduler.fallback import FallbackStats, ProposedMove

log = logging.getLogger(__name__)

# how long the model waits for a node's movable tasks: the window's tasks wait meanwhile
PROBE_TIMEOUT_S = 0.25
PROBE_NODES = 8  # most nodes probed per window
MAX_MOVABLE = 32  # most movable tasks per model (each: a variable per model node)


def queued_excess(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Per node (rows as ``dodoor.cache`` keeps them), how far its committed load or
    entries exceed its capacity or slots, as a fraction; > 0 only where tasks wait."""
    over = state[:, :N_RESOURCES] - capacity
    # a resource the node lacks (a disk of 0) counts only when something asks for it
    load = np.where(capacity > 0, over / np.maximum(capacity, 1e-9),
                    np.where(over > 0, 1.0, -1.0))
    entries = (state[:, TASKS] - slots) / np.maximum(slots, 1.0)
    return np.maximum(load.max(axis=1), entries)


@dataclass(frozen=True)
class Movable:
    """The model nodes' queued lower-class tasks: the node position of each, its id,
    its demand (M, R), and the probed state rows by node position."""

    node: np.ndarray
    ids: tuple[str, ...]
    demand: np.ndarray
    rows: dict[int, np.ndarray]

    @classmethod
    def none(cls) -> Movable:
        return cls(np.zeros(0, dtype=np.int64), (), np.zeros((0, N_RESOURCES)), {})


async def probe_movable(peers: PeerClient, scheduler_id: str, urls: Sequence[str],
                        excess: np.ndarray, below: int,
                        timeout_s: float = PROBE_TIMEOUT_S) -> Movable:
    """Ask the nodes at ``urls`` (the model's, by position) with the most
    :func:`queued_excess` (> 0) for their queued tasks of a class below ``below``;
    nodes that fail or are slow offer none."""
    if below <= 0:  # class 0 is the lowest: nothing is below it
        return Movable.none()
    ranked = sorted((pos for pos in range(len(urls)) if excess[pos] > 0),
                    key=lambda pos: -excess[pos])
    asked = sorted(ranked[:PROBE_NODES])

    async def one(pos: int) -> ProbeReply | None:
        try:
            return await asyncio.wait_for(peers.send(
                urls[pos] + "/internal/probe", Probe(scheduler_id, below), ProbeReply),
                timeout_s)
        except (PeerError, asyncio.TimeoutError) as exc:
            log.info("packing fallback: no movable tasks from %s (%s)", urls[pos], exc)
            return None

    replies = await asyncio.gather(*(one(pos) for pos in asked))
    nodes, ids, demands, classes, rows = [], [], [], [], {}
    for pos, reply in zip(asked, replies):
        if reply is None:
            continue
        rows[pos] = reply.state
        if reply.movable is None or not reply.movable_ids:
            continue
        listed = np.asarray(reply.movable).reshape(-1, N_RESOURCES + 1)
        if len(listed) != len(reply.movable_ids):
            log.warning("packing fallback: %s listed %d ids for %d tasks; ignored", urls[pos],
                        len(reply.movable_ids), len(listed))
            continue
        for task_id, row in zip(reply.movable_ids, listed):
            if row[N_RESOURCES] < below:  # an agent's word is checked, not trusted
                nodes.append(pos)
                ids.append(task_id)
                demands.append(row[:N_RESOURCES])
                classes.append(row[N_RESOURCES])
    keep = sorted(range(len(ids)), key=lambda k: classes[k])[:MAX_MOVABLE]  # stable
    return Movable(np.array([nodes[k] for k in keep], dtype=np.int64),
                   tuple(ids[k] for k in keep),
                   np.array([demands[k] for k in keep], dtype=np.float64).reshape(
                       -1, N_RESOURCES), rows)


def probed_rows(state: np.ndarray, rows: dict[int, np.ndarray]) -> np.ndarray:
    """The model's state rows: a probed node's own row where it answered (it holds the
    tasks it lists, read at the same moment), the cached one elsewhere. As in the
    simulator's fallback; a placement of this scheduler still on its way there is then
    not counted, and only queues behind what the solver put there."""
    out = state.copy()
    for pos, row in rows.items():
        out[pos] = row
    return out


class AgentMoveOrders:
    """:class:`scheduler.fallback.MoveOrders` by the agents' move order (module docstring)."""

    def __init__(self, peers: PeerClient, life_at: Callable[[str], str],
                 stats: FallbackStats) -> None:
        self.peers = peers
        self.life_at = life_at  # the target's life in the view now (ClusterView.life_at)
        self.stats = stats

    async def order(self, moves: Sequence[ProposedMove]) -> list[bool]:
        """Send every move at once; per move, whether its task left for the target."""
        self.stats.moves_proposed += len(moves)
        done = await asyncio.gather(*(self._one(m) for m in moves))
        self.stats.moves_done += sum(done)
        self.stats.moves_failed += len(done) - sum(done)
        return list(done)

    async def _one(self, move: ProposedMove) -> bool:
        (origin, origin_url), (dest, dest_url) = move.origin, move.dest
        order = MoveOrder(dest, dest_url, self.life_at(dest_url), task_id=move.task_id)
        try:
            status = await self.peers.send_status(origin_url + "/internal/move", order,
                                                  kind="cancel")
        except PeerError as exc:
            log.info("packing fallback: moving %s from %s to %s failed: %s", move.task_id,
                     origin, dest, exc)
            return False
        if status != 202:
            log.info("packing fallback: %s did not move %s to %s (answered %d: started "
                     "meanwhile, or the target refused)", origin, move.task_id, dest, status)
            return False
        return True
