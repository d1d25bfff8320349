"""What ``dodoor submit`` adds to :mod:`dodoor.client`: following with a progress line,
and the outcomes as a table or JSON lines. Submitting and status calls are the client's."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Iterable, Sequence, TextIO

from dodoor.taskstates import CANCELLED, FAILED, LOST, QUEUED, RUNNING, SUCCEEDED, TERMINAL

if TYPE_CHECKING:  # the client is imported by the command that uses it, not by the daemons
    from dodoor.client import AsyncClient, TaskHandle

# the longest a round waits for a completion before the progress line is redrawn anyway
REFRESH_S = 2.0


async def follow(client: "AsyncClient", handles: Sequence["TaskHandle"], timeout_s: float,
                 progress: TextIO | None = sys.stderr) -> list[dict]:
    """Follow ``handles`` to their end, or until ``timeout_s``, with the client's batch
    status rounds (a long poll per scheduler, not a request per task), redrawing the
    progress line after each round. Returns each task's last status, in order (state
    ``unknown`` for one never answered). A task that ends ``lost`` is resubmitted by
    the client; the client's errors (no scheduler answers) propagate."""
    from dodoor.client import FIRST_COMPLETED

    shown = ProgressLine(progress, len(handles)) if progress is not None else None
    deadline = time.monotonic() + timeout_s
    pending = set(handles)
    first = True
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _, pending = await client.wait(pending, min(left, REFRESH_S), FIRST_COMPLETED,
                                       pause_first=not first)
        first = False
        if shown is not None:
            shown.update(Counter(h.last["state"] for h in handles if h.last), last=not pending)
    if shown is not None:
        shown.close()
    return [h.last or {"id": h.id, "state": "unknown"} for h in handles]


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
