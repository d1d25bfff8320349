"""The sleep executor: a simulated task holds its resources for its duration.

This is how trace tasks (which carry only demands and a duration) run on a
real cluster of agents. ``scale`` shrinks or stretches every duration so a
long trace can be replayed faster.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from dodoor.resources import Task
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult


class SleepExecutor:
    """Holds each task for ``duration_ms × scale`` and reports success."""

    name = "sleep"

    def __init__(self, scale: float = 1.0) -> None:
        if not scale >= 0:
            raise ValueError(f"sleep scale must be >= 0, got {scale!r}")
        self.scale = scale

    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult:
        # Nothing exists outside the agent, so there is no handle to journal.
        await asyncio.sleep(task.duration_ms * self.scale / 1000.0)
        return TaskResult("succeeded", exit_code=0)

    async def forget(self, task_id: str) -> None:
        return None

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        # Nothing outlives the process: a sleep interrupted by a crash is simply re-run.
        return []

    async def wait_adopted(self, task_id: str) -> TaskResult:
        raise LookupError(f"the sleep executor never adopts tasks (asked for {task_id!r})")

    async def close(self) -> None:
        return None
