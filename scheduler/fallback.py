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

Moves (scheduler/fallback_moves.py): when the window holds a task above the
lowest class, the model nodes where tasks must wait (committed beyond their
capacity or slots) are probed for their queued, never started tasks of a class below the window's highest, which the model may
move. The tasks that need no move are answered at once; the moves are then sent
as the agents' move orders (:class:`MoveOrders`), and only after every answer are
the tasks placed on a node that moves made room on answered: the solver's node
when all of that node's moves succeeded, else their policy's choice with
:data:`MOVE_FAILED` as the reason.
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
from scheduler.fallback_moves import Movable, probed_rows, queued_excess
from scheduler.placements import ReasonLog
from scheduler.view import ClusterView

log = logging.getLogger(__name__)

SOLVE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROVEN_NONE = ("packing fallback: proven that no node has room for the task now by this "
               "scheduler's view (beside the other tasks of its window); queued on its "
               "policy's choice")
MOVE_FAILED = ("packing fallback: the room on its node depended on moving a queued "
               "lower-class task there, and the move failed (the task started meanwhile, or "
               "its target refused); queued on its policy's choice")
Target = tuple[str, str]  # (node id, agent url), as scheduler.paths.base names it
Solver = Callable[[PackingProblem, PackingSettings], PackingResult]
# waits until the event is set or the seconds have passed (a seam for tests' fake time)
Timer = Callable[[asyncio.Event, float], Awaitable[None]]
# the model nodes' movable tasks: (urls by position, their queued_excess, class bound)
Prober = Callable[[Sequence[str], np.ndarray, int], Awaitable[Movable]]


async def no_movable(urls: Sequence[str], excess: np.ndarray, below: int) -> Movable:
    """A prober that offers nothing to move (the model places into free room only)."""
    return Movable.none()


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
    move_failed: int = 0  # tasks whose node's moves failed: sent their normal way
    moves_proposed: int = 0
    moves_done: int = 0  # the task left its agent for the target (202)
    moves_failed: int = 0  # started meanwhile, refused, or no answer
    seconds: Histogram = field(default_factory=lambda: Histogram(SOLVE_BUCKETS))


@dataclass(frozen=True)
class Verdict:
    """A window task's answer: the node to try first (None: its policy's choice) and why."""

    target: Target | None
    reason: str | None = None


@dataclass(frozen=True)
class ProposedMove:
    """A queued task the solver would move: its id, and its node and the target."""

    task_id: str
    origin: Target
    dest: Target


class MoveOrders(Protocol):
    """The step that carries out the moves of a solution, apart from placing the window
    (:class:`scheduler.fallback_moves.AgentMoveOrders` live)."""

    async def order(self, moves: Sequence[ProposedMove]) -> list[bool]:
        """Carry out ``moves``; per move, whether it was done."""


@dataclass
class _Plan:
    """A solved window: verdicts needing no move, and those waiting on moves."""

    verdicts: list[Verdict | None]  # None: depends on the moves out of its node
    moves: list[ProposedMove]
    waiting: dict[int, Target]  # window position -> the solver's node, made room on


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
                 prober: Prober = no_movable, reasons: ReasonLog | None = None) -> None:
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
        self.prober = prober
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
        futures = [fut for _, fut in window]
        try:
            # moves are made inside the lock: the next window's probe then sees them
            async with self._solving:
                plan = await self._solve([w for w, _ in window])
                self._answer(futures, plan.verdicts)
                if plan.moves:
                    self._answer(futures, self._settle(plan, await self.moves.order(plan.moves)))
        except BaseException as exc:
            self._answer_all(futures, repr(exc))
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("packing fallback call failed")
            raise

    @staticmethod
    def _answer(futures: list[asyncio.Future], verdicts: Sequence[Verdict | None]) -> None:
        for fut, verdict in zip(futures, verdicts):
            if verdict is not None and not fut.done():
                fut.set_result(verdict)

    def _settle(self, plan: _Plan, done: list[bool]) -> list[Verdict | None]:
        """The verdicts of the tasks placed where moves made room, by the moves' outcome:
        the solver's node only when every move out of it succeeded."""
        failed = {m.origin for m, ok in zip(plan.moves, done) if not ok}
        verdicts: list[Verdict | None] = [None] * len(plan.verdicts)
        for pos, node in plan.waiting.items():
            if node in failed:
                self.stats.move_failed += 1
                verdicts[pos] = Verdict(None, MOVE_FAILED)
            else:
                self.stats.placed += 1
                verdicts[pos] = Verdict(node)
        return verdicts

    @staticmethod
    def _answer_all(futures: list[asyncio.Future], why: str) -> None:
        failed = Verdict(None, f"packing fallback failed ({why}); queued on its policy's "
                         "choice")
        for fut in futures:
            if not fut.done():
                fut.set_result(failed)

    async def _solve(self, window: list[_Waiting]) -> _Plan:
        """One solver call for ``window`` over a copy of the view as it is now, with the
        model nodes' movable tasks."""
        cache, table = self.view.cache, (self.view.node_ids, self.view.urls)
        capacity, slots, state = cache.capacity.copy(), cache.slots.copy(), cache.state.copy()
        demands = np.array([w.demand for w in window]).reshape(-1, N_RESOURCES)
        priorities = np.array([w.task.priority for w in window], dtype=np.int64)
        work = np.array([w.task.cores * w.task.duration_ms / 1000.0 for w in window])
        node_ids, urls = table
        started = time.perf_counter()
        chosen = await asyncio.to_thread(select, capacity, slots, state, demands, self.settings)
        movable = await self.prober(
            [urls[j] for j in chosen.tolist()],
            queued_excess(capacity[chosen], slots[chosen], state[chosen]), int(priorities.max()))
        result = await asyncio.to_thread(
            solve_chosen, capacity, slots, state, chosen, demands, priorities, work, movable,
            self.settings, self.solver)
        stats = self.stats
        stats.calls += 1
        stats.seconds.observe(time.perf_counter() - started)

        def at(pos: int) -> Target:
            j = int(chosen[pos])
            return node_ids[j], urls[j]

        moves = [ProposedMove(movable.ids[k], at(src), at(dst)) for k, src, dst in result.moves]
        origins = {m.origin for m in moves}
        verdicts: list[Verdict | None] = []
        waiting: dict[int, Target] = {}
        for i, pos in enumerate(result.placed):
            if pos >= 0 and at(pos) in origins:
                waiting[i] = at(pos)
                verdicts.append(None)
            elif pos >= 0:
                stats.placed += 1
                verdicts.append(Verdict(at(pos)))
            elif result.proven:
                stats.proven_none += 1
                verdicts.append(Verdict(None, PROVEN_NONE))
            else:
                stats.timeout += 1
                verdicts.append(Verdict(None, timed_out(self.settings.time_limit_s)))
        log.debug("packing fallback: %d tasks, %d movable, %d moves, %s in %.3f s", len(window),
                  len(movable.ids), len(moves), result.status, result.solve_s)
        return _Plan(verdicts, moves, waiting)


def select(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray, demands: np.ndarray,
           settings: PackingSettings) -> np.ndarray:
    """The model nodes: the ``max_nodes`` with the most room for the window."""
    return select_nodes(capacity, state[:, :N_RESOURCES], slots, state[:, TASKS], demands,
                        settings.max_nodes)


def solve_chosen(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray, chosen: np.ndarray,
                 demands: np.ndarray, priorities: np.ndarray, work: np.ndarray,
                 movable: Movable, settings: PackingSettings, solver: Solver) -> PackingResult:
    """The solution over the ``chosen`` nodes with ``movable`` (positions among them)."""
    rows = probed_rows(state[chosen], movable.rows)
    base = free_room_problem(capacity[chosen], slots[chosen], rows, demands, priorities, work)
    problem = PackingProblem(**{**base.__dict__, "movable_node": movable.node,
                                "movable_demand": movable.demand})
    return solver(problem, settings)


def select_and_solve(capacity: np.ndarray, slots: np.ndarray, state: np.ndarray,
                      demands: np.ndarray, priorities: np.ndarray, work: np.ndarray,
                      settings: PackingSettings, solver: Solver
                      ) -> tuple[np.ndarray, PackingResult]:
    """The model nodes and the solution with nothing to move (in a worker thread: it
    reads only its own copies)."""
    chosen = select(capacity, slots, state, demands, settings)
    return chosen, solve_chosen(capacity, slots, state, chosen, demands, priorities, work,
                                Movable.none(), settings, solver)
