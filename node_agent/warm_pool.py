"""Warm containers: a bounded pool per image, reused across tasks (docs/docker.md).

A task that opts in (``docker_spec.wants_warm``) runs as one job of a container
kept alive between tasks: the runtime starts each container with a tiny shell
runner as its main process, which reads jobs on its stdin, runs each in a
subshell and ends it by killing whatever the job left behind. Before each job
the container's CPU quota and memory limit are updated to the task's own (only
when they differ from the last job's).

Bookkeeping: idle containers per image (the most recently used is taken first,
so the oldest expire), and the containers that ran a task whose result the
agent has not journaled yet (``forget``), exactly as the cold path holds a
task's container. A container that misbehaves — the runner dies, a job is
killed by a signal (the memory limit, mostly), a limit update or a job fails,
the job passes its wall limit or is cancelled — never runs another task. An
idle container is removed after ``idle_s``; ``close`` removes them all.

The runtime is a :class:`WarmRuntime` (blocking calls, run in threads);
``node_agent/warm_docker.py`` is the Docker one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from dodoor.taskstates import FAILED
from node_agent.docker_spec import (KILLED_EXIT_CODE, LOG_TAIL_BYTES, exit_result, explain,
                                    timed_out)
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult

log = logging.getLogger(__name__)
HANDLE_PREFIX = "warm:"  # journaled handles: warm:<container id>:<job id>


class RunnerError(Exception):
    """The runner of a warm container stopped answering (it died, or was killed)."""


class WarmRuntime(Protocol):
    """The container runtime seam of the pool; every call blocks."""

    def create(self, image: str, cores: float, memory: str) -> str:
        """Start an idle container of ``image`` with these limits; its id."""
        ...

    def update(self, container_id: str, cores: float, memory: str) -> None: ...

    def run(self, container_id: str, job_id: str, command: Sequence[str],
            env: dict[str, str], output: bytearray) -> int:
        """Run one job to its end (its output appended to ``output``); its exit status.
        Raises :class:`RunnerError` when the runner ends first."""
        ...

    def kill(self, container_id: str) -> None: ...

    def remove(self, container_id: str) -> None: ...

    def listed(self) -> list[tuple[str, bool]]:
        """This agent's warm containers: (id, running)."""
        ...

    def finished_job(self, container_id: str, job_id: str) -> tuple[int, str] | None:
        """The exit status and output of a job that ended, from the container's log."""
        ...


@dataclass
class Warm:
    """One pool container and the limits its last job set."""

    id: str
    image: str
    cores: float
    memory: str
    idle_since: float = 0.0
    healthy: bool = True


class WarmPool:
    """Keeps at most ``per_image`` idle containers per image for ``idle_s`` seconds."""

    def __init__(self, runtime: WarmRuntime, per_image: int, idle_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 waits: ThreadPoolExecutor | None = None,
                 job_ids: Callable[[], str] = lambda: secrets.token_hex(8)) -> None:
        self.runtime = runtime
        self.per_image = per_image
        self.idle_s = idle_s
        self.clock = clock
        self._waits = waits  # long job waits stay off the loop's small default pool
        self._job_ids = job_ids
        self.idle: dict[str, list[Warm]] = {}
        self.held: dict[str, Warm] = {}  # task id -> container, until its result is journaled
        self.created = 0  # containers started by this pool (cold starts)

    async def run(self, task_id: str, image: str, command: Sequence[str], env: dict[str, str],
                  cores: float, memory: str, limit_s: float,
                  on_start: StartHook | None = None) -> TaskResult:
        """Run a task as a job of a warm container of ``image`` (a new one if none is idle)."""
        try:
            box = await self._acquire(image, cores, memory)
        except Exception as exc:  # noqa: BLE001 - an engine refusal fails the task, not the agent
            log.warning("task %s: cannot start a warm container: %s", task_id, exc)
            return TaskResult(FAILED, reason=f"cannot start the container: {explain(exc)}")
        job = self._job_ids()
        output = bytearray()
        running: asyncio.Future | None = None
        try:
            if on_start is not None:
                await on_start(f"{HANDLE_PREFIX}{box.id}:{job}")
            loop = asyncio.get_running_loop()
            running = loop.run_in_executor(self._waits, self.runtime.run, box.id, job,
                                           list(command), env, output)
            try:
                code = await asyncio.wait_for(asyncio.shield(running), limit_s)
            except asyncio.TimeoutError:
                await self._stop(box, running)
                self.held[task_id] = box
                return timed_out(limit_s, _tail(output))
        except RunnerError as exc:
            await self._stop(box, None)
            self.held[task_id] = box
            return TaskResult(FAILED, reason=f"warm container failed: {exc}",
                              log_tail=_tail(output))
        except BaseException:
            # cancelled, or the start hook failed: the task must not run on
            await asyncio.shield(self._stop(box, running))
            await asyncio.to_thread(self.runtime.remove, box.id)
            raise
        self.held[task_id] = box
        if code >= 128:  # killed by a signal: the container is suspect
            await self._stop(box, None)
            if code == KILLED_EXIT_CODE:
                return TaskResult(FAILED, exit_code=code, log_tail=_tail(output),
                                  reason=f"killed by SIGKILL (exit code {code}): most likely "
                                         f"its memory limit of {memory}")
        return exit_result(code, _tail(output))

    async def forget(self, task_id: str) -> bool:
        """The task's result is journaled: its container goes back to the pool (or
        away when it misbehaved or the pool is full). False if the task was not ours."""
        box = self.held.pop(task_id, None)
        if box is None:
            return False
        idle = self.idle.setdefault(box.image, [])
        if box.healthy and len(idle) < self.per_image:
            box.idle_since = self.clock()
            idle.append(box)
        else:
            await asyncio.to_thread(self.runtime.remove, box.id)
        return True

    async def reap(self) -> int:
        """Remove the containers idle for ``idle_s`` or more; how many."""
        now = self.clock()
        old = [b for boxes in self.idle.values() for b in boxes if now - b.idle_since >= self.idle_s]
        for box in old:
            self.idle[box.image].remove(box)
            await asyncio.to_thread(self.runtime.remove, box.id)
        if old:
            log.info("removed %d warm container(s) idle for %g s or more", len(old), self.idle_s)
        return len(old)

    async def reap_forever(self, interval_s: float) -> None:
        """The idle reaper: ``reap`` every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.reap()

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        """At restart: collect the results of jobs that ended; remove every container.

        A job still running is killed with its container and its task queued again
        (its agent died while it ran); one that ended keeps its result and is not
        run again. docs/guarantees.md states this.
        """
        jobs = {}
        for row in interrupted:
            if row.handle and row.handle.startswith(HANDLE_PREFIX):
                container_id, _, job = row.handle[len(HANDLE_PREFIX):].partition(":")
                jobs[container_id] = (row.task_id, job)
        found: list[Adopted] = []
        for container_id, running in await asyncio.to_thread(self.runtime.listed):
            task_id, job = jobs.get(container_id, (None, ""))
            ended = None
            if task_id is not None:
                ended = await asyncio.to_thread(self.runtime.finished_job, container_id, job)
            if ended is not None:
                found.append(Adopted(task_id, running=False, result=exit_result(*ended)))
                self.held[task_id] = Warm(container_id, "", 0.0, "", healthy=False)
            elif task_id is not None and not running:
                # stopped with the job unfinished: only the agent kills a warm container
                found.append(Adopted(task_id, running=False, result=TaskResult(
                    FAILED, exit_code=KILLED_EXIT_CODE, reason="its warm container was killed "
                    "(wall limit or cancel) before the agent journaled the result")))
                self.held[task_id] = Warm(container_id, "", 0.0, "", healthy=False)
            else:
                await asyncio.to_thread(self.runtime.remove, container_id)
        return found

    async def close(self) -> None:
        """Remove every container of the pool (agent shutdown)."""
        boxes = [b for idle in self.idle.values() for b in idle] + list(self.held.values())
        self.idle.clear()
        self.held.clear()
        for box in boxes:
            await asyncio.to_thread(self.runtime.remove, box.id)

    # -- internals ----------------------------------------------------------
    async def _acquire(self, image: str, cores: float, memory: str) -> Warm:
        idle = self.idle.get(image)
        while idle:
            box = idle.pop()
            if (box.cores, box.memory) == (cores, memory):
                return box
            try:
                await asyncio.to_thread(self.runtime.update, box.id, cores, memory)
            except Exception as exc:  # noqa: BLE001 - a container that refuses is discarded
                log.warning("warm container %s refused limits %g CPU / %s: %s; discarded",
                            box.id[:12], cores, memory, exc)
                await asyncio.to_thread(self.runtime.remove, box.id)
                continue
            box.cores, box.memory = cores, memory
            return box
        container_id = await asyncio.to_thread(self.runtime.create, image, cores, memory)
        self.created += 1
        return Warm(container_id, image, cores, memory)

    async def _stop(self, box: Warm, running: asyncio.Future | None) -> None:
        """Kill a misbehaving container (kept until ``forget``) and let its wait end."""
        box.healthy = False
        await asyncio.to_thread(self.runtime.kill, box.id)
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)


def _tail(output: bytearray) -> str:
    return bytes(output[-LOG_TAIL_BYTES:]).decode("utf-8", errors="replace")
