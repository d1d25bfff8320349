"""Placement quality of every policy on both bundled traces at loads 0.5, 0.9 and own timing.

Prints one row per (trace, load, policy) and the ratios dodoor/power-of-two and
dodoor/ideal for messages per task and mean / p99 makespan; writes the same as
markdown to ``--out``. With ``--seeds N`` every figure is the mean over seeds
0..N-1 (one seed's sampling luck moves a policy's mean makespan by 10-20%).

    python benchmarks/quality.py [--out quality.md] [--jobs 2] [--seeds 3] [--policy SPEC ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from dodoor.policies import POLICIES  # noqa: E402
from dodoor.sim.report import format_table, ratios  # noqa: E402
from dodoor.sim.settings import SimSettings  # noqa: E402
from dodoor.sim.simulation import simulate  # noqa: E402
from workloads.clusters import paper100  # noqa: E402
from workloads.dodoor_csv import BUNDLED, bundled_trace, load_dodoor_csv  # noqa: E402
from workloads.load import offered_load, scale_to_load  # noqa: E402

LOADS = ("0.5", "0.9", "own")
# the variants docs/design.md §4 asks to measure beside the paper's policy
VARIANTS = ("dodoor:d=8", "dodoor-wait:d=8")


def run_one(trace: str, load: str, policy: str, seed: int) -> dict:
    nodes = paper100()
    tasks = load_dodoor_csv(bundled_trace(trace))
    if load != "own":
        tasks = scale_to_load(tasks, nodes, float(load))
    summary = simulate(tasks, nodes, policy, SimSettings(seed=seed)).summary()
    summary.pop("utilization", None)
    summary["trace"], summary["load"] = trace, load
    return summary


def average(summaries: list[dict]) -> dict:
    """The first summary with its figures replaced by their mean over all of them."""
    out = dict(summaries[0])
    n = len(summaries)
    for key in ("makespan_ms", "sched_latency_ms"):
        out[key] = {k: sum(s[key][k] for s in summaries) / n for k in summaries[0][key]}
    out["throughput_tps"] = sum(s["throughput_tps"] for s in summaries) / n
    out["wall_s"] = sum(s["wall_s"] for s in summaries)
    out["messages"] = dict(summaries[0]["messages"],
                           per_task=sum(s["messages"]["per_task"] for s in summaries) / n)
    out["seeds"] = n
    return out


def markdown(groups: dict[tuple[str, str], list[dict]], own_loads: dict[str, float],
             seeds: int) -> str:
    lines = ["# Simulated placement quality (paper100, 1 scheduler, delay 0.5 ms, b=80, k=8, "
             f"mean over {seeds} seed{'s' if seeds > 1 else ''})", ""]
    for (trace, load), rows in groups.items():
        label = f"own timing ({own_loads[trace]:.2f} of slots)" if load == "own" else load
        lines += [f"## {trace}, load {label}", "",
                  "| policy | msgs/task | mean makespan s | p50 s | p99 s | p99.9 s | "
                  "sched latency ms | throughput tasks/s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in rows:
            mk = s["makespan_ms"]
            lines.append(
                f"| {s['policy']} | {s['messages']['per_task']:.3f} | {mk['mean'] / 1000:.1f} | "
                f"{mk['p50'] / 1000:.1f} | {mk['p99'] / 1000:.1f} | {mk['p999'] / 1000:.1f} | "
                f"{s['sched_latency_ms']['mean']:.1f} | {s['throughput_tps']:.2f} |")
        lines.append("")
        for base, r in ratios(rows).items():
            lines.append(f"- dodoor/{base}: msgs/task {r['msgs_per_task']:.3f}, mean makespan "
                         f"{r['mean_makespan']:.3f}, p99 makespan {r['p99_makespan']:.3f}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="quality.md", help="markdown file to write")
    p.add_argument("--policy", action="append", default=None,
                   help="policy spec to run (repeatable; default: all policies and the "
                        f"variants {', '.join(VARIANTS)})")
    p.add_argument("--trace", action="append", default=None, choices=BUNDLED)
    p.add_argument("--load", action="append", default=None, choices=LOADS)
    p.add_argument("--seeds", type=int, default=1, help="average over seeds 0..N-1")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = p.parse_args(argv)
    policies = args.policy or [*POLICIES, *VARIANTS]
    traces = args.trace or list(BUNDLED)
    loads = args.load or list(LOADS)
    own = {t: offered_load(load_dodoor_csv(bundled_trace(t)), paper100()) for t in traces}
    jobs = [(t, load, pol) for t in traces for load in loads for pol in policies]

    started = time.perf_counter()
    groups: dict[tuple[str, str], list[dict]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [[pool.submit(run_one, t, load, pol, seed) for seed in range(args.seeds)]
                   for t, load, pol in jobs]
        for (t, load, _), per_seed in zip(jobs, futures):
            summary = average([f.result() for f in per_seed])
            groups.setdefault((t, load), []).append(summary)
            mk = summary["makespan_ms"]
            print(f"{t:18s} load {load:>4s}  {summary['policy']:22s} "
                  f"msgs/task {summary['messages']['per_task']:6.3f}  "
                  f"mean {mk['mean'] / 1000:8.1f} s  p99 {mk['p99'] / 1000:8.1f} s  "
                  f"({summary['wall_s']:.1f} s wall)", flush=True)
    print()
    for (t, load), rows in groups.items():
        print(f"== {t}, load {load}" + (f" ({own[t]:.2f})" if load == "own" else ""))
        print(format_table(rows))
        for base, r in ratios(rows).items():
            print(f"dodoor/{base}: msgs/task {r['msgs_per_task']:.3f}  mean makespan "
                  f"{r['mean_makespan']:.3f}  p99 makespan {r['p99_makespan']:.3f}")
        print()
    Path(args.out).write_text(markdown(groups, own, args.seeds), encoding="utf-8")
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
