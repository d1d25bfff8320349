"""A cluster of real ``python -m dodoor`` processes on 127.0.0.1 that tests can break.

``ProcCluster`` starts one load store, M schedulers and N sleep-executor agents
(each with its own journal in the test's directory), and lets a test SIGKILL,
SIGSTOP/SIGCONT or restart any one of them (agents on their journal, schedulers
and the load store on their own port). Everything is blocking HTTP with
timeouts, so each test stays bounded in time.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.daemons.conftest import Daemon, free_port, http_json
# pytest fixtures reused by the in-process tests of this package
from tests.daemons.conftest import fake_agents  # noqa: F401
from tests.daemons.test_scheduler import make_stack  # noqa: F401

TERMINAL = ("succeeded", "failed", "lost", "cancelled")


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
         what: str = "condition") -> Any:
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(interval)


class ProcCluster:
    """Real processes; see the module docstring."""

    def __init__(self, workdir: Path, agents: int = 3, schedulers: int = 1,
                 dead_after_ms: float = 3000.0, b: int = 20, token: str | None = None,
                 slots: int = 4, executor: str = "sleep", agent_extra: tuple[str, ...] = (),
                 agent_fsize: dict[int, int] | None = None,
                 agent_env: dict[int, dict[str, str]] | None = None,
                 scheduler_extra: tuple[str, ...] = (),
                 loadstore_extra: tuple[str, ...] = ()) -> None:
        """``agent_env``: extra environment for agent i (its tasks inherit it with the
        process executor); ``scheduler_extra``: flags added to every scheduler."""
        self.workdir = workdir
        self.loadstore_extra = loadstore_extra
        self.agent_fsize = agent_fsize or {}
        self.agent_env = agent_env or {}
        self.scheduler_extra = scheduler_extra
        self.token = token
        self.env = {"DODOOR_TOKEN": token} if token else {}
        self.daemons: list[Daemon] = []
        try:
            self._start_all(agents, schedulers, dead_after_ms, b, slots, executor, agent_extra)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, agents: int, schedulers: int, dead_after_ms: float, b: int, slots: int,
                   executor: str, agent_extra: tuple[str, ...]) -> None:
        workdir = self.workdir
        ls_port = free_port()
        self.loadstore_args = ["loadstore", "--port", str(ls_port), "--b", str(b),
                               "--dead-after-ms", f"{dead_after_ms:g}", *self.loadstore_extra]
        self.loadstore = self._start(self.loadstore_args, ls_port)
        self.agent_args: list[list[str]] = []
        self.agents: list[Daemon] = []
        for i in range(agents):
            port = free_port()
            args = ["agent", "--port", str(port), "--id", f"node-{i}", "--loadstore",
                    self.loadstore.url, "--executor", executor, "--cores", str(slots),
                    "--memory-mb", "8192", "--disk-mb", "0", "--slots", str(slots),
                    "--journal", str(workdir / f"node-{i}.sqlite"), "--report-interval-ms", "50",
                    "--heartbeat-ms", "200", *agent_extra]
            self.agent_args.append(args)
            self.agents.append(self._start(args, port, fsize=self.agent_fsize.get(i),
                                           env=self.agent_env.get(i)))
        self.scheduler_args: list[list[str]] = []
        self.schedulers: list[Daemon] = []
        for i in range(schedulers):
            port = free_port()
            args = ["scheduler", "--port", str(port), "--id", f"sched-{i}", "--loadstore",
                    self.loadstore.url, "--seed", str(i), *self.scheduler_extra]
            self.scheduler_args.append(args)
            self.schedulers.append(self._start(args, port))
        for s in self.schedulers:
            poll(lambda s=s: self.get(s.url + "/healthz")[1]["nodes"] == agents, 20,
                 what="scheduler sees every agent")

    def _start(self, args: list[str], port: int, wait: bool = True,
               fsize: int | None = None, env: dict[str, str] | None = None,
               attempts: int = 3) -> Daemon:
        daemon = start_daemon(args, port, {**self.env, **(env or {})}, self.workdir, fsize, wait,
                              attempts)
        self.daemons.append(daemon)
        return daemon

    # -- faults ------------------------------------------------------------
    def kill(self, daemon: Daemon) -> None:
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)

    def restart_agent(self, i: int) -> Daemon:
        """Start agent ``i`` again on the same port and journal."""
        old = self.agents[i]
        self.agents[i] = self._start(self.agent_args[i], old.port, fsize=self.agent_fsize.get(i),
                                     env=self.agent_env.get(i))
        return self.agents[i]

    def restart_scheduler(self, i: int) -> Daemon:
        """Start scheduler ``i`` again with the same id and port (clients keep its URL).

        One attempt only: moving it to another port would hide it from its clients.
        """
        self.schedulers[i] = self._start(self.scheduler_args[i], self.schedulers[i].port,
                                         attempts=1)
        return self.schedulers[i]

    def restart_loadstore(self) -> Daemon:
        """Start the load store again on the same port (agents and schedulers keep its URL)."""
        self.loadstore = self._start(self.loadstore_args, self.loadstore.port, attempts=1)
        return self.loadstore

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            if daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle TERM
            daemon.stop()

    # -- client side -------------------------------------------------------
    def get(self, url: str, timeout: float = 5.0) -> tuple[int, Any]:
        return http_json(url, token=self.token, timeout=timeout)

    def get_method(self, method: str, url: str, timeout: float = 10.0) -> tuple[int, Any]:
        """A request without a body by ``method`` (DELETE, say)."""
        return http_json(url, token=self.token, timeout=timeout, method=method)

    def submit(self, sched: int, tasks: list[dict], timeout: float = 30.0) -> tuple[int, Any]:
        return http_json(self.schedulers[sched].url + "/v1/tasks", {"tasks": tasks},
                         token=self.token, timeout=timeout)

    def status(self, sched: int, task_id: str) -> dict:
        code, body = self.get(f"{self.schedulers[sched].url}/v1/tasks/{task_id}")
        if code != 200:
            return {"state": f"http-{code}", "error": body}
        return body

    def states(self, sched: int, ids: list[str]) -> dict[str, str]:
        return {tid: self.status(sched, tid)["state"] for tid in ids}

    def wait_terminal(self, sched: int, ids: list[str], timeout: float) -> dict[str, str]:
        """Poll until every id is terminal on scheduler ``sched``; the final states."""
        last: dict[str, str] = {}

        def done() -> bool:
            nonlocal last
            pending = [t for t in ids if last.get(t) not in TERMINAL]
            last.update(self.states(sched, pending))
            return all(s in TERMINAL for s in last.values()) and len(last) == len(ids)

        try:
            poll(done, timeout, interval=0.2, what="every task terminal")
        except AssertionError as exc:
            counts = count(last.values())
            raise AssertionError(f"{exc}: {counts}") from exc
        return last

    def agent_knows(self, agent: Daemon, task_id: str) -> str | None:
        code, body = self.get(f"{agent.url}/v1/tasks/{task_id}")
        return body["state"] if code == 200 else None

    def node_ids(self, url: str) -> set[str]:
        code, body = self.get(url + "/v1/nodes", timeout=2.0)
        assert code == 200, body
        # the load store lists dead nodes too, with ``alive: false``
        return {n["id"] for n in body["nodes"] if n.get("alive", True)}


def start_daemon(args: list[str], port: int, env: dict[str, str], workdir: Path,
                 fsize: int | None = None, wait: bool = True, attempts: int = 3) -> Daemon:
    """Start ``python -m dodoor <args>``; on a port another process took meanwhile, another port.

    ``free_port`` only finds a port that was free a moment ago; on a busy host
    another process can bind it first. ``args`` is updated in place (``--port``).
    """
    for attempt in range(attempts):
        name = f"{args[0]}-{port}-{time.monotonic_ns()}.log"  # restarts keep the old log
        if fsize is None:
            daemon = Daemon(args, port, env, workdir / name, cwd=workdir)
        else:
            daemon = LimitedDaemon(args, port, env, workdir / name, workdir, fsize)
        if not wait:
            return daemon
        try:
            daemon.wait_healthy()
            return daemon
        except RuntimeError:
            daemon.stop()
            if "cannot serve" not in daemon.log() or attempt == attempts - 1:
                raise
        port = free_port()
        args[args.index("--port") + 1] = str(port)
    raise AssertionError("unreachable")


def count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def sleep_tasks(prefix: str, n: int, duration_ms: float = 100.0, cores: float = 1.0) -> list[dict]:
    return [{"id": f"{prefix}{i}", "cores": cores, "memory_mb": 256, "duration_ms": duration_ms}
            for i in range(n)]


@pytest.fixture
def cluster(tmp_path):
    """Factory: ``cluster(agents=3, schedulers=1, dead_after_ms=...)``; stopped at teardown."""
    made: list[ProcCluster] = []

    def build(**kw) -> ProcCluster:
        made.append(ProcCluster(tmp_path, **kw))
        return made[-1]

    yield build
    for c in made:
        c.stop()


class LimitedDaemon(Daemon):
    """A daemon whose files may not grow past ``fsize`` bytes (RLIMIT_FSIZE): a full disk.

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead
    of killing the process — what a full filesystem looks like to sqlite.
    """

    def __init__(self, args: list[str], port: int, env: dict[str, str], log_path: Path,
                 cwd: Path, fsize: int) -> None:
        import os
        import resource
        import subprocess
        import sys

        from tests.daemons.conftest import REPO

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dodoor", *args], cwd=str(cwd),
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=limit,
        )
