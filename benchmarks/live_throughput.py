"""Live placement throughput and latency on loopback (not a test; prints figures).

Starts a load store, 2 schedulers and 16 agents (sleep executor, ~zero
durations) as ``python -m dodoor`` processes on 127.0.0.1, then runs a load
generator in a separate process against scheduler 0:

1. batched msgpack submissions (closed loop) -> placed tasks/s;
2. single-task JSON submissions (closed loop) -> placed tasks/s;
3. single-task submissions, open loop at half the single-task peak ->
   p50/p99 submit->enqueued latency (the 202 comes back once the agent has
   accepted the enqueue);
4. scheduling messages per task by type, from the daemons' /metrics.

The single-task latency stage by stage: ``benchmarks/submit_latency.py``.

Usage: python benchmarks/live_throughput.py [--seconds 5] [--batch 500]
       [--policy dodoor] [--agents 16] [--schedulers 2] [--profile OUT]

``--profile OUT`` runs scheduler 0 under cProfile (or pyinstrument with
``--profiler pyinstrument`` when it is installed) during the batched run only,
and writes the profile to ``OUT`` (``.prof`` for pstats; ``.html``/``.txt``
from pyinstrument).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK = {"cores": 0.01, "memory_mb": 1, "duration_ms": 1}


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
        cmd = ([sys.executable, __file__, "nullagent", *argv[1:]] if null else
               [sys.executable, __file__, "profiled", self.args.profiler, self.args.profile,
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
    out = subprocess.run([sys.executable, __file__, "loadgen", *argv], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the load generator (its own process) -----------------------------------

async def _loadgen(a: argparse.Namespace) -> dict:
    import aiohttp
    import msgpack

    url = a.url + "/v1/tasks"
    connector = aiohttp.TCPConnector(limit=a.concurrency)
    placed = 0
    errors = 0
    latencies: list[float] = []
    by_ids: dict[str, list[float]] = {"client": [], "server": []}
    cpu_start = time.process_time()
    counter = iter(range(10**12))
    run_id = os.urandom(4).hex()
    async with aiohttp.ClientSession(connector=connector) as session:
        async def submit(n: int) -> None:
            nonlocal placed, errors
            seq = next(counter)
            # alternate: every other request leaves the ids to the scheduler
            named = a.ids == "client" or (a.ids == "alternate" and seq % 2 == 0)
            tasks = ([{**TASK, "id": f"{run_id}-{seq}-{j}"} for j in range(n)]
                     if named else [TASK] * n)
            if a.mode == "batch":
                data = msgpack.packb({"tasks": tasks})
                headers = {"Content-Type": "application/msgpack"}
            else:
                data = json.dumps(tasks[0]).encode()
                headers = {"Content-Type": "application/json"}
            t0 = time.perf_counter()
            if a.mode == "healthz":  # the control: one HTTP hop, no placement
                async with session.get(a.url + "/healthz") as resp:
                    await resp.read()
                    placed += 1
                    latencies.append(time.perf_counter() - t0)
                return
            async with session.post(url, data=data, headers=headers) as resp:
                await resp.read()
                if resp.status == 202:
                    placed += n
                    latencies.append(time.perf_counter() - t0)
                    by_ids["client" if named else "server"].append(latencies[-1])
                else:
                    errors += 1

        n = a.batch if a.mode == "batch" else 1
        start = time.perf_counter()
        end = start + a.seconds
        if a.rate:  # open loop: a request every 1/rate seconds
            pending: set[asyncio.Task] = set()
            i = 0
            while True:
                due = start + i / a.rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(submit(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.gather(*pending)
        else:
            async def worker() -> None:
                while time.perf_counter() < end:
                    await submit(n)

            await asyncio.gather(*(worker() for _ in range(a.concurrency)))
        elapsed = time.perf_counter() - start
    def q(p: float, xs: list[float] = latencies) -> float:
        xs.sort()
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000.0 if xs else float("nan")

    return {"placed": placed, "errors": errors, "seconds": elapsed,
            "tasks_per_s": placed / elapsed, "p50_ms": q(0.50), "p99_ms": q(0.99),
            "cpu_s": time.process_time() - cpu_start,
            "by_ids": {k: {"n": len(xs), "p50_ms": q(0.50, xs), "p99_ms": q(0.99, xs)}
                       for k, xs in by_ids.items() if xs}}


def loadgen_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--mode", choices=("batch", "single", "healthz"), default="batch")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0, help="open-loop requests/s (0: closed)")
    p.add_argument("--ids", choices=("client", "server", "alternate"), default="client",
                   help="server: send no ids, the scheduler makes them; alternate: every "
                        "other request (latencies reported apart)")
    a = p.parse_args(argv)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_loadgen(a))))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        loadgen_main(sys.argv[2:])
        return
    import live_tools  # benchmarks/ is on sys.path when this file runs as a script

    if len(sys.argv) > 1 and sys.argv[1] in live_tools.HELPERS:
        live_tools.HELPERS[sys.argv[1]](sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--single-concurrency", type=int, default=32)
    p.add_argument("--policy", default="dodoor")
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--agents", type=int, default=16)
    p.add_argument("--schedulers", type=int, default=2)
    p.add_argument("--b", type=int, default=80)
    p.add_argument("--agents-kind", choices=("real", "null", "both"), default="both")
    p.add_argument("--batch-only", action="store_true",
                   help="only the batched run (quick A/B of the placement path)")
    p.add_argument("--profile", default="", metavar="OUT",
                   help="profile scheduler 0 during the batched run into OUT")
    p.add_argument("--profiler", choices=("cprofile", "pyinstrument", "timing"),
                   default="cprofile", help="timing: handler time and GC pauses as JSON")
    p.add_argument("--profile-phase", choices=("batch", "single", "latency"), default="batch")
    p.add_argument("--profile-target", choices=("scheduler", "agent"), default="scheduler",
                   help="scheduler 0, or agent 0 (real agents only)")
    p.add_argument("--dask-workers", type=int, default=4,
                   help="worker processes of the Dask comparison (when distributed is installed)")
    p.add_argument("--no-compare", action="store_true", help="skip the Dask comparison")
    a = p.parse_args()
    rates = [measure(a, null)
             for null in ([False, True] if a.agents_kind == "both" else [a.agents_kind == "null"])]
    if not a.no_compare:
        placed, rate = max(rates)  # the same number of tasks as dodoor's best batched run
        print(f"\n== comparison ({placed} tasks, dodoor batched {rate:,.0f} tasks/s)")
        from live_tools import compare_dask

        compare_dask(a, placed, rate)


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


def measure(a: argparse.Namespace, null: bool) -> tuple[int, float]:
    """Run every phase on a fresh cluster; returns (placed, tasks/s) of the batched run."""
    tmp = tempfile.mkdtemp(prefix="dodoor-bench-")
    cluster = Cluster(a, Path(tmp), null)
    kind = "null agents (accept and drop; the scheduler's ceiling)" if null else \
        "real agents (sleep executor, sqlite journal)"
    ok = False
    try:
        cluster.start()
        target = cluster.schedulers[0]
        print(f"\n== 1 load store, {a.schedulers} schedulers, {a.agents} {kind}, "
              f"policy {a.policy}, {os.cpu_count()} CPUs")
        run_loadgen(["--url", target, "--mode", "batch", "--batch", "50",
                     "--seconds", "1"])  # warm-up
        before = messages(cluster)
        cluster.profile(signal.SIGUSR1, a.profile_phase == "batch")
        batch = measured(cluster, ["--url", target, "--mode", "batch", "--batch", str(a.batch),
                                   "--concurrency", str(a.concurrency), "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "batch")
        after = messages(cluster)
        print(f"batched msgpack ({a.batch}/request, {a.concurrency} in flight): "
              f"{batch['tasks_per_s']:,.0f} tasks/s placed ({batch['placed']} tasks, "
              f"{batch['errors']} failed requests, p50 {batch['p50_ms']:.1f} ms/request)")
        print_cpu("batched", batch)
        if a.batch_only:
            ok = True
            return batch["placed"], batch["tasks_per_s"]
        cluster.profile(signal.SIGUSR1, a.profile_phase == "single")
        single = measured(cluster, ["--url", target, "--mode", "single", "--concurrency",
                                    str(a.single_concurrency), "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "single")
        print(f"single JSON ({a.single_concurrency} in flight): "
              f"{single['tasks_per_s']:,.0f} tasks/s placed ({single['errors']} failed)")
        print_cpu("single", single)
        rate = single["tasks_per_s"] / 2
        cluster.profile(signal.SIGUSR1, a.profile_phase == "latency")
        half = run_loadgen(["--url", target, "--mode", "single", "--rate", f"{rate:.1f}",
                            "--concurrency", "256", "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "latency")
        print(f"submit->enqueued latency at half the single-task peak ({rate:,.0f} tasks/s, "
              f"open loop): p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms")
        floor = run_loadgen(["--url", target, "--mode", "healthz", "--rate", f"{rate:.1f}",
                             "--concurrency", "256", "--seconds", str(a.seconds)])
        print(f"  control, GET /healthz on scheduler 0 at the same rate (one hop, no "
              f"placement): p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        placed = batch["placed"]
        per_type = {k: (after.get(k, 0) - before.get(k, 0)) / placed
                    for k in sorted(set(after) | set(before)) if placed}
        from dodoor.messages import SCHEDULING_TYPES
        sched = sum(v for k, v in per_type.items() if k in SCHEDULING_TYPES)
        print("messages per task (batched run): " + ", ".join(
            f"{k} {v:.3f}" for k, v in per_type.items() if v) + f"; scheduling {sched:.3f}")
        print(f"vs issue targets: batched {batch['tasks_per_s'] / 20000:.2f}x of 20,000 tasks/s; "
              f"p99 {half['p99_ms'] / 5.0:.2f}x of 5 ms")
        ok = True
        return batch["placed"], batch["tasks_per_s"]
    except BaseException:
        print(f"failed; daemon logs kept in {tmp}", file=sys.stderr)
        raise
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
