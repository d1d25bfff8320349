"""The agent's durable task journal: one sqlite file (stdlib).

Every accepted task is inserted and committed before the agent answers 202,
so a crash after that answer can never lose it. Transitions (running, and the
terminal state with exit code, reason, times and a log tail) are recorded as
they happen; finished rows stay, so results are served after a restart. All
sqlite work runs on one dedicated thread — the connection lives there and the
event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import queue
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from dodoor.errors import DodoorError, ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})

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
    # What the executor's on_start gave to find the task's processes again (or None).
    handle: str | None = None


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
        rows = await self._call(lambda c: c.execute(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchall())
        return _record(rows[0]) if rows else None

    async def unfinished(self) -> list[Record]:
        """Tasks not yet in a terminal state, in acceptance order."""
        rows = await self._call(lambda c: c.execute(
            "SELECT * FROM tasks WHERE state NOT IN (?, ?) ORDER BY seq", tuple(TERMINAL)).fetchall())
        return [_record(r) for r in rows]

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

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM tasks WHERE state IN (?, ?) AND seq NOT IN"
                " (SELECT seq FROM tasks WHERE state IN (?, ?) ORDER BY seq DESC LIMIT ?)",
                (*TERMINAL, *TERMINAL, keep)).rowcount

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
        _add_handle_column(conn)
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


def _add_handle_column(conn: sqlite3.Connection) -> None:
    # Journals written before executors had handles lack the column; sqlite adds a
    # nullable one in place, without rewriting the rows.
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(tasks)")}
    if "handle" not in columns:
        conn.execute("ALTER TABLE tasks ADD COLUMN handle TEXT")
        log.info("journal: added the handle column")


def _record(row: sqlite3.Row) -> Record:
    try:
        task = parse_task(json.loads(row["task"]))
    except (ValueError, ValidationError) as exc:
        raise JournalError(f"journal row {row['id']!r} holds a bad task: {exc}") from exc
    return Record(
        seq=row["seq"], task=task, scheduler_id=row["scheduler_id"], state=row["state"],
        queued_ms=row["queued_ms"], started_ms=row["started_ms"], finished_ms=row["finished_ms"],
        exit_code=row["exit_code"], reason=row["reason"], log_tail=row["log_tail"],
        handle=row["handle"],
    )
