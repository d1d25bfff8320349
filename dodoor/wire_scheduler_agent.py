"""Wire messages between a scheduler and an agent: the orders an agent takes (enqueue,
probe, reservation, cancel, move; a move also comes from the load store) and its
answers (probe reply, confirmation, task status).

Registered with the codec of :mod:`dodoor.wire_codec`; import them from :mod:`dodoor.wire`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dodoor.errors import ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task_columns, task_columns
from dodoor.wire_codec import message, omitted_at_default


@message("enqueue")
class Enqueue:
    """Scheduler → agent: run this task (also the task sent to a confirming Sparrow node)."""

    task: Task
    scheduler_id: str
    # the node life the scheduler aims at (Snapshot.incarnations): an agent refuses an
    # enqueue meant for a life it was fenced out of (docs/guarantees.md)
    incarnation: str = ""
    # set only when another agent hands the task over (rebalancing): it keeps its first
    # placement time, and an agent that had handed the id over before takes it back
    queued_ms: float | None = omitted_at_default(None)
    # the scheduler's learned duration of the task (scheduler/learning.py), when it is not
    # the declared one: the pending work the agent counts; the task runs as it is
    estimate_ms: float | None = omitted_at_default(None)
    TYPE: ClassVar[str]

    def __post_init__(self) -> None:
        if self.estimate_ms is not None:
            _check_estimate(self.estimate_ms)


@message("enqueue_batch")
class EnqueueBatch:
    """Scheduler → agent: several tasks in one request (``POST /internal/enqueue_batch``).

    Counted as one ``enqueue`` per task, like the single enqueues it replaces. Its body
    is columns, not a map per task (``to_body``; docs/protocol.md): decoding and
    validating a batch was half of an agent's HTTP work when each task was a map.
    """

    tasks: tuple[Task, ...]
    scheduler_id: str
    incarnation: str = ""  # as in Enqueue
    # Enqueue.estimate_ms per task, in order, or none at all (every task counts as declared)
    estimates_ms: tuple[float, ...] = omitted_at_default(())
    TYPE: ClassVar[str]

    def __post_init__(self) -> None:
        if self.estimates_ms:
            if len(self.estimates_ms) != len(self.tasks):
                raise ValueError(f"{len(self.estimates_ms)} estimates for {len(self.tasks)} tasks")
            if not all(0.0 < e < math.inf for e in self.estimates_ms):  # NaN fails too
                for estimate in self.estimates_ms:
                    _check_estimate(estimate)

    def to_body(self) -> dict[str, Any]:
        """The wire body: the tasks as columns (:func:`dodoor.validation.task_columns`)."""
        body = task_columns(self.tasks)
        body["scheduler_id"] = self.scheduler_id
        body["incarnation"] = self.incarnation
        if self.estimates_ms:
            body["estimates_ms"] = list(self.estimates_ms)
        return body

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "EnqueueBatch":
        """The message from its wire body, every task validated (raises ValidationError)."""
        if not _BATCH_FIELDS.issuperset(body):
            raise ValidationError(sorted(str(k) for k in body if k not in _BATCH_FIELDS)[0],
                                  "unknown field")
        for name in ("ids", "demands", "scheduler_id"):
            if name not in body:
                raise ValidationError(name, "missing field")
        scheduler_id, incarnation = body["scheduler_id"], body.get("incarnation", "")
        for name, value in (("scheduler_id", scheduler_id), ("incarnation", incarnation)):
            if type(value) is not str:
                raise ValidationError(name, f"expected str, got {type(value).__name__}")
        estimates = body.get("estimates_ms", [])
        if not isinstance(estimates, list) or not all(
                type(e) is float or (type(e) is int) for e in estimates):
            raise ValidationError("estimates_ms", "expected a list of numbers")
        tasks = parse_task_columns(body["ids"], body["demands"], body.get("priorities"),
                                   body.get("runs"))
        return cls(tasks, scheduler_id, incarnation, tuple(float(e) for e in estimates))


_BATCH_FIELDS = frozenset({"ids", "demands", "priorities", "runs", "scheduler_id",
                           "incarnation", "estimates_ms"})


def _check_estimate(estimate_ms: float) -> None:
    if not (math.isfinite(estimate_ms) and estimate_ms > 0.0):
        raise ValueError(f"a duration estimate must be a finite number of ms > 0, "
                         f"got {estimate_ms!r}")


@message("probe")
class Probe:
    """Scheduler → agent: report your current load (power-of-two, Prequal).

    ``movable_below`` > 0 also asks for the agent's queued, never started tasks of a
    class below it (the packing fallback's movable tasks, docs/daemons.md)."""

    scheduler_id: str
    movable_below: int = omitted_at_default(0)
    TYPE: ClassVar[str]


@message("probe_reply")
class ProbeReply:
    """Agent → scheduler: committed cores/memory/disk, task count, pending ms.

    Asked with ``movable_below``: the queued tasks of a lower class, read at the same
    moment as ``state``: their ids and a row each of cores, memory, disk and class."""

    node_id: str
    state: np.ndarray
    movable_ids: tuple[str, ...] = omitted_at_default(())
    movable: np.ndarray | None = omitted_at_default(None)
    TYPE: ClassVar[str]


@message("reserve")
class Reserve:
    """Scheduler → agent: hold a place in the queue for this task (Sparrow)."""

    task: Task
    scheduler_id: str
    reply_url: str
    TYPE: ClassVar[str]


@message("confirm")
class Confirm:
    """Agent → scheduler: the reservation reached the head and fits; send the task.

    ``task`` is the reserved task from the agent's journal: a scheduler that lost its
    reservation book (restarted) can still decide, through the load store's claims.
    """

    node_id: str
    task_id: str
    task: Task | None = None
    TYPE: ClassVar[str]


@message("cancel")
class Cancel:
    """Scheduler → agent: drop the reservation (another node won)."""

    task_id: str
    TYPE: ClassVar[str]


@message("cancel_task")
class CancelTask:
    """Scheduler → agent (``POST /internal/cancel_task``): a client cancels this task.
    A queued one never starts; a running one is stopped. Answered with the task's
    :class:`TaskStatus` afterwards (``cancelled``, or the terminal state it had already)."""

    task_id: str
    reason: str = ""
    TYPE: ClassVar[str]


@message("move")
class MoveOrder:
    """Load store (or a scheduler) → agent (``POST /internal/move``): hand a queued task
    over to the agent ``target_node`` (rebalancing, docs/guarantees.md "Moved tasks").

    The agent moves ``task_id`` when given, else its first queued task that fits
    ``room`` (cores, memory, disk; empty: any); only a task that never started moves.
    ``target_incarnation`` is the target's life the order aims at (it refuses another).
    Counted as a ``cancel``: the order costs what the simulator's move order costs.
    """

    target_node: str
    target_url: str
    target_incarnation: str = ""
    room: tuple[float, ...] = ()
    task_id: str = ""
    TYPE: ClassVar[str]


@message("task_status")
class TaskStatus:
    """Agent → anyone asking: where a task stands."""

    task_id: str
    state: str
    node_id: str
    queued_ms: float | None = None
    started_ms: float | None = None
    finished_ms: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    # state ``moved``: the agent this one handed the task over to (it answers for it now)
    moved_to: str = omitted_at_default("")
    TYPE: ClassVar[str]


@message("task_statuses")
class TaskStatuses:
    """Agent → scheduler, the answer to a :class:`~dodoor.wire.Lookup` at
    ``POST /internal/status``: the status of each asked id it holds, and the asked ids
    it does not know."""

    statuses: tuple[TaskStatus, ...]
    missing: tuple[str, ...] = ()
    TYPE: ClassVar[str]
