"""What the load store has heard from this agent: accepted ids and ended tasks.

Each state report carries the ids accepted, and the ids ended (with their
terminal state), since the last report the store answered; the store's task
index learns both. When the store declares the node dead it answers each
ended id it heard with its state and every other id ``lost``, and from then on
the fenced life must agree: a task whose end the store never heard ends
``lost`` on the agent too, even though it ran (docs/guarantees.md, "How many
times a task runs"). This ledger says which ends those are (:meth:`unheard`):

* ends in the fenced report itself that the store's answer does not list as
  ``kept`` (it did not hear them in an earlier report whose answer was lost);
* ends journaled after that report was built, or whose journal write was
  under way when the fence cancelled their task (:meth:`ending`).

Everything answered before, or resent after a restart beyond what one report
carries, counts as heard: a restart resends the most recently ended rows first
(:func:`resend_rows`), so only more than one report's worth of ends left
unanswered at a crash could be misjudged.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable, Sequence

from dodoor.taskstates import CANCELLED, FAILED, LOST, MOVED, SUCCEEDED, TERMINAL
from dodoor.wire import NodeState
from node_agent.journal import Journal

# the ends a fence may void (a ``lost`` row is already what the store says)
VOIDABLE = (SUCCEEDED, FAILED, CANCELLED)


class ReportLedger:
    """Ids and ends not yet in an answered report; see the module docstring."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.states: list[str] = []  # per id: "" (accepted) or its terminal state
        self.resending = False
        self._resend_left = 0  # how many of ``ids`` are a resend of the whole journal
        self._ending: set[str] = set()  # results being journaled right now

    def __len__(self) -> int:
        return len(self.ids)

    def unanswered_ends(self) -> int:
        """How many ends no answered report carried yet."""
        return sum(1 for s in self.states if s) + len(self._ending)

    def accepted(self, task_id: str) -> None:
        self.ids.append(task_id)
        self.states.append("")

    def ending(self, task_id: str) -> None:
        """A result is about to be journaled (a fence may cancel the write's waiter)."""
        self._ending.add(task_id)

    def ended(self, task_id: str, state: str | None) -> None:
        """The result was journaled (``state``), or could not be (None: nothing to report)."""
        self._ending.discard(task_id)
        if state is not None:
            self.ids.append(task_id)
            self.states.append(state)

    def resend(self, rows: Sequence[tuple[str, str]]) -> None:
        """A store that may not know our ids: all of them (``resend_rows``) again."""
        self.ids = [task_id for task_id, _ in rows]
        self.states = [state for _, state in rows]
        self._resend_left, self.resending = len(rows), True

    def next(self, limit: int) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """The ids and states of the next report, and whether they end a resend."""
        ids = tuple(self.ids[:limit])
        states = tuple(self.states[:limit])
        return ids, states if any(states) else (), self.resending and len(ids) >= self._resend_left

    def answered(self, sent: NodeState) -> None:
        """The store took ``sent`` (not fenced): what it carried is heard."""
        n = len(sent.task_ids)
        del self.ids[:n], self.states[:n]
        self._resend_left = max(0, self._resend_left - n)
        if self.resending and sent.task_ids_complete:
            self.resending = False

    def unheard(self, sent: NodeState, kept: Iterable[str]) -> set[str]:
        """The fenced life's ends the store did not hear before the death (to void)."""
        n = len(sent.task_ids)
        out = {t for t, s in zip(sent.task_ids, sent.task_states) if s} - set(kept)
        fresh = n + max(0, self._resend_left - n)  # past the resend: ended since
        out.update(t for t, s in zip(self.ids[fresh:], self.states[fresh:]) if s)
        return out | self._ending

    def fenced(self) -> None:
        """The fence decided every end of the old life: keep only accepted ids."""
        pairs = [(t, s) for t, s in zip(self.ids, self.states) if not s]
        self._resend_left = sum(1 for t, s in zip(self.ids[:self._resend_left],
                                                  self.states[:self._resend_left]) if not s)
        self.ids, self.states = [t for t, _ in pairs], ["" for _ in pairs]
        self._ending.clear()


async def resend_rows(journal: Journal) -> list[tuple[str, str]]:
    """Every journaled id with its terminal state ("" while unfinished), the most
    recently ended first (an end left unanswered at a crash is among the newest)."""
    terminal = set(TERMINAL)
    # a task handed over is the other agent's to report (node_agent.handover)
    rows = await journal.read(lambda c: c.execute(
        "SELECT id, state FROM tasks WHERE state != ? ORDER BY finished_ms DESC, seq",
        (MOVED,)).fetchall())
    return [(r[0], r[1] if r[1] in terminal else "") for r in rows]


async def void_unheard(journal: Journal, task_ids: Iterable[str], finished_ms: float,
                       reason: str) -> list[str]:
    """End ``lost`` each of ``task_ids`` that ended here in a voidable state; their ids."""
    ids = sorted(set(task_ids))
    marks = ", ".join("?" * len(VOIDABLE))

    def work(conn: sqlite3.Connection) -> list[str]:
        voided = []
        for task_id in ids:
            if conn.execute(f"UPDATE tasks SET state = ?, finished_ms = ?, exit_code = NULL,"
                            f" reason = ? WHERE id = ? AND state IN ({marks})",
                            (LOST, finished_ms, reason, task_id, *VOIDABLE)).rowcount:
                voided.append(task_id)
        return voided

    return await journal.write(work) if ids else []
