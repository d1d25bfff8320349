"""The agent's answers about a task: from memory while it is held, else from the journal.

A mixin of :class:`~node_agent.node.NodeAgent` (which sets the attributes below).
A task in the queue reads ``queued`` or ``running``; an end on its way to the
journal reads ``running`` until committed (docs/guarantees.md); an end the
journal refused is served from memory; anything else is the journal's row.
"""

from __future__ import annotations

from dodoor.taskstates import MOVED, MOVING
from dodoor.wire import TaskStatus
from node_agent.handover import handover_status
from node_agent.journal import QUEUED, RESERVED, RUNNING, Journal, StatusRow
from node_agent.queue import TASK, TaskQueue


class StatusAnswers:
    """``status``, ``statuses`` and ``status_and_log`` of the agent."""

    node_id: str
    queue: TaskQueue
    journal: Journal
    committing: dict[str, tuple[TaskStatus, str]]
    unjournaled: dict[str, tuple[TaskStatus, str]]

    async def status(self, task_id: str) -> TaskStatus | None:
        found = await self.status_and_log(task_id)
        return None if found is None else found[0]

    async def statuses(self, task_ids: tuple[str, ...]) -> tuple[list[TaskStatus], list[str]]:
        """The status of each id held here, and the ids not held, with one journal read."""
        live: dict[str, TaskStatus] = {}
        rest: list[str] = []
        for task_id in task_ids:
            found = self._live_status(task_id)
            if found is None:
                rest.append(task_id)
            else:
                live[task_id] = found[0]
        rows = await self.journal.statuses(rest) if rest else {}
        statuses, missing = [], []
        for task_id in task_ids:
            st = live.get(task_id)
            if st is None and task_id in rows:
                st = self._row_status(rows[task_id])[0]
            if st is None:
                missing.append(task_id)
            else:
                statuses.append(st)
        return statuses, missing

    def _live_status(self, task_id: str) -> tuple[TaskStatus, str] | None:
        entry = self.queue.get(task_id)
        if entry is not None and entry.kind == TASK:
            running = self.queue.is_running(task_id)
            return TaskStatus(task_id, RUNNING if running else QUEUED, self.node_id,
                              queued_ms=entry.queued_ms, reason=None if running else entry.note,
                              started_ms=entry.started_ms if running else None), ""
        ending = self.committing.get(task_id)
        if ending is not None:
            # not durable yet: a crash now would run it again (sleep) or re-read its exit
            # status, so it reads ``running`` until its end is on disk (docs/guarantees.md)
            st = ending[0]
            return TaskStatus(task_id, RUNNING, self.node_id, queued_ms=st.queued_ms,
                              started_ms=st.started_ms), ""
        return self.unjournaled.get(task_id)

    def _row_status(self, record: StatusRow) -> tuple[TaskStatus, str]:
        task_id = record.task_id
        if record.state in (MOVING, MOVED):
            return handover_status(self.node_id, record), ""
        if record.state == RESERVED:
            return TaskStatus(task_id, QUEUED, self.node_id, queued_ms=record.queued_ms,
                              reason="reserved, waiting for its scheduler's confirm"), ""
        return TaskStatus(task_id, record.state, self.node_id, record.queued_ms, record.started_ms,
                          record.finished_ms, record.exit_code, record.reason), record.log_tail

    async def status_and_log(self, task_id: str) -> tuple[TaskStatus, str] | None:
        """Where a task stands, with the tail of its output once it has ended."""
        live = self._live_status(task_id)
        if live is not None:
            return live
        record = await self.journal.status(task_id)  # never parses the task: a bad row still reads
        return None if record is None else self._row_status(record)
