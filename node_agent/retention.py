"""Time-based retention of finished results in the agent's journal.

Without it the journal keeps every result until the disk is full. A
:class:`Retention` loop (started and cancelled by the app's ``cleanup_ctx``)
forgets finished rows older than the retention period now and then, in bounded
deletes over the journal's ``(state, finished_ms)`` index, never on the write
path. Unfinished tasks are never forgotten. A forgotten id is answered 404 with
:func:`unknown_task_reason`, and is no longer recognised as a duplicate: a
scheduler that sends it again has it run again.
"""

from __future__ import annotations

import asyncio
import logging

from dodoor.clock import Clock
from node_agent.journal import Journal, JournalError

log = logging.getLogger(__name__)

# Prune this often at most (a long retention need not be exact to the minute) ...
MAX_INTERVAL_S = 3600.0
# ... and at least this far apart, however short the retention.
MIN_INTERVAL_S = 1.0
# Rows deleted per transaction: new tasks wait behind one batch at most.
BATCH = 10_000


def prune_interval_s(retention_s: float) -> float:
    """How often to prune for a retention: a tenth of it, within [1 s, 1 h]."""
    if not retention_s > 0:
        raise ValueError(f"retention must be > 0 s to prune by age, got {retention_s!r}")
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, retention_s / 10.0))


def describe_period(seconds: float) -> str:
    """A retention period as people say it: ``7 days``, ``1 day``, ``36 h``, ``90 s``."""
    for unit_s, one, many in ((86400.0, "day", "days"), (3600.0, "h", "h"), (60.0, "min", "min")):
        if seconds >= unit_s and (seconds / unit_s).is_integer():
            n = int(seconds / unit_s)
            return f"{n} {one if n == 1 else many}"
    return f"{seconds:g} s"


def unknown_task_reason(task_id: str, retention_s: float, keep_finished: int = 0) -> str:
    """The 404 reason for an id the journal does not hold.

    A never-seen id and a forgotten one look the same in the journal, so the
    reason names both, with the rules that forget results.
    """
    rules = []
    if retention_s > 0:
        rules.append(f"for {describe_period(retention_s)} after they end")
    if keep_finished > 0:
        rules.append(f"only the newest {keep_finished}")
    if not rules:
        return f"unknown task {task_id!r}: this agent never accepted it"
    return (f"unknown task {task_id!r}: this agent never accepted it, or its result expired"
            f" (finished results are kept {' and '.join(rules)})")


class Retention:
    """Forgets finished journal rows older than ``retention_s``; see the module docstring."""

    def __init__(self, journal: Journal, clock: Clock, retention_s: float,
                 interval_s: float | None = None, batch: int = BATCH) -> None:
        self.journal = journal
        self.clock = clock
        self.retention_ms = retention_s * 1000.0
        self.interval_s = interval_s if interval_s is not None else prune_interval_s(retention_s)
        self.batch = batch
        self.pruned = 0  # rows forgotten by this process

    async def prune_once(self) -> int:
        """Forget every finished row that ended more than the retention ago; how many went."""
        before_ms = self.clock.now_ms() - self.retention_ms
        total = 0
        while True:
            n = await self.journal.prune_finished_before(before_ms, self.batch)
            total += n
            if n < self.batch:
                break
        if total:
            self.pruned += total
            log.info("journal: forgot %d finished task(s) older than %s", total,
                     describe_period(self.retention_ms / 1000.0))
        return total

    async def run(self) -> None:
        """Prune now, then every ``interval_s``, until cancelled."""
        while True:
            try:
                await self.prune_once()
            except JournalError as exc:  # a full or locked disk: try again next time
                log.warning("could not prune the journal: %s", exc)
            except Exception:  # a bug must not end retention for the rest of the run
                log.exception("pruning the journal failed")
            await asyncio.sleep(self.interval_s)
