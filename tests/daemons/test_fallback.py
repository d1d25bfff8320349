"""The live packing fallback as objects: its window on fake time, its outcomes with the real
solver and with a scripted one, and the cached path handing it the tasks without room."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from dodoor.cache import N_STATE
from dodoor.packing import PackingResult, PackingSettings
from dodoor.policies import make_policy_spec
from dodoor.resources import Task
from dodoor.service.http import BackgroundTasks
from dodoor.settings import PolicySettings
from dodoor.wire import Snapshot
from scheduler.fallback import PROVEN_NONE, FallbackStats, FallbackWindow, timed_out
from scheduler.paths.base import CachedDeltas, Counters
from scheduler.paths.cached import CachedPath
from scheduler.paths.forwarder import Forwarder
from scheduler.placements import PlacementLog, ReasonLog
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView

NODES = ("a", "b", "c", "d")


def _view(busy_cores=(6.0, 6.0, 6.0, 0.0)) -> ClusterView:
    """Four 8-core nodes with 4 slots; ``busy_cores`` committed on each (one task)."""
    view = ClusterView("sched-t", k=100)
    n = len(NODES)
    state = np.zeros((n, N_STATE))
    state[:, 0] = busy_cores
    state[:, 3] = [1.0 if c else 0.0 for c in busy_cores]
    view.apply(Snapshot(1, NODES, tuple(f"http://{x}" for x in NODES),
                        np.tile([8.0, 8192.0, 100.0], (n, 1)), np.full(n, 4.0), state), 0.0)
    return view


def _task(name: str, cores: float, priority: int = 1) -> Task:
    return Task(name, cores, 256.0, 0.0, 1000.0, priority=priority)


class FakeTime:
    """The window's timer: it ends when the window fills or when the test says the
    window's time has passed (``pass_time``); records each wait asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._passed = asyncio.Event()

    async def timer(self, full: asyncio.Event, seconds: float) -> None:
        self.asked.append(seconds)
        waits = [asyncio.ensure_future(full.wait()), asyncio.ensure_future(self._passed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def pass_time(self) -> None:
        self._passed.set()
        self._passed = asyncio.Event()


class Scripted:
    """A solver answering from a script, recording the problems it was given."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.problems = []

    def __call__(self, problem, settings):
        self.problems.append(problem)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class NoMoves:
    """The move step of a window given nothing to move: it must never be asked."""

    async def order(self, moves):
        raise AssertionError(f"moves proposed with nothing movable: {moves}")


def _window(background, view=None, solver=None, window=16, time=None):
    from dodoor.packing import solve
    stats = FallbackStats()
    fw = FallbackWindow(PackingSettings(time_limit_s=1.0, window=window), 0.01,
                        view or _view(), background, stats, NoMoves(),
                        solver or solve, (time or FakeTime()).timer)
    return fw, stats


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_window_closes_when_its_time_passes_and_makes_one_call_for_its_tasks():
    time = FakeTime()
    solver = Scripted(PackingResult((3, -1), (), "optimal", 1.0, 0.001))
    async with BackgroundTasks() as bg:
        fw, stats = _window(bg, solver=solver, time=time)
        first = asyncio.ensure_future(fw.place(_task("t1", 4.0), _task("t1", 4.0).demand()))
        second = asyncio.ensure_future(fw.place(_task("t2", 8.0), _task("t2", 8.0).demand()))
        await _settle()
        assert (solver.problems, fw.waiting, time.asked) == ([], 2, [0.01])
        time.pass_time()
        v1, v2 = await asyncio.gather(first, second)
    assert len(solver.problems) == 1
    assert solver.problems[0].demands[:, 0].tolist() == [4.0, 8.0]
    assert (v1.target, v1.reason) == (("d", "http://d"), None)
    assert (v2.target, v2.reason) == (None, PROVEN_NONE)
    assert (stats.calls, stats.placed, stats.proven_none, stats.timeout) == (1, 1, 1, 0)
    assert stats.seconds.count == 1
    # only the task placed nowhere keeps a reason, for its status
    assert (fw.reasons.get("t1"), fw.reasons.get("t2"), len(fw.reasons)) == (None, PROVEN_NONE, 1)


def test_the_record_of_unplaced_ids_keeps_the_latest_within_its_limit():
    reasons = ReasonLog(2)
    for task_id, why in (("a", "x"), ("b", "y"), ("a", "z"), ("c", "w")):
        reasons.put(task_id, why)
    assert [reasons.get(t) for t in "abc"] == ["z", None, "w"]
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        ReasonLog(0)


async def test_a_full_window_closes_at_once_and_the_next_task_opens_another():
    time = FakeTime()
    solver = Scripted(PackingResult((3, 3), (), "optimal", 2.0, 0.001),
                      PackingResult((3,), (), "optimal", 1.0, 0.001))
    async with BackgroundTasks() as bg:
        fw, stats = _window(bg, solver=solver, window=2, time=time)
        tasks = [_task(f"t{i}", 1.0) for i in range(3)]
        futs = [asyncio.ensure_future(fw.place(t, t.demand())) for t in tasks]
        done = await asyncio.gather(futs[0], futs[1])  # no time passed: the window was full
        assert [v.target[0] for v in done] == ["d", "d"]
        await _settle()
        assert (len(solver.problems), fw.waiting, futs[2].done()) == (1, 1, False)
        time.pass_time()
        assert (await futs[2]).target[0] == "d"
    assert [len(p.demands) for p in solver.problems] == [2, 1]
    assert time.asked == [0.01, 0.01]


async def test_the_real_solver_puts_the_high_task_in_the_only_room_and_proves_the_other_has_none():
    time = FakeTime()
    async with BackgroundTasks() as bg:
        fw, stats = _window(bg, time=time)
        high, normal = _task("hi", 8.0, priority=2), _task("no", 8.0, priority=1)
        futs = [asyncio.ensure_future(fw.place(t, t.demand())) for t in (normal, high)]
        await _settle()
        time.pass_time()
        v_normal, v_high = await asyncio.gather(*futs)
    assert v_high.target == ("d", "http://d") and v_high.reason is None
    assert (v_normal.target, v_normal.reason) == (None, PROVEN_NONE)
    assert (stats.placed, stats.proven_none) == (1, 1)


async def test_a_search_ended_by_the_time_limit_says_so_and_is_not_counted_as_proven():
    time = FakeTime()
    solver = Scripted(PackingResult((-1,), (), "feasible", 0.0, 1.0))
    async with BackgroundTasks() as bg:
        fw, stats = _window(bg, solver=solver, time=time)
        fut = asyncio.ensure_future(fw.place(_task("t", 2.0), _task("t", 2.0).demand()))
        await _settle()
        time.pass_time()
        verdict = await fut
    assert (verdict.target, verdict.reason) == (None, timed_out(1.0))
    assert "not proven" in verdict.reason
    assert (stats.timeout, stats.proven_none, stats.placed) == (1, 0, 0)


async def test_a_failing_solver_answers_every_task_of_its_window_with_the_failure():
    time = FakeTime()
    solver = Scripted(RuntimeError("model broke"))
    async with BackgroundTasks() as bg:
        fw, stats = _window(bg, solver=solver, time=time)
        futs = [asyncio.ensure_future(fw.place(t, t.demand()))
                for t in (_task("x", 1.0), _task("y", 1.0))]
        await _settle()
        time.pass_time()
        verdicts = await asyncio.gather(*futs)
    assert all(v.target is None and "model broke" in v.reason for v in verdicts)
    assert stats.calls == 0


class _Sender:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def enqueue_settled(self, node_id, url, task, coalesce):
        self.asked.append(node_id)
        return None


def _cached_path(background, fallback: bool, d: int = 2):
    view = _view()
    settings = SchedulerSettings(max_failover=0)
    placed, counters = PlacementLog(100), Counters()
    deltas = CachedDeltas(view, lambda d: None, active=True)
    sender = _Sender()
    rng = random.Random(5)
    forwarder = Forwarder(settings, view, sender, placed, counters, deltas, rng)
    policy = make_policy_spec("dodoor", PolicySettings(d=d))
    time = FakeTime()
    fw, stats = _window(background, view=view, time=time) if fallback else (None, None)
    return CachedPath(policy, view, deltas, rng, fw, forwarder), sender, stats, time


@pytest.mark.parametrize("chunked", [False, True])
async def test_the_cached_path_hands_tasks_without_room_to_the_fallback(chunked):
    """Only d has room (8 free cores): 4-core tasks sampled elsewhere (d=1) go to the
    fallback, which fills d's room and proves the rest have none."""
    async with BackgroundTasks() as bg:
        path, sender, stats, time = _cached_path(bg, fallback=True, d=1)
        decisions = path.begin(stack=chunked)
        decisions.pending = [] if chunked else None
        alone = []
        for i in range(6):
            task = _task(f"big{i}", 4.0)
            coro = path.add(i, task, task.demand(), decisions)
            if coro is not None:
                alone.append(coro)
        path.flush(decisions)
        alone += [c for _, c in decisions.alone]
        at_once = {node: len(items) for node, items in decisions.groups.items()}
        assert set(at_once) <= {3} and 0 < len(alone) <= 6  # only d (index 3) had room
        futs = [asyncio.ensure_future(c) for c in alone]
        await _settle()
        time.pass_time()
        placements = await asyncio.gather(*futs)
    packed = [p for p in placements if p.reason is None]
    assert all(p.node == "d" for p in packed)
    assert len(packed) + at_once.get(3, 0) == 2  # two 4-core tasks fill d's 8 cores
    proven = [p for p in placements if p.reason is not None]
    assert all(p.reason == PROVEN_NONE and p.node in ("a", "b", "c") for p in proven)
    assert (stats.calls, stats.placed, stats.proven_none) == (1, len(packed), len(proven))
    assert sender.asked.count("d") == len(packed)


async def test_without_the_fallback_a_task_without_room_keeps_its_policys_choice():
    async with BackgroundTasks() as bg:
        path, sender, _, _ = _cached_path(bg, fallback=False, d=1)
        decisions = path.begin(stack=False)
        for i in range(8):
            task = _task(f"big{i}", 4.0)
            assert path.add(i, task, task.demand(), decisions) is None
    assert sum(len(items) for items in decisions.groups.values()) == 8


def test_the_fallback_needs_a_cached_policy():
    from dodoor.errors import ValidationError
    with pytest.raises(ValidationError, match="fallback"):
        SchedulerSettings(fallback=True, policy="power-of-two")
    with pytest.raises(ValidationError, match="fallback_time_s"):
        SchedulerSettings(fallback=True, fallback_time_s=0.0)
    assert SchedulerSettings(fallback=True).packing.time_limit_s == 1.0


async def test_a_stopping_scheduler_answers_the_open_window_instead_of_leaving_it_waiting():
    time = FakeTime()
    bg = BackgroundTasks()
    fw, stats = _window(bg, solver=Scripted(), time=time)
    fut = asyncio.ensure_future(fw.place(_task("t", 1.0), _task("t", 1.0).demand()))
    await _settle()
    await bg.close()  # the app's cleanup cancels the window's task
    verdict = await asyncio.wait_for(fut, 1.0)
    assert verdict.target is None and "stopping" in verdict.reason
    assert (fw.waiting, stats.calls) == (0, 0)
