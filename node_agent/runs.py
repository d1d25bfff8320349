"""Runs of the agent's tasks: started, supervised until they end, stopped on request.

A mixin of :class:`~node_agent.node.NodeAgent` (which sets the attributes below
and owns the end path: ``_end``, ``_settle_end``). A task on an ordinary
executor runs as two asyncio tasks: the executor's ``run`` and a supervisor
that turns how it ended into the task's end. A task on a
:class:`~node_agent.executor.TimedExecutor` (the sleep executor) is one loop
timer, whose callback takes the same end path. A Sparrow reservation first asks
its scheduler to confirm it (``_confirm_then_run``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from dodoor.resources import Task
from dodoor.service.metrics import Histogram
from dodoor.taskstates import CANCELLED
from dodoor.wire import TaskStatus
from node_agent.executor import Executor, TaskResult, TimedExecutor, Timer
from node_agent.journal import FAILED, Journal, JournalError
from node_agent.ledger import ReportLedger
from node_agent.queue import RESERVATION, TASK, Entry, TaskQueue

if TYPE_CHECKING:
    from dodoor.clock import Clock
    from node_agent.lease import Lease
    from node_agent.preemption import Preemption

log = logging.getLogger(__name__)

# (reply_url, node_id, task) -> the confirmed Task; None when the scheduler said no (it
# went elsewhere); ASK_AGAIN when there was no verdict (scheduler down or undecided)
ASK_AGAIN = "ask again"
ConfirmFn = Callable[[str, str, Task], Awaitable["Task | None | str"]]
# Tasks ending at their start that one pump runs before it lets the loop serve others
# and goes on at the next turn.
AT_ONCE_PER_PUMP = 64


class RunSupervision:
    """Starting, supervising and stopping runs; see the module docstring."""

    node_id: str
    queue: TaskQueue
    executor: Executor
    journal: Journal
    clock: Clock
    preemption: Preemption
    unreported: ReportLedger
    queue_wait: Histogram
    run_time: Histogram
    confirm: ConfirmFn | None
    confirm_patience_s: float
    committing: dict[str, tuple[TaskStatus, str]]
    incarnation: str
    _jobs: dict[str, asyncio.Task]
    _runs: dict[str, asyncio.Future]
    _cancels: dict[str, str]
    _timed: TimedExecutor | None
    _timers: dict[str, Timer]
    _pruning: asyncio.Task | None
    _requeue: list[Entry]
    lease: Lease
    want_report: Callable[[], None]
    _closing: bool
    _fencing: bool
    _pumping: bool
    _repump: bool
    _pump_later: asyncio.Handle | None

    def pump(self) -> None:
        """Start what fits now (after the lease was renewed, say)."""
        self._pump()

    def _pump(self) -> None:
        # A task that ends at its start (a timed executor's instant one) frees its slot
        # inside the pump that started it; that end's own pump only asks for one more
        # round here, so a queue of such tasks runs in a loop, not a recursion. After
        # AT_ONCE_PER_PUMP such ends the rest waits for the next loop turn: the caller
        # (an enqueue's 202, say) and everyone else on the loop need not wait for them.
        if self._pumping:
            self._repump = True
            return
        self._pumping = self._repump = True
        ended = 0
        try:
            while self._repump:
                self._repump = False
                if ended >= AT_ONCE_PER_PUMP:
                    if self._pump_later is None:
                        self._pump_later = asyncio.get_running_loop().call_soon(self._pump_again)
                    break
                ended += self._pump_once()
        finally:
            self._pumping = False

    def _pump_again(self) -> None:
        self._pump_later = None
        self._pump()

    def _pump_once(self) -> int:
        """One round of starts; returns how many of them ended at their start."""
        if self._closing or self._fencing:
            return 0
        if not self.lease.valid():
            if len(self.queue):
                self.lease.lapses += 1
                self.want_report()  # the answer renews the lease, then pump() again
            return 0
        ended: list[tuple[Entry, TaskResult]] = []
        for entry in self.queue.schedule(self.clock.now_ms()):
            if entry.kind == RESERVATION:
                self._spawn(entry, self._confirm_then_run(entry))
            elif self._timed is not None:
                result = self._start_timed(entry)
                if result is not None:
                    ended.append((entry, result))
            else:
                self._spawn(entry, self._run(entry))
        for entry, result in ended:  # after every start of this round, as a timer would
            self._timed_end(entry, result)
        self.preemption.consider()
        return len(ended)

    async def _cancel_runs(self, *more: asyncio.Task | None) -> None:
        """Stop every run without giving it an end (a shutdown, or a fence, which then
        ends the rows itself) and the ``more`` tasks given, and wait for them."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        jobs = [*self._jobs.values(), *(t for t in more if t is not None)]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        self._jobs.clear()

    async def cancel_task(self, task_id: str, reason: str) -> TaskStatus | None:
        """A client cancels a task: a queued one never starts, a running one is stopped
        through the executor's cancel path (its process group or container is ended);
        either way it ends ``cancelled``. A task already ended keeps its state; a
        Sparrow reservation is left alone (its scheduler decides). Returns the task's
        status afterwards; None for an id not held here. Raises JournalError."""
        entry = self.queue.get(task_id)
        if entry is not None and entry.kind == TASK:
            if self.queue.is_running(task_id):
                job = self.stop_run(task_id, reason) if self.has_run(task_id) else None
                if job is None:
                    job = self._jobs.get(task_id)  # stopped already: wait for its end
                if job is not None:
                    # asyncio.wait: our caller giving up must not cancel the supervisor
                    await asyncio.wait([job])
            elif self.queue.drop_waiting(task_id) is not None:
                await self._record_result(task_id, TaskResult(CANCELLED, reason=reason), entry)
                self._changed()
                self._pump()
        return await self.status(task_id)

    def has_run(self, task_id: str) -> bool:
        """Whether a run of the task is under way here that ``stop_run`` can stop."""
        if task_id in self._timers:
            return True
        run = self._runs.get(task_id)
        return run is not None and not run.done() and task_id in self._jobs

    def stop_run(self, task_id: str, reason: str) -> asyncio.Future | None:
        """Stop a run ``has_run`` found: it ends ``cancelled`` with ``reason`` (unless
        node_agent.preemption takes the stop as its own). Returns what to wait for
        until the end is settled (the supervisor, or a timed task's commit); None when
        there is nothing to wait for."""
        timer = self._timers.get(task_id)
        if timer is not None:
            timer.cancel()
            return self._timed_end(self.queue.get(task_id), TaskResult(CANCELLED, reason=reason))
        self._cancels[task_id] = reason
        self._runs[task_id].cancel()
        return self._jobs[task_id]

    def _start_timed(self, entry: Entry) -> TaskResult | None:
        """Start a task on the timed executor; its result when it ended at its start
        (the caller then ends it: ``_timed_end``), else None (its timer will)."""
        # the executor's start is not journaled on its own (nothing outlives us)
        self.queue_wait.observe((entry.started_ms - entry.queued_ms) / 1000.0)
        started = self._timed.start(entry.task, functools.partial(self._timed_end, entry))
        if isinstance(started, TaskResult):
            return started
        self._timers[entry.task_id] = started
        return None

    def _timed_end(self, entry: Entry, result: TaskResult) -> asyncio.Future | None:
        """A timed task ended (its timer fired, or ``stop_run``): the supervisor's end
        path without a supervisor; the commit's callback settles it. Returns the commit."""
        task_id = entry.task_id
        self._timers.pop(task_id, None)  # none for a task that ended at its start
        committed = self._ended(entry, result)
        if committed is not None:
            committed.add_done_callback(functools.partial(
                self._on_committed, task_id, self.committing[task_id], self.incarnation))
        return committed

    def _on_committed(self, task_id: str, ending: tuple[TaskStatus, str], life: str,
                      committed: asyncio.Future) -> None:
        if committed.cancelled():
            return
        if self._settled(task_id, ending, life, committed) and self._pruning is None:
            self._pruning = asyncio.ensure_future(self._prune())  # kept, and ended by close

    def _spawn(self, entry: Entry, work: Awaitable[TaskResult | None]) -> None:
        # created here, not in the supervisor, so a cancel right after the start finds it
        run = asyncio.ensure_future(work)
        self._runs[entry.task_id] = run
        self._jobs[entry.task_id] = asyncio.ensure_future(self._supervise(entry, run))

    async def _supervise(self, entry: Entry, run: asyncio.Future) -> None:
        task_id = entry.task_id
        try:
            result = await run
        except asyncio.CancelledError:
            reason = self._cancels.pop(task_id, None)
            current = asyncio.current_task()
            # a shutdown or a fence cancels the supervisor itself: that is not a client's cancel
            if reason is None or self._closing or (current is not None and current.cancelling()):
                raise
            result = TaskResult(CANCELLED, reason=reason)
        except Exception as exc:  # an executor bug must not wedge the slot forever
            log.exception("task %s crashed in the %s executor", task_id, self.executor.name)
            result = TaskResult(FAILED, reason=f"executor error: {exc!r}")
        finally:
            self._jobs.pop(task_id, None)
            self._runs.pop(task_id, None)
            self._cancels.pop(task_id, None)
        committed = self._ended(entry, result)
        if committed is not None:
            await self._settle_end(task_id, committed)
            # After the commit (a crash before it finds the container or exit status and
            # records it), and after the slot is free: the task's status already reads
            # its journaled end while a container is removed.
            await self._forget(task_id)

    def _ended(self, entry: Entry, result: TaskResult | None) -> asyncio.Future | None:
        """A run ended with ``result`` (None: a reservation released): free its slot,
        start what fits; returns the future of the end's commit (None: nothing to commit)."""
        task_id = entry.task_id
        if result is not None and self.preemption.took(task_id, result):
            return None  # stopped for a higher class: node_agent.preemption requeues it
        committed = None
        if result is not None:
            if entry.started_ms is not None:
                self.run_time.observe((self.clock.now_ms() - entry.started_ms) / 1000.0)
            # Queued for the next group commit, served from memory until then, so a status
            # query never sees the task vanish between states; the slot need not wait.
            committed = self._end(task_id, result, entry)
        if self.queue.is_running(task_id):
            self.queue.finish(task_id)
        while self._requeue:  # reservations still without a verdict wait again
            self.queue.add(self._requeue.pop())
        # Only now, with the slot free: a report built any earlier would still hold it.
        self._changed()
        self._pump()
        return committed

    async def _run(self, entry: Entry) -> TaskResult:
        started = entry.started_ms if entry.started_ms is not None else self.clock.now_ms()
        self.queue_wait.observe((started - entry.queued_ms) / 1000.0)
        # Only a start whose processes may outlive us must be on disk before they exist
        # (``reconcile`` reads it); any other is journaled with the task's end.
        if self.executor.outlives_agent:
            try:
                await self.journal.mark_running(entry.task_id, started)
            except JournalError as exc:
                # The task is durable as queued; the worst case is a re-run after a crash.
                log.warning("could not journal the start of %s: %s", entry.task_id, exc)
        log.debug("task %s started", entry.task_id)
        return await self.executor.run(entry.task, functools.partial(self._journal_handle,
                                                                     entry.task_id))

    async def _confirm_then_run(self, entry: Entry) -> TaskResult | None:
        """Ask the reservation's scheduler for the task; run it on a yes. No verdict
        (scheduler down) is asked again with a growing pause, then the reservation
        waits at the tail of the queue; only a no forgets it."""
        answer: Task | None | str = None
        delay, waited = 0.1, 0.0
        while self.confirm is not None:
            answer = await self.confirm(entry.reply_url, self.node_id, entry.task)
            if answer != ASK_AGAIN:
                break
            if waited >= self.confirm_patience_s:
                self._requeue.append(Entry(entry.task, RESERVATION, entry.scheduler_id,
                                           entry.reply_url, entry.queued_ms))
                return None
            await asyncio.sleep(delay)
            waited += delay
            delay = min(2 * delay, 2.0)
        task = answer if isinstance(answer, Task) else None
        if task is None or task.task_id != entry.task_id:
            if task is not None:
                log.warning("confirm of %s answered with task %s; releasing", entry.task_id,
                            task.task_id)
            try:
                await self.journal.drop_reserved(entry.task_id)
            except JournalError as exc:
                log.warning("could not forget the reservation %s: %s", entry.task_id, exc)
            return None  # released by _supervise; the scheduler placed it elsewhere
        now = self.clock.now_ms()
        # the wait is the reservation's: it held its place in the queue since it came
        self.queue_wait.observe((now - entry.queued_ms) / 1000.0)
        self.queue.promote(entry.task_id, task, now)
        # The task itself arrives (and starts) now; the hold before it was the reservation's.
        entry.queued_ms = entry.started_ms = now
        self.unreported.accepted(task.task_id)
        try:
            await self.journal.mark_confirmed(task.task_id, now)
        except JournalError as exc:
            log.error("running confirmed task %s without journaling its start: %s",
                      task.task_id, exc)
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
