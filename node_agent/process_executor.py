"""The process executor: runs ``task.command`` as a local subprocess with limits.

Limits: the address space (RLIMIT_AS) is capped at the task's ``memory_mb`` in
the child before exec, so an allocation beyond the demand fails inside the
task instead of starving its neighbours; the core count is advisory (exported
as ``DODOOR_CORES`` and the usual thread-count variables), since a plain
process cannot be held to a CPU share. Output (stdout and stderr together) is
kept as a bounded tail for the result.

Tasks are forked by a launcher process (:mod:`node_agent.launcher`) that the
executor starts on first use and again whenever it has died, so the agent
itself never forks.

Each task leads its own session and process group. However the task ends (its
leader exits, the wall limit passes, the agent cancels it) the whole group is
killed and waited for before ``run`` returns, so nothing it forked outlives it.
The group's handle (:mod:`node_agent.process_group`) goes to the agent's
journal through ``on_start``; an agent restarted after a crash kills what is
left of each interrupted task's group in ``reconcile`` before the task re-runs.
On Linux the leader also gets ``PR_SET_PDEATHSIG`` = SIGKILL, so it dies with
its launcher, which exits with the agent (its own children go only by the
restart's ``reconcile``).

With an ``exit_dir`` the leader is a small ``sh`` that runs the command and
writes its exit status to a file there before it exits: the status outlives the
agent, as a container's does in the engine. Then, as with containers, a task
outlives its agent's crash instead of dying with it (no parent-death signal): the
restarted agent adopts a task still running (waits for its group to end, keeps
its original wall limit) and records the status it left, so the task never runs
twice for an agent crash; only its output is lost. A launcher that dies under a
running agent is treated the same way: its tasks run on, and the agent waits for
their groups to end and records their exit files (without an ``exit_dir`` they
die with the launcher and fail).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from typing import Sequence

from dodoor.resources import Task
from dodoor.taskstates import FAILED, RUNNING, SUCCEEDED
from node_agent import process_group
from node_agent.executor import Adopted, Interrupted, StartHook, TaskResult
from node_agent.launch_client import Launched, LaunchClient, LauncherGone
from node_agent.process_group import GroupHandle
from node_agent.task_output import LOG_TAIL_BYTES, OutputTail, output_pipe

__all__ = ["LOG_TAIL_BYTES", "ProcessExecutor"]  # the tail's bound is part of its contract

log = logging.getLogger(__name__)

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
        # with an exit file tasks outlive the agent and are adopted (module docstring)
        self._die_with_agent = exit_dir is None
        self._adopted: dict[str, tuple[Task, GroupHandle]] = {}
        self._launcher: LaunchClient | None = None
        # an executor may be used from more than one event loop (tests): a lock per loop
        self._launcher_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

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
        transport, proto = await output_pipe()
        try:
            try:
                leader, group = await self._spawn(task, env, memory_bytes, proto)
            except (OSError, LauncherGone) as exc:
                return TaskResult(FAILED, reason=f"cannot start {task.command[0]!r}: {exc}")
            ending = _LeaderEnd(self, task.task_id, leader, group)
            limit_ms = self.wall_limit_ms(task)
            timed_out = False
            try:
                try:
                    async with asyncio.timeout(limit_ms / 1000.0):
                        if on_start is not None:
                            await on_start(group.encode())
                        # Shielded: a cancel or timeout here must not cancel the wait itself.
                        await asyncio.shield(ending.done)
                except TimeoutError:
                    timed_out = True
            except BaseException:
                # Cancelled (agent shutdown) or a failing hook: the group goes all the same,
                # shielded so a second cancel cannot leave it running.
                await asyncio.shield(self._end_group(task.task_id, group, ending))
                raise
            # However the leader ended, the rest of its group ends with it.
            await self._end_group(task.task_id, group, ending)
            await proto.output_closed_within(1.0)
        finally:
            proto.close_write_end()  # already closed unless the launch itself failed
            transport.close()
        code = ending.code
        tail = proto.tail_text()
        if timed_out:
            return TaskResult(FAILED, exit_code=code,
                              reason=f"timed out after {limit_ms:g} ms", log_tail=tail)
        if ending.launcher_lost is not None and code is None:
            return TaskResult(FAILED, reason=f"its launcher died ({ending.launcher_lost}) and "
                              "it left no exit status", log_tail=tail)
        note = "" if ending.launcher_lost is None else " (its launcher died while it ran)"
        return self._result(code, tail, note)

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
        launcher, self._launcher = self._launcher, None
        if launcher is not None:
            await launcher.close()

    async def _launch_client(self) -> LaunchClient:
        """The live launcher for this event loop, started (again) if there is none."""
        loop = asyncio.get_running_loop()
        current = self._launcher
        if current is not None and current.alive and current.loop is loop:
            return current
        if self._launcher_lock is None or self._launcher_lock[0] is not loop:
            self._launcher_lock = (loop, asyncio.Lock())
        async with self._launcher_lock[1]:
            current = self._launcher
            if current is not None and current.alive and current.loop is loop:
                return current
            if current is not None and current.loop is loop:
                await current.close()  # reap the dead one
                log.warning("starting a new task launcher")
            self._launcher = await LaunchClient.start()
            return self._launcher

    async def _spawn(self, task: Task, env: dict[str, str], memory_bytes: int | None,
                     proto: OutputTail) -> tuple[Launched, GroupHandle]:
        """Start the task's leader in a new session; OSError or LauncherGone if it cannot."""
        spawned_after = time.time()
        exit_file = self._exit_file(task.task_id)
        argv = list(task.command or ())
        if exit_file is not None:
            _unlink(exit_file)  # a status from an earlier run of this id is not this run's
            argv = ["/bin/sh", "-c", _SHIM, exit_file, *argv]
        client = await self._launch_client()
        spawning = asyncio.ensure_future(client.launch(
            argv, env, memory_bytes, self._die_with_agent, proto.write_fd))
        try:
            # The process may exist before the launcher's reply arrives: a cancel in
            # between must still find it, so the launch itself is never cancelled.
            leader = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            try:
                leader = await spawning
            except Exception:  # noqa: BLE001 - nothing was started
                raise asyncio.CancelledError from None
            group = GroupHandle.of_leader(leader.pid, spawned_after)
            await asyncio.shield(self._end_group(task.task_id, group,
                                                 _LeaderEnd(self, task.task_id, leader, group)))
            raise
        finally:
            proto.close_write_end()
        return leader, GroupHandle.of_leader(leader.pid, spawned_after)

    async def _end_group(self, task_id: str, group: GroupHandle, ending: "_LeaderEnd") -> None:
        if not (ending.done.done() and process_group.empty(group)):  # the usual end: no thread
            _, left = await asyncio.to_thread(process_group.end, group, self.kill_wait_s)
            if left:
                log.error("task %s: processes %s survive SIGKILL", task_id, left)
        await asyncio.shield(ending.done)  # the leader, killed if it was still running, is reaped


class _LeaderEnd:
    """How a task's leader ended: ``done`` resolves once the launcher has reaped it
    (``code``: its returncode) or, if the launcher died, once nothing of its group is
    left (``code``: the exit file's status, or None; ``launcher_lost``: why)."""

    def __init__(self, executor: ProcessExecutor, task_id: str, leader: Launched,
                 group: GroupHandle) -> None:
        self.code: int | None = None
        self.launcher_lost: str | None = None
        self._executor = executor
        self._task_id = task_id
        self._leader = leader
        self._group = group
        self.done: asyncio.Future[None] = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        try:
            self.code = await self._leader.exited
            return
        except LauncherGone as exc:
            self.launcher_lost = str(exc)
        log.warning("task %s: its launcher died; waiting for its process group %d to end",
                    self._task_id, self._group.pgid)
        # Not our child, nor the new launcher's: its end can only be polled.
        while await asyncio.to_thread(process_group.members, self._group):
            await asyncio.sleep(_ADOPTED_POLL_S)
        self.code = await asyncio.to_thread(self._executor._recorded_exit, self._task_id)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
