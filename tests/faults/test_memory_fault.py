"""A task exceeding its memory limit in the process executor fails with a reason; the agent is unharmed."""

from __future__ import annotations

import sys

import psutil
import pytest

from tests.faults.conftest import count

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HOG = "b = bytearray(600 * 1024 * 1024); print('allocated')"
OK = "import sys; print('ok'); sys.exit(0)"


def _task(tid: str, code: str, memory_mb: int) -> dict:
    return {"id": tid, "cores": 1, "memory_mb": memory_mb, "duration_ms": 200,
            "command": [sys.executable, "-c", code]}


def test_memory_hog_fails_with_a_reason_and_the_agent_keeps_working(cluster):
    c = cluster(agents=2, executor="process", slots=2)
    rss_before = [psutil.Process(a.proc.pid).memory_info().rss for a in c.agents]
    tasks = ([_task(f"hog{i}", HOG, 150) for i in range(4)]
             + [_task(f"ok{i}", OK, 150) for i in range(12)])
    code, body = c.submit(0, tasks)
    assert code == 202, body
    ids = [t["id"] for t in tasks]
    states = c.wait_terminal(0, ids, timeout=90)
    assert count(states.values()) == {"failed": 4, "succeeded": 12}
    for i in range(4):
        st = c.status(0, f"hog{i}")
        assert st["state"] == "failed" and st["exit_code"] == 1
        assert st["reason"] == "exit code 1"
        node = next(a for a in c.agents if c.agent_knows(a, f"hog{i}"))
        tail = c.get(f"{node.url}/v1/tasks/hog{i}")[1]["log_tail"]
        assert "MemoryError" in tail and "allocated" not in tail
    # the agents are unharmed: alive, healthy, small, and still running tasks
    for a, before in zip(c.agents, rss_before):
        assert a.proc.poll() is None
        assert c.get(a.url + "/healthz")[1]["status"] == "ok"
        assert psutil.Process(a.proc.pid).memory_info().rss < before + 50 * 1024 * 1024
    code, body = c.submit(0, [_task("after", OK, 150)])
    assert code == 202, body
    assert c.wait_terminal(0, ["after"], timeout=30) == {"after": "succeeded"}
