"""Live preemption: an agent stops lower-class running tasks for a higher-class one.

Off unless the agent runs with ``--preempt`` (``AgentSettings.preempt``). After
every pump, when the first waiting task of the highest class (the *head*, as
Kubernetes' scheduling queue orders pods by priority, then arrival) does not
fit, the core's rule
(:meth:`dodoor.runqueue.RunQueue.victims`, the one the simulator's
``--preempt`` uses) names the fewest lower-class running tasks, lowest class and
latest started first, whose room lets it start. One round of stops runs at a
time:

1. the victims' journal rows get the ``STOPPING`` reason (committed before any
   stop, so a restart knows what a killed run's exit status means);
2. each victim's run is cancelled through the executor's cancel path, the one a
   client's ``DELETE`` uses (its process group is killed and waited for, its
   container stopped and removed), and the round waits until every victim's
   supervisor has seen its run end;
3. the executor's ``forget`` drops what still holds the killed run's result
   (an exit file, a container); only then is the stop confirmed;
4. the rows go back to ``queued`` (no start, no handle, the ``REQUEUED``
   reason), and the victims wait again in the queue keeping their aging clock
   (:meth:`dodoor.runqueue.RunQueue.requeue`), all at once so that the room
   they free goes to the head first; they later run again from the start.

A victim that ends by itself meanwhile, or that a client cancels, ends as
usual and is not requeued. A victim would-be that outranks the head after
aging is never stopped: it would start again first, and the head would stop it
again. A restart finds a row still ``STOPPING`` (:meth:`Preemption.recover`):
if its run survived the crash it is adopted and runs on, as the one copy;
otherwise its result, if any, is void and the row is requeued.
docs/guarantees.md, "Priority classes and preemption".
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import TYPE_CHECKING, Sequence

from dodoor.taskstates import CANCELLED, QUEUED, RUNNING, SUCCEEDED
from node_agent.executor import Adopted, TaskResult
from node_agent.journal import Journal, JournalError, Record
from node_agent.queue import TASK, Entry

if TYPE_CHECKING:
    from node_agent.node import NodeAgent

log = logging.getLogger(__name__)

STOPPING = "preemption: stopping it for task "  # + the head's id
REQUEUED = "preempted for task {by}; waits to run again from the start"


class Preemption:
    """The preemption rounds of one agent; see the module docstring."""

    def __init__(self, agent: "NodeAgent", enabled: bool = False) -> None:
        self.agent = agent
        self.enabled = enabled
        self.count = 0  # victims stopped and requeued by this process (a metric)
        self._round: asyncio.Task | None = None
        self._notes: dict[str, str] = {}  # victim id -> the cancel reason its round gave
        self._stopped: set[str] = set()  # victims whose supervisor saw the round's stop

    # -- hooks of the agent ----------------------------------------------------
    def consider(self) -> None:
        """After a pump: start a round when the head waits for room lower classes hold.

        O(running entries): it never ranks the queue, so it costs next to nothing
        beside the pump's own backfill."""
        agent = self.agent
        if not self.enabled or self._round is not None or agent.fencing or agent._closing:
            return
        queue = agent.queue
        head = queue.top()
        if head is None or head.kind != TASK:
            return
        victims = queue.victims(head)
        if not victims:
            return  # it fits already, or even every lower class would not make room
        now = agent.clock.now_ms()
        top = queue.rank(head, now)
        for victim in victims:
            # a held reservation is not a task yet; an outranking victim would restart first
            if (victim.kind != TASK or not agent.has_run(victim.task_id)
                    or queue.rank(victim, now) > top):
                return
        self._round = asyncio.ensure_future(self._stop(head, victims))

    def took(self, task_id: str, result: TaskResult) -> bool:
        """Whether a supervisor's ``result`` is this module's stop (then it is not an end:
        the round requeues the task). A client's cancel meanwhile is an end."""
        note = self._notes.pop(task_id, None)
        if note is None or result.state != CANCELLED or result.reason is not note:
            return False
        self._stopped.add(task_id)
        return True

    async def recover(self, records: Sequence[Record], adopted: dict[str, Adopted]) -> None:
        """At restart, after ``reconcile``: settle the rows a crash left ``STOPPING``.

        An adopted running copy runs on (the stop never took). The exit status a
        killed run left is void (dropped from ``adopted``, forgotten by the
        executor) and the row requeued, as is a row of which nothing was found. A
        success, or a run reconcile could not kill (no exit status), keeps its result:
        requeueing those would run the task twice."""
        stopping = [r for r in records if r.reason and r.reason.startswith(STOPPING)]
        if not stopping:
            return
        alive, dead, ended = [], [], 0
        for rec in stopping:
            found = adopted.get(rec.task.task_id)
            if found is None:
                dead.append(rec)
            elif found.running:
                alive.append(rec.task.task_id)
            elif _killed(found.result):
                del adopted[rec.task.task_id]
                await self.agent._forget(rec.task.task_id)
                dead.append(rec)
            else:
                ended += 1  # it succeeded first, or cannot be killed: that result stands
        await _journal_rows(self.agent.journal, alive, None, requeue=False)
        for rec in dead:
            await _journal_rows(self.agent.journal, [rec.task.task_id],
                                REQUEUED.format(by=rec.reason[len(STOPPING):]))
        log.info("restart: %d task(s) caught mid-preemption: %d requeued, %d adopted running, "
                 "%d ended", len(stopping), len(dead), len(alive), ended)

    async def close(self) -> None:
        """Stop a round under way (the journal then says where it was)."""
        if self._round is not None:
            self._round.cancel()
            await asyncio.gather(self._round, return_exceptions=True)

    # -- a round ---------------------------------------------------------------
    async def _stop(self, head: Entry, victims: list[Entry]) -> None:
        agent = self.agent
        ids = [v.task_id for v in victims]
        note = STOPPING + head.task_id
        again = False  # look for the next round when this one is done (not after a failure)
        try:
            try:
                await _journal_rows(agent.journal, ids, note, requeue=False)
            except JournalError as exc:
                log.warning("not preempting %s for %s: cannot journal the stop: %s",
                            ", ".join(ids), head.task_id, exc)
                return
            jobs = []
            for task_id in ids:
                if not agent.has_run(task_id) or task_id in agent._cancels:
                    continue  # ended, or a client cancels it: its end is its own
                self._notes[task_id] = note
                job = agent.stop_run(task_id, note)  # a timed task's stop is taken at once
                if job is not None:
                    jobs.append(job)
            log.info("preempting %s for %s (class %d)", ", ".join(ids), head.task_id,
                     head.priority)
            if jobs:
                # asyncio.wait: closing the round must not cancel the supervisors
                await asyncio.wait(jobs)
            stopped = [t for t in ids if t in self._stopped]
            for task_id in stopped:
                await agent._forget(task_id)
            again = True
            if not stopped:
                return
            why = REQUEUED.format(by=head.task_id)
            try:
                await _journal_rows(agent.journal, stopped, why)
            except JournalError as exc:
                # it runs again all the same; a crash first finds STOPPING and requeues it
                log.warning("could not journal the requeue of %s: %s", ", ".join(stopped), exc)
            if agent.fencing or agent._closing:
                return  # the journal says where each one is; the next life reads it
            for task_id in stopped:
                if agent.queue.is_running(task_id):
                    agent.queue.requeue(task_id, why)
                    self.count += 1
            agent._changed()
        finally:
            for task_id in ids:
                self._notes.pop(task_id, None)
                self._stopped.discard(task_id)
            self._round = None
            if again:
                agent.pump()


async def _journal_rows(journal: Journal, task_ids: Sequence[str], reason: str | None,
                        requeue: bool = True) -> None:
    """Set the reason of unfinished rows; ``requeue`` also makes them ``queued`` again
    with no start and no handle (the next run journals its own)."""
    if not task_ids:
        return
    sql = ("UPDATE tasks SET state = ?, started_ms = NULL, handle = NULL, reason = ?"
           if requeue else "UPDATE tasks SET reason = ?")
    first = (QUEUED, reason) if requeue else (reason,)

    def work(conn: sqlite3.Connection) -> None:
        for task_id in task_ids:  # only a live row: a fence meanwhile made it ``lost``
            conn.execute(f"{sql} WHERE id = ? AND state IN (?, ?)",
                         (*first, task_id, QUEUED, RUNNING))

    await journal.write(work)


def _killed(result: TaskResult | None) -> bool:
    """A failed run that left an exit status (so it is gone): the stop's kill, most likely."""
    return result is not None and result.state != SUCCEEDED and result.exit_code is not None
