"""The live packing fallback's cost: solver time per call, and scheduler CPU per placed task.

1. Solver time (wall and CPU) per live call (``scheduler.fallback``: copy of the view, node
   selection, model, CP-SAT) on a fragmented cluster of 100 and of 10,000 nodes
   (every node 60–100 % busy), for a window of 1 and of 16 tasks.
2. Scheduler CPU per placed task with the fallback on and off, alternating in one
   process (agent sends and id claims stubbed, as ``benchmarks/placement_cpu.py``):
   on a roomy cluster, where sampling always finds room and the fallback must
   cost almost nothing, and on a fragmented one, where it runs (its solver thread's
   CPU counted: process time covers every thread).

    python benchmarks/fallback_live.py [--calls 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import numpy as np  # noqa: E402

from dodoor.cache import N_STATE  # noqa: E402
from dodoor.clock import MonotonicClock  # noqa: E402
from dodoor.packing import PackingSettings, solve  # noqa: E402
from dodoor.resources import TASKS, Task  # noqa: E402
from dodoor.service.http import BackgroundTasks  # noqa: E402
from dodoor.wire import Snapshot  # noqa: E402
from scheduler.fallback import select_and_solve  # noqa: E402
from scheduler.placer import Placer  # noqa: E402
from scheduler.settings import SchedulerSettings  # noqa: E402
from scheduler.view import ClusterView  # noqa: E402

POLICY = "dodoor-wait:d=16"


def fragmented(nodes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capacity, slots, state): 8–32 cores, 1–4 slots, every node 60–100 % busy."""
    cores = rng.choice([8.0, 16.0, 32.0], nodes)
    capacity = np.stack([cores, cores * 4096.0, np.full(nodes, 1e5)], axis=1)
    slots = rng.integers(1, 5, nodes).astype(float)
    state = np.zeros((nodes, N_STATE))
    state[:, 0] = np.floor(cores * rng.uniform(0.6, 1.0, nodes))
    state[:, 1] = state[:, 0] * 1024.0
    state[:, TASKS] = np.minimum(slots, rng.integers(1, 4, nodes))
    return capacity, slots, state


def solver_times(calls: int) -> None:
    settings = PackingSettings()
    rng = np.random.default_rng(1)
    select_and_solve(*fragmented(10, rng), np.array([[1.0, 1.0, 0.0]]), np.array([1]),
                     np.array([1.0]), settings, solve)  # the ~0.3 s ortools import
    for nodes in (100, 10_000):
        for window in (1, 16):
            walls, cpus, outcomes = [], [], {"placed": 0, "none": 0}
            statuses = set()
            for _ in range(calls):
                capacity, slots, state = fragmented(nodes, rng)
                demands = np.array([[c, c * 1024.0, 0.0]
                                    for c in rng.choice([4.0, 8.0, 16.0], window)])
                prio = rng.integers(0, 4, window)
                work = rng.uniform(1.0, 100.0, window)
                t0, c0 = time.perf_counter(), time.process_time()
                _, result = select_and_solve(capacity.copy(), slots.copy(), state.copy(),
                                             demands, prio, work, settings, solve)
                walls.append((time.perf_counter() - t0) * 1e3)
                cpus.append((time.process_time() - c0) * 1e3)
                statuses.add(result.status)
                placed = sum(p >= 0 for p in result.placed)
                outcomes["placed"] += placed
                outcomes["none"] += window - placed
            print(f"solver call, {nodes:>6} nodes, window {window:>2}: wall median "
                  f"{statistics.median(walls):7.1f} ms, max {max(walls):7.1f} ms; CPU median "
                  f"{statistics.median(cpus):7.1f} ms over {calls} calls; tasks placed {outcomes['placed']}, not {outcomes['none']}; "
                  f"status {sorted(statuses)}", flush=True)


def make_placer(nodes: int, seed: int, fallback: bool, busy: bool,
                background: BackgroundTasks) -> Placer:
    view = ClusterView("bench", k=8)
    if busy:
        capacity, slots, state = fragmented(nodes, np.random.default_rng(seed))
    else:
        # room for every task of the run: sampling always finds some
        capacity = np.tile([1e6, 1e9, 1e9], (nodes, 1))
        slots, state = np.full(nodes, 1e6), np.zeros((nodes, N_STATE))
    view.apply(Snapshot(1, tuple(f"n{i}" for i in range(nodes)),
                        tuple(f"http://n{i}" for i in range(nodes)), capacity, slots, state), 0.0)
    placer = Placer(SchedulerSettings(policy=POLICY, fallback=fallback,
                                      fallback_window_ms=1.0), view, None,
                    random.Random(seed), MonotonicClock(), lambda deltas: None, background)

    async def sent(target, items):  # the agent hop, stubbed
        return [(i, None) for i, _, _ in items]

    async def held_nowhere(ids):
        return {}

    async def forwarded(task, prefs, recorded, tried=None):  # a fallback task's hop, stubbed
        from scheduler.placements import Placement
        return Placement(task.task_id, prefs[0][0])

    placer._send_group = sent
    placer.claims.claim = held_nowhere
    placer.forwarder.forward = forwarded
    return placer


def batches(count: int, size: int, prefix: str) -> list[list[Task]]:
    ids = itertools.count()
    shapes = [(1, 1024, 0, 500), (2, 4096, 100, 2000), (0.5, 512, 0, 100), (8, 8192, 0, 5000)]
    return [[Task(f"{prefix}-{n}", *shapes[n % 4]) for n in itertools.islice(ids, size)]
            for _ in range(count)]


async def cpu_per_task(placer: Placer, work: list[list[Task]]) -> float:
    t0 = time.process_time()
    for tasks in work:
        await placer.place(tasks)
    return (time.process_time() - t0) / sum(map(len, work)) * 1e6


async def cpu_runs(rounds: int) -> None:
    for busy, nodes, count, size in ((False, 200, 20, 500), (True, 200, 2, 50)):
        results: dict[bool, list[float]] = {True: [], False: []}
        calls = sent = 0
        for rnd in range(rounds):
            for fallback in (True, False) if rnd % 2 == 0 else (False, True):
                async with BackgroundTasks() as bg:
                    placer = make_placer(nodes, rnd, fallback, busy, bg)
                    await cpu_per_task(placer, batches(2, size, f"w{rnd}{fallback}"))
                    stats = placer.fallback_stats
                    before = (stats.calls, stats.placed + stats.proven_none + stats.timeout)
                    results[fallback].append(await cpu_per_task(
                        placer, batches(count, size, f"r{rnd}{fallback}")))
                    calls += stats.calls - before[0]
                    sent += stats.placed + stats.proven_none + stats.timeout - before[1]
        on, off = (statistics.median(results[k]) for k in (True, False))
        print(f"{'fragmented' if busy else 'roomy     '} cluster, {nodes} nodes, {POLICY}, "
              f"batches of {size}: {on:.1f} µs/task with the fallback vs {off:.1f} without "
              f"(median of {rounds}); on / off = {on / off:.2f}; fallback calls {calls} "
              f"for {sent} of {rounds * count * size} tasks",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5, help="solver calls per size")
    p.add_argument("--rounds", type=int, default=3, help="alternating CPU rounds")
    args = p.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        p.error("--calls and --rounds must be at least 1")
    solver_times(args.calls)
    asyncio.run(cpu_runs(args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
