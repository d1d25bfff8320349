"""A real ``dodoor agent --preempt --executor process`` SIGKILLed right after a preemption.

The low-class task was stopped and waits again, the high-class one runs (its
processes outlive the agent: the executor's exit files). The restarted agent
adopts the high task (or records the exit status it left), runs the low one again once there is room, and both end
``succeeded`` once; neither ever reads ``lost`` or ``failed``, and the low
task's processes never ran as two copies at once.
"""

import signal

import aiohttp
import pytest

from dodoor.wire import CONTENT_TYPE, Enqueue, encode
from tests.agent.conftest import make_task, wait_for
from tests.agent.test_daemon import AUTH, free_port, healthy, spawn, stand_in_store, task_states


def _lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
async def test_sigkill_right_after_a_preemption_recovers_one_consistent_state(
        aiohttp_server, tmp_path):
    _, loadstore = await stand_in_store(aiohttp_server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    journal, log_path = str(tmp_path / "agent.sqlite"), tmp_path / "agent.log"
    low_runs, high_runs = tmp_path / "low-runs", tmp_path / "high-runs"
    low = make_task("low", cores=2.0, duration_ms=1500.0, priority=0,
                    command=("sh", "-c", f"echo $$ >> {low_runs}; exec sleep 1.5"))
    high = make_task("high", cores=1.0, duration_ms=1500.0, priority=2,
                     command=("sh", "-c", f"echo $$ >> {high_runs}; exec sleep 1.5"))
    seen: dict[str, set] = {"low": set(), "high": set()}

    async with aiohttp.ClientSession() as http:
        async def states():
            out = await task_states(http, base, seen)
            for tid, state in out.items():
                seen[tid].add(state)
            return out

        async def submit(task):
            async with http.post(base + "/internal/enqueue",
                                 data=encode(Enqueue(task, "sched-0")),
                                 headers={**AUTH, "Content-Type": CONTENT_TYPE}) as r:
                assert r.status == 202

        async def preempted():
            s = await states()
            return s == {"low": "queued", "high": "running"} and len(_lines(high_runs)) == 1

        proc = spawn(port, loadstore, journal, log_path, node_id="node-p", executor="process",
                     extra=("--preempt",))
        try:
            await wait_for(lambda: healthy(http, base), timeout=20)
            await submit(low)
            await wait_for(lambda: len(_lines(low_runs)) == 1, timeout=10)
            await submit(high)
            await wait_for(preempted, timeout=10, interval=0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()

        proc = spawn(port, loadstore, journal, log_path, node_id="node-p", executor="process",
                     extra=("--preempt",))
        try:
            await wait_for(lambda: healthy(http, base), timeout=20)
            async def done():
                s = await states()
                return s if all(v in ("succeeded", "failed", "lost") for v in s.values()) else None
            final = await wait_for(done, timeout=30, interval=0.05)
            assert final == {"low": "succeeded", "high": "succeeded"}
            async with http.get(base + "/healthz") as r:
                assert (await r.json())["queued"] == 0
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    # the high task was adopted, never re-run; the low one ran twice, one copy at a time
    assert len(_lines(high_runs)) == 1 and len(_lines(low_runs)) == 2
    assert seen["low"] <= {"running", "queued", "succeeded"}
    assert seen["high"] <= {"queued", "running", "succeeded"}
    log_text = log_path.read_text()
    assert "preempting low for high (class 2)" in log_text
    # adopted while it ran, or its exit status recorded if it ended during the restart
    assert "adopting it" in log_text or "task high ended (status 0)" in log_text
