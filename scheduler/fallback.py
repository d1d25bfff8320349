"""The packing fallback live: one exact placement for a window of tasks sampling could not fit.

A cache-based path (:mod:`scheduler.paths.cached`) hands over a task none of
whose sampled candidates has room beside what the cached view says is committed
there (:func:`dodoor.packing.view_has_room`, the simulator's rule). The first
such task opens a window; it closes after ``fallback_window_ms`` or at
``fallback_window_tasks`` tasks, and its tasks go to one call of the model the
simulator uses (:func:`dodoor.packing.solve`, CP-SAT) over a copy of the cached
view, in a worker thread so that the event loop keeps serving. Calls run one at
a time. Each task then goes out through the forwarder — the normal enqueue,
claim and failover rules (docs/guarantees.md) — to the solver's node first,
else to its policy's choice as without the fallback, with a reason saying
whether the solver proved that no node has room or ran out of time.

Moves: the live model is given no movable tasks, so it places into free room
only. Moves a solver proposes would go to the :class:`MoveOrders` step, a
separate seam: today :class:`LoggedMoves` logs and counts them and carries
none out (the agents' order to move a queued task is being built elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, Sequence

import numpy as np

from dodoor.packing import (PackingProblem, PackingResult, PackingSettings, free_room_problem,
                            select_nodes, solve)
from dodoor.resources import N_RESOURCES, TASKS, Task
from dodoor.service.http import BackgroundTasks
from dodoor.service.metrics import Histogram
from scheduler.placements import ReasonLog
from scheduler.view import ClusterView

log = logging.getLogger(__name__)

SOLVE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROVEN_NONE = ("packing fallback: proven that no node has room for the task now by this "
               "scheduler's view (beside the other tasks of its window); queued on its "
               "policy's choice")
Target = tuple[str, str]  # (node id, agent url), as scheduler.paths.base names it
Solver = Callable[[PackingProblem, PackingSettings], PackingResult]
# waits until the event is set or the seconds have passed (a seam for tests' fake time)
Timer = Callable[[asyncio.Event, float], Awaitable[None]]


def timed_out(limit_s: float) -> str:
    """The reason of a task the solver placed nowhere within its time limit."""
    return (f"packing fallback: no room found within its {limit_s:g} s time limit (not "
            "proven that none exists); queued on its policy's choice")


async def wait_or_timeout(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or after ``seconds``, whichever comes first."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        pass


@dataclass
class FallbackStats:
    """What ``/metrics`` reports: solver calls, their seconds, and the tasks' outcomes."""

    calls: int = 0
    placed: int = 0
    proven_none: int = 0
    timeout: int = 0
    moves_proposed: int = 0
    seconds: Histogram = field(default_factory=lambda: Histogram(SOLVE_BUCKETS))


@dataclass(frozen=True)
class Verdict:
    """A window task's answer: the node to try first (None: its policy's choice) and why."""

    target: Target | None
    reason: str | None = None


@dataclass(frozen=True)
class ProposedMove:
    """A queued task the solver would move: its index among the problem's movable tasks."""

    movable: int
    origin: Target
    dest: Target


class MoveOrders(Protocol):
    """The step that carries out the moves of a solution, apart from placing the window."""

    def order(self, moves: Sequence[ProposedMove]) -> None:
        """Carry out (or, for now, record) ``moves``."""


class LoggedMoves:
    """Counts and logs proposed moves without carrying them out: the live model moves
    nothing yet, and the agents' move order is what would carry them out."""

    def __init__(self, stats: FallbackStats) -> None:
        self.stats = stats

    def order(self, moves: Sequence[ProposedMove]) -> None:
        self.stats.moves_proposed += len(moves)
        for move in moves:
            log.info("packing fallback proposes moving queued task %d from %s to %s (not "
                     "carried out)", move.movable, move.origin[0], move.dest[0])


@dataclass(frozen=True)
class _Waiting:
    task: Task
    demand: np.ndarray


class FallbackWindow:
    """Collects the tasks sampling could not fit and solves each window once (see the
    module docstring)."""

    def __init__(self, settings: PackingSettings, window_s: float, view: ClusterView,
                 background: BackgroundTasks, stats: FallbackStats, moves: MoveOrders,
                 solver: Solver = solve, timer: Timer = wait_or_timeout,
                 reasons: ReasonLog | None = None) -> None:
        """``reasons``: where each task the window placed nowhere keeps its reason, for
        its status (:mod:`scheduler.status`)."""
        self.settings = settings
        self.reasons = reasons if reasons is not None else ReasonLog(10_000)
        self.window_s = window_s
        self.view = view
        self.background = background
        self.stats = stats
        self.moves = moves
        self.solver = solver
        self.timer = timer
        self._open: list[tuple[_Waiting, asyncio.Future]] = []
        self._full = asyncio.Event()
        self._solving = asyncio.Lock()

    @property
    def waiting(self) -> int:
        """Tasks in the open window."""
        return len(self._open)

    async def place(self, task: Task, demand: np.ndarray) -> Verdict:
        """Join the open window (opening one) and wait for its verdict."""
        fut = asyncio.get_running_loop().create_future()
        self._open.append((_Waiting(task, demand), fut))
        if len(self._open) == 1:
            self.background.spawn(self._close_and_solve(self._full), name="fallback-window")
        if len(self._open) >= self.settings.window:
            self._full.set()
        verdict: Verdict = await fut
        if verdict.reason is not None:
            self.reasons.put(task.task_id, verdict.reason)
        return verdict

    async def _close_and_solve(self, full: asyncio.Event) -> None:
        try:
            await self.timer(full, self.window_s)
        except asyncio.CancelledError:  # shutting down: nobody waits for a verdict forever
            self._answer_all([fut for _, fut in self._open], "the scheduler is stopping")
            self._open = []
            raise
        limit = self.settings.window
        window, self._open = self._open[:limit], self._open[limit:]
        self._full = asyncio.Event()
        if self._open:  # arrived past a full window: they start the next one
            self.background.spawn(self._close_and_solve(self._full), name="fallback-window")
            if len(self._open) >= limit:
                self._full.set()
        try:
            async with self._solving:
                verdicts = await self._solve([w for w, _ in window])
        except BaseException as exc:
            self._answer_all([fut for _, fut in window], repr(exc))
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("packing fallback call failed")
            raise
        for (_, fut), verdict in zip(window, verdicts):
            if not fut.done():
                fut.set_result(verdict)

    @staticmethod
    def _answer_all(futures: list[asyncio.Future], why: str) -> None:
        failed = Verdict(None, f"packing fallback failed ({why}); queued on its policy's "
                         "choice")
        for fut in futures:
            if not fut.done():
                fut.set_result(failed)

    async def _solve(self, window: list[_Waiting]) -> list[Verdict]:
        """One solver call for ``window`` over a copy of the view as it is now."""
        cache, table = self.view.cache, (self.view.node_ids, self.view.urls)
        capacity, slots, state = cache.capacity.copy(), cache.slots.copy(), cache.state.copy()
        demands = np.array([w.demand for w in window]).reshape(-1, N_RESOURCES)
        priorities = np.array([w.task.priority for w in window], dtype=np.int64)
        work = np.array([w.task.cores * w.task.duration_ms / 1000.0 for w in window])
        started = time.perf_counter()
        chosen, result = await asyncio.to_thread(
            select_and_solve, capacity, slots, state, demands, priorities, work,
            self.settings, self.solver)
        stats = self.stats
        stats.calls += 1
        stats.seconds.observe(time.perf_counter() - started)
        node_ids, urls = table

        def at(pos: int) -> Target:
            j = int(chosen[pos])
            return node_ids[j], urls[j]

        if result.moves:
            self.moves.order([ProposedMove(k, at(src), at(dst)) for k, src, dst in result.moves])
        verdicts = []
        for pos in result.placed:
            if pos >= 0:
                stats.placed += 1
                verdicts.append(Verdict(at(pos)))
            elif result.proven:
                stats.proven_none += 1
                verdicts.append(Verdict(None, PROVEN_NONE))
            else:
                stats.timeout += 1
                verdicts.append(Verdict(None, timed_out(self.settings.time_limit_s)))
        log.debug("packing fallback: %d tasks, %s in %.3f s", len(window), result.status,
                  result.solve_s)
        return verdicts


def select_and_solve(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray,
                      demands: np.ndarray, priorities: np.ndarray, work: np.ndarray,
                      settings: PackingSettings, solver: Solver
                      ) -> tuple[np.ndarray, PackingResult]:
    """The model nodes (the ``max_nodes`` with the most room) and the solution (in a
    worker thread: it reads only its own copies)."""
    chosen = select_nodes(capacity, state[:, :N_RESOURCES], slots, state[:, TASKS], demands,
                          settings.max_nodes)
    problem = free_room_problem(capacity[chosen], slots[chosen], state[chosen], demands,
                                priorities, work)
    return chosen, solver(problem, settings)
