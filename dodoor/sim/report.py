"""The comparison table printed after a run, with the dodoor ratios."""

from __future__ import annotations

from typing import Sequence

HEADER = ("policy", "msgs/task", "mean s", "p50 s", "p99 s", "sched ms", "tasks/s")


def table_rows(summaries: Sequence[dict]) -> list[tuple[str, ...]]:
    rows = []
    for s in summaries:
        mk = s["makespan_ms"]
        rows.append((
            s["policy"], f"{s['messages']['per_task']:.3f}", f"{mk['mean'] / 1000:.1f}",
            f"{mk['p50'] / 1000:.1f}", f"{mk['p99'] / 1000:.1f}",
            f"{s['sched_latency_ms']['mean']:.2f}", f"{s['throughput_tps']:.2f}",
        ))
    return rows


def format_table(summaries: Sequence[dict]) -> str:
    rows = [HEADER, *table_rows(summaries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w)
                       in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ratios(summaries: Sequence[dict], subject: str = "dodoor",
           baselines: Sequence[str] = ("power-of-two", "ideal")) -> dict[str, dict[str, float]]:
    """subject/baseline for messages per task and mean and p99 makespan."""
    by_name = {s["policy"]: s for s in summaries}
    out: dict[str, dict[str, float]] = {}
    mine = by_name.get(subject)
    if mine is None:
        return out
    for base in baselines:
        other = by_name.get(base)
        if other is None:
            continue
        out[base] = {
            "msgs_per_task": _div(mine["messages"]["per_task"], other["messages"]["per_task"]),
            "mean_makespan": _div(mine["makespan_ms"]["mean"], other["makespan_ms"]["mean"]),
            "p99_makespan": _div(mine["makespan_ms"]["p99"], other["makespan_ms"]["p99"]),
        }
    return out


def format_ratios(summaries: Sequence[dict], subject: str = "dodoor") -> str:
    lines = []
    for base, r in ratios(summaries, subject).items():
        lines.append(f"{subject}/{base}: msgs/task {r['msgs_per_task']:.3f}  "
                     f"mean makespan {r['mean_makespan']:.3f}  p99 makespan {r['p99_makespan']:.3f}")
    return "\n".join(lines)


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")
