"""``dodoor simulate``: replay a trace under one or all policies and compare them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from dodoor.service.cliargs import add_policy_list, add_priority_mix, bounded, output_dir
from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, POLICIES
from dodoor.policies.lists import parse_policy_list
from dodoor.settings import PolicySettings, key_values
from dodoor.sim.conditions import add_condition_args, condition_settings
from dodoor.sim.report import format_ratios, format_table
from dodoor.packing import PackingSettings
from dodoor.priority import DEFAULT_AGING_MS, apply_priority_mix
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import SimResult, simulate
from dodoor.tools.inputs import file_part, load_inputs
from dodoor.tools.sweep import parse_loads


DEFAULT_LOAD = "0.9"  # the setting of the README's table; "own" keeps the trace's timing


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="trace-driven simulation of the placement policies",
        description="Replay a trace on a simulated cluster under each policy and compare: a "
                    "table on stdout, summary.json, per-task CSVs and plots in --out. With no "
                    "options: the bundled 60-s Azure trace at 0.9 of the paper100 cluster's "
                    "slots, every policy.",
    )
    p.add_argument("--trace", help="trace file, any supported format (default: the bundled "
                                   "azure_data_60.csv)")
    p.add_argument("--cluster", default="paper100",
                   help="paper100 (the paper's 100 nodes), small (6 nodes) or scaled:N")
    add_policy_list(p, f"all: every policy, plus the daemons' default {DEFAULT_POLICY}")
    p.add_argument("--seed", type=int, default=0,
                   help="run seed; every random stream of the run derives from it")
    p.add_argument("--out", default="out", help="output directory, created if missing")
    p.add_argument("--load", default=DEFAULT_LOAD, metavar="X|own",
                   help="rescale arrivals to this offered load, a fraction of the cluster's "
                        "slots; 'own' keeps the trace's own arrival times (the bundled trace "
                        "then offers about 2.5x the slots) (default %(default)s)")
    p.add_argument("--limit", type=bounded(int, 1), default=None,
                   help="use only the first N tasks (default: all)")
    p.add_argument("--schedulers", type=bounded(int, 1), default=1,
                   help="schedulers sharing the arrivals round-robin")
    p.add_argument("--delay-ms", type=float, default=0.5, help="one-way message delay")
    p.add_argument("--report-interval-ms", type=float, default=100.0,
                   help="least time between two state reports of one node")
    p.add_argument("--start-overhead-ms", type=float, default=0.0,
                   help="slot time each task holds beyond its duration, e.g. a container's "
                        "start and removal (dodoor evaluate measures it for docker agents)")
    p.add_argument("--warm-start-overhead-ms", type=float, default=None,
                   help="model warm containers: a function task finding an idle one of its "
                        "image on its node pays this instead (dodoor/tools/overhead.py "
                        "warm_overhead_ms measures it; default: none, every start is cold)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="policy setting for every policy, e.g. d=8 or alpha=0.3 (repeatable)")
    add_condition_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_priority_mix(p, "--seed")
    p.add_argument("--aging-s", type=float, default=DEFAULT_AGING_MS / 1000.0,
                   help="a waiting task's class rises by one per this many seconds (0: off; "
                        "default %(default)s)")
    p.add_argument("--preempt", action="store_true",
                   help="agents stop and requeue lower-class running tasks for a newcomer "
                        "(default: never)")
    p.add_argument("--fallback", action="store_true",
                   help="the CP-SAT packing fallback when sampled candidates have no room "
                        "(default: off)")
    p.add_argument("--fallback-time-s", type=float, default=1.0,
                   help="the fallback solver's time limit per call (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policies = parse_policies(args.policy)
    load = parse_load(args.load)
    settings = SimSettings(
        delay_ms=args.delay_ms, report_interval_ms=args.report_interval_ms,
        schedulers=args.schedulers, seed=args.seed, start_overhead_ms=args.start_overhead_ms,
        warm_start_overhead_ms=args.warm_start_overhead_ms,
        policy=PolicySettings.from_mapping(parse_params(args.param)),
        **condition_settings(args),
        aging_ms=args.aging_s * 1000.0, preempt=args.preempt,
        fallback=PackingSettings(time_limit_s=args.fallback_time_s) if args.fallback else None,
    )
    out = output_dir(args.out)  # checked before a run that may take minutes
    tasks, nodes = load_inputs(args.trace, args.cluster, args.limit, load)
    if args.priority_mix is not None:
        tasks = apply_priority_mix(tasks, args.priority_mix, args.seed)
    results: list[SimResult] = []
    for name in policies:
        print(f"simulating {name}: {len(tasks)} tasks on {len(nodes)} nodes", file=sys.stderr)
        result = simulate(tasks, nodes, name, settings, progress=_progress_printer(name))
        results.append(result)
        result.records.write_csv(out / f"tasks_{file_part(name)}.csv", nodes)
    summaries = [r.summary() for r in results]
    (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    print(format_table(summaries))
    for summary in summaries:
        for name, cls in summary.get("by_priority", {}).items():
            span = cls["makespan_ms"]
            print(f"{summary['policy']} {name}: {cls['tasks']} tasks, makespan mean "
                  f"{span['mean']:.0f} ms, p99 {span['p99']:.0f} ms")
        if "fallback" in summary:
            fb = summary["fallback"]
            print(f"{summary['policy']} fallback: {fb['calls']} tasks needed it, placed "
                  f"{fb['placed']}, proven none {fb['none_proven']}, moves {fb['moves']}, "
                  f"solver {fb['solve_s_mean'] * 1000:.1f} ms per call")
    ratio_text = format_ratios(summaries)
    if ratio_text:
        print(ratio_text)
    if not args.no_plots:
        from dodoor.sim.plots import plot_makespan_cdf, plot_utilization

        plot_makespan_cdf(results, out / "makespan_cdf.png")
        plot_utilization(results, out / "utilization.png")
    print(f"wrote {out / 'summary.json'}", file=sys.stderr)
    return 0


def parse_policies(values: Sequence[str] | None) -> list[str]:
    """Policy specs from the repeatable ``--policy`` option (:mod:`dodoor.policies.lists`)."""
    return parse_policy_list(values, default=[*POLICIES, DEFAULT_POLICY])


def parse_load(text: str) -> float | None:
    """One ``--load``: a fraction of the slots, or ``own`` (None: the trace's timing)."""
    loads = parse_loads(text)
    if len(loads) != 1:
        raise ValidationError("load", f"one load per run, got {text!r}; dodoor sweep runs several")
    return loads[0]


def parse_params(items: Sequence[str]) -> dict[str, str]:
    return key_values(items, "param")


def _progress_printer(name: str):
    started = time.perf_counter()

    def report(done: int, total: int, sim_ms: float) -> None:
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        print(f"  {name}: {100.0 * done / max(total, 1):5.1f}% ({done}/{total} tasks, "
              f"{rate:,.0f} tasks/s, sim t={sim_ms / 1000:.0f} s)", file=sys.stderr)

    return report
