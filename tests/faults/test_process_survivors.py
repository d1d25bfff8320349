"""Process executor on a real agent: a task never runs as two copies, nothing outlives it.

The agent reports to a real load store (which grants its start lease) and gets
its tasks through ``POST /internal/enqueue``, as a scheduler would send them.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from dodoor.resources import Task
from dodoor.wire import CONTENT_TYPE, Enqueue, encode
from tests.daemons.conftest import Daemon, free_port, http_json
from tests.faults.conftest import poll, start_daemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Appends "start", a "tick" every 0.1 s for ~2 s, then "end" to the ledger, each with its pid.
WORKER = """\
import os, sys, time
def note(word):
    with open(sys.argv[1], "a") as ledger:
        ledger.write(f"{word} {os.getpid()}\\n")
note("start")
for _ in range(20):
    time.sleep(0.1)
    note("tick")
note("end")
"""


@pytest.fixture
def loadstore(tmp_path):
    port = free_port()
    store = start_daemon(["loadstore", "--port", str(port)], port, {}, tmp_path)
    yield store.url
    store.stop()


def agent_args(workdir: Path, loadstore: str, *extra: str) -> list[str]:
    return ["agent", "--port", str(free_port()), "--id", "node-p",
            "--loadstore", loadstore, "--executor", "process",
            "--cores", "2", "--memory-mb", "4096", "--disk-mb", "0", "--slots", "2",
            "--journal", str(workdir / "agent.sqlite"), "--report-interval-ms", "50",
            "--heartbeat-ms", "200", *extra]


def start_agent(workdir: Path, args: list[str]) -> Daemon:
    return start_daemon(args, int(args[args.index("--port") + 1]), {}, workdir)


def enqueue(agent: Daemon, task: Task) -> None:
    req = urllib.request.Request(agent.url + "/internal/enqueue",
                                 data=encode(Enqueue(task, "sched-t")),
                                 headers={"Content-Type": CONTENT_TYPE})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 202


def state(agent: Daemon, task_id: str) -> str | None:
    code, body = http_json(f"{agent.url}/v1/tasks/{task_id}")
    return body["state"] if code == 200 else None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ledger_lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(word, int(pid)) for word, pid in
            (line.split() for line in path.read_text().splitlines() if line.strip())]


def test_sigkilled_agent_adopts_the_running_copy_and_never_runs_a_second(tmp_path, loadstore):
    """The task outlives its agent's crash (its exit status goes to a file, as a
    container's does to the engine); the restarted agent adopts it and records its
    end. Before: the old copy kept running and the restart ran a second beside it."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    ledger = tmp_path / "ledger"
    args = agent_args(tmp_path, loadstore)
    agent = start_agent(tmp_path, args)
    try:
        enqueue(agent, Task("twice", 1.0, 256.0, duration_ms=2000.0,
                            command=("sh", "-c", f"{sys.executable} {worker} {ledger}; true")))
        poll(lambda: any(w == "tick" for w, _ in ledger_lines(ledger)), 20, what="first copy runs")
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        agent.stop()
        [(_, first)] = [(w, p) for w, p in ledger_lines(ledger) if w == "start"]
        assert not gone(first)  # the task survived its agent

        agent = start_agent(tmp_path, args)
        assert poll(lambda: state(agent, "twice") in ("succeeded", "failed"), 30,
                    what="the task ends on the restarted agent")
        _, body = http_json(f"{agent.url}/v1/tasks/twice")
        assert body["state"] == "succeeded" and "adopted" in body["reason"], body
        lines = ledger_lines(ledger)
        assert [w for w, _ in lines if w == "start"] == ["start"], lines  # never a second copy
        assert lines[-1] == ("end", first)
        assert "adopting it" in agent.log()
    finally:
        agent.stop()


def test_background_children_are_gone_when_the_task_is_reported(tmp_path, loadstore):
    agent = start_agent(tmp_path, agent_args(tmp_path, loadstore, "--task-timeout-ms", "1500"))
    try:
        tasks = {}
        for tid, then in (("quick", "echo started"), ("slow", "sleep 30")):
            pidfile = tmp_path / f"{tid}.pid"
            tasks[tid] = pidfile
            enqueue(agent, Task(tid, 1.0, 256.0, duration_ms=100.0, command=(
                "sh", "-c", f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}; {then}")))
        reported: dict[str, str] = {}

        def finished() -> bool:
            for tid, pidfile in tasks.items():
                if tid not in reported and state(agent, tid) in ("succeeded", "failed"):
                    reported[tid] = state(agent, tid)
                    # checked the moment the agent reports the task finished
                    assert gone(int(pidfile.read_text())), f"{tid}'s child outlived it"
            return len(reported) == len(tasks)

        poll(finished, 20, interval=0.02, what="both tasks finished")
        assert reported == {"quick": "succeeded", "slow": "failed"}
        code, body = http_json(f"{agent.url}/v1/tasks/slow")
        assert body["reason"] == "timed out after 1500 ms"
    finally:
        agent.stop()
