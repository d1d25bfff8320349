"""The live load store's adaptive b (scheduler.loadstore.state) on a ManualClock."""

from __future__ import annotations

import numpy as np

from dodoor.clock import ManualClock
from dodoor.wire import Deltas
from scheduler.loadstore.state import LoadStoreState


def _deltas(placements: int) -> Deltas:
    return Deltas("s0", 1, (), np.zeros((0, 5)), placements)


def test_live_b_follows_the_placement_rate_toward_the_age_target():
    clock = ManualClock()
    store = LoadStoreState(b=80, dead_after_ms=1e9, clock=clock, adaptive_b_target_ms=50.0)
    # 2 placements per ms: b -> 2 * 2 * 50 = 200
    pushes = 0
    for _ in range(400):
        clock.advance(4.0)
        pushes += store.add_deltas(_deltas(8))
    assert store.b == 200 and pushes > 0
    # the rate drops to 0.1 per ms: b falls toward 10, strictly downward
    seen = []
    for _ in range(600):
        clock.advance(80.0)
        if store.add_deltas(_deltas(8)):
            seen.append(store.b)
    assert seen == sorted(seen, reverse=True)
    assert seen[-1] == 10


def test_fixed_b_is_unchanged_without_a_target():
    clock = ManualClock()
    store = LoadStoreState(b=16, dead_after_ms=1e9, clock=clock)
    due = []
    for _ in range(6):
        clock.advance(1.0)
        due.append(store.add_deltas(_deltas(8)))
    assert due == [False, True] * 3 and store.b == 16
