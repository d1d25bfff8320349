"""A task's process group, identified well enough to be found again after an agent crash.

The process executor starts every task as the leader of a new session, so the
task and everything it forks share one process group whose id (pgid) is the
leader's pid. A pid alone is not an identity: once every process of the group
is gone the number may be handed to an unrelated process. So a
:class:`GroupHandle` also records the leader's start time (psutil's
``create_time``) and the host's boot time, and :func:`members` only counts a
process of that pgid that started no earlier than the leader, on the same boot,
while the pid of the leader (if alive) still belongs to the recorded leader.

All functions here block (they read ``/proc``); call them through a thread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

# psutil derives start times from the boot time, which the kernel reports in whole
# seconds and recomputes if the wall clock is stepped; two agent processes may thus
# see the same process start up to about a second apart. A pid that wrapped around
# to the same number within this slack is not a practical concern.
SLACK_S = 1.5
_POLL_S = (0.005, 0.05)  # first and longest pause between kill rounds


@dataclass(frozen=True, slots=True)
class GroupHandle:
    """Where a task's processes are: ``pgid`` plus the start-time guard.

    ``leader_started`` is the leader's psutil ``create_time``, or None when the
    leader was gone before it could be read (a task that exits at once); then
    ``not_before`` is a lower bound taken before the spawn. ``boot`` is
    ``psutil.boot_time()`` when the task started.
    """

    pgid: int
    not_before: float
    leader_started: float | None
    boot: float

    @classmethod
    def of_leader(cls, pid: int, spawned_after: float) -> "GroupHandle":
        """The handle of a group whose leader ``pid`` was spawned after wall time ``spawned_after``."""
        boot = psutil.boot_time()
        try:
            started: float | None = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            started = None  # already exited and reaped
        # psutil's start times may read up to SLACK_S early against the wall clock.
        not_before = started if started is not None else spawned_after - SLACK_S
        return cls(pid, not_before, started, boot)

    def encode(self) -> str:
        """The opaque string the agent journals."""
        return json.dumps({"pgid": self.pgid, "not_before": self.not_before,
                           "leader_started": self.leader_started, "boot": self.boot},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "GroupHandle":
        """Parse :meth:`encode`'s output; ValueError names a handle that is not one."""
        try:
            data = json.loads(text)
            started = data["leader_started"]
            return cls(int(data["pgid"]), float(data["not_before"]),
                       None if started is None else float(started), float(data["boot"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not a process group handle: {text!r}") from exc


def empty(group: GroupHandle) -> bool:
    """True when no process at all (not even a zombie) has ``group``'s pgid: one system
    call, so a task's usual end needs neither a scan of every process nor a thread."""
    try:
        os.killpg(group.pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's group has that number now: members() tells
    return False


def members(group: GroupHandle) -> list[psutil.Process]:
    """The live processes of ``group`` (zombies excluded: they run nothing and hold nothing)."""
    if empty(group):
        return []
    if abs(psutil.boot_time() - group.boot) > SLACK_S:
        return []  # the host rebooted since: nothing of the task survived
    if group.leader_started is not None and _pid_reused(group.pgid, group.leader_started):
        return []  # the whole group ended and its number now names another process
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue  # never the agent itself, whatever a stale handle says
        try:
            if os.getpgid(proc.pid) != group.pgid:
                continue
            if proc.create_time() < group.not_before - SLACK_S:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
        found.append(proc)
    return found


def find_by_env(key: str, value: str) -> GroupHandle | None:
    """The group of a live process whose environment has ``key=value`` (a task whose
    handle never reached the journal), or None."""
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(key) != value or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            pgid = os.getpgid(proc.pid)
        except (psutil.Error, ProcessLookupError, OSError):
            continue  # gone, or not ours to read
        leader_started = None
        try:
            leader_started = psutil.Process(pgid).create_time()
        except psutil.NoSuchProcess:
            pass
        not_before = leader_started if leader_started is not None else proc.create_time()
        return GroupHandle(pgid, not_before, leader_started, psutil.boot_time())
    return None


def end(group: GroupHandle, wait_s: float) -> tuple[list[int], list[int]]:
    """SIGKILL every member of ``group`` and wait up to ``wait_s`` until none is left.

    Kills again on every round, so a process forked meanwhile goes too. Returns
    (the pids that were killed, the pids still alive when ``wait_s`` ran out).
    """
    deadline = time.monotonic() + wait_s
    pause = _POLL_S[0]
    killed: dict[int, None] = {}  # ordered set
    while True:
        alive = members(group)
        if not alive:
            return list(killed), []
        if time.monotonic() >= deadline:
            return list(killed), [p.pid for p in alive]
        for proc in alive:
            try:
                proc.send_signal(signal.SIGKILL)
                killed[proc.pid] = None
            except psutil.NoSuchProcess:
                pass
            except psutil.AccessDenied as exc:
                log.warning("cannot kill pid %d of process group %d: %s", proc.pid, group.pgid, exc)
        time.sleep(pause)
        pause = min(pause * 2, _POLL_S[1])


def _pid_reused(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) > SLACK_S
    except psutil.NoSuchProcess:
        return False
