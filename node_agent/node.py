"""The agent's heart: accepts tasks, journals them, runs them through the queue.

``NodeAgent`` glues the pure :class:`~node_agent.queue.TaskQueue` to an
executor, the journal and (for Sparrow) the scheduler's confirm endpoint. Every
task it starts is an ``asyncio.Task`` it keeps until the task ends, or, on a
:class:`~node_agent.executor.TimedExecutor` (the sleep executor), a loop timer;
``close`` cancels and awaits whatever is still running, leaving those tasks
unfinished in the journal so the next start re-runs or adopts them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from dodoor.clock import Clock
from dodoor.errors import PicklableError
from dodoor.messages import MessageCounter
from dodoor.service.metrics import QUEUE_WAIT_BUCKETS, RUN_TIME_BUCKETS, Histogram
from dodoor.resources import Task
from dodoor.wire import NodeState, ReportAck, TaskStatus
from node_agent.answers import StatusAnswers
from node_agent.executor import Executor, Interrupted, TaskResult, TimedExecutor, Timer
from dodoor.taskstates import CANCELLED, LOST
from node_agent.journal import CONFLICT, FAILED, NEW, RERUN, RESERVED, SUCCEEDED, Journal, JournalError
from node_agent.lease import Lease
from node_agent.ledger import ReportLedger, resend_rows, void_unheard
from node_agent.preemption import Preemption
from node_agent.queue import RESERVATION, TASK, Entry, TaskQueue
from node_agent.runs import ASK_AGAIN, ConfirmFn, RunSupervision

__all__ = ["ASK_AGAIN", "NodeAgent", "TaskConflict"]

log = logging.getLogger(__name__)


class TaskConflict(PicklableError):
    """Ids already held here with a different task body (the client reused an id)."""

    def __init__(self, task_ids: list[str]) -> None:
        super().__init__(f"id(s) already used by a different task: {', '.join(task_ids[:5])}")
        self.task_ids = task_ids


class NodeAgent(StatusAnswers, RunSupervision):
    """Queue + executor + journal for one node; see the module docstring. Its answers
    about a task are :class:`~node_agent.answers.StatusAnswers`', the starting,
    supervising and stopping of runs :class:`~node_agent.runs.RunSupervision`'s."""

    def __init__(self, node_id: str, capacity: np.ndarray, slots: int, executor: Executor,
                 journal: Journal, clock: Clock, counter: MessageCounter | None = None,
                 keep_finished: int = 0, lease: Lease | None = None, preempt: bool = False) -> None:
        self.node_id = node_id
        self.queue = TaskQueue(capacity, slots)
        self.executor = executor
        self.journal = journal
        self.clock = clock
        self.counter = counter if counter is not None else MessageCounter()
        self.finished: Counter[str] = Counter()  # terminal states reached by this process
        # seconds from arrival to start, and from start to end, of the tasks this process ran
        self.queue_wait = Histogram(QUEUE_WAIT_BUCKETS)
        self.run_time = Histogram(RUN_TIME_BUCKETS)
        self.confirm: ConfirmFn | None = None
        # 0 keeps every result; otherwise the journal is pruned to this many now and then.
        self.keep_finished = keep_finished
        self._since_prune = 0
        self._listeners: list[Callable[[], None]] = []
        self._jobs: dict[str, asyncio.Task] = {}
        # the executor's part of each job, apart, so a client's cancel stops only that
        self._runs: dict[str, asyncio.Future] = {}
        self._cancels: dict[str, str] = {}  # id -> reason, for runs a client cancelled
        # A timed executor's tasks are loop timers, not asyncio tasks (cheaper per task).
        self._timed = executor if isinstance(executor, TimedExecutor) else None
        self._timers: dict[str, Timer] = {}
        self._pruning: asyncio.Task | None = None  # a prune a timed task's settling asked for
        self._pumping = self._repump = False  # see _pump
        self._pump_later: asyncio.Handle | None = None
        self._closing = False
        self._fencing = False
        self._requeue: list[Entry] = []
        # how long a held reservation asks for a verdict before it frees its slot and
        # waits at the tail of the queue again
        self.confirm_patience_s = 10.0
        # Results not in the journal, served from memory so such a task never reads
        # ``queued`` again: ends on their way to its next commit (the slot is free
        # meanwhile; they read ``running`` until on disk), and ends it refused (disk full;
        # read as ended, and their row makes a restart run them again).
        self.committing: dict[str, tuple[TaskStatus, str]] = {}
        self.unjournaled: dict[str, tuple[TaskStatus, str]] = {}
        # start permission from the load store (node_agent.lease); none needed without one
        self.lease = lease if lease is not None else Lease(clock, required=False)
        self.incarnation = ""  # set by resume(); renewed by fence()
        # ids accepted or ended and not yet in an answered state report (the store's
        # task index; node_agent.ledger)
        self.unreported = ReportLedger()
        self.fences = 0
        self._store_instance = ""
        # called when a start waits for the lease: report now
        self.want_report: Callable[[], None] = lambda: None
        self.preemption = Preemption(self, preempt)  # off by default (node_agent.preemption)

    # -- observation ------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously, cheaply) when the state changes in a way
        no scheduler knows of: a task ends, a reservation comes, goes or is confirmed.

        Enqueues are left out on purpose: the scheduler that placed a task sends it to
        the load store in its deltas (docs/design.md §2), so a report would repeat it — at
        about one extra report per task, the cost docs/design.md §4's accounting (one report
        per completion) and the simulator leave out. Starts change neither the
        committed load nor the pending work.
        """
        self._listeners.append(listener)

    def state(self) -> np.ndarray:
        return self.queue.state(self.clock.now_ms())

    # -- lifecycle --------------------------------------------------------
    async def resume(self) -> int:
        """Reload unfinished journal tasks: adopt what the executor still runs, re-run the rest."""
        self.incarnation = await self.journal.incarnation()
        # whichever store hears from us first may not know our ids: send them all
        self.unreported.resend(await resend_rows(self.journal))
        # A row that no longer reads (say, validation tightened by an upgrade) cannot run;
        # it ends failed instead of keeping the agent, and every other task, from starting.
        for bad in await self.journal.fail_unreadable(self.clock.now_ms()):
            log.error("task %s cannot be resumed, marked failed: %s", bad.task_id, bad.reason)
            self.finished[FAILED] += 1
        records = await self.journal.unfinished()
        # Before anything re-runs: the executor ends or adopts what the last run left.
        interrupted = [Interrupted(r.task, r.state, r.handle) for r in records]
        adopted = {a.task_id: a for a in await self.executor.reconcile(interrupted)}
        await self.preemption.recover(records, adopted)
        now = self.clock.now_ms()
        for rec in records:
            found = adopted.get(rec.task.task_id)
            entry = Entry(rec.task, TASK, rec.scheduler_id, queued_ms=rec.queued_ms or now)
            if rec.state == RESERVED:
                # a durable reservation: it waits for its scheduler's confirm again
                self.queue.add(Entry(rec.task, RESERVATION, rec.scheduler_id, rec.reply_url or "",
                                     rec.queued_ms or now))
            elif found is None and not self.queue.fits_node(rec.task):
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
        await self.preemption.close()
        await self._cancel_runs(self._pruning)

    # -- requests ---------------------------------------------------------
    async def submit(self, task: Task, scheduler_id: str, queued_ms: float | None = None,
                     estimate_ms: float | None = None) -> bool:
        """Journal and queue a task (placed at ``queued_ms``, default now: a task another
        agent handed over keeps its own); False for a duplicate id. Raises JournalError,
        and TaskConflict when the id is held with a different body."""
        estimates = () if estimate_ms is None else (estimate_ms,)
        return await self.submit_many((task,), scheduler_id, queued_ms, estimates) == 1

    async def submit_many(self, tasks: Sequence[Task], scheduler_id: str,
                          queued_ms: float | None = None, estimates_ms: Sequence[float] = ()) -> int:
        """Journal (all or nothing) and queue tasks in order; returns how many were new.
        ``estimates_ms``: the pending work each counts (none: the declared durations).

        Ids already queued or journaled with the same body, or repeated within
        ``tasks``, are skipped; an id that ended ``lost`` here runs again. Raises
        JournalError, in which case none was accepted, and then TaskConflict naming
        the ids held with another body (the rest were accepted).
        """
        seen: set[str] = set()
        fresh = []
        conflicts = []
        for task in tasks:
            task_id = task.task_id
            if task_id in seen:
                continue
            seen.add(task_id)
            held = self.queue.get(task_id)
            if held is None:
                fresh.append(task)
            elif held.kind == TASK and held.task != task and held.task.to_dict() != task.to_dict():
                conflicts.append(task_id)
        added = 0
        if fresh:
            now = self.clock.now_ms() if queued_ms is None else queued_ms
            estimate = dict(zip((t.task_id for t in tasks), estimates_ms))
            # a task handed back to an agent that had handed it over queues again
            outcomes = await self.journal.accept_many(fresh, scheduler_id, now,
                                                      handed_over=queued_ms is not None)
            for task, outcome in zip(fresh, outcomes):
                if outcome == CONFLICT:
                    conflicts.append(task.task_id)
                # Also skip a reservation for the same id that arrived while we were writing.
                elif outcome in (NEW, RERUN) and task.task_id not in self.queue:
                    self.queue.add(Entry(task, TASK, scheduler_id, queued_ms=now,
                                         estimate_ms=estimate.get(task.task_id)))
                    self.unreported.accepted(task.task_id)
                    added += 1
            if added:
                self._pump()
        if conflicts:
            raise TaskConflict(conflicts)
        return added

    def ids_to_report(self, limit: int) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """The next ids for a state report with their states ("" accepted, else ended),
        and whether they end a resend of all ids (the store then knows every id here)."""
        return self.unreported.next(limit)

    async def fence(self, sent: NodeState | None = None, kept: tuple[str, ...] = ()) -> int:
        """The load store declared this node life dead, and told clients its tasks are
        ``lost`` unless it had heard their end: stop whatever runs, end every unfinished
        task ``lost`` and every end the store did not hear (``sent``: the fenced report,
        ``kept``: its ends the store heard), start a new life. Returns how many ended lost."""
        self.lease.revoke()
        self._fencing = True
        try:
            await self._cancel_runs()
            reason = (f"node {self.node_id} (life {self.incarnation}) was declared dead by the "
                      "load store; the task was reported lost and will not run here unless resubmitted")
            ids = await self.journal.mark_lost_unfinished(self.clock.now_ms(), reason)
            unheard = self.unreported.unheard(sent, kept) if sent is not None else set()
            ids += await void_unheard(self.journal, unheard, self.clock.now_ms(), (
                f"finished on node {self.node_id} (life {self.incarnation}) after, or unknown "
                "to, the load store when it declared the node dead: the result is void and "
                "the task may be resubmitted"))
            self.unreported.fenced()
            for entry in list(self.queue.running):
                self.queue.finish(entry.task_id)
            for entry in list(self.queue.waiting):
                self.queue.drop_waiting(entry.task_id)
            self.finished[LOST] += len(ids)
            old, self.incarnation = self.incarnation, await self.journal.incarnation(renew=True)
        finally:
            self._fencing = False
        self.fences += 1
        log.warning("fenced: life %s of %s was declared dead; %d unfinished task(s) ended lost; "
                    "new life %s", old, self.node_id, len(ids), self.incarnation)
        self._changed()
        return len(ids)

    async def reserve(self, task: Task, scheduler_id: str, reply_url: str) -> bool:
        """Hold a place for a Sparrow reservation, journaled first (a 202 for it means it
        survives a restart); False when the id is already known. Raises JournalError."""
        if task.task_id in self.queue:
            return False
        now = self.clock.now_ms()
        if not await self.journal.reserve(task, scheduler_id, reply_url, now):
            return False
        if task.task_id in self.queue:  # an enqueue of the same id arrived while we wrote
            return False
        self.queue.add(Entry(task, RESERVATION, scheduler_id, reply_url, now))
        self._changed()
        self._pump()
        return True

    async def cancel(self, task_id: str) -> bool:
        """Drop a waiting reservation. A held one is left to its pending confirm."""
        entry = self.queue.get(task_id)
        if entry is None or entry.kind != RESERVATION or self.queue.is_running(task_id):
            return False
        self.queue.drop_waiting(task_id)
        self._changed()
        self._pump()
        try:
            await self.journal.drop_reserved(task_id)
        except JournalError as exc:  # a restart re-offers it; its scheduler then says no
            log.warning("could not forget the cancelled reservation %s: %s", task_id, exc)
        return True

    async def on_report_answer(self, ack: ReportAck, sent_ms: float, sent: NodeState) -> None:
        """The load store answered a state report sent at ``sent_ms``."""
        if ack.fenced:
            if sent.incarnation == self.incarnation:  # not a late answer about an old life
                await self.fence(sent, ack.kept)
            return
        if sent.incarnation != self.incarnation:
            return  # the answer is about a life fenced meanwhile: it grants nothing now
        self.unreported.answered(sent)
        if ack.instance and self._store_instance and ack.instance != self._store_instance:
            # a store we have not told our ids (ours or its first life): all of them again
            self._store_instance = ack.instance
            self.unreported.resend(await resend_rows(self.journal))
            self.want_report()
        elif ack.instance:
            self._store_instance = ack.instance
        if ack.lease_ms > 0:
            was_valid = self.lease.valid()
            self.lease.grant(sent_ms, ack.lease_ms)
            if not was_valid:
                self._pump()

    # -- machinery --------------------------------------------------------
    @property
    def fencing(self) -> bool:
        """True while a fence ends the old life (enqueues are refused meanwhile)."""
        return self._fencing

    async def _record_result(self, task_id: str, result: TaskResult,
                             entry: Entry | None = None) -> None:
        await self._settle_end(task_id, self._end(task_id, result, entry))

    def _end(self, task_id: str, result: TaskResult, entry: Entry | None) -> asyncio.Future:
        """Queue the task's result for the journal's next commit and serve it from memory
        until then; the future settles with that commit (see ``_settle_end``)."""
        state = result.state if result.state in (SUCCEEDED, CANCELLED) else FAILED
        self.finished[state] += 1
        now = self.clock.now_ms()
        started = entry.started_ms if entry else None
        self.committing[task_id] = (TaskStatus(
            task_id, state, self.node_id, entry.queued_ms if entry else None, started, now,
            result.exit_code, result.reason), result.log_tail)
        self.unreported.ending(task_id)  # a fence before the commit voids it
        log.debug("task %s %s (exit %s)", task_id, state, result.exit_code)
        # a start journaled on its own is not written again
        return self.journal.finish_soon(task_id, state, now, result.exit_code, result.reason,
                                        result.log_tail,
                                        None if self.executor.outlives_agent else started)

    async def _settle_end(self, task_id: str, committed: asyncio.Future) -> None:
        ending, life = self.committing[task_id], self.incarnation
        try:
            await committed
        except JournalError:
            pass  # _settled reads it from the future
        if self._settled(task_id, ending, life, committed):
            await self._prune()

    def _settled(self, task_id: str, ending: tuple[TaskStatus, str], life: str,
                 committed: asyncio.Future) -> bool:
        """The end's commit is done (``committed``: its future): the end is final, or,
        when the journal refused it, served from memory. True when a prune is due."""
        exc = committed.exception()
        if exc is not None:
            self.unreported.ended(task_id, None)
            log.error("could not journal the result of %s: %s", task_id, exc)
            # read as ended from now on: its row makes a restart run it again
            self.committing.pop(task_id, None)
            self.unjournaled[task_id] = ending
            return False
        if self.incarnation == life:  # else a fence meanwhile voided this end
            self.unreported.ended(task_id, ending[0].state)
        self.committing.pop(task_id, None)
        self._since_prune += 1
        # Prune in steps of a tenth of the bound, so the delete is rare and cheap.
        if self.keep_finished and self._since_prune >= max(1, self.keep_finished // 10):
            self._since_prune = 0
            return True
        return False

    async def _prune(self) -> None:
        try:
            await self.journal.prune(self.keep_finished)
        except JournalError as exc:
            log.warning("could not prune the journal: %s", exc)
        finally:
            if asyncio.current_task() is self._pruning:
                self._pruning = None

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
