"""Growth: per-task cost of dodoor from 100 to 100,000 nodes, full vs delta snapshots.

paper100's node mix scaled to N nodes, synthetic tasks at 0.9 slot load, the
same number of tasks per node at every size. Per task it prints the decision
time (sample d candidates, score them from the cache, record the placement:
the scheduler's own work per task, timed outside the simulator), the
scheduling messages and the bytes on the wire (payload bytes from the wire
size model, ``dodoor.sim.network.WireSizes``), and the ratio largest/smallest
size of each (target: <= 1.5). Writes ``growth.png`` (each figure against N).

    python benchmarks/growth.py [--max-nodes 100000] [--tasks-per-node 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import numpy as np

from dodoor.cache import LoadCache
from dodoor.policies import make_policy_spec
from dodoor.resources import capacity_matrix
from dodoor.sampling import FeasibleSampler
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from workloads.clusters import scaled
from workloads.synthetic import synthetic_tasks

SIZES = (100, 1_000, 10_000, 100_000)
MODES = {"full snapshots": "dodoor", "delta snapshots": "dodoor:delta_snapshots=1"}
TARGET = 1.5


def decision_us(clusters: dict, spec: str, decisions: int, seed: int,
                repeats: int = 5) -> dict[int, float]:
    """Mean wall µs of one decision per cluster size (``{n: (nodes, tasks)}``).

    Best of ``repeats`` rounds, the sizes interleaved within each round: the
    machine is shared, so the least disturbed round measures the code, and
    interleaving keeps a slow spell from landing on one size only.
    """
    best = {n: float("inf") for n in clusters}
    for r in range(repeats):
        for n, (nodes, tasks) in clusters.items():
            best[n] = min(best[n], _decision_round(nodes, tasks, spec, decisions, seed + r))
    return best


def _decision_round(nodes, tasks, spec: str, decisions: int, seed: int) -> float:
    capacity = capacity_matrix(nodes)
    cache = LoadCache(capacity, np.array([n.slots for n in nodes], dtype=float))
    sampler = FeasibleSampler(capacity)
    policy = make_policy_spec(spec)
    rng = random.Random(seed)
    picks = [tasks[i % len(tasks)] for i in range(decisions)]
    demands = [t.demand() for t in picks]
    for task, demand in zip(picks[:500], demands[:500]):  # warm the sampler's memo
        policy.choose(task, demand, cache.view(policy.candidates(task, demand, sampler, rng)), rng)
    started = time.perf_counter()
    for task, demand in zip(picks, demands):
        node = policy.choose(task, demand,
                             cache.view(policy.candidates(task, demand, sampler, rng)), rng)
        cache.record_placement(node, task)
    return (time.perf_counter() - started) / decisions * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-nodes", type=int, default=100_000)
    p.add_argument("--tasks-per-node", type=int, default=20)
    p.add_argument("--decisions", type=int, default=50_000, help="timed decisions per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/growth")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [n for n in SIZES if n <= args.max_nodes]
    # the decision is the same code in both modes (snapshots only change the cache)
    clusters = {}
    for n in sizes:
        nodes = scaled(n)
        clusters[n] = (nodes, synthetic_tasks(min(args.decisions, 20 * n), nodes, load=0.9,
                                              seed=args.seed))
    decision = decision_us(clusters, "dodoor", args.decisions, args.seed)
    del clusters
    print("decision µs per task: " + ", ".join(f"{n:,} nodes {t:.1f}" for n, t in decision.items()),
          flush=True)
    rows = []
    for n in sizes:
        nodes = scaled(n)
        tasks = synthetic_tasks(args.tasks_per_node * n, nodes, load=0.9, seed=args.seed)
        for mode, spec in MODES.items():
            result = simulate(tasks, nodes, spec, SimSettings(seed=args.seed))
            s = result.summary()
            row = {
                "nodes": n, "mode": mode, "tasks": len(tasks),
                "decision_us": decision[n],
                "msgs_per_task": s["messages"]["per_task"],
                "bytes_per_task": s["messages"]["bytes_per_task"],
                "snapshot_bytes": s["messages"]["bytes_by_type"].get("snapshot", 0),
                "mean_makespan_s": s["makespan_ms"]["mean"] / 1000.0,
                "sim_wall_s": result.wall_s,
            }
            rows.append(row)
            print(f"{n:>7,} nodes  {mode:<15}  decision {row['decision_us']:6.1f} µs  "
                  f"{row['msgs_per_task']:.3f} msgs/task  {row['bytes_per_task']:9.0f} B/task  "
                  f"(sim {len(tasks):,} tasks in {result.wall_s:.0f} s)", flush=True)
    (out / "growth.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"\nratio largest/smallest cluster ({sizes[-1]:,} / {sizes[0]:,} nodes), "
          f"target <= {TARGET}:")
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        ratios = {k: mine[-1][k] / mine[0][k] for k in ("decision_us", "msgs_per_task",
                                                          "bytes_per_task")}
        verdict = "PASS" if all(r <= TARGET for r in ratios.values()) else "FAIL"
        print(f"  {mode:<15} decision {ratios['decision_us']:.2f}  messages "
              f"{ratios['msgs_per_task']:.2f}  bytes {ratios['bytes_per_task']:.2f}  {verdict}")
    plot(rows, out / "growth.png")
    print(f"wrote {out / 'growth.json'} and {out / 'growth.png'}", file=sys.stderr)
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("decision_us", "decision time per task (µs)"),
              ("msgs_per_task", "scheduling messages per task"),
              ("bytes_per_task", "bytes on the wire per task"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, panels):
        for mode in MODES:
            mine = [r for r in rows if r["mode"] == mode]
            ax.plot([r["nodes"] for r in mine], [r[key] for r in mine], marker="o", label=mode)
        ax.set_xscale("log")
        if key == "bytes_per_task":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)  # flat means flat, not noise magnified
        ax.set_xlabel("nodes")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
