"""The executor seam: how an agent runs one task (sleep, process, docker).

A task must never run as two copies at once, even across an agent crash. Three
calls make that possible without the agent knowing how any executor works:

* ``run(task, on_start)``: the executor awaits ``on_start(handle)`` as soon as
  the task exists outside the agent (a process group, a container). ``handle``
  is an opaque string that the agent journals with the task's row.
* ``forget(task_id)``: called once the task's terminal state is journaled; only
  then may the executor drop what holds the result (a finished container). An
  agent that dies before the result is journaled thus still finds it at restart.
* ``reconcile(interrupted)``: at restart, before anything re-runs, the executor
  gets every unfinished journal row with its handle. It must leave nothing of
  those tasks running unless it adopts them (and so can report their result),
  and may clean up anything of its own that the journal no longer wants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence, runtime_checkable

from dodoor.resources import Task

# Awaited by an executor with the handle of a task it has just started.
StartHook = Callable[[str], Awaitable[None]]
# Called (on the event loop) by a TimedExecutor with how its task ended.
EndHook = Callable[["TaskResult"], None]


@dataclass(frozen=True, slots=True)
class TaskResult:
    """How a task ended. ``state`` is ``succeeded`` or ``failed``."""

    state: str
    exit_code: int | None = None
    reason: str | None = None
    log_tail: str = ""


@dataclass(frozen=True, slots=True)
class Interrupted:
    """An unfinished journal row handed to ``reconcile`` at restart.

    ``state`` is the journal's (``queued`` or ``running``); ``handle`` is what the
    executor's ``on_start`` gave for it, or None when it never started (or the
    handle could not be journaled).
    """

    task: Task
    state: str
    handle: str | None = None

    @property
    def task_id(self) -> str:
        return self.task.task_id


@dataclass(frozen=True, slots=True)
class Adopted:
    """What ``reconcile`` found of a task: still running (the agent then awaits
    ``wait_adopted``) or ended with ``result`` (journaled, then passed to ``forget``)."""

    task_id: str
    running: bool
    result: TaskResult | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs tasks to completion within their resource limits.

    ``run`` is awaited once per task and must be cancellable (the agent cancels
    it on shutdown); blocking work goes through ``asyncio.to_thread``. See the
    module docstring for ``on_start``, ``forget`` and ``reconcile``.
    """

    name: str
    # True when a task's processes live outside the agent (and may outlive it): its
    # start is then committed to the journal before ``run``, so ``reconcile`` knows
    # what may have run. False (nothing outlives the agent): the start is journaled
    # with the task's end, and a crash in between simply runs the task again.
    outlives_agent: bool

    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult: ...

    async def forget(self, task_id: str) -> None:
        """The task's result is journaled: drop whatever still holds it (no-op if nothing)."""
        ...

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        """Deal with what a previous run of this agent left; see the module docstring."""
        ...

    async def wait_adopted(self, task_id: str) -> TaskResult:
        """Wait for an adopted running task to end."""
        ...

    async def close(self) -> None: ...


class Timer(Protocol):
    """What :meth:`TimedExecutor.start` returns (an ``asyncio.TimerHandle`` will do)."""

    def cancel(self) -> None: ...


@runtime_checkable
class TimedExecutor(Protocol):
    """An executor whose task is only a wait on the agent's event loop: nothing runs
    outside the agent, so nothing is journaled as a handle and ``forget`` has nothing
    to drop. Besides ``run``, ``start`` arms the wait and returns at once; the loop
    later calls ``on_end`` with the result, unless the returned timer was cancelled
    first (then no result comes: the agent ends the task itself, or leaves it to a
    restart). A wait too short to time returns its result instead of a timer (the
    task ended at its start; ``on_end`` is not called). The agent runs such tasks
    with one loop timer each, or none, instead of two asyncio tasks (``run`` and its
    supervisor)."""

    def start(self, task: Task, on_end: EndHook) -> Timer | TaskResult: ...
