"""CPU per task of the process executor alone: N ``true`` tasks through ``ProcessExecutor``.

Runs the executor in one process (no agent, no journal, no HTTP), as the agent's
executor is configured (an exit directory, so the exit-status shim runs), 4
tasks at a time. Prints tasks/s and CPU per task split by process: this one
(the agent's share), the task launcher, and the tasks themselves (``sh`` and
``true``, reaped by the launcher or, without one, by this process).

    python benchmarks/process_launch.py [--tasks 300] [--rounds 2] [--baseline-tree PATH]

With ``--baseline-tree`` (e.g. ``git worktree add --detach /tmp/base main``) each
round also runs that checkout's executor, alternating, and the ratios are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _launcher_pid(ex: object) -> int | None:
    launcher = getattr(ex, "_launcher", None)  # absent in a tree from before the launcher
    return None if launcher is None else launcher.pid


def _cpu(launcher: int | None) -> tuple[float, float, float]:
    """(this process, the launcher, the tasks) CPU seconds so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    own = me.ru_utime + me.ru_stime
    if launcher is None:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own, 0.0, kids.ru_utime + kids.ru_stime
    import psutil

    t = psutil.Process(launcher).cpu_times()
    return own, t.user + t.system, t.children_user + t.children_system


async def measure(tasks: int, parallel: int) -> dict:
    from dodoor.resources import Task
    from node_agent.process_executor import ProcessExecutor

    ex = ProcessExecutor(exit_dir=tempfile.mkdtemp(prefix="dodoor-launch-"))
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with gate:
            result = await ex.run(Task(f"t{i}", 1.0, 64.0, command=("true",)))
            if result.state != "succeeded":
                raise RuntimeError(f"task {i}: {result}")
            await ex.forget(f"t{i}")

    await one(-1)  # starts the launcher, if there is one
    launcher = _launcher_pid(ex)
    cpu0, start = _cpu(launcher), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(tasks)))
    elapsed = time.perf_counter() - start
    cpu1 = _cpu(launcher)
    await ex.close()
    us = [(b - a) * 1e6 / tasks for a, b in zip(cpu0, cpu1)]
    return {"tasks_per_s": tasks / elapsed, "agent_us": us[0], "launcher_us": us[1],
            "tasks_us": us[2]}


def _line(name: str, r: dict) -> str:
    return (f"{name}: {r['tasks_per_s']:.0f} tasks/s; CPU per task: agent {r['agent_us']:.0f} us, "
            f"launcher {r['launcher_us']:.0f} us, tasks {r['tasks_us']:.0f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--baseline-tree", default="", metavar="PATH")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(asyncio.run(measure(a.tasks, a.parallel))))
        return
    trees = {"this tree": ROOT}
    if a.baseline_tree:
        trees["baseline"] = Path(a.baseline_tree).resolve()
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(a.rounds):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                                  "--tasks", str(a.tasks), "--parallel", str(a.parallel)],
                                 cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                                 capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} " + _line(name, results[name][-1]), flush=True)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"\n== {a.tasks} `true` tasks, {a.parallel} at a time, {a.rounds} rounds; "
          f"load average {load}")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in results.items()}
    for name in trees:
        print(_line(name + " (medians)", med[name]))
    if "baseline" in med:
        new, old = med["this tree"], med["baseline"]
        print(f"this tree / baseline: tasks/s {new['tasks_per_s'] / old['tasks_per_s']:.2f}x, "
              f"agent CPU {new['agent_us'] / old['agent_us']:.2f}x, agent + launcher CPU "
              f"{(new['agent_us'] + new['launcher_us']) / old['agent_us']:.2f}x")


if __name__ == "__main__":
    main()
