import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dodoor.resources import Task
from node_agent import process_group
from node_agent.app import STATE, create_app
from node_agent.executor import Interrupted
from node_agent.process_executor import LOG_TAIL_BYTES, ProcessExecutor
from node_agent.process_group import GroupHandle
from tests.agent.conftest import enqueue, wait_for

REPO = Path(__file__).resolve().parents[2]

PY = sys.executable


def ptask(tid, code, memory_mb=256.0, duration_ms=1000.0, **kw):
    return Task(tid, 1.0, memory_mb, 0.0, duration_ms, command=(PY, "-c", code), **kw)


async def test_success_captures_output_and_env():
    ex = ProcessExecutor()
    result = await ex.run(ptask("ok", "import os; print('hi', os.environ['DODOOR_CORES'], os.environ['X'])",
                                env={"X": "y"}))
    assert (result.state, result.exit_code, result.reason) == ("succeeded", 0, None)
    assert result.log_tail == "hi 1 y\n"


async def test_nonzero_exit_is_failed_with_code():
    result = await ProcessExecutor().run(ptask("bad", "import sys; print('oops', file=sys.stderr); sys.exit(3)"))
    assert (result.state, result.exit_code, result.reason) == ("failed", 3, "exit code 3")
    assert "oops" in result.log_tail


async def test_memory_limit_exceeded_fails_the_task():
    # 150 MiB limit; the task touches 600 MiB.
    result = await ProcessExecutor().run(ptask("mem", "b = bytearray(600 * 1024 * 1024)", memory_mb=150))
    assert result.state == "failed"
    assert result.exit_code != 0
    assert "MemoryError" in result.log_tail
    # the same allocation within the limit succeeds
    ok = await ProcessExecutor().run(ptask("mem2", "b = bytearray(60 * 1024 * 1024)", memory_mb=400))
    assert ok.state == "succeeded"


async def test_wall_timeout_kills_the_process_group():
    ex = ProcessExecutor(timeout_ms=300)
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await ex.run(ptask("slow", code))
    assert loop.time() - t0 < 5.0
    assert result.state == "failed" and result.exit_code == -9
    assert result.reason == "timed out after 300 ms"


async def test_log_tail_is_bounded_to_the_end():
    result = await ProcessExecutor().run(ptask("loud", "print('x' * 100000 + 'END')"))
    assert len(result.log_tail) <= LOG_TAIL_BYTES
    assert result.log_tail.endswith("END\n")


async def test_missing_command_or_binary_fails_with_reason():
    r1 = await ProcessExecutor().run(Task("n", 1.0, 10.0))
    assert (r1.state, r1.reason) == ("failed", "the process executor needs a command")
    r2 = await ProcessExecutor().run(Task("n", 1.0, 10.0, command=("/nonexistent/binary",)))
    assert r2.state == "failed" and "/nonexistent/binary" in r2.reason


def test_default_wall_limit_scales_with_the_estimate():
    ex = ProcessExecutor()
    assert ex.wall_limit_ms(Task("a", 1.0, 1.0, duration_ms=100.0)) == 60_000.0
    assert ex.wall_limit_ms(Task("a", 1.0, 1.0, duration_ms=30_000.0)) == 300_000.0


async def test_agent_with_process_executor_reports_exit_codes(aiohttp_client, agent_settings):
    client = await aiohttp_client(create_app(agent_settings(executor="process", memory_mb=2000.0)))
    await enqueue(client, ptask("p-ok", "print(1)"))
    await enqueue(client, ptask("p-bad", "raise SystemExit(5)"))
    await enqueue(client, ptask("p-mem", "b = bytearray(800 * 1024 * 1024)", memory_mb=200))

    async def done():
        return client.app[STATE].agent.finished.total() == 3

    await wait_for(done, timeout=20)
    bodies = {t: await (await client.get(f"/v1/tasks/{t}")).json() for t in ("p-ok", "p-bad", "p-mem")}
    assert (bodies["p-ok"]["state"], bodies["p-ok"]["exit_code"]) == ("succeeded", 0)
    assert (bodies["p-bad"]["state"], bodies["p-bad"]["exit_code"]) == ("failed", 5)
    assert bodies["p-mem"]["state"] == "failed" and bodies["p-mem"]["exit_code"] == 1
    assert "MemoryError" in bodies["p-mem"]["log_tail"]
    assert bodies["p-ok"]["log_tail"] == "1\n"


# -- nothing of a task outlives it (issue 13) ----------------------------------------


def gone(pid: int) -> bool:
    """Dead, or a zombie nobody reaped yet (it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def background_task(tid: str, pidfile, then: str = "echo started", quiet: bool = True) -> Task:
    # A quiet child (output elsewhere) is the daemon pattern: nothing ties it to the task.
    child = "sleep 30 >/dev/null 2>&1 &" if quiet else "sleep 30 &"
    return Task(tid, 1.0, 256.0, 0.0, 1000.0,
                command=("sh", "-c", f"{child} echo $! > {pidfile}; {then}"))


async def test_background_child_is_gone_when_the_task_is_reported(tmp_path):
    pidfile = tmp_path / "child.pid"
    result = await ProcessExecutor().run(background_task("bg", pidfile))
    assert result.state == "succeeded" and result.log_tail == "started\n"
    assert gone(int(pidfile.read_text()))


async def test_background_child_holding_the_output_does_not_hold_the_task(tmp_path):
    # asyncio's Process.wait() would wait for the pipe, i.e. for the child's 30 s.
    pidfile = tmp_path / "child.pid"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await ProcessExecutor().run(background_task("bg-pipe", pidfile, quiet=False))
    assert loop.time() - t0 < 5.0
    assert result.state == "succeeded" and result.log_tail == "started\n"
    assert gone(int(pidfile.read_text()))


async def test_background_child_is_gone_when_the_wall_limit_hits(tmp_path):
    pidfile = tmp_path / "child.pid"
    for quiet in (True, False):
        result = await ProcessExecutor(timeout_ms=500).run(
            background_task("bg-slow", pidfile, then="sleep 30", quiet=quiet))
        assert (result.state, result.reason) == ("failed", "timed out after 500 ms")
        assert result.exit_code == -9
        assert gone(int(pidfile.read_text()))


async def test_cancel_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    job = asyncio.ensure_future(ProcessExecutor().run(
        background_task("bg-cancel", pidfile, then="sleep 30")))
    await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert gone(int(pidfile.read_text()))


async def test_on_start_gets_the_group_handle_while_the_task_runs():
    handles = []

    async def on_start(handle: str) -> None:
        group = GroupHandle.decode(handle)
        handles.append(group)
        # the hook runs while the leader exists: its group is findable
        assert [p.pid for p in process_group.members(group)] == [group.pgid]

    result = await ProcessExecutor().run(ptask("h", "import time; time.sleep(0.3)"), on_start)
    assert result.state == "succeeded"
    [group] = handles
    assert group.leader_started is not None
    assert group.boot == psutil.boot_time()
    assert process_group.members(group) == []


async def test_reconcile_kills_an_interrupted_tasks_survivors_and_waits():
    # What a SIGKILLed agent leaves: a task's group (a shell and its child) still running.
    spawned_after = time.time()
    leader = subprocess.Popen(["sh", "-c", "sleep 30; true"], start_new_session=True)
    try:
        group = GroupHandle.of_leader(leader.pid, spawned_after)
        await wait_for(lambda: len(process_group.members(group)) == 2)
        pids = [p.pid for p in process_group.members(group)]
        task = ptask("left", "pass")
        rows = [Interrupted(task, "running", group.encode()),
                Interrupted(ptask("never", "pass"), "queued", None),
                Interrupted(ptask("alien", "pass"), "running", "container-id-of-another-executor")]
        assert await ProcessExecutor().reconcile(rows) == []
        leader.wait(5)  # our child here, so reap it
        assert all(gone(pid) for pid in pids)
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


async def test_reconcile_reports_survivors_it_cannot_kill(monkeypatch):
    monkeypatch.setattr(process_group, "end", lambda group, wait_s: ([41, 42], [42]))
    group = GroupHandle(4242, 1.0, 1.0, psutil.boot_time())
    [found] = await ProcessExecutor().reconcile([Interrupted(ptask("stuck", "pass"), "running",
                                                             group.encode())])
    assert (found.task_id, found.running, found.result.state) == ("stuck", False, "failed")
    assert found.result.reason == "processes [42] of an earlier run could not be killed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_task_leader_dies_with_its_agent(tmp_path):
    # A stand-in agent runs a task through the executor and is SIGKILLed mid-run.
    pidfile = tmp_path / "leader.pid"
    script = (
        "import asyncio, sys\n"
        "from dodoor.resources import Task\n"
        "from node_agent.process_executor import ProcessExecutor\n"
        "async def main():\n"
        "    async def on_start(handle):\n"
        f"        open({str(pidfile)!r}, 'w').write(handle)\n"
        "    await ProcessExecutor().run(Task('t', 1.0, 256.0, command=('sleep', '30')), on_start)\n"
        "asyncio.run(main())\n")
    agent = subprocess.Popen([PY, "-c", script], cwd=str(REPO))
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()):
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.02)
        leader = GroupHandle.decode(pidfile.read_text()).pgid
        assert not gone(leader)
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        deadline = time.monotonic() + 5
        while not gone(leader):
            assert time.monotonic() < deadline, "the task's leader outlived its agent"
            time.sleep(0.02)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


async def test_a_status_written_before_the_agent_died_is_recorded_not_run_again(tmp_path):
    """The shim writes the exit status next to the journal: an agent killed between a
    task's end and the journaling of its result records it after the restart."""
    from node_agent.executor import Interrupted
    from node_agent.process_executor import ProcessExecutor

    exits = str(tmp_path / "exits")
    ledger = tmp_path / "ledger"
    task = Task("ended", 1.0, 256.0, command=("sh", "-c", f"echo ran >> {ledger}; exit 3"))
    handles: list[str] = []

    async def on_start(handle: str) -> None:
        handles.append(handle)

    first = ProcessExecutor(exit_dir=exits)
    result = await first.run(task, on_start)
    assert (result.state, result.exit_code) == ("failed", 3)
    # the agent died here: no journal write, no forget; a new agent reconciles
    again = ProcessExecutor(exit_dir=exits)
    [adopted] = await again.reconcile([Interrupted(task, "running", handles[0])])
    assert (adopted.task_id, adopted.running) == ("ended", False)
    assert (adopted.result.state, adopted.result.exit_code) == ("failed", 3)
    assert "after an agent restart" in adopted.result.reason
    assert ledger.read_text() == "ran\n"  # it ran once
    await again.forget("ended")
    assert await ProcessExecutor(exit_dir=exits).reconcile(
        [Interrupted(task, "running", handles[0])]) == []  # forgotten: nothing recorded


async def test_the_shim_keeps_exit_codes_and_signal_deaths(tmp_path):
    from node_agent.process_executor import ProcessExecutor

    ex = ProcessExecutor(exit_dir=str(tmp_path / "exits"))
    ok = await ex.run(Task("ok", 1.0, 256.0, command=("true",)))
    assert (ok.state, ok.exit_code) == ("succeeded", 0)
    killed = await ex.run(Task("sig", 1.0, 256.0, command=("sh", "-c", "kill -TERM $$")))
    assert killed.state == "failed" and killed.reason == "killed by signal 15"


async def test_a_task_whose_handle_never_reached_the_journal_is_found_and_adopted(tmp_path):
    """The agent died between the spawn and the journal write of the handle: the
    task's processes carry its exit file in their environment, and are adopted."""
    from node_agent.executor import Interrupted
    from node_agent.process_executor import ProcessExecutor

    exits = str(tmp_path / "exits")
    task = Task("nohandle", 1.0, 256.0, command=("sleep", "1.5"))
    first = ProcessExecutor(exit_dir=exits)
    running = asyncio.ensure_future(first.run(task))
    await asyncio.sleep(0.5)  # it runs; no on_start, so no handle was journaled
    again = ProcessExecutor(exit_dir=exits)
    [adopted] = await again.reconcile([Interrupted(task, "running", None)])
    assert (adopted.task_id, adopted.running) == ("nohandle", True)
    result = await again.wait_adopted("nohandle")
    assert (result.state, result.exit_code) == ("succeeded", 0)
    await running
