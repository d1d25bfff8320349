"""The load store's own stall is not counted against the nodes (exact, on a ManualClock)."""

from dodoor.clock import ManualClock
from scheduler.loadstore.state import LoadStoreState
from tests.daemons.test_loadstore import node_state


def test_forgiven_stall_shifts_every_live_deadline_by_the_stall():
    clock = ManualClock()
    store = LoadStoreState(b=80, dead_after_ms=3000, clock=clock)
    store.report(node_state("a"))
    clock.advance(1000)
    store.report(node_state("b"))
    clock.advance(30_000)  # the store was stopped for 30 s
    store.forgive_stall(30_000)
    assert store.expire() is False
    assert store.snapshot().node_ids == ("a", "b")
    # a was last heard 1000 ms before b: it dies first, exactly on its shifted deadline
    clock.advance(2000)
    assert store.expire() is False  # a at exactly 3000 ms of counted silence
    clock.advance(1)
    assert store.expire() is True
    assert store.snapshot().node_ids == ("b",)
    clock.advance(1000)
    assert store.expire() is True
    assert store.snapshot().node_ids == ()
