"""Message delivery: every message is counted by type and arrives after the delay."""

from __future__ import annotations

from typing import Any, Callable

from dodoor.messages import MessageCounter
from dodoor.sim.engine import EventLoop


class Network:
    """Delivers ``fn(*args)`` one ``delay_ms`` after ``send`` and counts the message."""

    __slots__ = ("loop", "delay_ms", "counter", "_counts")

    def __init__(self, loop: EventLoop, delay_ms: float, counter: MessageCounter | None = None):
        self.loop = loop
        self.delay_ms = delay_ms
        self.counter = counter or MessageCounter()
        # validated once per type, then bumped directly: this is the hottest call
        self._counts = self.counter.counts

    def send(self, kind: str, fn: Callable[..., Any], *args: Any) -> None:
        counts = self._counts
        if kind in counts:
            counts[kind] += 1
        else:
            self.counter.add(kind)
        self.loop.call_at(self.loop.now + self.delay_ms, fn, *args)

    def count_only(self, kind: str, n: int = 1) -> None:
        """Count a message whose delivery nothing in the model waits for (completions)."""
        self.counter.add(kind, n)
