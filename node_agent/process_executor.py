"""The process executor: runs ``task.command`` as a local subprocess with limits.

Limits: the address space (RLIMIT_AS) is capped at the task's ``memory_mb`` in
the child before exec, so an allocation beyond the demand fails inside the
task instead of starving its neighbours; a wall timeout kills the whole process
group; the core count is advisory (exported as ``DODOOR_CORES`` and the usual
thread-count variables), since a plain process cannot be held to a CPU share.
Output (stdout and stderr together) is kept as a bounded tail for the result.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import signal
from collections import deque

from dodoor.resources import Task
from node_agent.executor import Adopted, TaskResult

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096
_CHUNK = 4096


class ProcessExecutor:
    """Runs commands as subprocesses; see the module docstring.

    ``timeout_ms`` fixes the wall limit; when None it is ``timeout_factor`` ×
    the task's duration estimate, but never below ``min_timeout_ms``.
    """

    name = "process"

    def __init__(self, timeout_ms: float | None = None, timeout_factor: float = 10.0,
                 min_timeout_ms: float = 60_000.0, limit_memory: bool = True) -> None:
        self.timeout_ms = timeout_ms
        self.timeout_factor = timeout_factor
        self.min_timeout_ms = min_timeout_ms
        self.limit_memory = limit_memory

    def wall_limit_ms(self, task: Task) -> float:
        if self.timeout_ms is not None:
            return self.timeout_ms
        return max(self.min_timeout_ms, self.timeout_factor * task.duration_ms)

    async def run(self, task: Task) -> TaskResult:
        if not task.command:
            return TaskResult("failed", reason="the process executor needs a command")
        env = dict(os.environ)
        env.update(task.env)
        threads = str(max(1, math.ceil(task.cores)))
        env.update({"DODOOR_TASK_ID": task.task_id, "DODOOR_CORES": f"{task.cores:g}",
                    "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
        memory_bytes = int(task.memory_mb) * 1024 * 1024 if self.limit_memory else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *task.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, so a kill reaches grandchildren
                preexec_fn=(lambda: _limit_memory(memory_bytes)) if memory_bytes else None,
            )
        except OSError as exc:
            return TaskResult("failed", reason=f"cannot start {task.command[0]!r}: {exc}")
        tail: deque[bytes] = deque()
        reader = asyncio.ensure_future(_read_tail(proc.stdout, tail))  # type: ignore[arg-type]
        limit_ms = self.wall_limit_ms(task)
        try:
            async with asyncio.timeout(limit_ms / 1000.0):
                await proc.wait()
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            await _finish_reader(reader)
            return TaskResult("failed", exit_code=proc.returncode,
                              reason=f"timed out after {limit_ms:g} ms", log_tail=_text(tail))
        except asyncio.CancelledError:
            _kill_group(proc)
            await asyncio.shield(proc.wait())
            reader.cancel()
            raise
        await _finish_reader(reader)
        code = proc.returncode
        if code == 0:
            return TaskResult("succeeded", exit_code=0, log_tail=_text(tail))
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return TaskResult("failed", exit_code=code, reason=reason, log_tail=_text(tail))

    async def reconcile(self) -> list[Adopted]:
        # Child processes die with (or are orphaned from) the agent; interrupted tasks re-run.
        return []

    async def wait_adopted(self, task_id: str) -> TaskResult:
        raise LookupError(f"the process executor never adopts tasks (asked for {task_id!r})")

    async def close(self) -> None:
        return None


def _limit_memory(nbytes: int) -> None:
    # Runs in the forked child before exec: only async-signal-safe-ish work here.
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _read_tail(stream: asyncio.StreamReader, tail: deque[bytes]) -> None:
    size = 0
    while chunk := await stream.read(_CHUNK):
        tail.append(chunk)
        size += len(chunk)
        while size - len(tail[0]) >= LOG_TAIL_BYTES:
            size -= len(tail.popleft())


async def _finish_reader(reader: asyncio.Future) -> None:
    # A grandchild may keep the pipe open after the task's own process exited.
    try:
        async with asyncio.timeout(1.0):
            await reader
    except TimeoutError:
        pass


def _text(tail: deque[bytes]) -> str:
    data = b"".join(tail)[-LOG_TAIL_BYTES:]
    return data.decode("utf-8", errors="replace")
