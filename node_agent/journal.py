"""The agent's durable task journal: one sqlite file (stdlib).

Every accepted task is inserted and committed before the agent answers 202,
so a crash after that answer can never lose it. Transitions (running, and the
terminal state with exit code, reason, times and a log tail) are recorded as
they happen; finished rows stay, so results are served after a restart, until
``prune`` (count) or ``prune_finished_before`` (age) forgets them. All sqlite
work runs on one dedicated thread — the connection lives there and the event
loop never blocks on the disk.

A row whose task no longer parses or validates (say, after an upgrade tightened
validation) is *unreadable*: ``fail_unreadable`` ends it ``failed`` naming the
problem, ``unfinished`` leaves it out, and ``status`` never reads the task
column, so one bad row can stop neither a start nor a status read.

This module holds the task-level operations (the ``Journal`` façade). The file
itself — connection, lock, schema and migrations, and the group commit that
lets concurrent writes share one fsync — is ``node_agent.journal_store``; the
rows as read back, and the parsing of their task, are ``node_agent.journal_rows``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from dodoor.resources import Task
# re-exported: the agent's modules and tests take the states from here
from dodoor.taskstates import (FAILED, LOST, MOVED, MOVING, QUEUED, RESERVED,  # noqa: F401
                               RUNNING, SUCCEEDED, TERMINAL)
# Record, StatusRow, Unreadable and JournalError are re-exported: callers import them from here
from node_agent.journal_rows import (Record, StatusRow, Unreadable, _record,  # noqa: F401
                                     _same_body, _task_problem)
from node_agent.journal_store import JournalError, JournalStore  # noqa: F401

log = logging.getLogger(__name__)
T = TypeVar("T")

# What accept_many did with each task
NEW, DUPLICATE, RERUN, CONFLICT = "new", "duplicate", "rerun", "conflict"

# Rows this agent is done with: ended, or handed over to another agent (node_agent.handover)
_DONE = (*sorted(TERMINAL), MOVED)
# ... and not being handed over either: the rows a restart queues again and a fence ends
# lost (a hand-over under way is resolved with its target first, never run here meanwhile)
_HERE = (*_DONE, MOVING)
_NOT_TERMINAL = f"state NOT IN ({', '.join('?' * len(_HERE))})"
UNREADABLE = "unreadable journal row"


class Journal:
    """Async façade over the sqlite file; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._store = JournalStore(self.path)

    async def open(self) -> None:
        """Open (creating or migrating) the file; JournalError when another agent holds it."""
        await self._store.open()
        log.info("journal opened at %s", self.path)

    async def close(self) -> None:
        """Close the file and stop the journal thread; later writes raise."""
        await self._store.close()

    async def insert(self, task: Task, scheduler_id: str, state: str, queued_ms: float,
                     started_ms: float | None = None) -> bool:
        """Record a newly accepted task; False when the id is already in the journal."""
        [fresh] = await self.insert_many((task,), scheduler_id, state, queued_ms, started_ms)
        return fresh

    async def insert_many(self, tasks: Sequence[Task], scheduler_id: str, state: str,
                          queued_ms: float, started_ms: float | None = None) -> list[bool]:
        """Record several tasks all-or-nothing; per task, False when its id was already known."""
        rows = [(t.task_id, json.dumps(t.to_dict()), scheduler_id, state, queued_ms, started_ms)
                for t in tasks]

        def work(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(
                "INSERT OR IGNORE INTO tasks (id, task, scheduler_id, state, queued_ms, started_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)", row).rowcount == 1 for row in rows]

        return await self._write(work)

    async def accept_many(self, tasks: Sequence[Task], scheduler_id: str,
                          queued_ms: float, handed_over: bool = False) -> list[str]:
        """Journal newly accepted tasks (all or nothing): per task ``NEW``; ``DUPLICATE``
        for an id already held with the same body; ``RERUN`` for a resubmitted id that
        had ended ``lost`` here (queued again), or, with ``handed_over`` (another agent
        hands the tasks over), one this agent had handed over before (it comes back);
        ``CONFLICT`` for an id held with a different body (nothing changes)."""
        again = (LOST, MOVED) if handed_over else (LOST,)
        rows = [(t.task_id, json.dumps(t.to_dict()), scheduler_id, QUEUED, queued_ms)
                for t in tasks]

        def work(conn: sqlite3.Connection) -> list[str]:
            out = []
            for row in rows:
                if conn.execute("INSERT OR IGNORE INTO tasks (id, task, scheduler_id, state,"
                                " queued_ms) VALUES (?, ?, ?, ?, ?)", row).rowcount == 1:
                    out.append(NEW)
                    continue
                held = conn.execute("SELECT task, state FROM tasks WHERE id = ?",
                                    (row[0],)).fetchone()
                if held["task"] != row[1] and not _same_body(held["task"], row[1]):
                    out.append(CONFLICT)
                elif held["state"] in again:
                    conn.execute(
                        "UPDATE tasks SET state = ?, scheduler_id = ?, queued_ms = ?,"
                        " started_ms = NULL, finished_ms = NULL, exit_code = NULL, reason = NULL,"
                        " log_tail = '', handle = NULL WHERE id = ?", (QUEUED, scheduler_id, queued_ms, row[0]))
                    out.append(RERUN)
                else:
                    out.append(DUPLICATE)
            return out

        return await self._write(work)

    async def reserve(self, task: Task, scheduler_id: str, reply_url: str,
                      queued_ms: float) -> bool:
        """Journal a Sparrow reservation (state ``reserved``) so it outlives a restart;
        False when the id is already known here."""
        row = (task.task_id, json.dumps(task.to_dict()), scheduler_id, RESERVED, queued_ms,
               reply_url)
        return await self._write(lambda c: c.execute(
            "INSERT OR IGNORE INTO tasks (id, task, scheduler_id, state, queued_ms, reply_url)"
            " VALUES (?, ?, ?, ?, ?, ?)", row).rowcount == 1)

    async def drop_reserved(self, task_id: str) -> bool:
        """Forget a reservation its scheduler cancelled or gave to another node."""
        return await self._write(lambda c: c.execute(
            "DELETE FROM tasks WHERE id = ? AND state = ?", (task_id, RESERVED)).rowcount == 1)

    async def mark_lost_unfinished(self, finished_ms: float, reason: str) -> list[str]:
        """End every unfinished task ``lost`` (its node life was declared dead); their ids.

        A hand-over under way is left to its resolution (node_agent.handover): the
        target may hold the task already, and then it is alive there."""

        def work(conn: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM tasks WHERE {_NOT_TERMINAL} ORDER BY seq", _HERE).fetchall()]
            conn.execute(f"UPDATE tasks SET state = ?, finished_ms = ?, reason = ? WHERE {_NOT_TERMINAL}",
                         (LOST, finished_ms, reason, *_HERE))
            return ids

        return await self._write(work)

    async def held(self, task_ids: Sequence[str]) -> set[str]:
        """Which of ``task_ids`` the journal holds (in any state)."""
        ids = list(task_ids)

        def work(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(ids), 500):  # sqlite caps the number of parameters
                part = ids[i:i + 500]
                found.update(r[0] for r in conn.execute(
                    f"SELECT id FROM tasks WHERE id IN ({', '.join('?' * len(part))})", part))
            return found

        return await self._call(work)

    async def all_ids(self) -> list[str]:
        """Every id the journal holds, oldest first (re-reported to a new load store)."""
        rows = await self._call(lambda c: c.execute("SELECT id FROM tasks ORDER BY seq").fetchall())
        return [r[0] for r in rows]

    async def incarnation(self, renew: bool = False) -> str:
        """This journal's current life; ``renew`` starts a new one (after a fence)."""

        def work(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone()
            if row is not None and not renew:
                return row[0]
            value = uuid.uuid4().hex[:16]
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('incarnation', ?)",
                         (value,))
            return value

        return await self._write(work)

    async def mark_running(self, task_id: str, started_ms: float) -> None:
        """Record that a task has started."""
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET state = ?, started_ms = ? WHERE id = ?", (RUNNING, started_ms, task_id)
        ))

    async def mark_confirmed(self, task_id: str, now_ms: float) -> None:
        """A reservation's scheduler sent the task: it arrives and starts now (the
        wait before was the reservation's, not the task's queueing)."""
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET state = ?, queued_ms = ?, started_ms = ? WHERE id = ?",
            (RUNNING, now_ms, now_ms, task_id)))

    async def set_handle(self, task_id: str, handle: str) -> None:
        """Record the executor's handle of a started task (read back by ``unfinished``)."""
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET handle = ? WHERE id = ?", (handle, task_id)))

    async def finish(self, task_id: str, state: str, finished_ms: float, exit_code: int | None,
                     reason: str | None, log_tail: str, started_ms: float | None = None) -> None:
        """Record a task's result; ``state`` must be terminal (ValueError otherwise)."""
        await self.finish_soon(task_id, state, finished_ms, exit_code, reason, log_tail,
                               started_ms)

    def finish_soon(self, task_id: str, state: str, finished_ms: float, exit_code: int | None,
                    reason: str | None, log_tail: str,
                    started_ms: float | None = None) -> asyncio.Future:
        """:meth:`finish` without waiting: the future settles once the result is committed
        (with ``JournalError`` when it could not be). ``started_ms``, when given, records
        the start in the same statement (a start that was never journaled on its own)."""
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state!r}")
        return self._store.submit(lambda c: c.execute(
            "UPDATE tasks SET state = ?, finished_ms = ?, exit_code = ?, reason = ?, log_tail = ?,"
            " started_ms = COALESCE(?, started_ms) WHERE id = ?",
            (state, finished_ms, exit_code, reason, log_tail, started_ms, task_id),
        ))

    async def get(self, task_id: str) -> Record | None:
        """The whole row with its task; raises JournalError when the task is unreadable
        (``status`` reads the same row without the task)."""
        rows = await self._call(lambda c: c.execute(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchall())
        return _record(rows[0]) if rows else None

    async def status(self, task_id: str) -> StatusRow | None:
        """Where a task stands, without reading (or parsing) its task column."""
        rows = await self._call(lambda c: c.execute(
            "SELECT id, state, queued_ms, started_ms, finished_ms, exit_code, reason, log_tail,"
            " handle FROM tasks WHERE id = ?", (task_id,)).fetchall())
        return StatusRow(*rows[0]) if rows else None

    async def statuses(self, task_ids: list[str]) -> dict[str, StatusRow]:
        """:meth:`status` of many ids in one call; ids not held are left out."""
        def read(c) -> dict[str, StatusRow]:
            found: dict[str, StatusRow] = {}
            for i in range(0, len(task_ids), 500):  # under SQLite's bound-parameter limit
                chunk = task_ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for row in c.execute(
                        "SELECT id, state, queued_ms, started_ms, finished_ms, exit_code, reason,"
                        f" log_tail, handle FROM tasks WHERE id IN ({marks})", chunk).fetchall():
                    found[row[0]] = StatusRow(*row)
            return found
        return await self._call(read)

    async def unfinished(self) -> list[Record]:
        """Tasks not yet in a terminal state, in acceptance order.

        Unreadable rows are left out (with a warning): ``fail_unreadable`` first ends them.
        """
        rows = await self._call(lambda c: c.execute(
            f"SELECT * FROM tasks WHERE {_NOT_TERMINAL} ORDER BY seq", _HERE).fetchall())
        records = []
        for row in rows:
            try:
                records.append(_record(row))
            except JournalError as exc:
                log.warning("leaving out an unfinished journal row: %s", exc)
        return records

    async def fail_unreadable(self, finished_ms: float) -> list[Unreadable]:
        """End every unfinished row whose task cannot be read as ``failed``, with the
        reason ``unreadable journal row: <problem>``; returns them in acceptance order.

        Such a row cannot run (there is no task to run), and raising instead would
        keep the agent from starting at all.
        """
        def work(conn: sqlite3.Connection) -> list[Unreadable]:
            bad = []
            for row in conn.execute(f"SELECT id, task, state FROM tasks WHERE {_NOT_TERMINAL}"
                                    " ORDER BY seq", _HERE).fetchall():
                problem = _task_problem(row)
                if problem is not None:
                    bad.append(Unreadable(row["id"], row["state"], f"{UNREADABLE}: {problem}"))
            conn.executemany(
                "UPDATE tasks SET state = ?, finished_ms = ?, reason = ? WHERE id = ?",
                [(FAILED, finished_ms, b.reason, b.task_id) for b in bad])
            return bad

        return await self._write(work)

    async def counts(self) -> dict[str, int]:
        """How many rows are in each state."""
        rows = await self._call(lambda c: c.execute(
            "SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
        return {state: n for state, n in rows}

    async def prune(self, keep: int) -> int:
        """Forget all but the newest ``keep`` finished tasks; returns how many rows went.

        A forgotten id is no longer recognised as a duplicate, nor answered by
        ``GET /v1/tasks/{id}``.
        """
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")

        marks = ", ".join("?" * len(_DONE))

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                f"DELETE FROM tasks WHERE state IN ({marks}) AND seq NOT IN"
                f" (SELECT seq FROM tasks WHERE state IN ({marks}) ORDER BY seq DESC LIMIT ?)",
                (*_DONE, *_DONE, keep)).rowcount

        return await self._write(work)

    async def prune_finished_before(self, before_ms: float, limit: int = 10_000) -> int:
        """Forget up to ``limit`` finished tasks that ended before ``before_ms``; returns
        how many rows went (call again while it returns ``limit``).

        Unfinished tasks are never forgotten. The bound keeps one call short, so new
        tasks are not held up behind a long delete. As with ``prune``, a forgotten
        id is no longer recognised as a duplicate, nor answered.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks"
                f" WHERE state IN ({', '.join('?' * len(_DONE))}) AND finished_ms < ? LIMIT ?)",
                (*_DONE, before_ms, limit)).rowcount

        return await self._write(work)

    async def execute(self, sql: str) -> None:
        """Run one raw statement (operators' and tests' escape hatch, e.g. PRAGMAs)."""
        await self._call(lambda c: c.execute(sql))

    # -- the way to the store ---------------------------------------------
    @property
    def _pool(self) -> ThreadPoolExecutor:
        """The journal thread (the store's); tests watch the drains submitted to it."""
        return self._store.pool

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Group-committed (see journal_store): returns only once the commit is on disk.
        # ``work`` may run twice (after a rollback), so it must touch only the connection.
        return await self._store.write(work)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._store.call(fn)

    # The same two seams, for the journal's extension modules (node_agent.ledger).
    read = _call
    write = _write
