"""The process executor: runs ``task.command`` as a local subprocess with limits.

Limits: the address space (RLIMIT_AS) is capped at the task's ``memory_mb`` in
the child before exec, so an allocation beyond the demand fails inside the
task instead of starving its neighbours; the core count is advisory (exported
as ``DODOOR_CORES`` and the usual thread-count variables), since a plain
process cannot be held to a CPU share. Output (stdout and stderr together) is
kept as a bounded tail for the result.

Each task leads its own session and process group. However the task ends (its
leader exits, the wall limit passes, the agent cancels it) the whole group is
killed and waited for before ``run`` returns, so nothing it forked outlives it.
The group's handle (:mod:`node_agent.process_group`) goes to the agent's
journal through ``on_start``; an agent restarted after a crash kills what is
left of each interrupted task's group in ``reconcile`` before the task re-runs.
On Linux the leader also gets ``PR_SET_PDEATHSIG`` = SIGKILL, so it dies with
the agent (its own children only by the restart's ``reconcile``).

With an ``exit_dir`` the leader is a small ``sh`` that runs the command and
writes its exit status to a file there before it exits: the status outlives the
agent, as a container's does in the engine. Then, as with containers, a task
outlives its agent's crash instead of dying with it (no parent-death signal): the
restarted agent adopts a task still running (waits for its group to end, keeps
its original wall limit) and records the status it left, so the task never runs
twice for an agent crash; only its output is lost.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Callable, Sequence

from dodoor.resources import Task
from dodoor.taskstates import FAILED, RUNNING, SUCCEEDED
from node_agent import process_group
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult
from node_agent.process_group import GroupHandle

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# $0: the exit file; the rest: the command. Builtins only (no extra process); a torn
# write reads as no status, and the task runs again, as without a file.
_SHIM = '"$@"; s=$?; printf %s "$s" > "$0"; exit "$s"'
_SIGNAL_BASE = 128  # a shell reports death by signal n as exit status 128 + n
_ADOPTED_POLL_S = 0.1  # an adopted task is not our child: its end is polled
_EXIT_ENV = "DODOOR_EXIT_FILE"


class ProcessExecutor:
    """Runs commands as subprocesses; see the module docstring.

    ``timeout_ms`` fixes the wall limit; when None it is ``timeout_factor`` ×
    the task's duration estimate, but never below ``min_timeout_ms``.
    ``kill_wait_s`` bounds the wait for a killed group to be gone.
    """

    name = "process"
    outlives_agent = True

    def __init__(self, timeout_ms: float | None = None, timeout_factor: float = 10.0,
                 min_timeout_ms: float = 60_000.0, limit_memory: bool = True,
                 kill_wait_s: float = 10.0, exit_dir: str | None = None) -> None:
        self.timeout_ms = timeout_ms
        self.timeout_factor = timeout_factor
        self.min_timeout_ms = min_timeout_ms
        self.limit_memory = limit_memory
        self.kill_wait_s = kill_wait_s
        self.exit_dir = exit_dir
        if exit_dir is not None:
            os.makedirs(exit_dir, exist_ok=True)
        # Looked up here, in the agent: the forked child should only call it.
        # with an exit file tasks outlive the agent and are adopted (module docstring)
        self._prctl = _find_prctl() if exit_dir is None else None
        self._adopted: dict[str, tuple[Task, GroupHandle]] = {}

    def wall_limit_ms(self, task: Task) -> float:
        if self.timeout_ms is not None:
            return self.timeout_ms
        return max(self.min_timeout_ms, self.timeout_factor * task.duration_ms)

    async def run(self, task: Task, on_start: StartHook | None = None) -> TaskResult:
        if not task.command:
            return TaskResult(FAILED, reason="the process executor needs a command")
        env = dict(os.environ)
        env.update(task.env)
        threads = str(max(1, math.ceil(task.cores)))
        exit_file = self._exit_file(task.task_id)
        if exit_file is not None:
            # also marks the task's processes: found by it if the agent dies before the
            # handle is journaled (reconcile)
            env[_EXIT_ENV] = exit_file
        env.update({"DODOOR_TASK_ID": task.task_id, "DODOOR_CORES": f"{task.cores:g}",
                    "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
        memory_bytes = int(task.memory_mb) * 1024 * 1024 if self.limit_memory else None
        try:
            transport, proto, group = await self._spawn(task, env, memory_bytes)
        except (OSError, subprocess.SubprocessError) as exc:
            return TaskResult(FAILED, reason=f"cannot start {task.command[0]!r}: {exc}")
        try:
            limit_ms = self.wall_limit_ms(task)
            timed_out = False
            try:
                try:
                    async with asyncio.timeout(limit_ms / 1000.0):
                        if on_start is not None:
                            await on_start(group.encode())
                        # Shielded: a cancel or timeout here must not cancel the future itself.
                        await asyncio.shield(proto.exited)
                except TimeoutError:
                    timed_out = True
            except BaseException:
                # Cancelled (agent shutdown) or a failing hook: the group goes all the same,
                # shielded so a second cancel cannot leave it running.
                await asyncio.shield(self._end_group(task.task_id, group, proto))
                raise
            # However the leader ended, the rest of its group ends with it.
            await self._end_group(task.task_id, group, proto)
            await proto.output_closed_within(1.0)
        finally:
            transport.close()
        code = transport.get_returncode()
        tail = proto.tail_text()
        if timed_out:
            return TaskResult(FAILED, exit_code=code,
                              reason=f"timed out after {limit_ms:g} ms", log_tail=tail)
        return self._result(code, tail)

    def _result(self, code: int | None, tail: str, note: str = "") -> TaskResult:
        if code == 0:
            return TaskResult(SUCCEEDED, exit_code=0, reason=note or None, log_tail=tail)
        if code is not None and code < 0:
            reason = f"killed by signal {-code}"
        elif self.exit_dir is not None and code is not None and code > _SIGNAL_BASE:
            reason = f"killed by signal {code - _SIGNAL_BASE}"  # as the shim's sh saw it
        else:
            reason = f"exit code {code}"
        return TaskResult(FAILED, exit_code=code, reason=reason + note, log_tail=tail)

    def _exit_file(self, task_id: str) -> str | None:
        if self.exit_dir is None:
            return None
        name = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return os.path.join(self.exit_dir, name)

    async def forget(self, task_id: str) -> None:
        # ``run`` already ended the task's whole group; only its exit file is left.
        path = self._exit_file(task_id)
        if path is not None:
            await asyncio.to_thread(_unlink, path)

    def _recorded_exit(self, task_id: str) -> int | None:
        path = self._exit_file(task_id)
        if path is None:
            return None
        try:
            with open(path) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    async def reconcile(self, interrupted: Sequence[Interrupted]) -> list[Adopted]:
        """Kill what is left of every interrupted task's process group, and wait for it.

        A crashed agent's tasks keep running (their children at least: the leader
        has a parent-death signal); each re-runs only once its old copy is gone. A
        task whose old processes cannot be killed is reported failed, not re-run.
        """
        found: list[Adopted] = []
        for row in interrupted:
            if row.state != RUNNING:
                continue  # the start is journaled before the spawn: nothing of it ran
            group = await self._group_of(row)
            if group is not None:
                if self.exit_dir is not None and await asyncio.to_thread(process_group.members,
                                                                         group):
                    log.info("task %s: still running from the previous agent; adopting it",
                             row.task_id)
                    self._adopted[row.task_id] = (row.task, group)
                    found.append(Adopted(row.task_id, running=True))
                    continue
                killed, left = await asyncio.to_thread(process_group.end, group, self.kill_wait_s)
                if killed:
                    log.info("task %s: killed %d process(es) left by the previous agent: %s",
                             row.task_id, len(killed), killed)
                if left:
                    log.error("task %s: processes %s of its previous run survive SIGKILL; "
                              "not running it again", row.task_id, left)
                    found.append(Adopted(row.task_id, running=False, result=TaskResult(
                        FAILED, reason=f"processes {left} of an earlier run could not be "
                        "killed")))
                    continue
            code = await asyncio.to_thread(self._recorded_exit, row.task_id)
            if code is not None:
                log.info("task %s ended (status %d) before the previous agent recorded it; "
                         "recording it, not running it again", row.task_id, code)
                found.append(Adopted(row.task_id, running=False, result=self._result(
                    code, "", " (recorded after an agent restart; its output is lost)")))
        return found

    async def _group_of(self, row: Interrupted) -> GroupHandle | None:
        """The task's process group: from its journaled handle or, when the agent died
        before the handle was journaled, from the exit-file mark in its environment."""
        if row.handle is not None:
            try:
                return GroupHandle.decode(row.handle)
            except ValueError as exc:
                log.warning("task %s: ignoring its journaled handle: %s", row.task_id, exc)
                return None
        exit_file = self._exit_file(row.task_id)
        if exit_file is None:
            return None
        return await asyncio.to_thread(process_group.find_by_env, _EXIT_ENV, exit_file)

    async def wait_adopted(self, task_id: str) -> TaskResult:
        """Wait for an adopted task's group to end (killed at its original wall limit);
        its result is the status its shim wrote. Cancelled, the group is killed."""
        try:
            task, group = self._adopted[task_id]
        except KeyError:
            raise LookupError(f"task {task_id!r} was not adopted") from None
        limit_ms = self.wall_limit_ms(task)
        started = group.leader_started if group.leader_started is not None else group.not_before
        deadline = started + limit_ms / 1000.0
        try:
            while await asyncio.to_thread(process_group.members, group):
                if time.time() >= deadline:
                    await asyncio.to_thread(process_group.end, group, self.kill_wait_s)
                    return TaskResult(FAILED, reason=f"timed out after {limit_ms:g} ms "
                                      "(adopted after an agent restart)")
                await asyncio.sleep(_ADOPTED_POLL_S)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(process_group.end, group, self.kill_wait_s))
            raise
        finally:
            self._adopted.pop(task_id, None)
        code = await asyncio.to_thread(self._recorded_exit, task_id)
        if code is None:
            return TaskResult(FAILED, reason="ended while its agent was down, leaving no "
                              "exit status")
        return self._result(code, "", " (adopted after an agent restart; its output is lost)")

    async def close(self) -> None:
        return None

    async def _spawn(self, task: Task, env: dict[str, str], memory_bytes: int | None
                     ) -> tuple[asyncio.SubprocessTransport, "_TaskProtocol", GroupHandle]:
        """Start the task's leader in a new session; OSError or SubprocessError if it cannot."""
        spawned_after = time.time()
        loop = asyncio.get_running_loop()
        # A bare protocol rather than asyncio's Process: Process.wait() also waits for the
        # output pipe to close, which a background child may hold for as long as it
        # likes; the task has ended when its leader exits.
        exit_file = self._exit_file(task.task_id)
        argv = list(task.command or ())
        if exit_file is not None:
            _unlink(exit_file)  # a status from an earlier run of this id is not this run's
            argv = ["/bin/sh", "-c", _SHIM, exit_file, *argv]
        spawning = asyncio.ensure_future(loop.subprocess_exec(
            lambda: _TaskProtocol(loop),
            *argv,  # type: ignore[misc]
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so a kill reaches grandchildren
            preexec_fn=functools.partial(_child_setup, memory_bytes, os.getpid(), self._prctl),
        ))
        try:
            # The process exists before its pipes are connected: a cancel in between
            # must still find it, so the spawn itself is never cancelled.
            transport, proto = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            try:
                transport, proto = await spawning
            except Exception:  # noqa: BLE001 - nothing was started
                raise asyncio.CancelledError from None
            group = GroupHandle.of_leader(transport.get_pid(), spawned_after)
            try:
                await asyncio.shield(self._end_group(task.task_id, group, proto))
            finally:
                transport.close()
            raise
        return transport, proto, GroupHandle.of_leader(transport.get_pid(), spawned_after)

    async def _end_group(self, task_id: str, group: GroupHandle, proto: "_TaskProtocol") -> None:
        _, left = await asyncio.to_thread(process_group.end, group, self.kill_wait_s)
        if left:
            log.error("task %s: processes %s survive SIGKILL", task_id, left)
        await asyncio.shield(proto.exited)  # the leader, killed if it was still running, is reaped


class _TaskProtocol(asyncio.SubprocessProtocol):
    """Keeps the last LOG_TAIL_BYTES of the output; ``exited`` resolves when the leader exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exited: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._tail: deque[bytes] = deque()
        self._size = 0

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._tail.append(data)
        self._size += len(data)
        while self._size - len(self._tail[0]) >= LOG_TAIL_BYTES:
            self._size -= len(self._tail.popleft())

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def output_closed_within(self, seconds: float) -> None:
        """Wait for the last output; a process that left the group may hold the pipe."""
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._closed)
        except TimeoutError:
            log.debug("output pipe still open %g s after the task ended", seconds)

    def tail_text(self) -> str:
        data = b"".join(self._tail)[-LOG_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")


def _find_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as exc:
        log.warning("no prctl(2): a task leader will not die with its agent: %s", exc)
        return None


def _child_setup(memory_bytes: int | None, agent_pid: int,
                 prctl: Callable[..., int] | None) -> None:
    # Runs in the forked child before exec: only async-signal-safe-ish work here.
    if memory_bytes:
        _limit_memory(memory_bytes)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL))
        # The agent may have died between the fork and the prctl: then no signal comes.
        if os.getppid() != agent_pid:
            os.kill(os.getpid(), signal.SIGKILL)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _limit_memory(nbytes: int) -> None:
    # Runs in the forked child before exec: only async-signal-safe-ish work here.
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
