"""The sleep executor: a simulated task holds its resources for its duration.

This is how trace tasks (which carry only demands and a duration) run on a
real cluster of agents. ``scale`` shrinks or stretches every duration so a
long trace can be replayed faster.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from typing import Sequence

from dodoor.resources import Task
from dodoor.taskstates import SUCCEEDED
from node_agent.executor import Adopted, EndHook, Interrupted, StartHook, TaskResult

log = logging.getLogger(__name__)
WARN_EVERY_S = 10.0  # a trace of such tasks gets one warning per interval, not one per task
_DONE = TaskResult(SUCCEEDED, exit_code=0)  # frozen: every sleep's result is this one
# A sleep shorter than this ends at its start (``start``): a loop timer cannot time it
# (uvloop's count whole milliseconds, so it would fire on the next turn anyway).
AT_ONCE_S = 0.0001


class SleepExecutor:
    """Holds each task for ``duration_ms × scale`` and reports success."""

    name = "sleep"
    outlives_agent = False

    def __init__(self, scale: float = 1.0) -> None:
        if not scale >= 0:
            raise ValueError(f"sleep scale must be >= 0, got {scale!r}")
        self.scale = scale
        self._unrun = 0  # tasks with something to run since the last warning
        self._warned_at = -WARN_EVERY_S

    def _warn_unrun(self, task: Task) -> None:
        """Say that a task's command, image or function is not run, only its duration."""
        if not (task.command or task.image or task.function):
            return
        what = [f"command {shlex.join(task.command)!r}" if task.command else "",
                f"image {task.image!r}" if task.image else "",
                f"function {task.function!r}" if task.function else ""]
        self._unrun += 1
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY_S:
            return
        log.warning("the sleep executor does not run the %s of task %s; it only sleeps "
                    "%g ms (%d such task(s) since the last warning; start the agent with "
                    "--executor process or docker to run them)", " and ".join(w for w in what if w),
                    task.task_id, task.duration_ms * self.scale, self._unrun)
        self._unrun = 0
        self._warned_at = now

    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult:
        self._warn_unrun(task)
        # Nothing exists outside the agent, so there is no handle to journal.
        await asyncio.sleep(task.duration_ms * self.scale / 1000.0)
        return _DONE

    def start(self, task: Task, on_end: EndHook) -> asyncio.TimerHandle | TaskResult:
        """The same sleep as a loop timer (``executor.TimedExecutor``): no asyncio task;
        under ``AT_ONCE_S``, no timer either: the result, the task ended at its start."""
        self._warn_unrun(task)
        delay_s = task.duration_ms * self.scale / 1000.0
        if delay_s < AT_ONCE_S:
            return _DONE
        return asyncio.get_running_loop().call_later(delay_s, on_end, _DONE)

    async def forget(self, task_id: str) -> None:
        return None

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        # Nothing outlives the process: a sleep interrupted by a crash is simply re-run.
        return []

    async def wait_adopted(self, task_id: str) -> TaskResult:
        raise LookupError(f"the sleep executor never adopts tasks (asked for {task_id!r})")

    async def close(self) -> None:
        return None
