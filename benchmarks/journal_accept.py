"""An agent journal's accept latency under single accepts, by end delay (not a test).

The agent's part of issue 17's latency path, in one process with nothing else
on its event loop: accepts of one task each arrive open loop (Poisson, seeded)
at ``--rate`` per second, as single submissions reach one agent, and each
accepted task ends at once, as the sleep executor's do (``finish_soon`` after
the accept's commit). It prints the accepts' latency (``accept_many`` until its
commit is durable) p50/p99, how long ends took to commit, the group commits
per task, and the share of accepts sent while a commit of ends alone was under
way (which they waited for before their own). The journals of every
``--delays`` value (``Journal(end_delay_ms=...)``, tried on branch ``latency``
and not kept, docs/throughput.md) run in one child process per tree, taking
turns in blocks of ``--block`` accepts; a tree whose ``Journal`` takes no
delay commits every end at once and runs one journal. Trees alternate round by
round.

Usage: python benchmarks/journal_accept.py [--rate 80] [--tasks 1500] [--rounds 3]
       [--delays 0,5,20] [--block 50] [--tree DIR] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def child(rate: float, n: int, configs: list[float], block: int, seed: int) -> dict:
    """Every end delay's journal in this one process, taking turns in blocks of
    ``block`` accepts, so a swing of the machine's load or the disk's falls on all."""
    from dodoor.resources import Task
    from node_agent.journal import Journal
    from node_agent.journal_store import JournalStore

    commits: dict[str, int] = {}
    ends_alone: dict[str, list[tuple[float, float]]] = {}  # path -> commits of ends only
    commit = JournalStore._commit

    def counted(self, conn, batch, *args, **kwargs):
        commits[self.path] = commits.get(self.path, 0) + 1
        t0 = time.perf_counter()
        try:
            return commit(self, conn, batch, *args, **kwargs)
        finally:
            if all("finish" in getattr(w, "__qualname__", "") for w, _, _ in batch):
                ends_alone.setdefault(self.path, []).append((t0, time.perf_counter()))

    JournalStore._commit = counted  # type: ignore[method-assign]
    where = Path(tempfile.mkdtemp(prefix="journal-accept-"))
    takes_delay = "end_delay_ms" in inspect.signature(Journal).parameters
    if not takes_delay:  # a tree without the end delay commits every end at once
        configs = [0.0]
    journals = []
    for d in configs:
        name = where / f"j{d:g}.sqlite"
        j = Journal(name, end_delay_ms=d) if takes_delay else Journal(name)
        await j.open()
        journals.append(j)
    rng = random.Random(seed)
    out = {c: {"accepts": [], "ends": [], "sent": []} for c in configs}
    loop = asyncio.get_running_loop()

    async def one(j, res, i: int) -> asyncio.Future:
        t0 = time.perf_counter()
        await j.accept_many([Task(f"t{i}", 0.01, 64.0, 0.0, 0.001)], "s", 1.0)
        res["accepts"].append(time.perf_counter() - t0)
        res["sent"].append(t0)
        t1 = time.perf_counter()
        ended = j.finish_soon(f"t{i}", "succeeded", 2.0, 0, None, "", started_ms=1.5)
        ended.add_done_callback(lambda _f: res["ends"].append(time.perf_counter() - t1))
        return ended

    done = 0
    while done < n:
        for c, j in zip(configs, journals):
            due, runs = loop.time(), []
            for i in range(done, min(n, done + block)):
                due += rng.expovariate(rate)
                await asyncio.sleep(max(0.0, due - loop.time()))
                runs.append(asyncio.ensure_future(one(j, out[c], i)))
            await asyncio.gather(*await asyncio.gather(*runs))
        done += block
    for j in journals:
        await j.close()
    return {f"{c:g} ms": {"p50": quantile(r["accepts"], .5) * 1e3,
                     "p99": quantile(r["accepts"], .99) * 1e3,
                     "end_p50": quantile(r["ends"], .5) * 1e3,
                     "end_p99": quantile(r["ends"], .99) * 1e3,
                     "commits_per_task": commits.get(j.path, 0) / n,
                     "behind_end": behind(r["sent"], ends_alone.get(j.path, [])) / n}
            for (c, r), j in zip(out.items(), journals)}


def behind(sent: list[float], spans: list[tuple[float, float]]) -> int:
    """How many accepts were sent while a commit of ends alone was under way (so they
    waited for it before their own)."""
    spans = sorted(spans)
    starts = [a for a, _ in spans]
    count = 0
    for t in sent:
        k = bisect.bisect_right(starts, t) - 1
        count += k >= 0 and t < spans[k][1]
    return count


def spawn(tree: Path, a: argparse.Namespace, delays: str, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", delays, "--rate", str(a.rate),
         "--tasks", str(a.tasks), "--block", str(a.block), "--seed", str(seed)],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
        check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=80.0)
    p.add_argument("--tasks", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--delays", default="0,5,20", help="end delays (ms) for trees that take one")
    p.add_argument("--tree", default=str(REPO), metavar="DIR",
                   help="the tree measured with every delay (default this one; the end "
                        "delay exists in branch latency's 11a9c57)")
    p.add_argument("--baseline-tree", default="", metavar="DIR")
    p.add_argument("--block", type=int, default=50, help="accepts per turn of each delay")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        configs = [float(d) for d in a.child.split(",")]
        print(json.dumps(asyncio.run(child(a.rate, a.tasks, configs, a.block, a.seed))))
        return
    trees = [(Path(a.tree).resolve(), "this")]
    if a.baseline_tree:
        trees.insert(0, (Path(a.baseline_tree).resolve(), "base"))
    print(f"{a.tasks} single accepts per delay at {a.rate:g}/s, each ended at once, delays "
          f"taking turns in blocks of {a.block}; load average {os.getloadavg()[0]:.1f}")
    for r in range(a.rounds):
        for tree, label in (trees if r % 2 == 0 else trees[::-1]):
            res = spawn(tree, a, a.delays if label == "this" else "0", a.seed + r)
            for config, x in res.items():
                name = f"{label}, end delay {config}"
                print(f"  round {r + 1} {name:30s} accept p50 {x['p50']:6.2f} ms  p99 "
                      f"{x['p99']:7.2f} ms; end committed p50 {x['end_p50']:6.2f} ms  "
                      f"p99 {x['end_p99']:7.2f} ms; {x['commits_per_task']:.2f} commits/task, "
                      f"{100 * x['behind_end']:.1f} % of accepts behind an end's commit")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
