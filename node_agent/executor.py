"""The executor seam: how an agent runs one task (sleep, process, docker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from dodoor.resources import Task


@dataclass(frozen=True, slots=True)
class TaskResult:
    """How a task ended. ``state`` is ``succeeded`` or ``failed``."""

    state: str
    exit_code: int | None = None
    reason: str | None = None
    log_tail: str = ""


@dataclass(frozen=True, slots=True)
class Adopted:
    """A task found running or finished by a previous run of this agent (docker reconcile)."""

    task_id: str
    running: bool
    result: TaskResult | None = None


@runtime_checkable
class Executor(Protocol):
    """Runs tasks to completion within their resource limits.

    ``run`` is awaited once per task and must be cancellable (the agent cancels
    it on shutdown); blocking work goes through ``asyncio.to_thread``.
    """

    name: str

    async def run(self, task: Task) -> TaskResult: ...

    async def reconcile(self) -> list[Adopted]:
        """Tasks left by a previous run of this agent (none for sleep/process)."""
        ...

    async def wait_adopted(self, task_id: str) -> TaskResult:
        """Wait for an adopted running task to end."""
        ...

    async def close(self) -> None: ...
