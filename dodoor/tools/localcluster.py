"""A local cluster of real processes on 127.0.0.1: one load store, M schedulers, N agents.

Each component is ``python -m dodoor <role> ...`` in its own process, logging to
``workdir/<name>.log``. Agents get virtual capacity slices from the scaled
``paper100`` mix so one host looks like a heterogeneous cluster.

Start-up is checked, not assumed: a component counts as started only when its
``/healthz`` answers with the role, id and process id of the very process that
was launched (another cluster on the same ports answers too, with its own), and
the first component that exits during start-up stops the whole start with its
own last log line. Each start is fresh unless ``resume`` is set: the journals,
the load store's membership file and the logs of an earlier run in the workdir
are removed, so task ids of that run are neither deduplicated nor re-run.
"""

from __future__ import annotations

import fcntl
import json
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

from dodoor.errors import DodoorError, ValidationError
from dodoor.policies import DEFAULT_POLICY, LIVE_POLICIES
from dodoor.service.cliargs import MAX_PORT
from node_agent.settings import EXECUTORS
from workloads.clusters import scaled

log = logging.getLogger(__name__)

SCHEDULER_OFFSET = 10  # schedulers listen on P+10.., agents on P+100..
AGENT_OFFSET = 100
MAX_SCHEDULERS = AGENT_OFFSET - SCHEDULER_OFFSET
# What a fresh start removes from the workdir: only the names the cluster itself writes
# (journals and their sqlite companions, the membership file and its temporary, the
# logs), so a --workdir shared with other files keeps them.
STATE_PATTERNS = ("node-*.journal.sqlite", "node-*.journal.sqlite-*", "loadstore.json",
                  "loadstore.json.tmp", "loadstore.log", "scheduler-*.log", "agent-*.log")


class ClusterError(DodoorError):
    """A component of the local cluster failed to start, or is not the one answering."""


@dataclass(frozen=True)
class ClusterSettings:
    """What ``dodoor cluster up`` starts. Checked whole before any process starts.

    The ``field`` of a :class:`ValidationError` raised here is the command's flag.
    """

    agents: int = 6
    schedulers: int = 2
    executor: str = "sleep"
    base_port: int = 8090
    policy: str = DEFAULT_POLICY
    params: tuple[str, ...] = ()
    b: int | None = None
    workdir: Path = Path(".dodoor-cluster")
    token: str | None = None
    host: str = "127.0.0.1"
    startup_timeout_s: float = 30.0
    resume: bool = False  # keep the journals and membership of the previous run
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValidationError("--agents", f"must be >= 1, got {self.agents}")
        if not 1 <= self.schedulers <= MAX_SCHEDULERS:
            raise ValidationError("--schedulers", f"must be in [1, {MAX_SCHEDULERS}] (their ports "
                                                  f"sit between the load store's and the "
                                                  f"agents'), got {self.schedulers}")
        if self.executor not in EXECUTORS:
            raise ValidationError("--executor", f"must be one of {EXECUTORS}, got "
                                                f"{self.executor!r}")
        highest = MAX_PORT - AGENT_OFFSET - (self.agents - 1)
        if not 1 <= self.base_port <= highest:
            raise ValidationError("--base-port", f"must be in [1, {highest}] so that the "
                                                 f"{self.agents} agents' ports P+{AGENT_OFFSET}.."
                                                 f" stay <= {MAX_PORT}, got {self.base_port}")
        self._check_policy()

    def _check_policy(self) -> None:
        """The policy and its --param settings, as the schedulers will parse them."""
        from scheduler.settings import SchedulerSettings, parse_params

        name = self.policy.partition(":")[0]
        if name not in LIVE_POLICIES:
            what = "runs in the simulator only" if name == "ideal" else "is not a policy"
            raise ValidationError("--policy", f"{name!r} {what}; the schedulers run "
                                              f"{', '.join(LIVE_POLICIES)}")
        try:
            # the schedulers' own check: it also refuses settings only the load store applies
            SchedulerSettings(policy=self.policy, policy_settings=parse_params(self.params))
        except ValidationError as exc:
            given = " ".join([self.policy, *(f"--param {p}" for p in self.params)])
            raise ValidationError("--policy", f"{given}: {exc}") from exc

    @property
    def loadstore_port(self) -> int:
        return self.base_port

    def scheduler_port(self, i: int) -> int:
        return self.base_port + SCHEDULER_OFFSET + i

    def agent_port(self, i: int) -> int:
        return self.base_port + AGENT_OFFSET + i


@dataclass
class _Proc:
    """One component: how it is launched and what its ``/healthz`` must say."""

    name: str
    url: str
    argv: list[str]
    identity: dict[str, str]  # /healthz fields naming this component (besides its pid)
    popen: subprocess.Popen | None = None
    log_offset: int = 0  # where this run's lines start in its (appended) log
    reported: bool = False


@dataclass(frozen=True)
class Exited:
    """A component that is no longer running: its exit code and last log line."""

    name: str
    pid: int
    code: int
    last_line: str
    log_path: Path

    def describe(self) -> str:
        said = f": {self.last_line}" if self.last_line else ""
        return f"{self.name} (pid {self.pid}) exited with code {self.code}{said} (log: {self.log_path})"


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
        ], {"role": "loadstore"})
        self._agents = []
        for i, node in enumerate(scaled(s.agents)):
            port = s.agent_port(i)
            self._agents.append(_Proc(f"agent-{i}", f"http://{s.host}:{port}", [
                "agent", "--host", s.host, "--port", str(port), "--id", node.node_id,
                "--loadstore", self.loadstore_url, "--executor", s.executor,
                "--cores", f"{node.cores:g}", "--memory-mb", f"{node.memory_mb:g}",
                "--disk-mb", f"{node.disk_mb:g}", "--slots", str(node.slots),
                "--journal", str(s.workdir / f"{node.node_id}.journal.sqlite"),
            ], {"role": "agent", "node": node.node_id}))
        self._schedulers = []
        for i in range(s.schedulers):
            port = s.scheduler_port(i)
            params = [arg for p in s.params for arg in ("--param", p)]
            self._schedulers.append(_Proc(f"scheduler-{i}", f"http://{s.host}:{port}", [
                "scheduler", "--host", s.host, "--port", str(port), "--id", f"sched-{i}",
                "--loadstore", self.loadstore_url, "--policy", s.policy, *params,
            ], {"role": "scheduler", "id": f"sched-{i}"}))

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
        """Start every component and check each is the one answering; see the module docstring.

        Raises :class:`ClusterError` (after stopping what did start) when one exits,
        or does not answer as itself within ``startup_timeout_s``.
        """
        self._prepare_workdir()
        try:
            # The load store first (agents report to it), schedulers last (they need nodes).
            for group in ([self._loadstore], self._agents, self._schedulers):
                for proc in group:
                    self._spawn(proc)
                for proc in group:
                    self._wait_healthy(proc)
                    log.info("started %s (pid %d) at %s", proc.name, proc.popen.pid, proc.url)
        except BaseException:
            self.stop()
            raise

    def _prepare_workdir(self) -> None:
        workdir = self.settings.workdir
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError("--workdir", f"cannot create {workdir}: {exc}") from exc
        if self.settings.resume:
            return
        held = _lock_journals(workdir)  # never delete the journals of a running agent
        try:
            for pattern in STATE_PATTERNS:
                for path in workdir.glob(pattern):
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        raise ValidationError("--workdir", f"cannot remove {path} of the previous "
                                                           f"run (--resume keeps it): {exc}") from exc
                    log.debug("removed %s of the previous run", path)
        finally:
            for fd in held:
                os.close(fd)

    def _log_path(self, proc: _Proc) -> Path:
        return self.settings.workdir / f"{proc.name}.log"

    def _spawn(self, proc: _Proc) -> None:
        env = {**os.environ, **self.settings.extra_env}
        if self.settings.token:
            env["DODOOR_TOKEN"] = self.settings.token
        with open(self._log_path(proc), "ab") as logfile:
            proc.log_offset = logfile.tell()
            proc.popen = subprocess.Popen(
                self._command(proc), stdout=logfile,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        self._procs.append(proc)
        log.debug("spawned %s (pid %d) for %s", proc.name, proc.popen.pid, proc.url)

    def _command(self, proc: _Proc) -> list[str]:
        """How a component is launched (a benchmark runs one under a profiler instead)."""
        return [sys.executable, "-m", "dodoor", *proc.argv]

    def _wait_healthy(self, proc: _Proc) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        answered: dict | None = None
        while time.monotonic() < deadline:
            # Any component that exits ends the start-up, not only the one awaited.
            exited = self.reap()
            if exited:
                raise ClusterError(exited[0].describe())
            health = _get_health(proc.url)
            if health is not None:
                if self._is_ours(proc, health):
                    return
                answered = health
            time.sleep(0.1)
        if answered is not None:
            theirs = {k: answered[k] for k in ("role", "id", "node", "pid") if k in answered}
            raise ClusterError(f"{proc.name}: another process answers at {proc.url} ({theirs}), "
                               f"not the one started (pid {proc.popen.pid}); is another cluster "
                               f"running? Use --base-port")
        raise ClusterError(f"{proc.name} at {proc.url} not healthy after "
                           f"{self.settings.startup_timeout_s:.0f} s (log: {self._log_path(proc)})")

    @staticmethod
    def _is_ours(proc: _Proc, health: dict) -> bool:
        return (health.get("pid") == proc.popen.pid
                and all(health.get(k) == v for k, v in proc.identity.items()))

    def reap(self) -> list[Exited]:
        """Components that exited since the last call, reaped (no zombies) and described once."""
        exited = []
        for proc in self._procs:
            if proc.reported or proc.popen is None or proc.popen.poll() is None:
                continue
            proc.reported = True
            exited.append(Exited(proc.name, proc.popen.pid, proc.popen.returncode,
                                 self._last_line(proc), self._log_path(proc)))
        return exited

    def _last_line(self, proc: _Proc) -> str:
        """The last non-empty line this run wrote to the component's log (its error, mostly)."""
        try:
            with open(self._log_path(proc), "rb") as handle:
                handle.seek(max(proc.log_offset, handle.seek(0, os.SEEK_END) - 8192))
                tail = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return lines[-1] if lines else ""

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


def _lock_journals(workdir: Path) -> list[int]:
    """Take every agent journal's lock in ``workdir`` (the lock each agent holds while
    it runs); :class:`ClusterError` when one is held. The caller closes the fds."""
    held: list[int] = []
    try:
        for lock in sorted(workdir.glob("node-*.journal.sqlite.lock")):
            fd = os.open(lock, os.O_RDWR)
            held.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ClusterError(f"{workdir} is in use: a running agent holds {lock}; stop "
                                   "that cluster or give another --workdir") from exc
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    return held


def _get_health(url: str) -> dict | None:
    """``GET url/healthz`` as JSON; None while nothing (or nothing sensible) answers."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1.0) as resp:
            if resp.status != 200:
                return None
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None
