"""Simulator speed: synthetic tasks on a scaled cluster with the dodoor policy at ~0.9 load.

Prints simulated tasks per wall-clock second (target: >= 50,000/s for
1,000,000 tasks on 10,000 nodes), and the same tasks through a bare
three-events-per-task skeleton (``sim_skeleton.py``) in the same process: the
ratio says how much of the interpreter's ceiling the scheduling model costs.
``--profile`` prints the top of a cProfile.

    python benchmarks/sim_scale.py [--tasks 1000000] [--nodes 10000] [--policy dodoor]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from sim_skeleton import skeleton_rate  # benchmarks/ is on sys.path when run as a script
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import scaled
from workloads.synthetic import synthetic_tasks

TARGET_TPS = 50_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--policy", default="dodoor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="print the top 25 functions by time")
    p.add_argument("--no-skeleton", action="store_true", help="skip the skeleton baseline")
    args = p.parse_args(argv)

    nodes = scaled(args.nodes)
    t0 = time.perf_counter()
    tasks = synthetic_tasks(args.tasks, nodes, load=args.load, seed=args.seed)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(tasks):,} tasks for {len(nodes):,} nodes in {gen_s:.1f} s",
          file=sys.stderr)

    def progress(done: int, total: int, sim_ms: float) -> None:
        print(f"  {100.0 * done / total:5.1f}%  sim t={sim_ms / 1000:,.0f} s", file=sys.stderr)

    cpu0 = time.process_time()
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    result = simulate(tasks, nodes, args.policy, SimSettings(seed=args.seed), progress=progress,
                      progress_every_s=5.0)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    cpu_s = time.process_time() - cpu0
    summary = result.summary()
    tps = len(tasks) / result.wall_s
    mk = summary["makespan_ms"]
    print(f"policy {args.policy}: {len(tasks):,} tasks on {len(nodes):,} nodes, "
          f"{result.events:,} events in {result.wall_s:.1f} s wall")
    print(f"simulated tasks per wall second: {tps:,.0f} (target {TARGET_TPS:,}; "
          f"ratio {tps / TARGET_TPS:.2f})")
    # on a shared machine the CPU-time rate says more about the code than the wall rate
    print(f"simulated tasks per CPU second: {len(tasks) / cpu_s:,.0f} ({cpu_s:.1f} s CPU)")
    print(f"events per wall second: {result.events / result.wall_s:,.0f}")
    print(f"makespan mean {mk['mean'] / 1000:.1f} s, p99 {mk['p99'] / 1000:.1f} s; "
          f"messages/task {summary['messages']['per_task']:.3f}; "
          f"utilization {summary['utilization']['mean_cores']:.2f} of cores")
    if not args.no_skeleton:
        base_tps, base_events = skeleton_rate(tasks, nodes, args.seed)
        print(f"skeleton (3 events/task, scalar power-of-two, nothing else): {base_tps:,.0f} "
              f"tasks/s, {base_events:,} events; simulator / skeleton = {tps / base_tps:.2f}; "
              f"target / skeleton = {TARGET_TPS / base_tps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
