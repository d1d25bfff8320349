"""A client that submits tasks to schedulers and follows them to a terminal state."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence, TextIO

import aiohttp
import msgpack

from dodoor.errors import DodoorError
from dodoor.resources import Task
# TERMINAL has cancelled: a cancelled task is done
from dodoor.taskstates import (CANCELLED, FAILED, LOST, QUEUED, RUNNING, SUCCEEDED, TERMINAL,
                               UNKNOWN)

log = logging.getLogger(__name__)


class SubmitError(DodoorError):
    """A scheduler refused a batch; carries its status and error body."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"{url} answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Placed:
    task_id: str
    node: str
    scheduler_url: str


def auth_headers(token: str | None, content_type: str | None = None) -> dict[str, str]:
    """Request headers: the bearer token when one is set, and a content type if given."""
    out = {"Content-Type": content_type} if content_type else {}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


async def submit(
    session: aiohttp.ClientSession, urls: Sequence[str], tasks: Iterable[Task],
    batch_size: int = 100, token: str | None = None,
) -> list[Placed]:
    """POST tasks in msgpack batches, spread round-robin over the scheduler URLs."""
    placed: list[Placed] = []
    url_cycle = itertools.cycle(urls)
    batch: list[Task] = []

    async def send(chunk: list[Task], url: str) -> None:
        body = msgpack.packb({"tasks": [t.to_dict() for t in chunk]}, use_bin_type=True)
        headers = auth_headers(token, "application/msgpack")
        async with session.post(url + "/v1/tasks", data=body, headers=headers) as resp:
            text = await resp.text()
            if resp.status != 202:
                raise SubmitError(url, resp.status, text)
            answer = await resp.json(content_type=None)
        placed.extend(Placed(p["id"], p["node"], url) for p in answer["placements"])

    for task in tasks:
        batch.append(task)
        if len(batch) >= batch_size:
            await send(batch, next(url_cycle))
            batch = []
    if batch:
        await send(batch, next(url_cycle))
    return placed


async def status(session: aiohttp.ClientSession, url: str, task_id: str,
                 token: str | None = None) -> dict:
    async with session.get(f"{url}/v1/tasks/{task_id}", headers=auth_headers(token)) as resp:
        if resp.status == 404:
            return {"id": task_id, "state": UNKNOWN}
        resp.raise_for_status()
        return await resp.json(content_type=None)


async def follow(
    session: aiohttp.ClientSession, placed: Sequence[Placed], token: str | None = None,
    timeout_s: float = 600.0, poll_s: float = 0.5, concurrency: int = 32,
    progress: TextIO | None = sys.stderr,
) -> dict[str, dict]:
    """Poll every task until it is terminal (or the timeout); returns id → last status."""
    final: dict[str, dict] = {}
    pending = {p.task_id: p for p in placed}
    last: dict[str, dict] = {}
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout_s
    shown = ProgressLine(progress, len(placed)) if progress is not None else None

    async def poll(p: Placed) -> None:
        async with gate:
            try:
                last[p.task_id] = await status(session, p.scheduler_url, p.task_id, token)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.debug("status of %s failed: %s", p.task_id, exc)

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(poll(p) for p in pending.values()))
        for task_id in [t for t in pending if last.get(t, {}).get("state") in TERMINAL]:
            final[task_id] = last[task_id]
            del pending[task_id]
        if shown is not None:
            shown.update(Counter(s.get("state", "?") for s in (final | last).values()),
                         last=not pending)
        if pending:
            await asyncio.sleep(poll_s)
    for task_id in pending:
        final[task_id] = last.get(task_id, {"id": task_id, "state": UNKNOWN})
    if shown is not None:
        shown.close()
    return final


class ProgressLine:
    """The follow progress: one line redrawn in place on a terminal; elsewhere (a log
    file, a pipe) a plain line when the counts change, at most every ``every_s``."""

    def __init__(self, out: TextIO, total: int, every_s: float = 5.0) -> None:
        self.out = out
        self.total = total
        self.every_s = every_s
        isatty = getattr(out, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._text = ""
        self._written = ""
        self._at = -math.inf

    def update(self, counts: Counter, last: bool = False) -> None:
        self._text = progress_text(self.total, counts)
        if self.tty:
            self.out.write("\r" + self._text)
            self.out.flush()
        elif self._text != self._written and (last or time.monotonic() - self._at >= self.every_s):
            self._emit()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
        elif self._text != self._written:
            self._emit()  # the final counts, whenever the last line was
        self.out.flush()

    def _emit(self) -> None:
        self.out.write(self._text + "\n")
        self.out.flush()
        self._written = self._text
        self._at = time.monotonic()


def progress_text(total: int, counts: Counter) -> str:
    done = sum(counts[s] for s in TERMINAL)
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    return (f"[{bar}] {done}/{total} done  queued {counts[QUEUED]}  running {counts[RUNNING]}"
            f"  succeeded {counts[SUCCEEDED]}  failed {counts[FAILED]}  lost {counts[LOST]}"
            + (f"  cancelled {counts[CANCELLED]}" if counts[CANCELLED] else ""))


OUTCOME_FIELDS = ("id", "state", "node", "exit_code", "reason")


def outcome_json_lines(outcomes: Iterable[dict]) -> list[str]:
    """One JSON object per task with :data:`OUTCOME_FIELDS` (absent ones as null)."""
    return [json.dumps({k: o.get(k) for k in OUTCOME_FIELDS}, sort_keys=False) for o in outcomes]


def outcome_table(outcomes: Iterable[dict]) -> str:
    """The tasks' outcomes as an aligned plain-text table, one row per task."""
    header = ("ID", "STATE", "NODE", "EXIT", "REASON")
    rows = [tuple("" if o.get(k) is None else str(o.get(k)) for k in OUTCOME_FIELDS)
            for o in outcomes]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
