"""The Dodoor load score (DESIGN §3) — the one implementation in the project.

For a task demand r and d candidate nodes with capacities C (d×R), committed
loads L (d×R) and pending durations D (d,)::

    RL_j    = Σ_k w_k · L_jk · r_k / C_jk²  /  Σ_k w_k
    score_j = (1 − α) · RL_j / Σ_i RL_i  +  α · D_j / Σ_i D_i

Lower is better. The reference Java code's bugs are not reproduced: every
candidate is scored with its own capacity; a zero sum makes its term zero for
all candidates instead of NaN; a zero capacity in a resource contributes zero
(such a node cannot hold a positive demand there and is filtered by fit anyway).
"""

from __future__ import annotations

import random

import numpy as np


def load_score(
    demand: np.ndarray,
    capacity: np.ndarray,
    load: np.ndarray,
    pending: np.ndarray,
    weights: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """Score each of the d candidates; returns a float64 array of shape (d,) in [0, 1]."""
    active = weights > 0.0
    if not active.all():
        # A zero weight must not turn an overflowing ratio into inf·0 = NaN.
        demand, capacity, load, weights = demand[active], capacity[:, active], load[:, active], weights[active]
    wsum = float(weights.sum())
    with np.errstate(all="ignore"):
        ratio = np.where(capacity > 0.0, load / capacity, 0.0) * np.where(
            capacity > 0.0, demand / capacity, 0.0
        )
        rl = ratio @ weights
    if wsum > 0.0:
        rl = rl / wsum
    return (1.0 - alpha) * _share(rl) + alpha * _share(np.asarray(pending, dtype=np.float64))


def _share(values: np.ndarray) -> np.ndarray:
    """Each value's share of the sum; all zeros when the sum is zero.

    Values that overflowed to infinity (absurdly small capacities) split the
    whole share among themselves rather than poisoning the others with NaN.
    """
    total = float(values.sum())
    if not np.isfinite(total):
        values = (~np.isfinite(values)).astype(np.float64)
        total = float(values.sum())
    if total <= 0.0:
        return np.zeros_like(values, dtype=np.float64)
    return values / total


def expected_wait(
    demand: np.ndarray,
    capacity: np.ndarray,
    state: np.ndarray,
    slots: np.ndarray,
) -> np.ndarray:
    """Estimated queueing delay (ms) the task would meet on each candidate.

    Zero where the task fits beside everything committed there and a slot is
    free; otherwise the pending duration spread over the node's slots — the
    paper's score weighs pending work equally on a 1-slot and a 4-slot node,
    though the latter drains it four times as fast. ``state`` is in
    ``dodoor.cache.STATE_COLUMNS`` order.
    """
    r = demand.shape[0]
    committed, tasks, pending = state[:, :r], state[:, r], state[:, r + 1]
    room = np.all(committed + demand <= capacity + 1e-9, axis=1) & (tasks < slots)
    per_slot = pending / np.maximum(slots, 1.0)
    return np.where(room, 0.0, per_slot)


def argmin_random(scores: np.ndarray, rng: random.Random) -> int:
    """Index of the lowest score; ties broken uniformly at random with ``rng``."""
    best = float(scores.min())
    ties = np.flatnonzero(scores <= best)
    if ties.size == 1:
        return int(ties[0])
    return int(ties[rng.randrange(ties.size)])
