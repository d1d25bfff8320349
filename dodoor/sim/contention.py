"""Container start overhead that grows with the containers starting at once on one host.

On docker agents a task's slot is held for its duration plus a container's
create, start, wait and removal. When the agents share one small host, that
overhead grows with the number of containers in that phase together: measured
here as ``solo_ms`` for one alone and ``full_ms`` for ``slots`` at once (the
cluster's slots; ``scheduler.overhead`` measures both). A task starting while
n − 1 others are in the phase is charged the linear interpolation
o(n) = solo + (full − solo)·(n − 1)/(slots − 1), fixed at its start, and stays
in the phase for o. A policy that keeps more slots starting at once therefore
pays more per task, as it does live.
"""

from __future__ import annotations

from dodoor.sim.engine import EventLoop


class Contention:
    """The shared phase counter of every node on one host."""

    __slots__ = ("loop", "solo_ms", "full_ms", "slots", "in_phase")

    def __init__(self, loop: EventLoop, solo_ms: float, full_ms: float, slots: int) -> None:
        if not 0 <= solo_ms <= full_ms or slots < 1:
            raise ValueError(f"need 0 <= solo <= full and slots >= 1, got {solo_ms}, "
                             f"{full_ms}, {slots}")
        self.loop = loop
        self.solo_ms = solo_ms
        self.full_ms = full_ms
        self.slots = slots
        self.in_phase = 0

    def peek(self) -> float:
        """The overhead a task starting now would be charged."""
        if self.slots == 1:
            return self.solo_ms
        share = min(self.in_phase, self.slots - 1) / (self.slots - 1)
        return self.solo_ms + (self.full_ms - self.solo_ms) * share

    def take(self) -> float:
        """Charge a task starting now: its overhead, counted in the phase until it ends."""
        overhead = self.peek()
        self.in_phase += 1
        self.loop.call_at(self.loop.now + overhead, self._leave)
        return overhead

    def _leave(self) -> None:
        self.in_phase -= 1
