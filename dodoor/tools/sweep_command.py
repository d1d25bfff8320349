"""``dodoor sweep``: a grid of policy settings × loads, simulated in parallel."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dodoor.service.cliargs import add_policy_list, bounded, output_dir
from dodoor.errors import ValidationError
from dodoor.policies.lists import parse_policy_list
from dodoor.sim.conditions import add_condition_args, condition_settings
from dodoor.tools.inputs import file_part
from dodoor.tools.sweep import (
    Cell, check_inputs, format_markdown, make_cells, parse_grid, parse_loads, plot_heatmaps,
    run_sweep, write_csv,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep", help="simulate a grid of policy settings and loads in parallel",
        description="Run every combination of --param values at every --load for each "
                    "--policy, in worker processes; write sweep.csv, sweep.md and heatmaps.",
    )
    p.add_argument("--trace", help="trace file, any supported format (default: the bundled "
                                   "azure_data_60.csv)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2",
                   help="a policy setting and its values, e.g. d=2,4,8,16 (repeatable; at "
                        "least one)")
    add_policy_list(p, "dodoor; the grid's settings are added to each spec's own")
    p.add_argument("--load", default="0.9", metavar="X,...|own",
                   help="comma-separated offered loads, fractions of the cluster's slots; "
                        "'own' keeps the trace's timing (default %(default)s)")
    p.add_argument("--limit", type=bounded(int, 1), default=None,
                   help="use only the first N tasks (default: all)")
    p.add_argument("--cluster", default="paper100",
                   help="paper100 (the paper's 100 nodes), small (6 nodes) or scaled:N")
    p.add_argument("--seed", type=int, default=0, help="run seed of every cell")
    p.add_argument("--schedulers", type=bounded(int, 1), default=1,
                   help="schedulers sharing the arrivals round-robin")
    p.add_argument("--jobs", type=bounded(int, 1), default=2, help="worker processes")
    p.add_argument("--out", default="out/sweep", help="output directory, created if missing")
    add_condition_args(p)
    p.add_argument("--no-plots", action="store_true", help="skip the heatmaps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    grid = parse_grid(args.param)
    if not grid:
        raise ValidationError("param", "give at least one --param KEY=V1,V2")
    policies = parse_policy_list(args.policy, default=["dodoor"])
    loads = parse_loads(args.load)
    cells = [cell for policy in policies
             for cell in make_cells(policy, grid, loads, args.trace, args.cluster, args.limit,
                                    args.seed, args.schedulers, condition_settings(args))]
    out = output_dir(args.out)
    check_inputs(cells)
    print(f"sweep: {len(cells)} runs on {args.jobs} processes", file=sys.stderr)
    started = time.perf_counter()

    def progress(done: int, total: int, cell: Cell, row: dict) -> None:
        print(f"  [{done}/{total}] {cell.spec} load={row['load']}: "
              f"mean {row['mean_makespan_s']:.1f} s, p99 {row['p99_makespan_s']:.1f} s, "
              f"{row['msgs_per_task']:.3f} msgs/task ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)

    rows = run_sweep(cells, args.jobs, progress)
    keys = list(grid)
    write_csv(rows, out / "sweep.csv")
    # one policy keeps the table and heatmaps as they were; several get a column and a folder each
    shown = keys if len(policies) == 1 else ["policy", *keys]
    table = format_markdown(rows, shown)
    (out / "sweep.md").write_text(f"# sweep of {', '.join(policies)} on "
                                  f"{args.trace or 'bundled'}\n\n" + table, encoding="utf-8")
    print(table)
    if not args.no_plots:
        for policy in policies:
            where = out if len(policies) == 1 else output_dir(out / _folder(policy))
            plot_heatmaps([r for r in rows if r["policy"] == policy], keys, where)
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}", file=sys.stderr)
    return 0


def _folder(policy: str) -> Path:
    return Path(file_part(policy))
