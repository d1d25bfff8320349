"""The process executor's launcher: real processes, killed at the awkward moments."""

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dodoor.resources import Task
from node_agent.executor import Interrupted
from node_agent.process_executor import ProcessExecutor
from node_agent.process_group import GroupHandle
from tests.agent.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def launchers(parent: int | None = None) -> list[psutil.Process]:
    """The launcher processes that ``parent`` (default: this process) started."""
    found = []
    for child in psutil.Process(parent).children():
        try:
            if any(arg.endswith("launcher.py") for arg in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sh_task(tid: str, script: str) -> Task:
    return Task(tid, 1.0, 256.0, 0.0, 1000.0, command=("sh", "-c", script))


async def test_the_agent_forks_no_task_itself_and_close_reaps_the_launcher():
    ex = ProcessExecutor()
    before = {p.pid for p in launchers()}
    result = await ex.run(sh_task("ppid", "echo parent=$PPID"))
    [launcher] = [p for p in launchers() if p.pid not in before]
    assert result.log_tail == f"parent={launcher.pid}\n"
    await ex.close()
    assert gone(launcher.pid)
    assert launcher.pid not in {p.pid for p in launchers()}  # reaped, not a zombie


async def test_a_running_task_outlives_its_launcher_and_keeps_its_exit_status(tmp_path):
    ex = ProcessExecutor(exit_dir=str(tmp_path / "exits"))
    mark = tmp_path / "running"
    try:
        job = asyncio.ensure_future(ex.run(sh_task("outlives", f"touch {mark}; sleep 0.5; exit 3")))
        await wait_for(mark.exists)
        [launcher] = launchers()
        launcher.send_signal(signal.SIGKILL)
        result = await job
        assert (result.state, result.exit_code) == ("failed", 3)
        assert result.reason == "exit code 3 (its launcher died while it ran)"
        # the next task gets a new launcher
        again = await ex.run(sh_task("after", "echo fine"))
        assert (again.state, again.log_tail) == ("succeeded", "fine\n")
        [new] = launchers()
        assert new.pid != launcher.pid
    finally:
        await ex.close()


async def test_without_exit_files_a_task_dies_with_its_launcher_and_fails_clearly(tmp_path):
    ex = ProcessExecutor()
    pidfile = tmp_path / "pid"
    try:
        job = asyncio.ensure_future(ex.run(sh_task("dies", f"echo $$ > {pidfile}; exec sleep 30")))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        [launcher] = launchers()
        launcher.send_signal(signal.SIGKILL)
        result = await asyncio.wait_for(job, 10)
        assert result.state == "failed"
        assert result.reason.startswith("its launcher died (") and "no exit status" in result.reason
        assert gone(int(pidfile.read_text()))
        assert (await ex.run(sh_task("after", "true"))).state == "succeeded"
    finally:
        await ex.close()


async def test_a_launch_while_the_launcher_is_dead_starts_a_new_one():
    ex = ProcessExecutor()
    try:
        assert (await ex.run(sh_task("first", "true"))).state == "succeeded"
        [launcher] = launchers()
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(5)  # dead before the agent noticed: the next launch finds out
        results = await asyncio.gather(*(ex.run(sh_task(f"t{i}", f"exit {i}")) for i in range(4)))
        assert [r.exit_code for r in results] == [0, 1, 2, 3]
        assert len(launchers()) == 1
    finally:
        await ex.close()


def test_an_agent_killed_with_its_launcher_in_place_has_its_task_adopted(tmp_path):
    """SIGKILL the agent mid-task: its launcher exits, the task runs on under no parent
    of ours, and a new executor adopts it and records the status its shim wrote."""
    exits = str(tmp_path / "exits")
    handle_file = tmp_path / "handle"
    ledger = tmp_path / "ledger"
    command = ("sh", "-c", f"echo start >> {ledger}; sleep 2; echo end >> {ledger}; exit 4")
    script = (
        "import asyncio\n"
        "from dodoor.resources import Task\n"
        "from node_agent.process_executor import ProcessExecutor\n"
        "async def main():\n"
        "    async def on_start(handle):\n"
        f"        open({str(handle_file)!r}, 'w').write(handle)\n"
        f"    ex = ProcessExecutor(exit_dir={exits!r})\n"
        f"    await ex.run(Task('adopt', 1.0, 256.0, command={command!r}), on_start)\n"
        "asyncio.run(main())\n")
    agent = subprocess.Popen([PY, "-c", script], cwd=str(REPO))
    try:
        deadline = time.monotonic() + 20
        while not (handle_file.exists() and handle_file.read_text()):
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.02)
        [launcher] = launchers(agent.pid)
        leader = GroupHandle.decode(handle_file.read_text()).pgid
        assert psutil.Process(leader).ppid() == launcher.pid
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        deadline = time.monotonic() + 10
        while not gone(launcher.pid):  # it saw its socket close
            assert time.monotonic() < deadline, "the launcher outlived its agent"
            time.sleep(0.02)
        assert not gone(leader)  # the task did not die with them

        async def restart():
            again = ProcessExecutor(exit_dir=exits)
            task = Task("adopt", 1.0, 256.0, command=command)
            [adopted] = await again.reconcile([Interrupted(task, "running",
                                                           handle_file.read_text())])
            assert (adopted.task_id, adopted.running) == ("adopt", True)
            return await again.wait_adopted("adopt")

        result = asyncio.run(restart())
        assert (result.state, result.exit_code) == ("failed", 4)
        assert "adopted after an agent restart" in result.reason
        assert ledger.read_text() == "start\nend\n"  # one run, to its end
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def live_children(proc: psutil.Process) -> list[int]:
    return [c.pid for c in proc.children(recursive=True) if not gone(c.pid)]


@pytest.mark.parametrize("exit_dir", [False, True])
async def test_a_cancel_at_any_point_of_the_launch_leaves_nothing_running(tmp_path, exit_dir):
    ex = ProcessExecutor(exit_dir=str(tmp_path / "exits") if exit_dir else None)
    try:
        assert (await ex.run(sh_task("warm", "true"))).state == "succeeded"
        [launcher] = launchers()
        for yields in range(8):  # cancelled before, during and after the launcher's reply
            job = asyncio.ensure_future(ex.run(sh_task(f"early{yields}", "exec sleep 30")))
            for _ in range(yields):
                await asyncio.sleep(0)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            assert live_children(launcher) == []
    finally:
        await ex.close()


async def test_a_stuck_launcher_is_killed_and_replaced(monkeypatch):
    from node_agent import launch_client

    monkeypatch.setattr(launch_client, "LAUNCH_REPLY_S", 0.5)
    ex = ProcessExecutor()
    try:
        assert (await ex.run(sh_task("first", "true"))).state == "succeeded"
        [stuck] = launchers()
        stuck.send_signal(signal.SIGSTOP)
        result = await asyncio.wait_for(ex.run(sh_task("stuck", "true")), 10)
        assert result.state == "failed"
        assert result.reason.startswith("cannot start 'sh': no answer to a launch within 0.5 s")
        await wait_for(lambda: gone(stuck.pid))
        assert (await ex.run(sh_task("after", "echo ok"))).log_tail == "ok\n"
        assert stuck.pid not in {p.pid for p in launchers()}  # reaped
    finally:
        await ex.close()


async def test_a_task_gets_only_stdin_stdout_and_stderr_and_no_ignored_signals():
    ex = ProcessExecutor()
    try:
        fds = await ex.run(Task("fds", 1.0, 256.0, 0.0, 1000.0, command=("ls", "/proc/self/fd")))
        assert fds.log_tail.split() == ["0", "1", "2", "3"]  # 3: ls's own directory handle
        sigs = await ex.run(Task("sig", 1.0, 256.0, 0.0, 1000.0,
                                 command=("grep", "SigIgn", "/proc/self/status")))
        assert sigs.log_tail.split() == ["SigIgn:", "0" * 16]
    finally:
        await ex.close()
