"""What the journal's rows read back as, and how a row's task is parsed.

A row's ``task`` column is the task's JSON as it was accepted. It may no longer
parse or validate (say, after an upgrade tightened validation); such a row is
*unreadable*. ``_record`` then raises ``JournalError``, ``_task_problem`` names
the problem without raising, and ``StatusRow`` is the row without its task, so
a status read never depends on the task column at all.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from dodoor.errors import ValidationError
from dodoor.resources import Task
from dodoor.validation import parse_task
from node_agent.journal_store import JournalError


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
    # the executor's handle; of a handed-over task, where it went (node_agent.handover)
    handle: str | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An unfinished row whose task could not be read, now ended ``failed``."""

    task_id: str
    was: str  # the state it had: queued or running
    reason: str  # ``unreadable journal row: <problem>``, as journaled


def _same_body(held: str, offered: str) -> bool:
    """Do two journaled task bodies describe the same task (key order aside)?

    A held body that no longer parses proves no conflict: the id stays taken."""
    try:
        return json.loads(held) == json.loads(offered)
    except ValueError:
        return True


def _record(row: sqlite3.Row) -> Record:
    """The whole row as a ``Record``; ``JournalError`` when its task is unreadable."""
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
