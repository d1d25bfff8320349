"""benchmarks/stall_watch.py: the latency probe's watchdog samples a late loop's stack."""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from stall_watch import StallWatch  # noqa: E402


def _block_here(seconds: float) -> None:
    time.sleep(seconds)  # stands for a blocking call on the loop's thread


def _stalls_of_a_block(seconds: float, **settings) -> list[dict]:
    """The samples a watch with ``settings`` takes while this thread blocks ``seconds``."""
    watch = StallWatch(poll_s=0.005, **settings)
    watch.start(threading.get_ident())
    try:
        _block_here(seconds)
    finally:
        watch.stop()
    return watch.stalls


def test_a_late_tick_is_sampled_where_the_thread_stands():
    stalls = _stalls_of_a_block(1.0, threshold_s=0.1, every_s=0.2, per_stall=8)
    # late by 0.1 s, then every 0.2 s until the block ends: at most 5 (fewer when the
    # watchdog itself waits for a CPU, as on a loaded CI machine), never more
    assert 1 <= len(stalls) <= 5
    lates = [s["late_s"] for s in stalls]
    assert lates == sorted(lates) and lates[0] >= 0.1
    assert all(s["stack"][-1].endswith(" _block_here") for s in stalls)
    assert not any(s["in_gc"] for s in stalls)


def test_ticks_on_time_are_not_sampled():
    # a threshold far above the ticks' spacing: a loaded machine may delay a tick a little
    watch = StallWatch(threshold_s=2.0, poll_s=0.005)
    watch.start(threading.get_ident())
    try:
        for _ in range(30):
            time.sleep(0.01)
            watch.last_tick = time.perf_counter()
    finally:
        watch.stop()
    assert watch.stalls == []


def test_one_stall_gives_at_most_per_stall_samples():
    stalls = _stalls_of_a_block(0.6, threshold_s=0.05, every_s=0.02, per_stall=2)
    assert 1 <= len(stalls) <= 2  # ten would fit in the block without the cap
