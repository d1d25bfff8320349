"""The comparison table printed after a run, with the dodoor ratios."""

from __future__ import annotations

import textwrap
from typing import Sequence

# The placement column is the mean time from submission until a node holds the
# task. Under late binding (Sparrow) that includes the wait for a reservation to
# reach the head of a node's queue and confirm, which the other policies spend
# queued after placement; so the header names what is measured, such rows are
# marked, and a note under the table says what the mark means.
PLACED = "submit→placed ms"
HEADER = ("policy", "msgs/task", "mean s", "p50 s", "p99 s", PLACED, "tasks/s")
LATE_MARK = "*"


def late_note(policies: Sequence[str], width: int = 88) -> str:
    """The note under a table with late-binding ``policies`` (empty without any)."""
    late = [p for p in dict.fromkeys(policies) if binds_late(p)]
    if not late:
        return ""
    return textwrap.fill(
        f"{LATE_MARK} {', '.join(late)}: late binding. {PLACED} includes the wait for a "
        "reservation to reach the head of a node's queue and confirm. The other policies "
        "place a task at once, and it waits in the node's queue afterwards (in the "
        "makespan, not here).", width=width)


def binds_late(spec: str) -> bool:
    """Whether a policy spec places a task only once a node confirms a reservation."""
    from dodoor.policies import POLICIES, PolicyKind

    factory = POLICIES.get(spec.partition(":")[0])
    return getattr(factory, "kind", None) is PolicyKind.RESERVE


def table_rows(summaries: Sequence[dict]) -> list[tuple[str, ...]]:
    """One row of cells per summary; a late-binding policy's placement time is marked."""
    rows = []
    for s in summaries:
        mk = s["makespan_ms"]
        mark = LATE_MARK if binds_late(s["policy"]) else ""
        rows.append((
            s["policy"], f"{s['messages']['per_task']:.3f}", f"{mk['mean'] / 1000:.1f}",
            f"{mk['p50'] / 1000:.1f}", f"{mk['p99'] / 1000:.1f}",
            f"{s['sched_latency_ms']['mean']:.2f}{mark}", f"{s['throughput_tps']:.2f}",
        ))
    return rows


def format_table(summaries: Sequence[dict]) -> str:
    """The table as aligned text, with a note under it when a policy binds late."""
    rows = [list(HEADER), *map(list, table_rows(summaries))]
    column = HEADER.index(PLACED)
    late = any(binds_late(s["policy"]) for s in summaries)
    if late:
        # unmarked cells get a blank where the mark goes, so the digits line up
        for row in rows:
            if not row[column].endswith(LATE_MARK):
                row[column] += " "
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w)
                       in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if late:
        lines.append(late_note([s["policy"] for s in summaries], width=len(lines[1])))
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
