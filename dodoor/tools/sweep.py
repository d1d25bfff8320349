"""Parameter sweeps: a grid of policy settings × loads, simulated in parallel processes.

Each cell is one :func:`dodoor.sim.simulation.simulate` run; a worker process
loads the trace once and keeps it for the cells it gets. Results are plain
rows (dicts) written as CSV, a markdown table and heatmaps.
"""

from __future__ import annotations

import csv
import functools
import itertools
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dodoor.errors import DodoorError, ValidationError
from dodoor.settings import key_values
from dodoor.tools.inputs import load_inputs
from workloads.load import scale_to_load

METRICS: tuple[tuple[str, str], ...] = (
    ("mean_makespan_s", "mean makespan (s)"),
    ("p99_makespan_s", "p99 makespan (s)"),
    ("msgs_per_task", "scheduling messages per task"),
    ("snapshot_age_ms", "mean snapshot age (ms)"),
)
RESULT_COLUMNS = ("mean_makespan_s", "p99_makespan_s", "msgs_per_task", "bytes_per_task",
                  "snapshot_age_ms", "snapshots", "wall_s")


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``load`` None means the trace's own timing."""

    policy: str
    params: tuple[tuple[str, str], ...]
    load: float | None
    trace: str | None
    cluster: str = "paper100"
    limit: int | None = None
    seed: int = 0
    schedulers: int = 1
    # realistic conditions (dodoor.sim.conditions): SimSettings fields, as sorted items
    conditions: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> str:
        base, _, fixed = self.policy.partition(":")
        items = [fixed] if fixed else []
        items += [f"{k}={v}" for k, v in self.params]
        return f"{base}:{','.join(items)}" if items else base


def parse_loads(text: str) -> list[float | None]:
    """``0.5,0.9,own`` -> [0.5, 0.9, None]."""
    loads: list[float | None] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if item == "own":
            loads.append(None)
            continue
        try:
            value = float(item)
        except ValueError as exc:
            raise ValidationError("load", f"expected a number or 'own', got {item!r}") from exc
        if not value > 0:
            raise ValidationError("load", f"must be > 0, got {value}")
        loads.append(value)
    if not loads:
        raise ValidationError("load", f"no load in {text!r}")
    return loads


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """Repeated ``key=v1,v2`` options -> {key: [v1, v2]} (order kept)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        ((key, values),) = key_values([item], "param", "KEY=V1,V2,...").items()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ValidationError("param", f"expected KEY=V1,V2,..., got {item!r}")
        if key in grid:
            raise ValidationError("param", f"{key!r} given twice")
        grid[key] = vals
    return grid


def make_cells(policy: str, grid: Mapping[str, Sequence[str]], loads: Sequence[float | None],
               trace: str | None, cluster: str = "paper100", limit: int | None = None,
               seed: int = 0, schedulers: int = 1,
               conditions: Mapping[str, Any] | None = None) -> list[Cell]:
    """Every combination of the grid's values at every load; settings checked up front."""
    from dodoor.policies import make_policy_spec

    keys = list(grid)
    cells = []
    for load in loads:
        for combo in itertools.product(*(grid[k] for k in keys)):
            cell = Cell(policy, tuple(zip(keys, combo)), load, trace, cluster, limit, seed,
                        schedulers, tuple(sorted((conditions or {}).items())))
            make_policy_spec(cell.spec)  # a bad key or value fails before any work starts
            cells.append(cell)
    return cells


@functools.lru_cache(maxsize=8)
def _inputs(trace: str | None, cluster: str, limit: int | None, load: float | None):
    return load_inputs(trace, cluster, limit, load)


def run_cell(cell: Cell) -> dict:
    """Simulate one cell; the row holds the grid coordinates and the results."""
    from dodoor.sim.settings import SimSettings
    from dodoor.sim.simulation import simulate

    tasks, nodes = _inputs(cell.trace, cell.cluster, cell.limit, cell.load)
    started = time.perf_counter()
    s = simulate(tasks, nodes, cell.spec,
                 SimSettings(seed=cell.seed, schedulers=cell.schedulers,
                             **dict(cell.conditions))).summary()
    row: dict = {"policy": cell.policy, "load": "own" if cell.load is None else cell.load}
    row.update(dict(cell.params))
    age = s["snapshots"]["mean_age_ms"]
    row.update({
        "mean_makespan_s": s["makespan_ms"]["mean"] / 1000.0,
        "p99_makespan_s": s["makespan_ms"]["p99"] / 1000.0,
        "msgs_per_task": s["messages"]["per_task"],
        "bytes_per_task": s["messages"]["bytes_per_task"],
        "snapshot_age_ms": float("nan") if age is None else age,
        "snapshots": s["snapshots"]["pushes"],
        "wall_s": time.perf_counter() - started,
    })
    return row


Progress = Callable[[int, int, Cell, dict], None]


def check_inputs(cells: Sequence[Cell]) -> None:
    """Load every cell's trace and cluster here, before any worker starts.

    A bad trace, cluster, limit or load then fails as the one error that names
    it, instead of once per worker process and after other cells have run.
    """
    for trace, cluster, limit in dict.fromkeys((c.trace, c.cluster, c.limit) for c in cells):
        tasks, nodes = load_inputs(trace, cluster, limit, None)
        for load in dict.fromkeys(c.load for c in cells if c.trace == trace
                                  and c.cluster == cluster and c.limit == limit):
            if load is not None:
                scale_to_load(tasks, nodes, load)


def run_sweep(cells: Sequence[Cell], jobs: int = 1, progress: Progress | None = None) -> list[dict]:
    """Run every cell (``jobs`` worker processes); rows come back in grid order.

    A cell's error is raised here as itself (every dodoor error pickles); the
    cells not yet started are cancelled rather than run for nothing.
    """
    if jobs < 1:
        raise ValidationError("jobs", f"must be >= 1, got {jobs}")
    rows: list[dict | None] = [None] * len(cells)
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(run_cell, cell): i for i, cell in enumerate(cells)}
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            try:
                rows[i] = future.result()
            except BrokenProcessPool as exc:
                raise DodoorError(f"a sweep worker process died while running {cells[i].spec} "
                                  f"at load {cells[i].load or 'own'} (killed, or out of "
                                  "memory?)") from exc
            if progress is not None:
                progress(done, len(cells), cells[i], rows[i])
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [r for r in rows if r is not None]


def write_csv(rows: Sequence[dict], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def format_markdown(rows: Sequence[dict], keys: Sequence[str]) -> str:
    head = ["load", *keys, "mean s", "p99 s", "msgs/task", "bytes/task", "snapshot age ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["load"]), *(str(r[k]) for k in keys),
                 f"{r['mean_makespan_s']:.1f}", f"{r['p99_makespan_s']:.1f}",
                 f"{r['msgs_per_task']:.3f}", f"{r['bytes_per_task']:.0f}",
                 f"{r['snapshot_age_ms']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmaps(rows: Sequence[dict], keys: Sequence[str], out: Path) -> list[Path]:
    """One PNG per metric of ``METRICS`` (see :mod:`dodoor.sim.heatmaps`)."""
    from dodoor.sim.heatmaps import plot_heatmaps as plot

    return plot(rows, keys, out, METRICS)
