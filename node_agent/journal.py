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
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from dodoor.errors import DodoorError, ValidationError
from dodoor.resources import Task
# re-exported: the agent's modules and tests take the states from here
from dodoor.taskstates import (FAILED, LOST, QUEUED, RESERVED, RUNNING,  # noqa: F401
                               SUCCEEDED, TERMINAL)
from dodoor.validation import parse_task

log = logging.getLogger(__name__)
T = TypeVar("T")

# What accept_many did with each task
NEW, DUPLICATE, RERUN, CONFLICT = "new", "duplicate", "rerun", "conflict"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    scheduler_id TEXT NOT NULL,
    state TEXT NOT NULL,
    queued_ms REAL,
    started_ms REAL,
    finished_ms REAL,
    exit_code INTEGER,
    reason TEXT,
    log_tail TEXT NOT NULL DEFAULT ''
)
"""
# key/value facts about the journal itself (the agent's incarnation)
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_NOT_TERMINAL = f"state NOT IN ({', '.join('?' * len(TERMINAL))})"
# Retention deletes finished rows by age; without this index every prune scans the
# table. IF NOT EXISTS also migrates journals written before it existed (once, at open).
_INDEX = "CREATE INDEX IF NOT EXISTS tasks_state_finished ON tasks (state, finished_ms)"
UNREADABLE = "unreadable journal row"


class JournalError(DodoorError):
    """The journal could not record something (disk full, read-only, corrupt)."""


class _Spoiled(Exception):
    """A write failed in a batch run without savepoints; the batch was rolled back."""


@dataclass(frozen=True, slots=True)
class Record:
    """One journal row."""

    seq: int
    task: Task
    scheduler_id: str
    state: str
    queued_ms: float | None
    started_ms: float | None
    finished_ms: float | None
    exit_code: int | None
    reason: str | None
    log_tail: str
    reply_url: str | None = None  # a reservation's: where to ask for the confirm
    # What the executor's on_start gave to find the task's processes again (or None).
    handle: str | None = None


@dataclass(frozen=True, slots=True)
class StatusRow:
    """Where a journaled task stands: a row without its task, so it reads even when the
    task column does not."""

    task_id: str
    state: str
    queued_ms: float | None
    started_ms: float | None
    finished_ms: float | None
    exit_code: int | None
    reason: str | None
    log_tail: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An unfinished row whose task could not be read, now ended ``failed``."""

    task_id: str
    was: str  # the state it had: queued or running
    reason: str  # ``unreadable journal row: <problem>``, as journaled


class Journal:
    """Async façade over the sqlite file; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._conn: sqlite3.Connection | None = None
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        # True from submitting a drain until that drain starts taking writes: a write
        # queued meanwhile is sure to be taken, so it need not submit a drain of its own.
        self._drain_queued = False
        self._lock_fd: int | None = None

    async def open(self) -> None:
        await self._call(self._open, need_open=False)
        log.info("journal opened at %s", self.path)

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._close)
        await asyncio.to_thread(self._pool.shutdown, True)

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
                          queued_ms: float) -> list[str]:
        """Journal newly accepted tasks (all or nothing): per task ``NEW``; ``DUPLICATE``
        for an id already held with the same body; ``RERUN`` for a resubmitted id that
        had ended ``lost`` here (queued again); ``CONFLICT`` for an id held with a
        different body (nothing changes)."""
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
                elif held["state"] == LOST:
                    conn.execute(
                        "UPDATE tasks SET state = ?, scheduler_id = ?, queued_ms = ?,"
                        " started_ms = NULL, finished_ms = NULL, exit_code = NULL, reason = NULL,"
                        " log_tail = '' WHERE id = ?", (QUEUED, scheduler_id, queued_ms, row[0]))
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
        """End every unfinished task ``lost`` (its node life was declared dead); their ids."""

        def work(conn: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM tasks WHERE {_NOT_TERMINAL} ORDER BY seq", tuple(TERMINAL)).fetchall()]
            conn.execute(f"UPDATE tasks SET state = ?, finished_ms = ?, reason = ? WHERE {_NOT_TERMINAL}",
                         (LOST, finished_ms, reason, *TERMINAL))
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
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET state = ?, started_ms = ? WHERE id = ?", (RUNNING, started_ms, task_id)
        ))

    async def set_handle(self, task_id: str, handle: str) -> None:
        """Record the executor's handle of a started task (read back by ``unfinished``)."""
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET handle = ? WHERE id = ?", (handle, task_id)))

    async def finish(self, task_id: str, state: str, finished_ms: float, exit_code: int | None,
                     reason: str | None, log_tail: str) -> None:
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state!r}")
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET state = ?, finished_ms = ?, exit_code = ?, reason = ?, log_tail = ?"
            " WHERE id = ?",
            (state, finished_ms, exit_code, reason, log_tail, task_id),
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
            "SELECT id, state, queued_ms, started_ms, finished_ms, exit_code, reason, log_tail"
            " FROM tasks WHERE id = ?", (task_id,)).fetchall())
        return StatusRow(*rows[0]) if rows else None

    async def unfinished(self) -> list[Record]:
        """Tasks not yet in a terminal state, in acceptance order.

        Unreadable rows are left out (with a warning): ``fail_unreadable`` first ends them.
        """
        rows = await self._call(lambda c: c.execute(
            f"SELECT * FROM tasks WHERE {_NOT_TERMINAL} ORDER BY seq", tuple(TERMINAL)).fetchall())
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
                                    " ORDER BY seq", tuple(TERMINAL)).fetchall():
                problem = _task_problem(row)
                if problem is not None:
                    bad.append(Unreadable(row["id"], row["state"], f"{UNREADABLE}: {problem}"))
            conn.executemany(
                "UPDATE tasks SET state = ?, finished_ms = ?, reason = ? WHERE id = ?",
                [(FAILED, finished_ms, b.reason, b.task_id) for b in bad])
            return bad

        return await self._write(work)

    async def counts(self) -> dict[str, int]:
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

        marks = ", ".join("?" * len(TERMINAL))

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                f"DELETE FROM tasks WHERE state IN ({marks}) AND seq NOT IN"
                f" (SELECT seq FROM tasks WHERE state IN ({marks}) ORDER BY seq DESC LIMIT ?)",
                (*TERMINAL, *TERMINAL, keep)).rowcount

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
                f" WHERE state IN ({', '.join('?' * len(TERMINAL))}) AND finished_ms < ? LIMIT ?)",
                (*TERMINAL, before_ms, limit)).rowcount

        return await self._write(work)

    async def execute(self, sql: str) -> None:
        """Run one raw statement (operators' and tests' escape hatch, e.g. PRAGMAs)."""
        await self._call(lambda c: c.execute(sql))

    # -- plumbing ---------------------------------------------------------
    def _open(self, _conn: Any = None) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._connect()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        # Two agents resuming the same journal would both re-run its tasks; the OS drops
        # the lock with the process, so a SIGKILLed agent never leaves it stale.
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise JournalError(f"journal {self.path} is in use by another agent") from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # WAL + synchronous=NORMAL would lose the last commits on power loss; FULL keeps
        # the promise that a 202 means the task is on disk.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
        _add_missing_column(conn, "reply_url", "TEXT")
        _add_missing_column(conn, "handle", "TEXT")
        conn.execute(_META)
        conn.execute(_INDEX)
        self._conn = conn

    def _close(self, conn: sqlite3.Connection) -> None:
        conn.close()
        self._conn = None
        self._release_lock()

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Group commit: writes queued while the journal thread is busy share one
        # transaction (one fsync); one failure spoils only itself (see _commit).
        # Every caller still returns only after the commit. ``work`` may run twice
        # (after a rollback), so it must touch nothing but the connection.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._writes.put((work, fut, loop))
        if not self._drain_queued:
            self._drain_queued = True
            try:
                self._pool.submit(self._drain)
            except BaseException:  # shut down: let the next write try (and fail) again
                self._drain_queued = False
                raise
        return await fut

    def _drain(self) -> None:
        # Cleared before taking: a write queued after this line submits a new drain.
        self._drain_queued = False
        batch = []
        while True:
            try:
                batch.append(self._writes.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return  # an earlier drain took these writes
        conn = self._conn
        try:
            if conn is None:
                raise JournalError(f"journal {self.path} is not open")
            try:
                outcomes = self._commit(conn, batch, isolate=False)
            except _Spoiled:
                # Some write failed: redo the batch with each write in its own savepoint.
                outcomes = self._commit(conn, batch, isolate=True)
        except (sqlite3.Error, JournalError) as exc:
            self._rollback(conn)
            outcomes = [(False, exc)] * len(batch)
        # One wake-up per event loop for the whole batch, not one per write.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, bool, Any]]] = {}
        for (_, fut, loop), (ok, value) in zip(batch, outcomes):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(self._settle_all, settled)

    def _commit(self, conn: sqlite3.Connection, batch: list, isolate: bool) -> list[tuple[bool, Any]]:
        """Run a batch of writes in one transaction and commit it.

        Savepoints cost two statements per write, so the first attempt goes without:
        a write failing there rolls the whole transaction back and raises ``_Spoiled``
        (work functions touch only the connection, so running them again is safe).
        With ``isolate`` each write gets its own savepoint and a failure spoils only it.
        """
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        for work, _, _ in batch:
            if not isolate:
                try:
                    outcomes.append((True, work(conn)))
                except sqlite3.Error as exc:
                    self._rollback(conn)
                    raise _Spoiled from exc
                continue
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, work(conn)))
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return outcomes

    def _rollback(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("journal %s: rollback failed", self.path)

    def _settle_all(self, settled: list[tuple[asyncio.Future, bool, Any]]) -> None:
        for fut, ok, value in settled:
            self._settle(fut, ok, value)

    def _settle(self, fut: asyncio.Future, ok: bool, value: Any) -> None:
        if fut.done():  # the writer was cancelled (shutdown); the write still happened
            return
        if ok:
            fut.set_result(value)
        elif isinstance(value, sqlite3.Error):
            error = JournalError(f"journal {self.path}: {value}")
            error.__cause__ = value
            fut.set_exception(error)
        else:
            fut.set_exception(value)

    async def _call(self, fn: Callable[[sqlite3.Connection], T], need_open: bool = True) -> T:
        def run() -> T:
            if need_open and self._conn is None:
                raise JournalError(f"journal {self.path} is not open")
            return fn(self._conn)  # type: ignore[arg-type]

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, run)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc


def _add_missing_column(conn: sqlite3.Connection, name: str, kind: str) -> None:
    """Migrate a journal written before the column existed."""
    if name not in {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}:
        conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")


def _same_body(held: str, offered: str) -> bool:
    """Do two journaled task bodies describe the same task (key order aside)?

    A held body that no longer parses proves no conflict: the id stays taken."""
    try:
        return json.loads(held) == json.loads(offered)
    except ValueError:
        return True


def _record(row: sqlite3.Row) -> Record:
    try:
        task = _parse_task(row)
    except _BadRow as exc:
        raise JournalError(f"journal row {row['id']!r} holds a bad task: {exc}") from exc
    return Record(
        seq=row["seq"], task=task, scheduler_id=row["scheduler_id"], state=row["state"],
        queued_ms=row["queued_ms"], started_ms=row["started_ms"], finished_ms=row["finished_ms"],
        exit_code=row["exit_code"], reason=row["reason"], log_tail=row["log_tail"],
        reply_url=row["reply_url"], handle=row["handle"],
    )


class _BadRow(Exception):
    """A row's task column cannot be turned back into its Task."""


def _parse_task(row: sqlite3.Row) -> Task:
    try:
        task = parse_task(json.loads(row["task"]))
    # Whatever a damaged row makes the parser raise (bad JSON or UTF-8, a failed
    # validation, nesting too deep), the row cannot run: it must not stop the agent.
    except Exception as exc:
        problem = str(exc) if isinstance(exc, (ValidationError, ValueError)) else repr(exc)
        raise _BadRow(problem) from exc
    if task.task_id != row["id"]:
        # Running it would journal its transitions under another row's id.
        raise _BadRow(f"its task id {task.task_id!r} is not the row's id {row['id']!r}")
    return task


def _task_problem(row: sqlite3.Row) -> str | None:
    """Why the row's task cannot be read, or None when it can."""
    try:
        _parse_task(row)
    except _BadRow as exc:
        return str(exc)
    return None
