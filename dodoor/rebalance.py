"""Rebalancing queued work: which queue an agent with a free slot takes a task from.

The one decision rule of rebalancing (docs/simulator.md, "Rebalancing: the design
and why"), used by the simulated load store (:mod:`dodoor.sim.rebalance`) and the
daemon's (:mod:`scheduler.loadstore.rebalance`) alike. Pure: it reads and charges
the store's view (rows of :data:`dodoor.cache.STATE_COLUMNS`, report plus deltas).

An agent whose report shows a free slot asks for work. Among the other nodes with
at least ``min_queue`` tasks queued beyond their slots, the victim is the one with
the longest expected wait per slot, if that wait exceeds ``least_wait_ms`` (a move
must save more than the order and the enqueue take in flight). Each order is
charged to the view at once: one task, with the victim's mean pending work, leaves
the victim and joins the idle agent, so the next free slot (or the next report
before the victim's own) is not sent to the same queue on stale rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dodoor.cache import PENDING, TASKS
from dodoor.resources import N_RESOURCES


@dataclass(frozen=True)
class MovePlan:
    """One move order: take a queued task of ``victim`` that fits ``room`` to the thief.

    ``share`` is the pending work charged with it (the victim's mean per task)."""

    victim: int
    room: tuple[float, ...]
    share: float


def longest_queue(view: np.ndarray, slots: np.ndarray, thief: int, min_queue: float,
                  least_wait_ms: float) -> int | None:
    """The row to take a task from for ``thief``, or None when no queue is worth it."""
    queued = view[:, TASKS] - slots >= min_queue
    queued[thief] = False
    if not queued.any():
        return None
    wait = np.where(queued, view[:, PENDING] / np.maximum(slots, 1.0), -np.inf)
    victim = int(np.argmax(wait))
    return victim if wait[victim] > least_wait_ms else None


def charge(rows: np.ndarray, plan: MovePlan, thief: int) -> None:
    """Count the ordered move in ``rows`` (the view, or the deltas it is made of)."""
    rows[plan.victim, TASKS] -= 1.0
    rows[plan.victim, PENDING] -= plan.share
    rows[thief, TASKS] += 1.0
    rows[thief, PENDING] += plan.share


def plan_moves(view: np.ndarray, slots: np.ndarray, capacity: np.ndarray, thief: int,
               min_queue: float, least_wait_ms: float,
               also: np.ndarray | None = None) -> list[MovePlan]:
    """The orders for the report of ``thief``: one per free slot while a queue is worth
    taking from. Each is charged to ``view`` (and to ``also``, the deltas the caller
    keeps, when given) before the next is chosen."""
    plans: list[MovePlan] = []
    free_slots = int(slots[thief] - view[thief, TASKS])
    for _ in range(max(free_slots, 0)):
        victim = longest_queue(view, slots, thief, min_queue, least_wait_ms)
        if victim is None:
            break
        room = capacity[thief] - view[thief, :N_RESOURCES]
        share = view[victim, PENDING] / max(view[victim, TASKS], 1.0)
        plan = MovePlan(victim, tuple(room.tolist()), float(share))
        if also is not None:
            charge(also, plan, thief)
        charge(view, plan, thief)
        plans.append(plan)
    return plans
