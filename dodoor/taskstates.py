"""The states a task can be in, as every component and client sees them (docs/guarantees.md).

``queued`` and ``running`` are held by an agent (a task an agent preempted,
``--preempt``, reads ``queued`` again until it re-runs); ``succeeded``, ``failed``,
``lost`` and ``cancelled`` are terminal (``cancelled``: a client's
``DELETE /v1/tasks/{id}`` stopped it, before or while it ran). ``lost`` is said only of a task whose node the load
store declared dead (its agent then ends the task ``lost`` too, never runs it
again unless it is resubmitted). ``unknown`` is a scheduler's honest answer when
it cannot reach the node holding a task, or that node is out of its view
without having been declared dead: the task may well be alive.
"""

from __future__ import annotations

QUEUED = "queued"
# an agent's durable Sparrow reservation (reads ``queued`` to clients): the task waits
# for its scheduler's confirm
RESERVED = "reserved"
# an agent's row of a queued task it is handing over to another agent (reads ``queued``),
# then of one that agent took (``moved``: the agent names where it went, and a scheduler
# asks there); neither is a client-visible state (docs/guarantees.md, "Moved tasks")
MOVING = "moving"
MOVED = "moved"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
LOST = "lost"
CANCELLED = "cancelled"
UNKNOWN = "unknown"

TERMINAL = frozenset({SUCCEEDED, FAILED, LOST, CANCELLED})
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, LOST, CANCELLED, UNKNOWN)
