"""The clock seam: the daemons read wall time, the simulator its event time."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now_ms(self) -> float:
        """Milliseconds on this clock's time line."""
        ...


class MonotonicClock:
    """Process-local monotonic milliseconds (intervals, timeouts, ages)."""

    def now_ms(self) -> float:
        return time.monotonic() * 1000.0


class WallClock:
    """Milliseconds since the Unix epoch (timestamps shown to users, shared across hosts)."""

    def now_ms(self) -> float:
        return time.time() * 1000.0


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start_ms: float = 0.0) -> None:
        self._now = start_ms

    def now_ms(self) -> float:
        return self._now

    def advance(self, ms: float) -> None:
        if ms < 0:
            raise ValueError(f"cannot move a clock backwards by {ms} ms")
        self._now += ms
