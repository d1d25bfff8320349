"""A deterministic discrete-event loop on a simulated millisecond clock.

Events sit in a binary heap ordered by ``(time_ms, seq)``: the sequence number
makes simultaneous events run in the order they were scheduled, so a run is a
pure function of its inputs and seed. The loop is its own clock — it
implements :class:`dodoor.clock.Clock` — so code written against that
protocol reads simulated time here.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable


class EventLoop:
    """Runs callbacks at simulated times, earliest first, ties in scheduling order."""

    __slots__ = ("_heap", "_seq", "now", "events_run")

    def __init__(self, start_ms: float = 0.0) -> None:
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.now = float(start_ms)
        self.events_run = 0

    def now_ms(self) -> float:
        """The current simulated time (the :class:`~dodoor.clock.Clock` protocol)."""
        return self.now

    def call_at(self, time_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``time_ms`` (never in the past)."""
        if not time_ms >= self.now:  # also rejects NaN
            raise ValueError(f"cannot schedule at {time_ms} ms, the clock is at {self.now} ms")
        self._seq += 1
        heapq.heappush(self._heap, (time_ms, self._seq, fn, args))

    def call_later(self, delay_ms: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` ``delay_ms`` from now."""
        self.call_at(self.now + delay_ms, fn, *args)

    @property
    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> float:
        """Time of the next event, ``inf`` when there is none."""
        return self._heap[0][0] if self._heap else math.inf

    def run(self, until_ms: float = math.inf, max_events: int | None = None) -> int:
        """Run events up to and including ``until_ms``, then set the clock to it;
        returns how many ran.

        ``max_events`` bounds one call so a caller can report progress between
        slices of a long run.
        """
        heap = self._heap
        pop = heapq.heappop
        ran = 0
        limit = math.inf if max_events is None else max_events
        while heap and heap[0][0] <= until_ms and ran < limit:
            time_ms, _, fn, args = pop(heap)
            self.now = time_ms
            fn(*args)
            ran += 1
        self.events_run += ran
        if ran < limit and until_ms != math.inf and until_ms > self.now:
            self.now = until_ms  # like SimPy: the clock reaches the horizon asked for
        return ran
