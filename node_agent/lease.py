"""The agent's lease to start tasks, renewed by each answered state report.

The load store declares a node dead after ``dead_after_ms`` without a report,
and its clients are then told its tasks are ``lost``. An agent that was paused
or cut off that long must therefore not start anything before it has heard
whether it was fenced. Each report the store answers grants a lease of
``dead_after_ms`` (sent in the answer), counted from when the report was
*sent*: the store received it later, so the lease always ends before the store
can declare the node dead. While the lease has lapsed the agent starts nothing
(running tasks go on, enqueues are still journaled) and reports at once.

An agent without a load store (tests, a lone agent) needs no lease.
"""

from __future__ import annotations

from dodoor.clock import Clock


class Lease:
    """Start permission; see the module docstring."""

    def __init__(self, clock: Clock, required: bool) -> None:
        self.clock = clock
        self.required = required
        self._until_ms = float("-inf")
        self.lapses = 0  # times a start was held back for want of a lease

    def grant(self, sent_ms: float, lease_ms: float) -> None:
        """A report sent at ``sent_ms`` was answered (not fenced) with ``lease_ms``."""
        self._until_ms = max(self._until_ms, sent_ms + lease_ms)

    def revoke(self) -> None:
        """Fenced: nothing starts until a report of the new life is answered."""
        self._until_ms = float("-inf")

    def valid(self) -> bool:
        if not self.required:
            return True
        return self.clock.now_ms() < self._until_ms
