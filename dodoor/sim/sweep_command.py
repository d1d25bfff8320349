"""``dodoor sweep``: a grid of policy settings × loads, simulated in parallel."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dodoor.errors import ValidationError
from dodoor.sim.sweep import (
    Cell, format_markdown, make_cells, parse_grid, parse_loads, plot_heatmaps, run_sweep,
    write_csv,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep", help="simulate a grid of policy settings and loads in parallel",
        description="Run every combination of --param values at every --load; write "
                    "sweep.csv, sweep.md and heatmaps.",
    )
    p.add_argument("--trace", help="trace file (default: the bundled azure_data_60.csv)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2",
                   help="a policy setting and its values, e.g. d=2,4,8,16 (repeatable)")
    p.add_argument("--policy", default="dodoor",
                   help="policy or spec the grid varies (default dodoor)")
    p.add_argument("--load", default="0.9",
                   help="comma-separated offered loads; 'own' = the trace's timing (default 0.9)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N tasks")
    p.add_argument("--cluster", default="paper100")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedulers", type=int, default=1, help="schedulers sharing the arrivals")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", default="out/sweep", help="output directory (default out/sweep)")
    p.add_argument("--no-plots", action="store_true", help="skip the heatmaps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    grid = parse_grid(args.param)
    if not grid:
        raise ValidationError("param", "give at least one --param KEY=V1,V2")
    cells = make_cells(args.policy, grid, parse_loads(args.load), args.trace, args.cluster,
                       args.limit, args.seed, args.schedulers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    table = format_markdown(rows, keys)
    (out / "sweep.md").write_text(f"# sweep of {args.policy} on {args.trace or 'bundled'}\n\n"
                                  + table, encoding="utf-8")
    print(table)
    if not args.no_plots:
        plot_heatmaps(rows, keys, out)
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}", file=sys.stderr)
    return 0
