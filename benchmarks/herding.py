"""Herding of many schedulers: variants of ``dodoor-wait:d=16`` side by side.

With M schedulers each deciding from the same stale snapshot, the default's
d = 16 candidates find the same few nodes that look emptiest in it, and all
of them send work there (docs/evaluation.md, "Herding"). Each variant here is
a way to spread the work without extra messages; every one runs at M = 1, 4
and 16, σ = 0 and 2, steady arrivals, 0.9 load on paper100, against the ideal
of the same M (mean over ``--seeds``). Prints one table: mean / ideal, p99 /
ideal and scheduling messages per task per cell.

    python benchmarks/herding.py [--jobs 2] [--seeds 1] [--limit N] [--out FILE]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from dodoor.tools.sweep import Cell, run_sweep  # noqa: E402
from workloads.dodoor_csv import bundled_trace  # noqa: E402

BASE = "dodoor-wait:d=16"
# (label, spec for M schedulers)
VARIANTS: tuple[tuple[str, Callable[[int], str]], ...] = (
    ("power-of-two", lambda m: "power-of-two"),
    ("d=16 (default)", lambda m: BASE),
    ("d=4", lambda m: "dodoor-wait:d=4"),
    ("d=16/√M", lambda m: f"dodoor-wait:d={max(2, round(16 / math.sqrt(m)))}"),
    ("random tie-break (tol 0)", lambda m: BASE + ",tolerance_ms=0"),
    ("tol 1 s", lambda m: BASE + ",tolerance_ms=1000"),
    ("tol 5 s", lambda m: BASE + ",tolerance_ms=5000"),
    ("echo (M−1)/2", lambda m: BASE + f",echo={(m - 1) / 2:g}"),
    ("echo M−1", lambda m: BASE + f",echo={m - 1}"),
    ("echo M−1, tol 1 s", lambda m: BASE + f",echo={m - 1},tolerance_ms=1000"),
    ("others (M−1)/2", lambda m: BASE + f",others={(m - 1) / 2:g}"),
    ("others M−1", lambda m: BASE + f",others={m - 1}"),
    ("others M−1, tol 0", lambda m: BASE + f",others={m - 1},tolerance_ms=0"),
    ("others M−1, d=8", lambda m: f"dodoor-wait:d=8,others={m - 1}"),
)
SCHEDULERS = (1, 4, 16)
SIGMAS = (0.0, 2.0)
LOAD = 0.9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="first N tasks of the trace")
    p.add_argument("--held-out", action="store_true", help="azure_data_600.csv instead")
    p.add_argument("--only", default=None, help="labels to run (and ideal), separated by ';'")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = p.parse_args(argv)
    trace = str(bundled_trace("azure_data_600.csv" if args.held_out else "azure_data_60.csv"))
    chosen = [v for v in VARIANTS if args.only is None or v[0] in args.only.split(";")]
    keys, cells = [], []
    for m in SCHEDULERS:
        for seed in range(args.seeds):
            keys.append(("ideal", None, m))
            cells.append(Cell("ideal", (), LOAD, trace, limit=args.limit, seed=seed, schedulers=m))
            for sigma in SIGMAS:
                for label, spec in chosen:
                    keys.append((label, sigma, m))
                    cells.append(Cell(spec(m), (), LOAD, trace, limit=args.limit, seed=seed,
                                      schedulers=m, conditions=(("estimate_sigma", sigma),)))

    def progress(done, total, cell, row):
        print(f"  [{done}/{total}] {cell.spec} M={cell.schedulers} {dict(cell.conditions)}: "
              f"mean {row['mean_makespan_s']:.1f} s", file=sys.stderr, flush=True)

    rows = run_sweep(cells, args.jobs, progress)
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for key, row in zip(keys, rows):
        runs[key].append(row)
    mean = {k: {c: sum(r[c] for r in rs) / len(rs) for c in
                ("mean_makespan_s", "p99_makespan_s", "msgs_per_task")} for k, rs in runs.items()}
    cols = [(m, s) for m in SCHEDULERS for s in SIGMAS]
    lines = [f"# Herding: {Path(trace).name}, load {LOAD}, paper100, steady, "
             f"{args.seeds} seed(s){f', first {args.limit} tasks' if args.limit else ''}", "",
             "Each entry: mean / ideal, p99 / ideal, messages per task.", "",
             "| variant | " + " | ".join(f"M={m} σ={s:g}" for m, s in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for label, _ in chosen:
        entries = []
        for m, s in cols:
            r, ideal = mean[(label, s, m)], mean[("ideal", None, m)]
            entries.append(f"{r['mean_makespan_s'] / ideal['mean_makespan_s']:.2f} / "
                           f"{r['p99_makespan_s'] / ideal['p99_makespan_s']:.2f} / "
                           f"{r['msgs_per_task']:.2f}")
        lines.append(f"| {label} | " + " | ".join(entries) + " |")
    lines.append("| ideal | " + " | ".join(
        f"{mean[('ideal', None, m)]['mean_makespan_s']:.1f} s / "
        f"{mean[('ideal', None, m)]['p99_makespan_s']:.0f} s" for m, _ in cols) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
