"""The evaluation report: policy table with ratios to dodoor, sim versus live, ranking.

Everything here reads summary objects (the ``summary.json`` schema shared by
``dodoor simulate`` and ``dodoor replay``), so a report can be rebuilt from
saved summaries alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from dodoor.sim.report import LATE_MARK, PLACED, binds_late, late_note

SUBJECT = "dodoor"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    read: Callable[[dict], float]
    scale: float = 1.0  # printed value = read(summary) * scale
    digits: int = 3


METRICS: tuple[Metric, ...] = (
    Metric("msgs_per_task", "msgs/task", lambda s: s["messages"]["per_task"]),
    Metric("throughput", "tasks/s", lambda s: s["throughput_tps"]),
    Metric("mean", "makespan mean s", lambda s: s["makespan_ms"]["mean"], 1e-3),
    Metric("p50", "p50 s", lambda s: s["makespan_ms"]["p50"], 1e-3),
    Metric("p99", "p99 s", lambda s: s["makespan_ms"]["p99"], 1e-3),
    Metric("p999", "p99.9 s", lambda s: s["makespan_ms"]["p999"], 1e-3),
    # In the simulator, late binding places a task when a reservation confirms, so
    # this includes that wait (the simulated table marks such rows and explains why).
    Metric("sched", PLACED, lambda s: s["sched_latency_ms"]["mean"], 1.0, 2),
)
# The metrics the sim-versus-live target is stated for.
TARGET_METRICS = ("mean", "msgs_per_task")


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def table_rows(summaries: Sequence[dict], subject: str = SUBJECT) -> list[dict]:
    """Per policy: each metric's value and its ratio to ``subject`` (nan without one)."""
    base = next((s for s in summaries if s["policy"] == subject), None)
    rows = []
    for s in summaries:
        row: dict = {"policy": s["policy"]}
        for m in METRICS:
            value = m.read(s)
            row[m.key] = value
            row[m.key + "_ratio"] = ratio(value, m.read(base)) if base is not None else math.nan
        rows.append(row)
    return rows


def _num(value: float, digits: int) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(summaries: Sequence[dict], subject: str = SUBJECT,
                   mark_late: bool = False) -> str:
    """A markdown table: every metric followed by its ratio to ``subject`` (×dodoor).

    With ``mark_late``, a late-binding policy's placement time carries the mark
    that :func:`dodoor.sim.report.late_note` explains.
    """
    head = ["policy"]
    for m in METRICS:
        head += [m.label, f"×{subject}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table_rows(summaries, subject):
        cells = [row["policy"]]
        for m in METRICS:
            late = mark_late and m.label == PLACED and binds_late(row["policy"])
            mark = "\\" + LATE_MARK if late else ""  # escaped: a bare * may start emphasis
            cells += [_num(row[m.key] * m.scale, m.digits) + mark, _num(row[m.key + "_ratio"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sim_vs_live(sim: Sequence[dict], live: Sequence[dict]) -> list[dict]:
    """Per policy in both: each metric's (live − sim) / sim."""
    by_policy = {s["policy"]: s for s in sim}
    out = []
    for lv in live:
        sm = by_policy.get(lv["policy"])
        if sm is None:
            continue
        row: dict = {"policy": lv["policy"]}
        for m in METRICS:
            row[m.key] = ratio(m.read(lv) - m.read(sm), m.read(sm))
        out.append(row)
    return out


def markdown_sim_vs_live(sim: Sequence[dict], live: Sequence[dict]) -> str:
    head = ["policy"] + [m.label for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sim_vs_live(sim, live):
        cells = [row["policy"]] + [_pct(row[m.key]) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100.0 * value:+.1f}%"


def ranking(summaries: Sequence[dict], key: str = "mean") -> list[str]:
    """Policies from best to worst by a makespan metric (lower is better)."""
    metric = next(m for m in METRICS if m.key == key)
    return [s["policy"] for s in sorted(summaries, key=lambda s: (metric.read(s), s["policy"]))]


def relative_spread(summary: dict) -> float:
    """The seed-to-seed sd of a simulated mean makespan over its mean (0 when unknown)."""
    spread = summary.get("seed_spread", {}).get("makespan_mean_ms")
    if not spread or not spread.get("mean"):
        return 0.0
    return spread["sd"] / spread["mean"]


def ranking_agreement(sim: Sequence[dict], live: Sequence[dict],
                      tie: float = 0.03) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """Compare the mean-makespan orders pair by pair.

    Two policies are tied in a run when their means differ (relative) by less than
    ``tie`` or than twice their combined seed-to-seed spread in the simulator: one
    run cannot order them, and a swap there is chance, not a wrong model. Returns
    the verdict ("same", "same up to ties", "DIFFERENT"), the pairs ordered
    oppositely although both runs separate them, and the swapped tied pairs.
    """
    mean = next(m for m in METRICS if m.key == "mean")
    a = {s["policy"]: mean.read(s) for s in sim}
    b = {s["policy"]: mean.read(s) for s in live}
    rsd = {s["policy"]: relative_spread(s) for s in sim}
    common = [p for p in ranking(sim) if p in b]
    opposite: list[tuple[str, str]] = []
    tied: list[tuple[str, str]] = []
    for i, p in enumerate(common):
        for q in common[i + 1:]:
            tol = max(tie, 2.0 * math.hypot(rsd[p], rsd[q]))
            da, db = ratio(a[q] - a[p], a[p]), ratio(b[q] - b[p], b[p])
            if (da > 0) == (db > 0):
                continue
            (tied if abs(da) < tol or abs(db) < tol else opposite).append((p, q))
    verdict = "DIFFERENT" if opposite else ("same up to ties" if tied else "same")
    return verdict, opposite, tied


def markdown_seed_spread(sim: Sequence[dict]) -> str:
    """One line: each simulated policy's mean makespan over seeds, mean ± sd."""
    parts = []
    for s in sim:
        spread = s.get("seed_spread")
        if spread:
            m = spread["makespan_mean_ms"]
            parts.append(f"{s['policy']} {m['mean'] / 1000:.3f} ± {m['sd'] / 1000:.3f} s")
    if not parts:
        return ""
    n = sim[0].get("seed_spread", {}).get("seeds", 0)
    return f"Simulated mean makespan over {n} seeds (mean ± sd): " + "; ".join(parts) + "."


def target_check(sim: Sequence[dict], live: Sequence[dict], limit: float = 0.15,
                 tie: float = 0.03) -> list[str]:
    """Sentences on the brief's targets: same ranking, |difference| ≤ limit."""
    lines = []
    verdict, opposite, tied = ranking_agreement(sim, live, tie)
    detail = ""
    if opposite:
        detail += "; ordered oppositely: " + ", ".join(f"{p}/{q}" for p, q in opposite)
    if tied:
        detail += (f"; swapped within a tie (< {100 * tie:.0f}% or 2 sd over seeds): "
                   + ", ".join(f"{p}/{q}" for p, q in tied))
    lines.append(f"Ranking by mean makespan — simulated: {', '.join(ranking(sim))}; live: "
                 f"{', '.join(ranking(live))} ({verdict}{detail}).")
    for row in sim_vs_live(sim, live):
        for key in TARGET_METRICS:
            diff = row[key]
            label = next(m.label for m in METRICS if m.key == key)
            verdict = "within" if abs(diff) <= limit else "OUTSIDE"
            lines.append(f"{row['policy']}: {label} live vs sim {_pct(diff)} ({verdict} "
                         f"±{100 * limit:.0f}%).")
    return lines


def placement_messages(summary: dict, leave_out: tuple[str, ...] = ("node_state",)) -> float:
    """Scheduling messages per task without ``leave_out`` (nan without a by_type breakdown)."""
    from dodoor.messages import SCHEDULING_TYPES

    by_type = summary["messages"].get("by_type")
    if by_type is None or not summary.get("tasks"):
        return math.nan
    kept = sum(n for kind, n in by_type.items() if kind in SCHEDULING_TYPES
               and kind not in leave_out)
    return kept / summary["tasks"]


def markdown_placement_messages(sim: Sequence[dict], live: Sequence[dict]) -> str:
    """Messages per task without node state reports, sim versus live."""
    by_sim = {s["policy"]: s for s in sim}
    lines = ["| policy | sim | live | live vs sim |", "|---|---|---|---|"]
    for lv in live:
        sm = by_sim.get(lv["policy"])
        if sm is None:
            continue
        a, b = placement_messages(sm), placement_messages(lv)
        lines.append(f"| {lv['policy']} | {_num(a, 3)} | {_num(b, 3)} | {_pct(ratio(b - a, a))} |")
    return "\n".join(lines)


def render(sim: Sequence[dict], live: Sequence[dict], command: str,
           figures: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """The whole ``report.md``."""
    parts = ["# dodoor evaluation", "", f"Command: `{command}`", ""]
    if sim:
        parts += ["## Simulated", "", markdown_table(sim, mark_late=True), ""]
        # Only the simulator is known to place a late-bound task at its confirm;
        # a live run's placement time is whatever the agent stamps.
        note = late_note([s["policy"] for s in sim], width=10_000)
        if note:
            parts += ["\\" + note, ""]  # escaped: a line starting with * is a list item
        if markdown_seed_spread(sim):
            parts += [markdown_seed_spread(sim), ""]
    if live:
        parts += ["## Live", "", markdown_table(live), ""]
    if sim and live:
        parts += ["## Sim versus live", "", "(live − sim) / sim per metric:", "",
                  markdown_sim_vs_live(sim, live), ""]
        parts += [f"- {line}" for line in target_check(sim, live)] + [""]
        parts += ["Scheduling messages per task without `node_state` (the part of the "
                  "accounting that does not depend on when agents report):", "",
                  markdown_placement_messages(sim, live), ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if figures:
        parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(parts)
