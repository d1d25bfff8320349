"""The host-wide container overhead: linear in the containers starting at once."""

import pytest

from dodoor.sim.contention import Contention
from dodoor.sim.engine import EventLoop


def test_overhead_rises_with_the_phase_and_falls_as_it_empties():
    loop = EventLoop()
    c = Contention(loop, 100.0, 400.0, 4)
    # 1, 2, 3, 4 at once: solo, then a third of the way to full per extra container
    assert [c.take() for _ in range(4)] == [100.0, 200.0, 300.0, 400.0]
    assert c.take() == 400.0  # beyond the cluster's slots it stays at full
    assert c.in_phase == 5
    loop.run(until_ms=150.0)
    assert c.in_phase == 4 and c.peek() == 400.0  # the first left at 100 ms
    loop.run()
    assert c.in_phase == 0 and c.peek() == 100.0 and loop.now == 400.0


def test_one_slot_is_never_shared():
    c = Contention(EventLoop(), 50.0, 80.0, 1)
    assert (c.take(), c.take()) == (50.0, 50.0)


@pytest.mark.parametrize("args", [(10.0, 5.0, 2), (-1.0, 5.0, 2), (1.0, 5.0, 0)])
def test_bad_settings_are_refused(args):
    with pytest.raises(ValueError, match="got"):
        Contention(EventLoop(), *args)
