"""The placer's chunked decisions equal deciding one task at a time."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dodoor.cache import N_STATE
from dodoor.clock import MonotonicClock
from dodoor.resources import Task
from dodoor.settings import PolicySettings
from dodoor.wire import Snapshot
from scheduler.paths.base import Decisions
from scheduler.placer import _DECISIONS_PER_YIELD, Placer
from scheduler.settings import SchedulerSettings
from scheduler.view import ClusterView


def _placer(nodes: int, state: np.ndarray, seed: int, policy: str = "dodoor",
            **params) -> tuple[Placer, list]:
    view = ClusterView("sched-t", k=4)
    capacity = np.tile([8.0, 8192.0, 100.0], (nodes, 1))
    capacity[::3] *= 2  # two node sizes
    view.apply(Snapshot(1, tuple(f"n{i}" for i in range(nodes)),
                        tuple(f"http://n{i}" for i in range(nodes)), capacity,
                        np.full(nodes, 4.0), state), 0.0)
    settings = SchedulerSettings(policy=policy, policy_settings=PolicySettings(**params))
    emitted: list = []
    placer = Placer(settings, view, None, random.Random(seed), MonotonicClock(),
                    emitted.append, None)
    placer.claims.claiming = lambda: False  # no load store here ...

    async def no_agents_to_ask(ids):  # ... and no agents: every id is new
        return {}

    placer.claims.ask_agents = no_agents_to_ask
    return placer, emitted


def _tasks(n: int, rng: random.Random, shapes: int = 3) -> list[tuple[Task, np.ndarray]]:
    """Tasks of a few shapes; like the placer, one demand array per distinct shape."""
    kinds = [(1.0, 1024.0, 0.0, 100.0), (2.0, 512.0, 5.0, 1000.0), (1.0, 1024.0, 0.0, 300.0)]
    arrays: dict[tuple[float, float, float], np.ndarray] = {}
    out = []
    for i in range(n):
        cores, mem, disk, dur = kinds[rng.randrange(shapes)]
        task = Task(f"t{i}", cores, mem, disk, dur)
        demand = arrays.get((cores, mem, disk))
        if demand is None:
            demand = arrays[(cores, mem, disk)] = task.demand()
            demand.flags.writeable = False
        out.append((task, demand))
    return out


@pytest.mark.parametrize("policy", ["dodoor", "dodoor-wait"])
@pytest.mark.parametrize("d,empty,shapes,mixed", [
    (2, True, 3, True), (3, False, 3, True), (8, False, 3, True), (9, False, 3, True),
    (2, True, 1, False), (2, False, 1, False), (3, False, 3, False), (16, False, 3, False),
])
def test_chunk_decides_as_one_at_a_time_for_the_same_candidates(d, empty, shapes, mixed, policy):
    nodes = max(6, d + 1)  # few nodes: candidates repeat nodes chosen earlier in the chunk
    state = np.zeros((nodes, N_STATE))
    if not empty:  # some equal rows: ties beyond the empty start
        state[:, 3] = ([1, 1, 0, 2, 0, 1, 0, 2, 1, 0] * 2)[:nodes]
        state[:, 4] = ([100, 100, 0, 300, 0, 100, 0, 300, 100, 0] * 2)[:nodes]
        state[:, :3] = state[:, 3:4] * [1.0, 1024.0, 0.0]
    chunked, chunked_out = _placer(nodes, state, seed=5, policy=policy, d=d)
    single, single_out = _placer(nodes, state, seed=5, policy=policy, d=d)
    work = random.Random(11)
    tasks = _tasks(3 * _DECISIONS_PER_YIELD // 4, work, shapes)
    # the same candidates for both; if mixed, some tasks have one (β), some fewer than d
    counts = [1, d, d, max(2, d - 1)] if mixed else [d]
    cands = [work.sample(range(nodes), min(nodes, counts[i % len(counts)]))
             for i in range(len(tasks))]
    for placer in (chunked, single):
        feed = iter(cands)
        placer.policy.candidates = lambda task, demand, sampler, rng, feed=feed: next(feed)

    decisions = Decisions(pending=[(i, t, dm) for i, (t, dm) in enumerate(tasks)])
    chunked.path.flush(decisions)
    got = {i: prefs for items in decisions.groups.values() for i, _, prefs in items}
    want = {i: single.path.decide(t, dm) for i, (t, dm) in enumerate(tasks)}

    assert got == want
    np.testing.assert_array_equal(chunked.view.cache.state, single.view.cache.state)
    assert [(m.node_ids, m.deltas.tolist()) for m in chunked_out] == \
        [(m.node_ids, m.deltas.tolist()) for m in single_out]
    # ties drew from the stream (the same draws, in the same order)
    assert chunked.rng.getstate() == single.rng.getstate() != random.Random(5).getstate()


async def test_place_decides_every_task_of_a_long_batch_once():
    nodes = 5
    placer, _ = _placer(nodes, np.zeros((nodes, N_STATE)), seed=2)
    sent: list = []

    async def send_group(target, items):
        sent.extend(task.task_id for _, task, _ in items)
        return [(i, None) for i, _, _ in items]

    placer._send_group = send_group
    tasks = [task for task, _ in _tasks(2 * _DECISIONS_PER_YIELD + 7, random.Random(1))]
    await placer.place(tasks)
    assert sorted(sent) == sorted(t.task_id for t in tasks)
    assert placer.view.cache.state[:, 3].sum() == len(tasks)  # each recorded once
