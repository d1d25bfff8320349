"""What ``--preempt`` adds to each pass over an agent's queue, beside the pass itself.

An agent's queue with N waiting tasks of mixed classes (0..2) and four running
ones; :meth:`node_agent.preemption.Preemption.consider` (what every pump calls)
is timed off and on, side by side in one process, with the queue's own
backfill pass for scale. Two cases: the running tasks are of the top class (no
victim possible) or of the lowest (victims exist; the round itself is not
started, as no run is attached). The last column is the pass over the same
queue with every task of one class, which skips the ranking by aging.

    python benchmarks/agent_preempt_cost.py [--waiting 1000 10000] [--reps 200] [--slots 4]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dodoor.clock import ManualClock  # noqa: E402
from dodoor.resources import Task  # noqa: E402
from node_agent.preemption import Preemption  # noqa: E402
from node_agent.queue import Entry, TaskQueue  # noqa: E402

NOW_MS = 1e6


class QueueOnly:
    """The parts of a NodeAgent that ``consider`` reads."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue, self.clock = queue, ManualClock(NOW_MS)
        self.fencing, self._closing = False, False

    def has_run(self, task_id: str) -> bool:
        return False  # no run under way: ``consider`` stops at the first victim


def build(waiting: int, running_class: int, slots: int, seed: int = 1,
          classes: tuple[int, ...] = (0, 1, 2)) -> TaskQueue:
    queue = TaskQueue(np.array([4.0, 1e6, 0.0]), slots)
    rng = random.Random(seed)
    for i in range(4):
        queue.add(Entry(Task(f"r{i}", 1.0, 10.0, 0.0, 1000.0, priority=running_class)))
    queue.schedule(NOW_MS)
    for i in range(waiting):
        queue.add(Entry(Task(f"w{i}", 1.0, 10.0, 0.0, 1000.0, priority=rng.choice(classes)),
                        queued_ms=NOW_MS - rng.random() * 1e5))
    return queue


def per_call_us(fn, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4,
                        help="4: the running tasks hold every slot; more: slots are free but "
                             "the cores are not, so the pass ranks the queue")
    args = parser.parse_args()
    print("waiting  running-class  consider-off-us  consider-on-us  backfill-pass-us"
          "  one-class-pass-us")
    for n in args.waiting:
        for running_class in (3, 0):
            queue = build(n, running_class, args.slots)
            off = Preemption(QueueOnly(queue), enabled=False)  # type: ignore[arg-type]
            on = Preemption(QueueOnly(queue), enabled=True)  # type: ignore[arg-type]
            t_off = per_call_us(off.consider, args.reps)
            t_on = per_call_us(on.consider, args.reps)
            t_pass = per_call_us(lambda: queue.schedule(NOW_MS), max(1, args.reps // 10))
            plain = build(n, running_class, args.slots, classes=(1,))  # every task of the default class
            t_plain = per_call_us(lambda: plain.schedule(NOW_MS), max(1, args.reps // 10))
            print(f"{n:7d}  {running_class:13d}  {t_off:15.1f}  {t_on:14.1f}  {t_pass:16.1f}"
                  f"  {t_plain:17.1f}")


if __name__ == "__main__":
    main()
