"""The Dodoor load score (docs/design.md §3) — the one implementation in the project.

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

from dodoor.resources import FIT_TOLERANCE, N_RESOURCES, PENDING, TASKS


def squared_capacity(capacity: np.ndarray) -> np.ndarray:
    """C² elementwise, +inf where a capacity is 0 — so ``L·r / C²`` is 0 there.

    Hosts that score many tasks on one cluster compute this once per node
    (:class:`dodoor.cache.LoadCache` does) and pass it to :func:`load_score`.
    """
    sq = np.asarray(capacity, dtype=np.float64) ** 2
    sq[sq == 0.0] = np.inf
    return sq


def load_score(
    demand: np.ndarray,
    capacity: np.ndarray,
    load: np.ndarray,
    pending: np.ndarray,
    weights: np.ndarray,
    alpha: float,
    sq_capacity: np.ndarray | None = None,
    among: np.ndarray | None = None,
) -> np.ndarray:
    """Score each of the d candidates; returns a float64 array of shape (d,) in [0, 1].

    Leading axes score many tasks at once: ``demand`` (B, 1, R) with
    ``capacity``/``load``/``sq_capacity`` (B, d, R) and ``pending`` (B, d)
    give (B, d), each row what scoring that task alone gives. There, ``among``
    (B, d) bool restricts each task to some of its candidates: the row's
    ``among`` entries get what scoring only those candidates would give, the
    others are meaningless.

    Domain: capacities are 0 or at least 1e-6 of their unit, loads and
    demands finite and non-negative (what validation admits). ``sq_capacity`` is
    :func:`squared_capacity` of ``capacity`` when the caller has it already.

    The body is kept to a handful of array operations because it runs once per
    placed task, and it avoids numpy's slowest small-array calls: ``dot``
    rather than ``@`` and the two d-element totals summed from lists; stacked
    rows are totalled in the same order (:func:`_row_totals`), so a row
    equals the one-task score bit for bit.
    """
    if sq_capacity is None:
        sq_capacity = squared_capacity(capacity)
    rl = (load * demand / sq_capacity).dot(weights)
    if rl.ndim > 1:
        return _batch_score(rl, pending, alpha, among)
    if among is not None:
        raise ValueError("among restricts stacked tasks only; score a subset's rows instead")
    # Σ_k w_k cancels in RL_j / Σ_i RL_i, so it is never divided out.
    rl_total = sum(rl.tolist())
    pending_total = sum(pending.tolist())
    if rl_total > 0.0:
        score = rl / rl_total * (1.0 - alpha)
        if pending_total > 0.0:
            score += pending / pending_total * alpha
        return score
    if pending_total > 0.0:
        return pending / pending_total * alpha
    return np.zeros(rl.shape)


def _batch_score(rl: np.ndarray, pending: np.ndarray, alpha: float,
                 among: np.ndarray | None) -> np.ndarray:
    """:func:`load_score`'s shares for stacked tasks: the same operations row by row."""
    if among is None:
        rl_total, pending_total = _row_totals(rl), _row_totals(pending)
    else:  # left-out candidates add 0.0 to the totals, which changes no bit
        rl_total = _row_totals(np.where(among, rl, 0.0))
        pending_total = _row_totals(np.where(among, pending, 0.0))
    score = np.divide(rl, rl_total, out=np.zeros(rl.shape), where=rl_total > 0.0)
    score *= 1.0 - alpha
    share = np.divide(pending, pending_total, out=np.zeros(rl.shape), where=pending_total > 0.0)
    share *= alpha
    score += share
    return score


def _row_totals(values: np.ndarray) -> np.ndarray:
    """Each row's sum, added left to right as the one-task score's ``sum`` does.

    numpy's ``sum`` does so for rows of up to 7 values; from 8 on it adds in
    unrolled partial sums and the last bit may differ, while a cumulative sum
    always adds in order.
    """
    if values.shape[-1] <= 7:
        return values.sum(axis=-1, keepdims=True)
    return np.cumsum(values, axis=-1)[..., -1:]


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
    ``dodoor.cache.STATE_COLUMNS`` order. Stacked tasks as in :func:`load_score`.
    """
    committed, tasks, pending = state[..., :N_RESOURCES], state[..., TASKS], state[..., PENDING]
    room = np.all(committed + demand <= capacity + FIT_TOLERANCE, axis=-1) & (tasks < slots)
    per_slot = pending / np.maximum(slots, 1.0)
    return np.where(room, 0.0, per_slot)


def argmin_random(scores: np.ndarray, rng: random.Random) -> int:
    """Index of the lowest score; ties broken uniformly at random with ``rng``."""
    values = scores.tolist()
    best = min(values)
    if values.count(best) == 1:  # the usual case: no tie, no random draw
        return values.index(best)
    ties = [i for i, v in enumerate(values) if v == best]
    return ties[rng.randrange(len(ties))]
