"""The journal's sqlite file: its connection, lock, schema and group-commit writes.

``JournalStore`` owns everything below the task-level operations of
:class:`node_agent.journal.Journal`: the one connection (opened in WAL mode
with ``synchronous=FULL``, so a commit survives power loss), the lock file
that keeps two agents off one journal, the schema with its in-place
migrations, and the queue of writes. All sqlite work runs on one dedicated
thread — the connection lives there and the event loop never blocks on the
disk.

Writes are group-committed: with ``synchronous=FULL`` every commit costs an
fsync, so writes queued while the thread is busy share one transaction and
one fsync, and each writer still returns only after that commit. A batch
first runs without savepoints, which would cost two extra statements per
write; only if a write in it fails is the batch rolled back and redone with
each write in its own savepoint, so the failure spoils that write alone.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from dodoor.errors import DodoorError

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# Retention deletes finished rows by age; without this index every prune scans the
# table. IF NOT EXISTS also migrates journals written before it existed (once, at open).
_INDEX = "CREATE INDEX IF NOT EXISTS tasks_state_finished ON tasks (state, finished_ms)"


class JournalError(DodoorError):
    """The journal could not record something (disk full, read-only, corrupt)."""


class _Spoiled(Exception):
    """A write failed in a batch run without savepoints; the batch was rolled back."""


class JournalStore:
    """The sqlite file behind a ``Journal``; see the module docstring.

    ``write`` and ``call`` take a function of the connection and run it on the
    journal thread; nothing else touches the connection.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # One thread: sqlite work is serialised there, and the connection never leaves it.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._conn: sqlite3.Connection | None = None
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        # True from submitting a drain until that drain starts taking writes: a write
        # queued meanwhile is sure to be taken, so it need not submit a drain of its own.
        self._drain_queued = False
        self._lock_fd: int | None = None

    async def open(self) -> None:
        """Take the lock file, connect, and create or migrate the schema."""
        await self.call(self._open, need_open=False)

    async def close(self) -> None:
        """Close the connection (releasing the lock) and stop the journal thread."""
        if self._conn is not None:
            await self.call(self._close)
        await asyncio.to_thread(self.pool.shutdown, True)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` inside a committed transaction; its result once that commit is durable.

        ``work`` may run twice (after a rollback), so it must touch nothing but the
        connection. A failing ``work`` raises ``JournalError`` and spoils no other write.
        """
        return await self.submit(work)

    def submit(self, work: Callable[[sqlite3.Connection], T]) -> asyncio.Future:
        """Queue ``work`` as :meth:`write` does, without waiting: the future settles once
        its commit is durable (or with ``JournalError``). A caller that need not wait
        (a task's end: docs/guarantees.md asks only that it be committed before the
        executor forgets the task) goes on at once, and its write joins the next
        group commit with whatever else queues meanwhile."""
        # Group commit: writes queued while the journal thread is busy share one
        # transaction (one fsync); one failure spoils only itself (see _commit).
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._writes.put((work, fut, loop))
        if not self._drain_queued:
            self._drain_queued = True
            try:
                self.pool.submit(self._drain)
            except BaseException:  # shut down: let the next write try (and fail) again
                self._drain_queued = False
                raise
        return fut

    async def call(self, fn: Callable[[sqlite3.Connection], T], need_open: bool = True) -> T:
        """Run ``fn`` on the journal thread outside any write batch (reads, raw statements)."""
        def run() -> T:
            if need_open and self._conn is None:
                raise JournalError(f"journal {self.path} is not open")
            return fn(self._conn)  # type: ignore[arg-type]

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, run)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    # -- opening and closing (on the journal thread) ----------------------
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

    # -- group commit (on the journal thread) -----------------------------
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

    # -- answering the writers (on each writer's event loop) --------------
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


def _add_missing_column(conn: sqlite3.Connection, name: str, kind: str) -> None:
    """Migrate a journal written before the column existed."""
    if name not in {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}:
        conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")
