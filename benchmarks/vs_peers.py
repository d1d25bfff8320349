"""End-to-end throughput of no-op tasks on dodoor, Dask and Ray, side by side (prints figures).

The same N no-op tasks with resource requests on each system, timed from the
first submission until every task has ended, each run in its own child
process, alternating systems round by round (the order rotates):

* ``dodoor-sleep``: ``dodoor cluster up``'s processes (1 load store,
  ``--schedulers`` schedulers, ``--agents`` agents), sleep executor, tasks of
  0.001 ms (0.01 cores and 64 MiB each, on every system); submitted with ``dodoor.client`` in msgpack batches of ``--batch``
  (each batch holds ids of one scheduler), ``--in-flight`` at a time, and
  followed with the batch status long poll (``POST /v1/tasks/status``);
* ``dodoor-process``: the same with the process executor running ``true``;
* ``dask``: a ``LocalCluster`` of ``--workers`` single-thread worker processes;
* ``ray``: ``ray.init`` with ``--workers`` CPUs, one CPU per task.

Dask and Ray come from the ``compare`` extra (``pip install -e '.[compare]'``);
one that is not installed is skipped with a line saying so. For dodoor it also
prints the CPU per task of each process kind (psutil, over the timed part).

Usage: python benchmarks/vs_peers.py [--tasks 20000] [--rounds 3] [--systems ...]
       [--profile-agent OUT.prof] [--profile-scheduler OUT.prof]

The profiler flags run agent 0 or scheduler 0 under cProfile (CPU time) during
the timed part of the last ``dodoor-sleep`` round (or ``dodoor-process`` when
that is the only dodoor system run).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ("dodoor-sleep", "dodoor-process", "dask", "ray")
PEER_MODULES = {"dask": "distributed", "ray": "ray"}
KINDS = ("agents", "schedulers", "loadstore", "client")
# every system's tasks ask for this much; the process executor makes it the task's
# address-space limit, and `sh` running `true` needs more than a few MiB
TASK_MEMORY_MB = 64


# -- dodoor, in its own process ---------------------------------------------

def _dodoor_cluster(a: argparse.Namespace, workdir: Path):
    from dodoor.tools.localcluster import ClusterSettings, LocalCluster

    class ProfiledCluster(LocalCluster):
        """``cluster up``'s processes, with one of them under the profiler (if asked)."""

        def _command(self, proc):
            if proc.name != a.profile_name:
                return super()._command(proc)
            return [sys.executable, __file__, "profiled", "cprofile", a.profile_out,
                    "--log-level", "WARNING", *proc.argv]

    settings = ClusterSettings(agents=a.agents, schedulers=a.schedulers,
                               executor=a.executor, base_port=a.base_port, workdir=workdir)
    return ProfiledCluster(settings)


def _wait_for_views(urls: list[str], agents: int, timeout_s: float = 60.0) -> None:
    """Until every scheduler sees every agent (a task placed earlier sees fewer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = []
        for url in urls:
            with urllib.request.urlopen(url + "/v1/nodes", timeout=5) as resp:
                seen.append(len(json.loads(resp.read())["nodes"]))
        if min(seen) >= agents:
            return
        time.sleep(0.1)
    raise TimeoutError(f"schedulers {urls} never saw all {agents} agents")


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far per process kind; an agent's children count, reaped (its tasks)
    or alive (its task launcher, with the tasks that one reaped)."""
    import psutil

    out = dict.fromkeys(KINDS, 0.0)
    for name, pid in pids.items():
        kind = ("agents" if name.startswith("agent") else
                "schedulers" if name.startswith("scheduler") else "loadstore")
        proc = psutil.Process(pid)
        for member in [proc, *proc.children(recursive=True)]:
            try:
                t = member.cpu_times()
            except psutil.NoSuchProcess:
                continue  # a task that ended meanwhile: counted once reaped
            out[kind] += t.user + t.system + t.children_user + t.children_system
    t = psutil.Process().cpu_times()
    out["client"] = t.user + t.system
    return out


async def _drive(a: argparse.Namespace, urls: list[str], pids: dict[str, int],
                 signal_profiled) -> dict:
    from dodoor.client import AsyncClient, rendezvous

    task = {"cores": 0.01, "memory_mb": TASK_MEMORY_MB, "duration_ms": 0.001}
    if a.executor == "process":
        task["command"] = ["true"]
    run = uuid.uuid4().hex[:8]

    def batches(n: int, tag: str) -> list[list[dict]]:
        by_sched: dict[str, list[dict]] = {}
        for i in range(n):
            t = {**task, "id": f"{run}-{tag}{i}"}
            by_sched.setdefault(rendezvous(urls, t["id"])[0], []).append(t)
        return [g[i:i + a.batch] for g in by_sched.values() for i in range(0, len(g), a.batch)]

    async with AsyncClient(urls, poll_interval=a.poll_interval, timeout=60) as client:
        async def submit_all(chunks: list[list[dict]]) -> list:
            gate = asyncio.Semaphore(a.in_flight)

            async def one(chunk: list[dict]) -> list:
                async with gate:
                    return await client.submit_many(chunk)

            return [h for hs in await asyncio.gather(*(one(c) for c in chunks)) for h in hs]

        await client.wait(await submit_all(batches(200, "w")))  # warm-up, untimed
        chunks = batches(a.tasks, "t")
        signal_profiled(signal.SIGUSR1)
        cpu0, start = _cpu(pids), time.perf_counter()
        handles = await submit_all(chunks)
        await client.wait(handles)
        elapsed = time.perf_counter() - start
        cpu1 = _cpu(pids)
        signal_profiled(signal.SIGUSR2)
    states = Counter(h.last["state"] for h in handles)
    if states.get("succeeded", 0) != a.tasks:
        raise RuntimeError(f"not every task succeeded: {dict(states)}")
    return {"tasks": a.tasks, "seconds": elapsed, "tasks_per_s": a.tasks / elapsed,
            "cpu_us": {k: (cpu1[k] - cpu0[k]) * 1e6 / a.tasks for k in KINDS}}


def dodoor_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--executor", choices=("sleep", "process"), required=True)
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--schedulers", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--in-flight", type=int, required=True)
    p.add_argument("--poll-interval", type=float, required=True)
    p.add_argument("--base-port", type=int, required=True)
    p.add_argument("--profile-name", default="")
    p.add_argument("--profile-out", default="")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dodoor-vs-peers-") as tmp:
        with _dodoor_cluster(a, Path(tmp)) as cluster:
            _wait_for_views(cluster.scheduler_urls, a.agents)
            pids = cluster.pids

            def signal_profiled(sig: int) -> None:
                if a.profile_name:
                    os.kill(pids[a.profile_name], sig)
                    time.sleep(0.3)  # the handler runs before the timed part starts

            out = asyncio.run(_drive(a, cluster.scheduler_urls, pids, signal_profiled))
    print(json.dumps(out))


# -- the comparison (this process) ------------------------------------------

BASE = "@base"  # suffix of a system run from --baseline-tree


def run_child(argv: list[str], timeout_s: float, tree: Path = REPO) -> dict:
    script = tree / "benchmarks" / "vs_peers.py"
    out = subprocess.run([sys.executable, str(script), *argv], cwd=tree, capture_output=True,
                         text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {out.returncode}): {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_argv(a: argparse.Namespace, system: str, profiled: bool) -> list[str]:
    if system in PEER_MODULES:
        return [system, "--tasks", str(a.tasks), "--workers", str(a.workers),
                "--memory-mb", str(TASK_MEMORY_MB)]
    argv = ["dodoor", "--tasks", str(a.tasks), "--executor",
            system.removesuffix(BASE).split("-")[1],
            "--agents", str(a.agents), "--schedulers", str(a.schedulers), "--batch",
            str(a.batch), "--in-flight", str(a.in_flight), "--poll-interval",
            str(a.poll_interval), "--base-port", str(a.base_port)]
    if profiled and a.profile_agent:
        argv += ["--profile-name", "agent-0", "--profile-out", a.profile_agent]
    elif profiled and a.profile_scheduler:
        argv += ["--profile-name", "scheduler-0", "--profile-out", a.profile_scheduler]
    return argv


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"


def report(a: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    print(f"\n== {a.tasks} no-op tasks with resource requests, submit -> all ended, "
          f"{a.rounds} rounds alternating; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    for system, runs in results.items():
        rates = [r["tasks_per_s"] for r in runs]
        print(f"{system:15s} tasks/s median {spread(rates)}  rounds: "
              + ", ".join(f"{x:,.0f}" for x in rates))
    for base in (s for s in results if s.endswith(BASE)):
        mine = base.removesuffix(BASE)
        for key, what in (("tasks_per_s", "tasks/s"), ("cpu_total", "daemons' CPU per task")):
            ratios = [_figure(m, key) / _figure(b, key) for m, b in zip(results[mine], results[base])]
            print(f"{mine} this tree / {base}, {what}: median {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    for mine in (s for s in results if s.startswith("dodoor") and not s.endswith(BASE)):
        for peer in (s for s in results if s in PEER_MODULES):
            # ratios within a round: both ran minutes apart at most, on the same machine
            ratios = [m["tasks_per_s"] / p["tasks_per_s"]
                      for m, p in zip(results[mine], results[peer])]
            print(f"{mine}/{peer}: median {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    for mine in (s for s in results if s.startswith("dodoor")):
        per = {k: statistics.median(r["cpu_us"][k] for r in results[mine]) for k in KINDS}
        total = sum(per[k] for k in KINDS if k != "client")
        print(f"{mine} CPU per task (medians): " + ", ".join(f"{k} {v:.0f} us"
                                                             for k, v in per.items())
              + f"; daemons together {total:.0f} us")


def _figure(run: dict, key: str) -> float:
    """tasks/s, or the daemons' CPU per task (``cpu_total``) of one run."""
    if key == "cpu_total":
        return sum(v for k, v in run["cpu_us"].items() if k != "client")
    return run[key]


def main() -> None:
    import live_tools  # benchmarks/ is on sys.path when this file runs as a script

    if len(sys.argv) > 1 and sys.argv[1] == "dodoor":
        dodoor_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] in live_tools.HELPERS:
        live_tools.HELPERS[sys.argv[1]](sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated, of {', '.join(SYSTEMS)}")
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--schedulers", type=int, default=2)
    p.add_argument("--batch", type=int, default=500, help="tasks per msgpack submission")
    p.add_argument("--in-flight", type=int, default=4, help="submissions in flight at once")
    p.add_argument("--poll-interval", type=float, default=0.05,
                   help="the client's pause between status rounds, seconds")
    p.add_argument("--workers", type=int, default=4,
                   help="Dask worker processes / Ray CPUs (one task at a time each)")
    p.add_argument("--base-port", type=int, default=18290)
    p.add_argument("--profile-agent", default="", metavar="OUT",
                   help="cProfile agent 0 during the last dodoor round, into OUT")
    p.add_argument("--profile-scheduler", default="", metavar="OUT",
                   help="cProfile scheduler 0 during the last dodoor round, into OUT")
    p.add_argument("--baseline-tree", default="", metavar="PATH",
                   help="also run each dodoor system from this checkout (e.g. `git worktree "
                        "add /tmp/base main`), alternating, and print this tree / it")
    a = p.parse_args()
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            p.error(f"--systems: {s!r} is not one of {', '.join(SYSTEMS)}")
    base_tree = Path(a.baseline_tree).resolve() if a.baseline_tree else None
    if base_tree is not None:
        if not (base_tree / "benchmarks" / "vs_peers.py").is_file():
            p.error(f"--baseline-tree: {a.baseline_tree!r} has no benchmarks/vs_peers.py")
        systems += [s + BASE for s in systems if s.startswith("dodoor")]
    if a.tasks < 1 or a.rounds < 1:
        p.error(f"--tasks and --rounds must be >= 1, got {a.tasks} and {a.rounds}")
    for peer, module in PEER_MODULES.items():
        if peer in systems and importlib.util.find_spec(module) is None:
            print(f"{peer} skipped: {module} is not installed (pip install -e '.[compare]')")
            systems.remove(peer)
    profiled = next((s for s in systems if s.startswith("dodoor")), "")
    results: dict[str, list[dict]] = {s: [] for s in systems}
    for r in range(a.rounds):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for system in order:
            res = run_child(child_argv(a, system, r == a.rounds - 1 and system == profiled),
                            timeout_s=900,
                            tree=base_tree if system.endswith(BASE) and base_tree else REPO)
            results[system].append(res)
            print(f"round {r + 1} {system}: {res['tasks_per_s']:,.0f} tasks/s "
                  f"({res['seconds']:.2f} s)", flush=True)
    report(a, results)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
