"""``dodoor simulate``: replay a trace under one or all policies and compare them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from dodoor.errors import ValidationError
from dodoor.policies import DEFAULT_POLICY, POLICIES
from dodoor.resources import NodeSpec, Task
from dodoor.settings import PolicySettings
from dodoor.sim.report import format_ratios, format_table
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import SimResult, simulate


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="trace-driven simulation of the placement policies",
        description="Replay a trace on a simulated cluster under each policy and compare.",
    )
    p.add_argument("--trace", help="trace file (default: the bundled azure_data_60.csv)")
    p.add_argument("--cluster", default="paper100", help="paper100, small or scaled:N")
    p.add_argument("--policy", action="append", default=None,
                   help="all (default), a comma-separated list of names, or one spec such as "
                        f"dodoor:d=8,alpha=0.3; repeatable. Names: {', '.join(POLICIES)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out", help="output directory (default: out/)")
    p.add_argument("--load", type=float, default=None,
                   help="rescale arrivals to this offered load (fraction of slots)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N tasks")
    p.add_argument("--schedulers", type=int, default=1)
    p.add_argument("--delay-ms", type=float, default=0.5, help="one-way message delay")
    p.add_argument("--report-interval-ms", type=float, default=100.0)
    p.add_argument("--start-overhead-ms", type=float, default=0.0,
                   help="slot time each task holds beyond its duration, e.g. a container's "
                        "start and removal (dodoor evaluate measures it for docker agents)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="policy setting, e.g. d=8 or alpha=0.3 (repeatable)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policies = parse_policies(args.policy)
    settings = SimSettings(
        delay_ms=args.delay_ms, report_interval_ms=args.report_interval_ms,
        schedulers=args.schedulers, seed=args.seed, start_overhead_ms=args.start_overhead_ms,
        policy=PolicySettings.from_mapping(parse_params(args.param)),
    )
    tasks, nodes = load_inputs(args.trace, args.cluster, args.limit, args.load)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[SimResult] = []
    for name in policies:
        print(f"simulating {name}: {len(tasks)} tasks on {len(nodes)} nodes", file=sys.stderr)
        result = simulate(tasks, nodes, name, settings, progress=_progress_printer(name))
        results.append(result)
        result.records.write_csv(out / f"tasks_{file_part(name)}.csv", nodes)
    summaries = [r.summary() for r in results]
    (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    print(format_table(summaries))
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
    """Policy specs from the repeatable ``--policy`` option (see its help)."""
    specs: list[str] = []
    for text in values or ["all"]:
        if text == "all":
            specs.extend(POLICIES)
            specs.append(DEFAULT_POLICY)  # the measured default variant, beside the paper's
        elif ":" in text:
            specs.append(text.strip())
        else:
            specs.extend(n.strip() for n in text.split(",") if n.strip())
    for spec in specs:
        name = spec.partition(":")[0]
        if name not in POLICIES:
            raise ValidationError("policy", f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    if not specs:
        raise ValidationError("policy", "no policy given")
    return list(dict.fromkeys(specs))


def file_part(spec: str) -> str:
    """A policy spec made safe for a file name (dodoor:d=8 -> dodoor_d8)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in spec.replace("=", ""))


def parse_params(items: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError("param", f"expected KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


def load_inputs(trace: str | None, cluster: str, limit: int | None,
                load: float | None) -> tuple[list[Task], list[NodeSpec]]:
    """Tasks (trimmed, maybe rescaled) and the cluster for a run."""
    from workloads.clusters import cluster_by_name
    from workloads.dodoor_csv import bundled_trace, load_dodoor_csv

    if limit is not None and limit < 1:
        raise ValidationError("limit", f"must be >= 1, got {limit}")
    nodes = cluster_by_name(cluster)
    if trace is None:
        tasks = load_dodoor_csv(bundled_trace(), limit=limit)
    else:
        tasks = _load_trace(trace, limit)
    if not tasks:
        raise ValidationError("trace", f"{trace or 'bundled trace'} holds no tasks")
    if load is not None:
        from workloads.load import scale_to_load

        tasks = scale_to_load(tasks, nodes, load)
    return tasks, nodes


def _load_trace(path: str, limit: int | None) -> list[Task]:
    from workloads.registry import load_trace

    return load_trace(path, limit=limit)


def _progress_printer(name: str):
    started = time.perf_counter()

    def report(done: int, total: int, sim_ms: float) -> None:
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        print(f"  {name}: {100.0 * done / max(total, 1):5.1f}% ({done}/{total} tasks, "
              f"{rate:,.0f} tasks/s, sim t={sim_ms / 1000:.0f} s)", file=sys.stderr)

    return report
