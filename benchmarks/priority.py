"""Priority classes and the packing fallback on a fragmented, heterogeneous cluster.

Four runs of one seeded workload (0.9 of the slots offered, 20 % high-class
tasks) in one process: the default policy without classes, with classes, with
classes and the fallback, and the ideal. Prints each one's high-class p99 and
low-class mean makespan as ratios (to the ideal's high p99 and to the
classless run's low mean), the fallback's outcomes, and the solver's time per
call on 100 and 10,000 nodes. Figures: docs/evaluation.md.

    python benchmarks/priority.py [--tasks 3000] [--seed 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dodoor.packing import PackingProblem, PackingSettings, select_nodes, solve  # noqa: E402
from dodoor.priority import apply_priority_mix  # noqa: E402
from dodoor.resources import NodeSpec, Task  # noqa: E402
from dodoor.sim.settings import SimSettings  # noqa: E402
from dodoor.sim.simulation import simulate  # noqa: E402

POLICY = "dodoor-wait"


def cluster(n: int, rng: random.Random) -> list[NodeSpec]:
    """Nodes of 4 to 32 cores with 1 to 4 slots: large tasks fit few of them."""
    shapes = [(4, 16384, 1), (8, 32768, 2), (16, 65536, 2), (32, 131072, 4)]
    return [NodeSpec(f"n{i}", *shapes[rng.randrange(len(shapes))]) for i in range(n)]


def workload(count: int, nodes: list[NodeSpec], load: float, rng: random.Random) -> list[Task]:
    """Mostly small tasks and some large ones, arrivals at ``load`` of the slots."""
    sizes = [1, 1, 1, 2, 2, 4, 8, 16]
    mean_ms = 4000.0
    slots = sum(n.slots for n in nodes)
    gap_ms = mean_ms / (load * slots)
    tasks, now = [], 0.0
    for i in range(count):
        now += rng.expovariate(1.0 / gap_ms)
        cores = rng.choice(sizes)
        tasks.append(Task(f"t{i}", cores, 2048.0 * cores, 0.0, rng.expovariate(1.0 / mean_ms) + 50,
                          now))
    return tasks


def classes(summary: dict) -> tuple[float, float]:
    """(high p99, normal mean) makespan in ms; without classes, over the same task ids."""
    by = summary["by_priority"]
    return by["high"]["makespan_ms"]["p99"], by["normal"]["makespan_ms"]["mean"]


def solver_time(n: int, rng: random.Random, calls: int = 5) -> float:
    """Mean seconds per fallback call (node selection and solve) on ``n`` busy nodes."""
    spent = 0.0
    for _ in range(calls):
        capacity = np.array([[rng.choice([8, 16, 32]), 65536, 0] for _ in range(n)], float)
        load = capacity * np.array([[rng.uniform(0.6, 1.0), 0.5, 0] for _ in range(n)])
        entries = np.full(n, 2.0)
        demand = np.array([[8.0, 4096.0, 0.0]])
        started = time.perf_counter()
        chosen = select_nodes(capacity, load, np.full(n, 4.0), entries, demand, 64)
        movable = [(pos, [1.0, 1024.0, 0.0]) for pos in range(len(chosen)) for _ in range(2)]
        problem = PackingProblem(capacity[chosen], np.full(len(chosen), 4.0), load[chosen],
                                 entries[chosen], demand, np.array([2]), np.array([10.0]),
                                 np.array([p for p, _ in movable]),
                                 np.array([d for _, d in movable]))
        solve(problem, PackingSettings())
        spent += time.perf_counter() - started
    return spent / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    nodes = cluster(args.nodes, rng)
    plain = workload(args.tasks, nodes, 0.9, rng)
    mixed = apply_priority_mix(plain, {2: 0.2, 1: 0.8}, args.seed)
    # the classless run carries the classes as labels only: every task is of the default class
    marked = [dataclasses.replace(t, labels={"class": str(m.priority)}) for t, m in zip(plain, mixed)]
    runs = {
        "no classes": (marked, SimSettings(seed=args.seed), POLICY),
        "classes": (mixed, SimSettings(seed=args.seed), POLICY),
        "classes + fallback": (mixed, SimSettings(seed=args.seed, fallback=PackingSettings()),
                               POLICY),
        "ideal": (mixed, SimSettings(seed=args.seed), "ideal"),
    }
    high = np.array([t.priority == 2 for t in mixed])
    out: dict[str, tuple[float, float, dict | None]] = {}
    for name, (tasks, settings, policy) in runs.items():
        result = simulate(tasks, nodes, policy, settings)
        arr = result.records.arrays()
        span = arr["end_ms"] - arr["submit_ms"]
        order = np.argsort([t.arrival_ms for t in tasks], kind="stable")  # records follow arrival
        is_high = high[order]
        out[name] = (float(np.percentile(span[is_high], 99)), float(np.mean(span[~is_high])),
                     result.summary().get("fallback"))
    ideal_high = out["ideal"][0]
    today_low = out["no classes"][1]
    print(f"{args.nodes} nodes, {args.tasks} tasks at 0.9 slot load, 20 % high, seed {args.seed}")
    print(f"{'run':<20} {'high p99 ms':>12} {'/ideal':>7} {'normal mean ms':>15} {'/today':>7}")
    for name, (p99, mean, _) in out.items():
        print(f"{name:<20} {p99:>12.0f} {p99 / ideal_high:>7.2f} {mean:>15.0f} "
              f"{mean / today_low:>7.2f}")
    fb = out["classes + fallback"][2]
    if fb is not None:
        print(f"fallback: {fb['calls']} calls, placed {fb['placed']}, proven none "
              f"{fb['none_proven']}, unproven {fb['none_unproven']}, moves {fb['moves']}, "
              f"placed of possible {fb['placed_of_possible']:.2f}, "
              f"{fb['solve_s_mean'] * 1000:.1f} ms per call")
    for n in (100, 10_000):
        print(f"solver time per call on {n} nodes: {solver_time(n, rng) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
