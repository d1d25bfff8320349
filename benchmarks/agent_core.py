"""CPU per task of the agent's core alone: a ``NodeAgent`` in one process, with a real
journal and the sleep executor, no HTTP, no scheduler.

Tasks of ``--duration-ms`` (default 0.001, as ``vs_peers.py``'s) are accepted in
batches of ``--batch`` on a node of ``--slots`` slots; the next batch is accepted
once all but two slots' worth of the last one have ended, so the queue never runs
dry. Prints the event loop's CPU per task (the thread that runs the agent), the
whole process's (with the journal thread), and tasks/s; with ``--baseline-tree``
the same rounds, alternating, on another checkout and the ratios per round.

    python benchmarks/agent_core.py [--tasks 3000] [--rounds 3] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _measure(tasks: int, batch: int, slots: int, duration_ms: float) -> dict:
    # imported here: the child runs with its own tree first on sys.path
    import numpy as np

    from dodoor.clock import WallClock
    from dodoor.resources import RESOURCES, Task
    from dodoor.taskstates import SUCCEEDED
    from node_agent.journal import Journal
    from node_agent.node import NodeAgent
    from node_agent.sleep_executor import SleepExecutor

    capacity = np.array([8.0, 8192.0] + [1e6] * (len(RESOURCES) - 2))
    with tempfile.TemporaryDirectory(prefix="dodoor-agent-core-") as tmp:
        journal = Journal(Path(tmp) / "j.sqlite")
        await journal.open()
        agent = NodeAgent("n0", capacity, slots, SleepExecutor(), journal, WallClock())
        await agent.resume()
        todo = [Task(f"t{i}", 0.01, 64.0, 0.0, duration_ms) for i in range(tasks)]
        loop = asyncio.get_running_loop()
        want: list = [0, loop.create_future()]

        def on_change() -> None:
            if agent.finished[SUCCEEDED] >= want[0] and not want[1].done():
                want[1].set_result(None)

        agent.on_change(on_change)
        wall, thread, proc = time.perf_counter(), time.thread_time(), time.process_time()
        for i in range(0, tasks, batch):
            want[:] = [min(tasks, i + batch) - 2 * slots, loop.create_future()]
            await agent.submit_many(todo[i:i + batch], "s")
            await want[1]
        while agent.finished[SUCCEEDED] < tasks or agent.committing:
            await asyncio.sleep(0.001)
        out = {"loop_us": (time.thread_time() - thread) / tasks * 1e6,
               "process_us": (time.process_time() - proc) / tasks * 1e6,
               "tasks_per_s": tasks / (time.perf_counter() - wall)}
        await agent.close()
        await journal.close()
    return out


def child(argv: list[str]) -> None:
    a = _parser().parse_args(argv)
    import uvloop  # as the daemons run

    print(json.dumps(uvloop.run(_measure(a.tasks, a.batch, a.slots, a.duration_ms))))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=3000)
    p.add_argument("--batch", type=int, default=60)
    p.add_argument("--slots", type=int, default=1)
    p.add_argument("--duration-ms", type=float, default=0.001)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-tree", default="")
    return p


def _run(tree: Path, a: argparse.Namespace) -> dict:
    argv = ["--tasks", str(a.tasks), "--batch", str(a.batch), "--slots", str(a.slots),
            "--duration-ms", str(a.duration_ms)]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import runpy; "
            "m = runpy.run_path(sys.argv[2]); m['child'](sys.argv[3:])")
    out = subprocess.run([sys.executable, "-c", code, str(tree), str(Path(__file__).resolve()),
                          *argv], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    a = _parser().parse_args()
    trees = {"this tree": ROOT}
    if a.baseline_tree:
        trees["baseline"] = Path(a.baseline_tree).resolve()
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(a.rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            res = _run(trees[name], a)
            results[name].append(res)
            print(f"round {r + 1} {name}: loop {res['loop_us']:.1f} us/task, process "
                  f"{res['process_us']:.1f} us/task, {res['tasks_per_s']:,.0f} tasks/s", flush=True)
    print(f"== {a.tasks} tasks of {a.duration_ms} ms, {a.slots} slot(s), batches of {a.batch}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, rows in results.items():
        print(f"{name}: medians loop {statistics.median(x['loop_us'] for x in rows):.1f} us/task, "
              f"process {statistics.median(x['process_us'] for x in rows):.1f} us/task, "
              f"{statistics.median(x['tasks_per_s'] for x in rows):,.0f} tasks/s")
    if a.baseline_tree:
        for key in ("loop_us", "process_us", "tasks_per_s"):
            ratios = [t[key] / b[key] for t, b in zip(results["this tree"], results["baseline"])]
            print(f"this tree / baseline, {key}: median {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
