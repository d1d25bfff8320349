"""The agent's heart: accepts tasks, journals them, runs them through the queue.

``NodeAgent`` glues the pure :class:`~node_agent.queue.TaskQueue` to an
executor, the journal and (for Sparrow) the scheduler's confirm endpoint. Every
task it starts is an ``asyncio.Task`` it keeps until the task ends; ``close``
cancels and awaits whatever is still running, leaving those tasks ``running``
in the journal so the next start re-runs or adopts them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from typing import Awaitable, Callable, Sequence

import numpy as np

from dodoor.clock import Clock
from dodoor.messages import MessageCounter
from dodoor.resources import Task
from dodoor.wire import TaskStatus
from node_agent.executor import Executor, Interrupted, TaskResult
from node_agent.journal import FAILED, QUEUED, RUNNING, SUCCEEDED, Journal, JournalError
from node_agent.queue import RESERVATION, TASK, Entry, TaskQueue

log = logging.getLogger(__name__)

# (reply_url, node_id, task_id) -> the confirmed Task, or None when the scheduler said no
ConfirmFn = Callable[[str, str, str], Awaitable[Task | None]]


class NodeAgent:
    """Queue + executor + journal for one node; see the module docstring."""

    def __init__(self, node_id: str, capacity: np.ndarray, slots: int, executor: Executor,
                 journal: Journal, clock: Clock, counter: MessageCounter | None = None,
                 keep_finished: int = 0) -> None:
        self.node_id = node_id
        self.queue = TaskQueue(capacity, slots)
        self.executor = executor
        self.journal = journal
        self.clock = clock
        self.counter = counter if counter is not None else MessageCounter()
        self.finished: Counter[str] = Counter()  # terminal states reached by this process
        self.confirm: ConfirmFn | None = None
        # 0 keeps every result; otherwise the journal is pruned to this many now and then.
        self.keep_finished = keep_finished
        self._since_prune = 0
        self._listeners: list[Callable[[], None]] = []
        self._jobs: dict[str, asyncio.Task] = {}
        self._closing = False
        # Results the journal refused (disk full): served from memory so such a task does
        # not read ``queued`` forever; its journal row makes a restart run it again.
        self.unjournaled: dict[str, tuple[TaskStatus, str]] = {}

    # -- observation ------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously, cheaply) when the state changes in a way
        no scheduler knows of: a task ends, a reservation comes, goes or is confirmed.

        Enqueues are left out on purpose: the scheduler that placed a task sends it to
        the load store in its deltas (DESIGN §2), so a report would repeat it — at
        about one extra report per task, the cost DESIGN §4's accounting (one report
        per completion) and the simulator leave out. Starts change neither the
        committed load nor the pending work.
        """
        self._listeners.append(listener)

    def state(self) -> np.ndarray:
        return self.queue.state(self.clock.now_ms())

    async def status(self, task_id: str) -> TaskStatus | None:
        found = await self.status_and_log(task_id)
        return None if found is None else found[0]

    async def status_and_log(self, task_id: str) -> tuple[TaskStatus, str] | None:
        """Where a task stands, with the tail of its output once it has ended."""
        entry = self.queue.get(task_id)
        if entry is not None and entry.kind == TASK:
            running = self.queue.is_running(task_id)
            return TaskStatus(task_id, RUNNING if running else QUEUED, self.node_id,
                              queued_ms=entry.queued_ms,
                              started_ms=entry.started_ms if running else None), ""
        kept = self.unjournaled.get(task_id)
        if kept is not None:
            return kept
        record = await self.journal.get(task_id)
        if record is None:
            return None
        return TaskStatus(task_id, record.state, self.node_id, record.queued_ms, record.started_ms,
                          record.finished_ms, record.exit_code, record.reason), record.log_tail

    # -- lifecycle --------------------------------------------------------
    async def resume(self) -> int:
        """Reload unfinished journal tasks: adopt what the executor still runs, re-run the rest."""
        records = await self.journal.unfinished()
        # Before anything re-runs: the executor ends or adopts what the last run left.
        interrupted = [Interrupted(r.task, r.state, r.handle) for r in records]
        adopted = {a.task_id: a for a in await self.executor.reconcile(interrupted)}
        now = self.clock.now_ms()
        for rec in records:
            found = adopted.get(rec.task.task_id)
            entry = Entry(rec.task, TASK, rec.scheduler_id, queued_ms=rec.queued_ms or now)
            if found is None and not self.queue.fits_node(rec.task):
                # Restarted with a smaller capacity: waiting would be forever.
                await self._record_result(rec.task.task_id, TaskResult(
                    FAILED, reason=f"does not fit node {self.node_id} after a restart"))
            elif found is not None and not found.running and found.result is not None:
                await self._record_result(rec.task.task_id, found.result)
                await self._forget(rec.task.task_id)
            elif found is not None and found.running:
                entry.started_ms = rec.started_ms
                self.queue.add_running(entry, now)
                self._spawn(entry, self.executor.wait_adopted(rec.task.task_id))
            else:
                self.queue.add(entry)
        if records:
            log.info("resumed %d unfinished task(s) from the journal (%d adopted)",
                     len(records), sum(1 for a in adopted.values() if a.running))
            self._changed()
        self._pump()
        return len(records)

    async def close(self) -> None:
        self._closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        self._jobs.clear()

    # -- requests ---------------------------------------------------------
    async def submit(self, task: Task, scheduler_id: str) -> bool:
        """Journal and queue a task; False for a duplicate id. Raises JournalError."""
        return await self.submit_many((task,), scheduler_id) == 1

    async def submit_many(self, tasks: Sequence[Task], scheduler_id: str) -> int:
        """Journal (all or nothing) and queue tasks in order; returns how many were new.

        Ids already queued, journaled or repeated within ``tasks`` are skipped.
        Raises JournalError, in which case none was accepted.
        """
        seen: set[str] = set()
        fresh = []
        for task in tasks:
            if task.task_id not in self.queue and task.task_id not in seen:
                seen.add(task.task_id)
                fresh.append(task)
        if not fresh:
            return 0
        now = self.clock.now_ms()
        inserted = await self.journal.insert_many(fresh, scheduler_id, QUEUED, now)
        added = 0
        for task, new in zip(fresh, inserted):
            # Also skip a reservation for the same id that arrived while we were writing.
            if new and task.task_id not in self.queue:
                self.queue.add(Entry(task, TASK, scheduler_id, queued_ms=now))
                added += 1
        if added:
            self._pump()
        return added

    async def reserve(self, task: Task, scheduler_id: str, reply_url: str) -> bool:
        """Hold a place for a Sparrow reservation; False when the id is already known."""
        if task.task_id in self.queue or await self.journal.get(task.task_id) is not None:
            return False
        if task.task_id in self.queue:  # the same reservation arrived twice concurrently
            return False
        self.queue.add(Entry(task, RESERVATION, scheduler_id, reply_url, self.clock.now_ms()))
        self._changed()
        self._pump()
        return True

    def cancel(self, task_id: str) -> bool:
        """Drop a waiting reservation. A held one is left to its pending confirm."""
        entry = self.queue.get(task_id)
        if entry is None or entry.kind != RESERVATION or self.queue.is_running(task_id):
            return False
        self.queue.drop_waiting(task_id)
        self._changed()
        self._pump()
        return True

    # -- machinery --------------------------------------------------------
    def _pump(self) -> None:
        if self._closing:
            return
        for entry in self.queue.schedule(self.clock.now_ms()):
            if entry.kind == RESERVATION:
                self._spawn(entry, self._confirm_then_run(entry))
            else:
                self._spawn(entry, self._run(entry))

    def _spawn(self, entry: Entry, work: Awaitable[TaskResult | None]) -> None:
        self._jobs[entry.task_id] = asyncio.ensure_future(self._supervise(entry, work))

    async def _supervise(self, entry: Entry, work: Awaitable[TaskResult | None]) -> None:
        task_id = entry.task_id
        try:
            result = await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an executor bug must not wedge the slot forever
            log.exception("task %s crashed in the %s executor", task_id, self.executor.name)
            result = TaskResult(FAILED, reason=f"executor error: {exc!r}")
        finally:
            self._jobs.pop(task_id, None)
        if result is not None:
            # Journal first so a status query never sees the task vanish between states.
            await self._record_result(task_id, result, entry)
            await self._forget(task_id)
        if self.queue.is_running(task_id):
            self.queue.finish(task_id)
        # Only now, with the slot free: a report built any earlier would still hold it.
        self._changed()
        self._pump()

    async def _run(self, entry: Entry) -> TaskResult:
        started = entry.started_ms if entry.started_ms is not None else self.clock.now_ms()
        try:
            await self.journal.mark_running(entry.task_id, started)
        except JournalError as exc:
            # The task is already durable as queued; the worst case is a re-run after a crash.
            log.warning("could not journal the start of %s: %s", entry.task_id, exc)
        log.debug("task %s started", entry.task_id)
        return await self.executor.run(entry.task, functools.partial(self._journal_handle,
                                                                     entry.task_id))

    async def _confirm_then_run(self, entry: Entry) -> TaskResult | None:
        task = None
        if self.confirm is not None:
            task = await self.confirm(entry.reply_url, self.node_id, entry.task_id)
        if task is None or task.task_id != entry.task_id:
            if task is not None:
                log.warning("confirm of %s answered with task %s; releasing", entry.task_id,
                            task.task_id)
            return None  # released by _supervise; the scheduler placed it elsewhere
        now = self.clock.now_ms()
        self.queue.promote(entry.task_id, task)
        # The task itself arrives (and starts) now; the hold before it was the reservation's.
        entry.queued_ms = entry.started_ms = now
        try:
            await self.journal.insert(task, entry.scheduler_id, RUNNING, now, started_ms=now)
        except JournalError as exc:
            log.error("running confirmed task %s without a journal entry: %s", task.task_id, exc)
        self._changed()
        return await self.executor.run(task, functools.partial(self._journal_handle, task.task_id))

    async def _journal_handle(self, task_id: str, handle: str) -> None:
        """The executor's ``on_start`` hook: journal where the task's processes are."""
        try:
            await self.journal.set_handle(task_id, handle)
        except JournalError as exc:
            # The task runs on; only a crash before it ends would then miss its processes.
            log.warning("could not journal the handle of %s: %s", task_id, exc)

    async def _forget(self, task_id: str) -> None:
        # Called only once the result is journaled (or known unjournalable): until then
        # what the executor holds (a finished container) is a restart's way to the result.
        try:
            await self.executor.forget(task_id)
        except Exception:  # a failed cleanup must not wedge the slot
            log.exception("the %s executor could not forget task %s", self.executor.name,
                          task_id)

    async def _record_result(self, task_id: str, result: TaskResult,
                             entry: Entry | None = None) -> None:
        state = SUCCEEDED if result.state == SUCCEEDED else FAILED
        self.finished[state] += 1
        now = self.clock.now_ms()
        try:
            await self.journal.finish(task_id, state, now, result.exit_code,
                                      result.reason, result.log_tail)
        except JournalError as exc:
            log.error("could not journal the result of %s: %s", task_id, exc)
            self.unjournaled[task_id] = (TaskStatus(
                task_id, state, self.node_id, entry.queued_ms if entry else None,
                entry.started_ms if entry else None, now, result.exit_code, result.reason,
            ), result.log_tail)
        log.debug("task %s %s (exit %s)", task_id, state, result.exit_code)
        self._since_prune += 1
        # Prune in steps of a tenth of the bound, so the delete is rare and cheap.
        if self.keep_finished and self._since_prune >= max(1, self.keep_finished // 10):
            self._since_prune = 0
            try:
                await self.journal.prune(self.keep_finished)
            except JournalError as exc:
                log.warning("could not prune the journal: %s", exc)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
