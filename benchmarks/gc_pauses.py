"""Garbage-collector pauses of a daemon-like allocation pattern, by GC setting (not a test).

A stand-in for a scheduler under single submissions: each "request" parses a
JSON task (``dodoor.validation.parse_task``) and keeps an entry in a bounded
log of 100,000 placements, so most objects die young and a large, slowly
renewed state survives. Run once per setting in a fresh process (the daemons'
modules imported first, as at startup), it prints the collector's CPU time
(``time.thread_time`` in ``gc.callbacks``, so a busy machine does not inflate
it), the pauses' count, p50/p99/max and the collections per generation.

Usage: python benchmarks/gc_pauses.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the options tried for the daemons (none kept, docs/throughput.md): freeze what exists
# before serving; and also make young collections rarer (every 20,000 allocations, the
# middle generation every 3 of them)
SETTINGS = ("python-default", "freeze", "young-20000")


def one(setting: str, requests: int) -> None:
    sys.path.insert(0, str(REPO))
    for module in ("scheduler.app", "node_agent.app"):  # the daemons' modules, as at startup
        importlib.import_module(module)
    from dodoor.validation import parse_task

    gc.collect()
    if setting != "python-default":
        gc.freeze()
    if setting == "young-20000":
        gc.set_threshold(20_000, 3, gc.get_threshold()[2])
    pauses: list[tuple[float, int]] = []
    started = [0.0]

    def timer(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            pauses.append((time.thread_time() - started[0], info["generation"]))

    gc.callbacks.append(timer)
    log: dict = {}
    body = json.dumps({"id": "x", "cores": 0.01, "memory_mb": 1, "duration_ms": 1}).encode()
    cpu0 = time.thread_time()
    for i in range(requests):
        obj = json.loads(body)
        obj["id"] = f"t{i}"
        task = parse_task(obj)
        log[task.task_id] = ("node-1", [task], {"placements": [{"id": task.task_id}]})
        if len(log) > 100_000:
            del log[next(iter(log))]
    cpu = time.thread_time() - cpu0
    gc.callbacks.remove(timer)
    xs = sorted(p for p, _ in pauses) or [0.0]
    by_gen = [sum(1 for _, g in pauses if g == gen) for gen in range(3)]
    print(f"{setting:15s} GC CPU {sum(xs) * 1e3:6.0f} ms of {cpu * 1e3:6.0f} ms; {len(pauses):5d} "
          f"pauses, p50 {xs[len(xs) // 2] * 1e3:.3f} ms, p99 {xs[int(.99 * len(xs))] * 1e3:.2f} ms, "
          f"max {xs[-1] * 1e3:.1f} ms; collections by generation {by_gen}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        one(a.one, a.requests)
        return
    for r in range(a.rounds):
        for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            subprocess.run([sys.executable, __file__, "--one", setting,
                            "--requests", str(a.requests)], check=True)


if __name__ == "__main__":
    main()
