"""The loopback cluster of ``live_throughput.py`` and ``submit_latency.py``: the daemons
started and stopped as processes, their CPU and message counts, and a load generator run
(``live_loadgen.py``) with each process group's CPU per placed task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the script that runs the child helpers (``loadgen``, ``nullagent``, ``profiled``)
BENCH = Path(__file__).with_name("live_throughput.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


class Cluster:
    """The daemons, started and stopped as processes."""

    def __init__(self, args: argparse.Namespace, workdir: Path, null: bool) -> None:
        self.args = args
        self.null = null
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.loadstore = ""
        self.schedulers: list[str] = []
        self.agents: list[str] = []

    def _spawn(self, argv: list[str], port: int, null: bool = False,
               profiled: bool = False) -> str:
        log = open(self.workdir / f"{argv[0]}-{port}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = ([sys.executable, str(BENCH), "nullagent", *argv[1:]] if null else
               [sys.executable, str(BENCH), "profiled", self.args.profiler, self.args.profile,
                "--log-level", "WARNING", *argv] if profiled else
               [sys.executable, "-m", "dodoor", "--log-level", "WARNING", *argv])
        self.procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                           stderr=subprocess.STDOUT))
        return f"http://127.0.0.1:{port}"

    def _wait(self, url: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                get(url + "/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{url} did not come up; logs in {self.workdir}")

    def start(self) -> None:
        a = self.args
        port = free_port()
        self.loadstore = self._spawn(["loadstore", "--port", str(port), "--b", str(a.b),
                                      "--state-file", str(self.workdir / "loadstore.json")], port)
        self._wait(self.loadstore)
        for i in range(a.agents):
            port = free_port()
            if self.null:
                self.agents.append(self._spawn(
                    ["agent", "--port", str(port), "--id", f"node-{i:02d}", "--loadstore",
                     self.loadstore], port, null=True))
                continue
            self.agents.append(self._spawn(
                ["agent", "--port", str(port), "--id", f"node-{i:02d}", "--loadstore",
                 self.loadstore, "--cores", "64", "--memory-mb", "262144", "--disk-mb", "0",
                 "--slots", "64", "--executor", "sleep", "--sleep-scale", "0",
                 "--journal", str(self.workdir / f"node-{i}.sqlite")], port,
                profiled=bool(a.profile) and a.profile_target == "agent" and i == 0))
        for i in range(a.schedulers):
            port = free_port()
            params = [x for p in a.param for x in ("--param", p)]
            self.schedulers.append(self._spawn(
                ["scheduler", "--port", str(port), "--id", f"sched-{i}", "--loadstore",
                 self.loadstore, "--policy", a.policy, "--seed", str(i), *params], port,
                profiled=bool(a.profile) and a.profile_target == "scheduler" and i == 0))
        for url in self.agents + self.schedulers:
            self._wait(url)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            views = [json.loads(get(s + "/v1/nodes")) for s in self.schedulers]
            if all(len(v["nodes"]) == a.agents for v in views):
                return
            time.sleep(0.1)
        raise TimeoutError("schedulers never saw every agent")

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far: scheduler 0, the other schedulers, agents, load store."""
        a = self.args
        secs = [cpu_seconds(p.pid) for p in self.procs]
        return {"scheduler0": secs[1 + a.agents],
                "scheduler0_kernel": cpu_seconds(self.procs[1 + a.agents].pid, kernel_only=True),
                "other_schedulers": sum(secs[2 + a.agents:]),
                "agents": sum(secs[1:1 + a.agents]),
                "agents_kernel": sum(cpu_seconds(p.pid, kernel_only=True)
                                     for p in self.procs[1:1 + a.agents]),
                "loadstore": secs[0]}

    def profile(self, sig: int, phase: bool = True) -> None:
        """Signal the profiled scheduler (scheduler 0) to start or write its profile."""
        if self.args.profile and phase:
            self.procs[1 if self.args.profile_target == "agent" else 1 + self.args.agents
                       ].send_signal(sig)
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def cpu_seconds(pid: int, kernel_only: bool = False) -> float:
    """User + system (or system only) CPU of a process so far (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> dict[str, float]:
    """Messages by type at one component, sent and received together."""
    out: dict[str, float] = {}
    line = r'^dodoor_messages_total\{(?:direction="\w+",)?type="(\w+)"\} ([0-9.e+]+)$'
    for m in re.finditer(line, get(url + "/metrics"), re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def messages(cluster: Cluster) -> dict[str, float]:
    """Sent scheduling messages: schedulers' own, plus the store's pushes and received reports."""
    total: dict[str, float] = {}
    for url in cluster.schedulers:
        for kind, n in scrape(url).items():
            if kind not in ("snapshot", "confirm"):  # counted where they are sent
                total[kind] = total.get(kind, 0.0) + n
    store = scrape(cluster.loadstore)
    for kind in ("snapshot", "node_state"):
        total[kind] = store.get(kind, 0.0)
    return total


def run_loadgen(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, str(BENCH), "loadgen", *argv], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measured(cluster: Cluster, argv: list[str]) -> dict:
    """A load generator run, with each process group's CPU per placed task (``cpu_us``)."""
    cpu0 = cluster.cpu()
    out = run_loadgen(argv)
    cpu1 = cluster.cpu()
    n = max(out["placed"], 1)
    out["cpu_us"] = {k: (cpu1[k] - cpu0[k]) * 1e6 / n for k in cpu0}
    out["cpu_us"]["loadgen"] = out["cpu_s"] * 1e6 / n
    return out


def print_cpu(name: str, run: dict) -> None:
    used = run["cpu_us"]
    print(f"  CPU per placed task ({name}): " + ", ".join(
        f"{k} {v:.0f} us" for k, v in used.items()) +
        f"; scheduler 0 alone would place {1e6 / max(used['scheduler0'], 1e-9):,.0f} "
        "tasks/s on one free core")
