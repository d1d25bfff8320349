"""Live rebalancing on vs off, alternating in one run (not a test; prints figures).

Each round starts 1 load store (``--rebalance`` or not), 1 scheduler and
``--agents`` process-executor agents (2 slots each) on 127.0.0.1, and submits the
same seeded open-loop workload: tasks that run ``sleep`` for their true duration
(exponential, mean ``--mean-ms``) but declare it with a log-normal error of
``--sigma`` (so the scheduler's view is wrong and queues form), at ``--load`` of
the slots. It waits for every task to end and reports, per round: mean and p99
of submit→end, scheduling messages per task (every daemon's sent messages of the
scheduling types: enqueues, deltas, snapshots, reports, and with rebalancing the
move orders, counted as ``cancel``, and the hand-over enqueues), and the moves.

Usage: python benchmarks/live_rebalance.py [--rounds 2] [--tasks 160] [--agents 4]
       [--sigma 1.0] [--load 0.8] [--mean-ms 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dodoor.messages import SCHEDULING_TYPES  # noqa: E402
from tests.faults.conftest import ProcCluster  # noqa: E402

SLOTS = 2
SENT = re.compile(r'^dodoor_messages_total\{direction="sent",type="(\w+)"\} ([0-9.e+]+)$', re.M)


def workload(seed: int, n: int, mean_ms: float, sigma: float, rate_per_s: float):
    """[(at_s, task)]: Poisson arrivals; true duration runs, a wrong one is declared."""
    rng = random.Random(seed)
    out, at = [], 0.0
    for i in range(n):
        at += rng.expovariate(rate_per_s)
        true_ms = min(max(rng.expovariate(1.0 / mean_ms), 20.0), 8 * mean_ms)
        declared = max(true_ms * math.exp(rng.gauss(0.0, sigma)), 1.0)
        out.append((at, {"id": f"t{seed}-{i}", "cores": 1, "memory_mb": 64,
                         "duration_ms": round(declared, 1),
                         "command": ["sleep", f"{true_ms / 1000.0:.3f}"]}))
    return out


def sent_messages(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for m in SENT.finditer(text):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def one_round(args: argparse.Namespace, rebalance: bool, workdir: Path) -> dict:
    extra = ("--rebalance",) if rebalance else ()
    workdir.mkdir(parents=True)
    c = ProcCluster(workdir, agents=args.agents, schedulers=1, slots=SLOTS, executor="process",
                    loadstore_extra=extra)
    try:
        rate = args.load * args.agents * SLOTS / (args.mean_ms / 1000.0)
        plan = workload(args.seed, args.tasks, args.mean_ms, args.sigma, rate)
        submitted: dict[str, float] = {}
        errors: list[str] = []

        def submit_all() -> None:
            t0 = time.monotonic()
            for at, task in plan:
                delay = t0 + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                submitted[task["id"]] = time.time() * 1000.0
                code, body = c.submit(0, [task])
                if code != 202:
                    errors.append(f"{task['id']}: {code} {body}")

        sender = threading.Thread(target=submit_all)
        sender.start()
        sender.join()
        states = c.wait_terminal(0, list(submitted), timeout=300)
        ends = []
        for tid in submitted:
            st = c.status(0, tid)
            ends.append(st["finished_ms"] - submitted[tid])
        urls = [c.loadstore.url, *(s.url for s in c.schedulers), *(a.url for a in c.agents)]
        msgs: dict[str, float] = {}
        for url in urls:
            for kind, n in sent_messages(url).items():
                if kind in SCHEDULING_TYPES:
                    msgs[kind] = msgs.get(kind, 0.0) + n
        ends.sort()
        return {
            "rebalance": rebalance, "errors": errors,
            "succeeded": sum(1 for s in states.values() if s == "succeeded"),
            "mean_s": sum(ends) / len(ends) / 1000.0,
            "p99_s": ends[min(len(ends) - 1, int(0.99 * len(ends)))] / 1000.0,
            "per_task": sum(msgs.values()) / len(submitted),
            "by_type": {k: round(v / len(submitted), 3) for k, v in sorted(msgs.items())},
            "moves": metric(c.loadstore.url, "dodoor_loadstore_moves_total"),
            "misses": metric(c.loadstore.url, "dodoor_loadstore_move_misses_total"),
        }
    finally:
        c.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=160)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--mean-ms", type=float, default=400.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="dodoor-rebalance-") as tmp:
        for r in range(args.rounds):
            for rebalance in (False, True):
                run = one_round(args, rebalance, Path(tmp) / f"r{r}-{int(rebalance)}")
                runs.append(run)
                print(f"round {r} rebalance={'on ' if rebalance else 'off'}: "
                      f"{run['succeeded']}/{args.tasks} succeeded, mean {run['mean_s']:.2f} s, "
                      f"p99 {run['p99_s']:.2f} s, {run['per_task']:.3f} msgs/task, moves "
                      f"{run['moves']:g}, misses {run['misses']:g}; {run['by_type']}"
                      + (f"; errors {run['errors'][:3]}" if run["errors"] else ""), flush=True)
    for r in range(args.rounds):
        off, on = runs[2 * r], runs[2 * r + 1]
        print(f"round {r} on/off: mean {on['mean_s'] / off['mean_s']:.2f}x, p99 "
              f"{on['p99_s'] / off['p99_s']:.2f}x, messages/task "
              f"{on['per_task'] / off['per_task']:.2f}x")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
