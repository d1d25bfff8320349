"""A local cluster of real processes on 127.0.0.1: one load store, M schedulers, N agents.

Each component is ``python -m dodoor <role> ...`` in its own process, logging to
``workdir/<name>.log``. Agents get virtual capacity slices from the scaled
``paper100`` mix so one host looks like a heterogeneous cluster.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from workloads.clusters import scaled

log = logging.getLogger(__name__)

EXECUTORS = ("sleep", "process", "docker")


@dataclass(frozen=True)
class ClusterSettings:
    agents: int = 6
    schedulers: int = 2
    executor: str = "sleep"
    base_port: int = 8090
    policy: str = "dodoor"
    params: tuple[str, ...] = ()
    b: int | None = None
    workdir: Path = Path(".dodoor-cluster")
    token: str | None = None
    host: str = "127.0.0.1"
    startup_timeout_s: float = 30.0
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.agents < 1 or self.schedulers < 1:
            raise ValueError(f"need >= 1 agent and scheduler, got {self.agents}, {self.schedulers}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")

    @property
    def loadstore_port(self) -> int:
        return self.base_port

    def scheduler_port(self, i: int) -> int:
        return self.base_port + 10 + i

    def agent_port(self, i: int) -> int:
        return self.base_port + 100 + i


@dataclass
class _Proc:
    name: str
    url: str
    argv: list[str]
    popen: subprocess.Popen | None = None


class LocalCluster:
    """Starts, health-checks and stops the processes. Use as a context manager."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self._procs: list[_Proc] = []
        s = settings
        self.loadstore_url = f"http://{s.host}:{s.loadstore_port}"
        self._loadstore = _Proc("loadstore", self.loadstore_url, [
            "loadstore", "--host", s.host, "--port", str(s.loadstore_port),
            *(["--b", str(s.b)] if s.b else []),
            "--state-file", str(s.workdir / "loadstore.json"),
        ])
        self._agents = []
        for i, node in enumerate(scaled(s.agents)):
            port = s.agent_port(i)
            self._agents.append(_Proc(f"agent-{i}", f"http://{s.host}:{port}", [
                "agent", "--host", s.host, "--port", str(port), "--id", node.node_id,
                "--loadstore", self.loadstore_url, "--executor", s.executor,
                "--cores", f"{node.cores:g}", "--memory-mb", f"{node.memory_mb:g}",
                "--disk-mb", f"{node.disk_mb:g}", "--slots", str(node.slots),
                "--journal", str(s.workdir / f"{node.node_id}.journal.sqlite"),
            ]))
        self._schedulers = []
        for i in range(s.schedulers):
            port = s.scheduler_port(i)
            params = [arg for p in s.params for arg in ("--param", p)]
            self._schedulers.append(_Proc(f"scheduler-{i}", f"http://{s.host}:{port}", [
                "scheduler", "--host", s.host, "--port", str(port), "--id", f"sched-{i}",
                "--loadstore", self.loadstore_url, "--policy", s.policy, *params,
            ]))

    @property
    def scheduler_urls(self) -> list[str]:
        return [p.url for p in self._schedulers]

    @property
    def agent_urls(self) -> list[str]:
        return [p.url for p in self._agents]

    @property
    def pids(self) -> dict[str, int]:
        """Process id of every started component by name (for RSS readings and fault injection)."""
        return {p.name: p.popen.pid for p in self._procs if p.popen is not None}

    def start(self) -> None:
        self.settings.workdir.mkdir(parents=True, exist_ok=True)
        try:
            # The load store first (agents report to it), schedulers last (they need nodes).
            for group in ([self._loadstore], self._agents, self._schedulers):
                for proc in group:
                    self._spawn(proc)
                for proc in group:
                    self._wait_healthy(proc)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, proc: _Proc) -> None:
        env = {**os.environ, **self.settings.extra_env}
        if self.settings.token:
            env["DODOOR_TOKEN"] = self.settings.token
        logfile = open(self.settings.workdir / f"{proc.name}.log", "ab")
        with logfile:
            proc.popen = subprocess.Popen(
                [sys.executable, "-m", "dodoor", *proc.argv], stdout=logfile,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        self._procs.append(proc)
        log.info("started %s (pid %d) at %s", proc.name, proc.popen.pid, proc.url)

    def _wait_healthy(self, proc: _Proc) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with code {proc.popen.returncode}; see "
                    f"{self.settings.workdir / (proc.name + '.log')}"
                )
            try:
                with urllib.request.urlopen(proc.url + "/healthz", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{proc.name} at {proc.url} not healthy after "
                           f"{self.settings.startup_timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM in reverse start order (schedulers drain first), SIGKILL stragglers."""
        for proc in reversed(self._procs):
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in reversed(self._procs):
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", proc.name, timeout_s)
                proc.popen.kill()
                proc.popen.wait()
        self._procs.clear()

    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
