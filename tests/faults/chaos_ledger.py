"""The chaos test's ledger: what every task copy really did, written by the tasks themselves.

Each task is a shell snippet (:func:`task_command`) that appends to ONE shared
file, with ``O_APPEND`` (``>>``) short writes, which the kernel keeps whole and
in order:

    start ID PID NODE free|held
    end ID PID NODE

``PID`` is the task shell's pid and ``NODE`` comes from ``DODOOR_CHAOS_NODE``,
set in each agent's environment and passed through to its tasks by the process
executor. The line order is the real order of events, so a ledger *line number*
is the test's clock: a fault records the ledger's size just before it strikes.

``free|held`` answers "is another copy of this id alive right now?" without
trusting any timing: before writing ``start`` every copy tries a non-blocking
``flock`` on ``LOCKDIR/ID.lock`` and keeps the descriptor open until it has
written ``end``. The kernel drops the lock only when every process holding the
descriptor is gone, so ``held`` means an earlier copy is provably alive, and
``free`` that every earlier copy without an ``end`` line is provably dead
(a SIGKILLed copy writes no ``end`` but releases the lock).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

NODE_ENV = "DODOOR_CHAOS_NODE"
RUN_ENV = "DODOOR_CHAOS_RUN"  # marks every process of one run (agents and their tasks)

# $1 ledger, $2 lock directory, $3 seconds to sleep. The lock descriptor is closed
# right after ``end`` so a later copy sees ``free`` as soon as this one's work is done.
TASK_SCRIPT = """\
exec 9>>"$2/$DODOOR_TASK_ID.lock"
if flock -n 9; then lock=free; else lock=held; fi
echo "start $DODOOR_TASK_ID $$ $DODOOR_CHAOS_NODE $lock" >>"$1"
sleep "$3"
echo "end $DODOOR_TASK_ID $$ $DODOOR_CHAOS_NODE" >>"$1"
exec 9>&-
"""


def task_command(ledger: Path, lockdir: Path, sleep_ms: int) -> list[str]:
    """The argv of one chaos task (identical for every submission of the same id)."""
    return ["sh", "-c", TASK_SCRIPT, "chaos-task", str(ledger), str(lockdir),
            f"{sleep_ms / 1000:.3f}"]


@dataclass
class Copy:
    """One run of a task id: one task shell on one node."""

    task_id: str
    pid: int
    node: str
    start_line: int  # 1-based line number of its ``start``
    lock_held: bool  # another copy of the id was alive when this one started
    end_line: int | None = None  # None: it never wrote ``end`` (killed, or still running)

    def describe(self) -> str:
        end = f"ended at line {self.end_line}" if self.end_line else "no end line"
        held = ", lock HELD by a live copy at its start" if self.lock_held else ""
        return f"pid {self.pid} on {self.node} started at line {self.start_line}, {end}{held}"


@dataclass
class LedgerView:
    """The parsed ledger: copies per id, in start order."""

    copies: dict[str, list[Copy]] = field(default_factory=dict)
    lines: int = 0
    malformed: list[str] = field(default_factory=list)
    orphan_ends: list[str] = field(default_factory=list)  # an ``end`` with no ``start``

    def open_copies(self) -> list[Copy]:
        """Copies that have not written ``end`` (still running, or killed)."""
        return [c for cs in self.copies.values() for c in cs if c.end_line is None]


class Ledger:
    """The shared ledger file and the lock directory of one run."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "ledger.txt"
        self.lockdir = workdir / "locks"
        self.lockdir.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def size(self) -> int:
        """Bytes written so far; always at a line boundary (each line is one append)."""
        return self.path.stat().st_size

    def lines_within(self, nbytes: int) -> int:
        """How many lines the first ``nbytes`` bytes hold (the line count at that moment)."""
        with open(self.path, "rb") as f:
            return f.read(nbytes).count(b"\n")

    def parse(self) -> LedgerView:
        view = LedgerView()
        open_by_key: dict[tuple[str, int, str], Copy] = {}
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                view.lines = n
                parts = raw.decode("utf-8", errors="replace").split()
                if len(parts) == 5 and parts[0] == "start" and parts[2].isdigit():
                    copy = Copy(parts[1], int(parts[2]), parts[3], n, parts[4] == "held")
                    view.copies.setdefault(copy.task_id, []).append(copy)
                    open_by_key[(copy.task_id, copy.pid, copy.node)] = copy
                elif len(parts) == 4 and parts[0] == "end" and parts[2].isdigit():
                    copy = open_by_key.pop((parts[1], int(parts[2]), parts[3]), None)
                    if copy is None:
                        view.orphan_ends.append(f"line {n}: {raw!r}")
                    else:
                        copy.end_line = n
                else:
                    view.malformed.append(f"line {n}: {raw!r}")
        return view


# -- the task processes themselves (/proc) ------------------------------------

def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or a zombie we may not read
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def live_task_processes(run_token: str) -> dict[int, str]:
    """pid → task id of every live process of this run's tasks (shells and their sleeps).

    Found by the run token in the environment, so pids reused by unrelated
    processes are never counted (or killed). The agents carry the token too but
    no ``DODOOR_TASK_ID``.
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        env = _environ(int(entry))
        if env.get(RUN_ENV) == run_token and "DODOOR_TASK_ID" in env:
            found[int(entry)] = env["DODOOR_TASK_ID"]
    return found


def kill_task_processes(run_token: str, spare: set[int] = frozenset()) -> int:
    """SIGKILL this run's task processes left behind (orphans of SIGKILLed agents)."""
    killed = 0
    for pid in live_task_processes(run_token):
        if pid in spare:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    if killed:
        log.info("killed %d leftover task process(es)", killed)
    return killed
