"""``DELETE /v1/tasks/{id}`` on real processes with the process executor: a running
task's process is stopped, a queued one never starts, both end ``cancelled``, at
every scheduler."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from tests.faults.conftest import ProcCluster, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# writes its pid, then sleeps far longer than the test
SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"


def test_cancel_stops_a_running_process_and_a_queued_task_never_starts(tmp_path):
    c = ProcCluster(tmp_path, agents=1, schedulers=2, slots=1, executor="process")
    try:
        pidfile = tmp_path / "pid"
        marker = tmp_path / "queued-ran"
        tasks = [
            {"id": "long", "cores": 1, "memory_mb": 64, "duration_ms": 300_000,
             "command": [sys.executable, "-c", SLEEPER, str(pidfile)]},
            {"id": "behind", "cores": 1, "memory_mb": 64, "duration_ms": 1000,
             "command": [sys.executable, "-c", SLEEPER, str(marker)]},
        ]
        code, body = c.submit(0, tasks)
        assert code == 202, body
        pid = int(poll(lambda: pidfile.exists() and pidfile.read_text(), 20, what="task started"))
        assert c.status(0, "behind")["state"] == "queued"
        url = c.schedulers[1].url  # another scheduler than the one that placed them
        # it learns of them from the store's task index, within one heartbeat of the
        # agent (until then it answers 503, try again: docs/protocol.md)
        poll(lambda: c.states(1, ["long", "behind"]) == {"long": "running", "behind": "queued"},
             10, what="the other scheduler knows both tasks")
        code, got = c.get_method("DELETE", f"{url}/v1/tasks/behind")
        assert code == 200 and got["state"] == "cancelled", got
        code, got = c.get_method("DELETE", f"{url}/v1/tasks/long")
        assert code == 200 and got["state"] == "cancelled", got
        poll(lambda: _gone(pid), 10, what="the cancelled task's process gone")
        # idempotent, and the same answer at every scheduler
        code, got = c.get_method("DELETE", f"{c.schedulers[0].url}/v1/tasks/long")
        assert code == 200 and got["state"] == "cancelled"
        for sched in (0, 1):
            assert c.states(sched, ["long", "behind"]) == {"long": "cancelled",
                                                           "behind": "cancelled"}
        time.sleep(0.5)  # the freed slot would have started "behind" by now
        assert not marker.exists()
        # an ended task is not cancelled: 409 naming its state
        code, body = c.submit(0, [{"id": "quick", "cores": 1, "memory_mb": 64,
                                   "duration_ms": 100, "command": ["true"]}])
        assert code == 202, body
        c.wait_terminal(0, ["quick"], 20)
        code, got = c.get_method("DELETE", f"{url}/v1/tasks/quick")
        assert code == 409 and got["state"] == "succeeded", got
        assert c.get_method("DELETE", f"{url}/v1/tasks/nope")[0] == 404
    finally:
        c.stop()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
