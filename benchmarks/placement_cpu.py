"""Scheduler CPU per placed task, in one process: parse a batch body, then place it.

What one scheduler process spends per task on the batched path without the
HTTP layer and the agents — steadier than the live benchmark on a shared
machine. Sends to agents are stubbed. Each run times the placer twice in the
same process, alternating: with a batch's decisions stacked
(``dodoor.batch_scoring``) and, as the baseline, every task decided alone, and
prints the ratio.

    python benchmarks/placement_cpu.py [--policy dodoor-wait:d=16] [--nodes 200]
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

import msgpack  # noqa: E402
import numpy as np  # noqa: E402

from dodoor.cache import N_STATE  # noqa: E402
from dodoor.clock import MonotonicClock  # noqa: E402
from dodoor.wire import Snapshot  # noqa: E402
from scheduler.intake import parse_submission  # noqa: E402
from scheduler.placer import Placer  # noqa: E402
from scheduler.settings import SchedulerSettings  # noqa: E402
from scheduler.view import ClusterView  # noqa: E402

BATCH = 500


def make_placer(policy: str, nodes: int, seed: int, stacked: bool) -> Placer:
    """A placer on ``nodes`` equal empty nodes whose agent sends and id claims do nothing."""
    view = ClusterView("bench", k=8)
    capacity = np.tile([64.0, 262144.0, 100000.0], (nodes, 1))
    view.apply(Snapshot(1, tuple(f"n{i}" for i in range(nodes)),
                        tuple(f"http://n{i}" for i in range(nodes)), capacity,
                        np.full(nodes, 64.0), np.zeros((nodes, N_STATE))), 0.0)
    placer = Placer(SchedulerSettings(policy=policy), view, None, random.Random(seed),
                    MonotonicClock(), lambda deltas: None, None)
    placer.stack_decisions = stacked

    async def all_new(ids):  # no load store or agents to claim ids at: every id is new
        return {}

    placer.claims.claim = all_new

    async def sent(target, items):  # the agent hop, stubbed
        return [(i, None) for i, _, _ in items]

    async def held_nowhere(ids):  # the id claims, stubbed: every id is new
        return {}

    placer._send_group = sent
    placer.claims.claim = held_nowhere
    return placer


def bodies(count: int, prefix: str) -> list[bytes]:
    """Batch bodies as a client sends them: msgpack, a few task shapes."""
    ids = itertools.count()
    shapes = [(1, 1024, 0, 500), (2, 4096, 100, 2000), (0.5, 512, 0, 100)]
    out = []
    for _ in range(count):
        tasks = []
        for _ in range(BATCH):
            cores, mem, disk, dur = shapes[next(ids) % 3]
            tasks.append({"id": f"{prefix}-{next(ids)}", "cores": cores, "memory_mb": mem,
                          "disk_mb": disk, "duration_ms": dur})
        out.append(msgpack.packb({"tasks": tasks}))
    return out


async def cpu_per_task(placer: Placer, batches: list[bytes]) -> tuple[float, float]:
    """(parse, place) CPU µs per task over ``batches``."""
    parse = place = 0.0
    for body in batches:
        t0 = time.process_time()
        tasks, _ = parse_submission(body, "application/msgpack", 1 << 30)
        t1 = time.process_time()
        await placer.place(tasks)
        t2 = time.process_time()
        parse += t1 - t0
        place += t2 - t1
    n = BATCH * len(batches)
    return parse / n * 1e6, place / n * 1e6


async def run(args: argparse.Namespace) -> None:
    results: dict[bool, list[float]] = {True: [], False: []}
    for rnd in range(args.rounds):
        for stacked in (True, False) if rnd % 2 == 0 else (False, True):
            placer = make_placer(args.policy, args.nodes, rnd, stacked)
            await cpu_per_task(placer, bodies(4, f"warm{rnd}{stacked}"))
            parse, place = await cpu_per_task(placer, bodies(args.batches, f"r{rnd}{stacked}"))
            results[stacked].append(place)
            print(f"  round {rnd + 1} {'stacked' if stacked else 'alone  '}: "
                  f"parse {parse:.1f} µs/task, place {place:.1f} µs/task", file=sys.stderr)
    alone, stacked = (statistics.median(results[k]) for k in (False, True))
    print(f"policy {args.policy}, {args.nodes} nodes, {BATCH} tasks per batch: placing takes "
          f"{stacked:.1f} µs/task stacked vs {alone:.1f} alone (median of {args.rounds}); "
          f"stacked / alone = {stacked / alone:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default="dodoor-wait:d=16")
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--batches", type=int, default=60, help="timed batches per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.nodes < 1 or args.batches < 1 or args.rounds < 1:
        p.error("--nodes, --batches and --rounds must be at least 1")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
