"""The chaos test's invariants, checked from the ledger and the schedulers' answers.

(a) every accepted id is in exactly one terminal state (``succeeded``,
    ``failed``, ``lost``) and every scheduler gives that same answer for it; a
    terminal answer the client read during the run is that final one too;
(b) no id ever ran two copies at once: a later copy started before an earlier
    one's ``end``, or while the earlier one still held the id's lock (it was
    provably alive, see :mod:`tests.faults.chaos_ledger`);
(c) an id runs more than once only because its agent was SIGKILLed while it ran:
    every copy but the last started on a node that was then SIGKILLed before
    the copy wrote ``end`` — or, docs/guarantees.md "The unheard end", after it
    (the store had not heard the end), and the id was then answered ``lost`` and
    resubmitted (the ledger cannot see report answers, so any later kill counts);
(e) an id a scheduler calls ``succeeded`` has a copy in the ledger that wrote ``end``;
(m) an id that ran on a node no scheduler placed it on (rebalancing moved it) is
    answered, at every scheduler, with the node where its last copy ran.

Each violation names the id, what happened to it, and the fault that most
plausibly caused it (:func:`causes`); the attribution is for the reader, the
verdict does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.faults.chaos_client import TERMINAL, MidrunAnswer, TaskRecord, answer_text, counted
from tests.faults.chaos_faults import Fault
from tests.faults.chaos_ledger import Copy, LedgerView

INVARIANTS = {
    "a": "every accepted id is in one terminal state, the same at every scheduler",
    "b": "no id ran two copies at once",
    "c": "an id ran again only after its agent was SIGKILLed while it ran",
    "e": "a succeeded id has a finished copy in the ledger",
    "m": "a moved id is answered with the node that ran it",
}


@dataclass
class Violation:
    invariant: str
    task_id: str
    cause: str  # a short label used for counting
    text: str
    fault: Fault | None = None


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)

    def by_invariant(self) -> dict[str, list[Violation]]:
        out: dict[str, list[Violation]] = {k: [] for k in INVARIANTS}
        for v in self.violations:
            out[v.invariant].append(v)
        return out


def _kills_of(node: str, faults: list[Fault]) -> list[Fault]:
    return [f for f in faults if f.kind == "agent-kill" and f.target == node]


def _interrupted_by(copy: Copy, faults: list[Fault]) -> Fault | None:
    """The SIGKILL of the copy's node that came while the copy ran, if any.

    The kill landed somewhere in ledger lines ``lines0..lines_hit``; the
    uncertainty goes the product's way: a copy counts as hit if it started by
    ``lines_hit`` (no agent ran on that node between the kill and the restart, so
    such a start is the killed agent's) and had not ended by ``lines0``.
    """
    for f in _kills_of(copy.node, faults):
        started_by = max(f.lines0, f.lines_hit)
        if copy.start_line <= started_by and (copy.end_line is None or copy.end_line > f.lines0):
            return f
    return None


def _unheard_end(copy: Copy, record: TaskRecord | None, faults: list[Fault]) -> Fault | None:
    """The SIGKILL of the copy's node after its end that left the end unheard: the id
    was answered ``lost`` and resubmitted after that kill (docs/guarantees.md)."""
    if record is None or copy.end_line is None:
        return None
    resubmits = [a.ledger0 for a in record.attempts if a.kind == "resubmit-lost"]
    for f in _kills_of(copy.node, faults):
        if f.lines0 >= copy.end_line and any(at >= f.ledger0 for at in resubmits):
            return f
    return None


def _overlaps(att_ledger0: int, att_ledger1: int, f: Fault) -> bool:
    return att_ledger0 <= f.ledger1 and att_ledger1 >= f.ledger0


def causes(record: TaskRecord | None, copies: list[Copy], earlier: Copy | None,
           faults: list[Fault]) -> list[tuple[str, Fault | None]]:
    """Plausible causes of an id running (or being placed) more than once, best first.

    ``earlier`` is the copy the later one should not have followed; ``copies`` all
    copies of the id (their nodes tell which agent faults can matter).
    """
    found: list[tuple[str, Fault | None]] = []
    if earlier is not None:
        kill = _interrupted_by(earlier, faults)
        if kill is not None:
            label = ("agent-kill: copy kept running, restart ran another" if earlier.end_line
                     else "agent-kill: restart re-ran it")
            found.append((label, kill))
        elif earlier.end_line is not None:
            # ended before the kill, but ran again on the same node after the restart:
            # the result had not reached the journal yet
            for f in _kills_of(earlier.node, faults):
                if earlier.end_line <= f.lines0 and any(
                        c.node == earlier.node and c.start_line > f.lines0 for c in copies):
                    found.append(("agent-kill just after it ended (result not journaled): "
                                  "restart re-ran it", f))
                    break
    attempts = record.attempts if record else []
    accepted = [a for a in attempts if a.accepted]
    for sched in sorted({a.sched for a in accepted}):
        mine = [a for a in accepted if a.sched == sched]
        for a, b in zip(mine, mine[1:]):
            if a.node == b.node:
                continue
            restart = next((f for f in faults if f.kind == "scheduler-kill"
                            and f.target == f"sched-{sched}"
                            and a.ledger1 <= f.ledger0 <= b.ledger0), None)
            away = next((f for f in faults if f.kind in ("agent-stop", "agent-kill")
                         and f.target == a.node and _overlaps(b.ledger0, b.ledger1, f)), None)
            if b.kind == "resubmit-lost":
                # the client was told `lost` while the node lived: which fault left it
                # out of this scheduler's view (the last one before the answer)
                before = [f for f in faults if f.ledger0 <= b.ledger0]
                last = before[-1] if before else None
                found.append((f"client resubmitted a `lost` answer for a live node (out of "
                              f"the view after {last.kind if last else 'no fault'})", last))
            elif restart is not None:
                found.append(("scheduler restarted, forgot the id; a resubmission placed it again",
                              restart))
            elif away is not None:
                found.append(("resubmitted while its node was out of the view: placed again",
                              away))
            else:
                found.append(("the same scheduler placed it again on another node", None))
    if record is not None:
        placed = record.accepted_by()
        nodes = set().union(*placed.values()) if placed else set()
        if len(placed) > 1 and len(nodes) > 1:
            found.append(("placed by both schedulers (resubmitted to the other)", None))
    ran_on = {c.node for c in copies}
    for f in faults:
        hit = [a for a in attempts if _overlaps(a.ledger0, a.ledger1, f)]
        if not hit:
            continue
        if f.kind == "agent-stop" and f.target in ran_on:
            found.append(("agent-stop during its enqueue (timed out, failed over)", f))
        elif f.kind == "agent-kill" and f.target in ran_on:
            found.append(("agent-kill during its enqueue (failed over)", f))
        elif f.kind == "scheduler-kill" and any(a.status is None for a in hit):
            found.append(("scheduler killed mid-submission, retried elsewhere", f))
    return found or [("unexplained", None)]


def _copies(view: LedgerView, task_id: str) -> str:
    copies = view.copies.get(task_id, [])
    if not copies:
        return "ledger: never started"
    return "ledger: " + "; ".join(c.describe() for c in copies)


def _also(found: list[tuple[str, Fault | None]]) -> str:
    others = [label for label, _ in found[1:]]
    return f" (also possible: {'; '.join(others)})" if others else ""


def _history(record: TaskRecord | None) -> str:
    if record is None:
        return "never submitted by this run"
    return "; ".join(a.describe() for a in record.attempts)


def _bad_answer(rec: TaskRecord, sched: int, code: int | None, body: dict,
                faults: list[Fault]) -> tuple[str, Fault | None]:
    """Why one scheduler's answer is not a terminal state, in words that count well."""
    placed = rec.accepted_by()
    if code == 404 and sched not in placed:
        return "404 where not placed", None
    if code == 404:
        accepted_at = min(a.ledger1 for a in rec.attempts if a.accepted and a.sched == sched)
        restart = next((f for f in faults if f.kind == "scheduler-kill"
                        and f.target == f"sched-{sched}" and f.ledger0 >= accepted_at), None)
        return ("404 where placed, restarted since" if restart else "404 where placed"), restart
    if code == 200:
        return f"still {body.get('state')}", None
    return f"answered {code if code is not None else 'nothing'}", None


def check_a(records: dict[str, TaskRecord], finals: dict[str, list[tuple[int | None, dict]]],
            view: LedgerView, faults: list[Fault],
            midrun: dict[str, list[MidrunAnswer]] | None = None) -> list[Violation]:
    """(a), plus: a terminal answer read during the run is the final one (terminal is final).

    An id may fail in two ways (a wrong final answer and a changed one); each is
    a violation of its own, so the causes count separately.
    """
    out = []
    for tid, answers in finals.items():
        rec = records[tid]
        texts = [f"sched-{s}: {answer_text(code, body)}" for s, (code, body) in enumerate(answers)]
        where = f"{tid}: {', '.join(texts)} — {_history(rec)}; {_copies(view, tid)}"
        bad = [_bad_answer(rec, s, code, body, faults) for s, (code, body) in enumerate(answers)
               if not (code == 200 and body.get("state") in TERMINAL)]
        if bad:
            label = " + ".join(sorted({b[0] for b in bad}))
            fault = next((f for _, f in bad if f is not None), None)
            out.append(Violation("a", tid, label, where, fault))
        else:
            seen = {(body.get("state"), body.get("node")) for _, body in answers}
            if len(seen) > 1:
                states = {st for st, _ in seen}
                cause = ("schedulers disagree on the state" if len(states) > 1
                         else "schedulers disagree on the node")
                out.append(Violation("a", tid, cause, where))
        flagged: set[int] = set()  # one per scheduler and id is enough
        for m in (midrun or {}).get(tid, ()):
            code, body = answers[m.sched]
            if m.sched in flagged or code != 200 or body.get("state") not in TERMINAL:
                continue  # the final answer is wrong already (reported above)
            if m.state == "lost" and any(
                    a.kind == "resubmit-lost" and a.ledger0 >= m.ledger for a in rec.attempts):
                continue  # the client resubmitted it: the new run's end is the answer
            if (m.state, m.node) == (body.get("state"), body.get("node")):
                continue
            flagged.add(m.sched)
            why = f" ({m.reason})" if m.reason else ""
            label = (f"read `{m.state}` mid-run, finally `{body.get('state')}`"
                     if m.state != body.get("state")
                     else f"read `{m.state}` mid-run on one node, finally on another")
            away = next((f for f in faults if f.kind in ("agent-stop", "agent-kill")
                         and f.target == m.node and f.ledger0 <= m.ledger <= f.ledger1), None)
            out.append(Violation(
                "a", tid, label,
                f"{tid}: sched-{m.sched} answered {m.state}@{m.node}{why} at ledger byte "
                f"{m.ledger}, finally {answer_text(code, body)}"
                f"{' [' + away.describe() + ']' if away else ''} — {_history(rec)}; "
                f"{_copies(view, tid)}", away))
    return out


def check_b(view: LedgerView, records: dict[str, TaskRecord],
            faults: list[Fault]) -> list[Violation]:
    out = []
    for tid, copies in view.copies.items():
        for i, later in enumerate(copies[1:], start=1):
            running = [c for c in copies[:i]
                       if c.end_line is not None and c.end_line > later.start_line]
            if not running and not later.lock_held:
                continue
            earlier = running[0] if running else next(
                (c for c in reversed(copies[:i]) if c.end_line is None), copies[i - 1])
            found = causes(records.get(tid), copies, earlier, faults)
            label, fault = found[0]
            out.append(Violation(
                "b", tid, label,
                f"{tid}: copy {i + 1} ({later.describe()}) started while copy "
                f"({earlier.describe()}) was still running; cause: {label}"
                f"{' [' + fault.describe() + ']' if fault else ''}{_also(found)} — "
                f"{_history(records.get(tid))}",
                fault))
            break  # one violation per id
    return out


def check_c(view: LedgerView, records: dict[str, TaskRecord],
            faults: list[Fault]) -> list[Violation]:
    out = []
    for tid, copies in view.copies.items():
        if len(copies) < 2:
            continue
        for copy in copies[:-1]:
            if (_interrupted_by(copy, faults) is not None
                    or _unheard_end(copy, records.get(tid), faults) is not None):
                continue
            kills = ", ".join(f"{f.lines0}..{f.lines_hit}" for f in _kills_of(copy.node, faults))
            found = causes(records.get(tid), copies, copy, faults)
            label, fault = found[0]
            out.append(Violation(
                "c", tid, label,
                f"{tid}: started {len(copies)} times ("
                + "; ".join(c.describe() for c in copies)
                + f"); the copy on {copy.node} was not hit by a SIGKILL of {copy.node} "
                f"(its kills at ledger lines {kills or 'none'}); cause: {label}"
                f"{' [' + fault.describe() + ']' if fault else ''}{_also(found)} — "
                f"{_history(records.get(tid))}",
                fault))
            break
    return out


def check_e(view: LedgerView, finals: dict[str, list[tuple[int | None, dict]]],
            records: dict[str, TaskRecord]) -> list[Violation]:
    out = []
    for tid, answers in finals.items():
        if not any(code == 200 and body.get("state") == "succeeded" for code, body in answers):
            continue
        copies = view.copies.get(tid, [])
        if not any(c.end_line is not None for c in copies):
            what = "; ".join(c.describe() for c in copies) or "never started"
            out.append(Violation("e", tid, "succeeded without a finished copy",
                                 f"{tid}: reads succeeded but the ledger shows {what} — "
                                 f"{_history(records[tid])}"))
    return out


def moved_ids(view: LedgerView, records: dict[str, TaskRecord]) -> list[str]:
    """Ids whose last copy ran on a node no scheduler placed them on: moved by rebalancing."""
    out = []
    for tid, copies in view.copies.items():
        rec = records.get(tid)
        placed = set().union(*rec.accepted_by().values()) if rec and rec.accepted_by() else set()
        if copies and placed and copies[-1].node not in placed:
            out.append(tid)
    return out


def check_m(view: LedgerView, finals: dict[str, list[tuple[int | None, dict]]],
            records: dict[str, TaskRecord]) -> list[Violation]:
    out = []
    for tid in moved_ids(view, records):
        ran = view.copies[tid][-1].node
        answers = finals.get(tid, [])
        wrong = [answer_text(code, body) for code, body in answers
                 if code == 200 and body.get("state") in TERMINAL and body.get("node") != ran]
        if wrong:
            out.append(Violation("m", tid, "moved id answered with another node",
                                 f"{tid}: ran on {ran}, answered {', '.join(wrong)} — "
                                 f"{_history(records[tid])}; {_copies(view, tid)}"))
    return out


def check_all(records: dict[str, TaskRecord], finals: dict[str, list[tuple[int | None, dict]]],
              view: LedgerView, faults: list[Fault],
              midrun: dict[str, list[MidrunAnswer]] | None = None) -> Verdict:
    """Every invariant; ``finals`` holds the accepted ids only, ``midrun`` the terminal
    answers the client read during the run."""
    return Verdict(check_a(records, finals, view, faults, midrun) + check_b(view, records, faults)
                   + check_c(view, records, faults) + check_e(view, finals, records)
                   + check_m(view, finals, records))


def format_verdict(verdict: Verdict, faults: list[Fault], examples: int = 5) -> str:
    """Per invariant: PASS, or the failing id count by cause with example ids."""
    lines = []
    for key, violations in verdict.by_invariant().items():
        if not violations:
            lines.append(f"({key}) {INVARIANTS[key]}: PASS")
            continue
        ids = len({v.task_id for v in violations})
        lines.append(f"({key}) {INVARIANTS[key]}: FAIL for {ids} id(s)"
                     + (" (an id may count under two causes)" if ids < len(violations) else ""))
        by_cause: dict[str, list[Violation]] = {}
        for v in violations:
            by_cause.setdefault(v.cause, []).append(v)
        for cause, vs in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
            ids = ", ".join(v.task_id for v in vs[:8])
            lines.append(f"    {len(vs):5d}  {cause}  (e.g. {ids})")
            for v in vs[:examples]:
                lines.append(f"           {v.text}")
    per_fault = counted(f"({v.invariant}) {v.fault.kind} {v.fault.target} at {v.fault.t0:.1f}s"
                        for v in verdict.violations if v.fault is not None)
    if per_fault:
        lines.append("violations attributed to a fault round:")
        lines.extend(f"    {n:5d}  {k}" for k, n in per_fault.items())
    return "\n".join(lines)
