"""The chaos harness checked on its own: the task ledger, the plan and the invariants.

No cluster here: real task shells for the ledger and its lock, hand-written
ledgers for the checks, so a verdict of ``test_chaos.py`` can be trusted in
both directions (a violation is real, a pass is not a blind spot).
"""

from __future__ import annotations

import os
import random
import subprocess
import time

from tests.faults.chaos_checks import check_a, check_b, check_c, check_e
from tests.faults.chaos_client import Attempt, MidrunAnswer, TaskRecord, make_plan
from tests.faults.chaos_faults import Fault
from tests.faults.chaos_ledger import NODE_ENV, Ledger, task_command


def _run(ledger: Ledger, tid: str, node: str, sleep_ms: int, **kw) -> subprocess.Popen:
    env = {**os.environ, "DODOOR_TASK_ID": tid, NODE_ENV: node}
    return subprocess.Popen(task_command(ledger.path, ledger.lockdir, sleep_ms), env=env, **kw)


def test_the_lock_tells_a_live_copy_from_a_killed_one(tmp_path):
    ledger = Ledger(tmp_path)
    first = _run(ledger, "x", "node-0", 600)
    time.sleep(0.2)
    _run(ledger, "x", "node-1", 10).wait(10)  # while the first copy is alive
    first.wait(10)
    doomed = _run(ledger, "y", "node-0", 5000, start_new_session=True)
    time.sleep(0.2)
    os.killpg(doomed.pid, 9)  # SIGKILL: no end line, but the kernel drops the lock
    doomed.wait(10)
    _run(ledger, "y", "node-0", 10).wait(10)
    view = ledger.parse()
    assert not view.malformed and not view.orphan_ends
    x1, x2 = view.copies["x"]
    assert (x1.lock_held, x2.lock_held) == (False, True)
    assert x2.start_line < x2.end_line < x1.end_line
    y1, y2 = view.copies["y"]
    assert y1.end_line is None and not y2.lock_held and y2.end_line is not None


def test_the_plan_is_seeded_and_resubmits_identical_bodies(tmp_path):
    ledger = Ledger(tmp_path)
    a = make_plan(random.Random("s"), 500, "p-", ledger)
    b = make_plan(random.Random("s"), 500, "p-", ledger)
    assert a == b
    bodies, first, ops = a
    assert len(bodies) == 500
    planned = [tid for op in ops if op.kind in ("batch", "single") for tid in op.ids]
    assert sorted(planned) == sorted(bodies)  # every id once as a new submission
    resubmits = [op for op in ops if op.kind.startswith("resubmit")]
    assert resubmits and {op.kind for op in resubmits} == {"resubmit-same", "resubmit-other"}
    for op in resubmits:
        origins = {first[t] for t in op.ids}
        assert len(origins) == 1
        assert (op.sched in origins) == (op.kind == "resubmit-same")


LEDGER = """\
start t1 100 node-0 free
end t1 100 node-0
start t2 101 node-1 free
start t2 102 node-1 held
end t2 101 node-1
end t2 102 node-1
start t3 103 node-2 free
start t3 104 node-2 free
end t3 104 node-2
start t4 105 node-3 free
end t4 105 node-3
start t4 106 node-0 free
end t4 106 node-0
start t5 107 node-0 free
start t5 108 node-1 free
end t5 107 node-0
end t5 108 node-1
start t6 109 node-3 free
end t6 109 node-3
start t6 110 node-3 free
end t6 110 node-3
start t7 111 node-0 free
start t7 112 node-0 held
end t7 111 node-0
end t7 112 node-0
"""


def _kill(node: str, before: int, gone: int | None = None) -> Fault:
    return Fault("agent-kill", node, 0.0, lines0=before, lines_hit=gone or before)


# node-1 SIGKILLed after line 3 (t2's first copy kept running: an orphan);
# node-2 after line 7 (t3's first copy died with no end); node-3 after line 19
# (t6 had ended, the restart ran it again); node-0's kill was sent after line 21
# and the agent was gone after line 22: t7 started in between, so it was hit
FAULTS = [_kill("node-1", 3), _kill("node-2", 7), _kill("node-3", 19), _kill("node-0", 21, 22)]


def _records(*tids: str) -> dict[str, TaskRecord]:
    return {t: TaskRecord(t, {"id": t}, 0, [Attempt(0, "batch", 0, 0, 202, "node-0")])
            for t in tids}


def test_the_checks_flag_exactly_the_broken_ids(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.path.write_text(LEDGER)
    view = ledger.parse()
    records = _records("t1", "t2", "t3", "t4", "t5", "t6", "t7")
    b = {v.task_id: v for v in check_b(view, records, FAULTS)}
    # the orphans overlap (lock held); t5 by its lines alone
    assert set(b) == {"t2", "t5", "t7"}
    assert b["t2"].cause.startswith("agent-kill: copy kept running")
    assert b["t7"].cause.startswith("agent-kill: copy kept running")
    c = {v.task_id: v for v in check_c(view, records, FAULTS)}
    # t2, t3 and t7 ran again because of a SIGKILL while they ran; t4, t5, t6 did not
    assert set(c) == {"t4", "t5", "t6"}
    assert c["t6"].cause.startswith("agent-kill just after it ended")


def _ok(state: str, node: str) -> tuple[int, dict]:
    return 200, {"state": state, "node": node}


def test_check_a_wants_one_final_terminal_answer_everywhere(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.path.write_text(LEDGER)
    view = ledger.parse()
    records = _records("t1", "t3", "t4", "t5", "t6")
    finals = {
        "t1": [_ok("succeeded", "node-0"), _ok("succeeded", "node-0")],  # fine
        "t3": [_ok("succeeded", "node-2"), (404, {})],  # sched-1 never placed it
        "t4": [_ok("succeeded", "node-0"), _ok("lost", "node-0")],
        "t5": [_ok("running", "node-0"), _ok("running", "node-0")],
        "t6": [_ok("succeeded", "node-3"), _ok("succeeded", "node-3")],
    }
    midrun = {"t6": [MidrunAnswer(0, "lost", "node-3", "node node-3 is gone", 10)],
              "t1": [MidrunAnswer(1, "succeeded", "node-0", None, 5)]}
    a = {v.task_id: v.cause for v in check_a(records, finals, view, [], midrun)}
    assert a == {"t3": "404 where not placed", "t4": "schedulers disagree on the state",
                 "t5": "still running", "t6": "read `lost` mid-run, finally `succeeded`"}
    e = check_e(view, {"t9": [_ok("succeeded", "node-0")] * 2}, {"t9": records["t1"]})
    assert [v.task_id for v in e] == ["t9"]  # succeeded, yet never ran
