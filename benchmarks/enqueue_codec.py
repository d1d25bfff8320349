"""CPU per task of an enqueue batch's wire hop alone: building the ``EnqueueBatch``
and encoding it (the scheduler's side), decoding it with every task validated (the
agent's side), and its size, in one process with no HTTP.

The tasks are ``vs_peers.py``'s (0.01 cores, 64 MiB, 0.001 ms, nothing to run),
``--batch`` per message. Each figure is the best of 7 repeats (the machine is
shared). With ``--baseline-tree`` the same rounds, alternating, on another
checkout, and the ratios per round.

    python benchmarks/enqueue_codec.py [--batch 500] [--rounds 3] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("encode_us", "decode_us", "bytes")


def _best_us(fn, n_tasks: int, repeats: int = 7, calls: int = 40) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best / n_tasks * 1e6


def child(argv: list[str]) -> None:
    # imported here: the child runs with its own tree first on sys.path
    from dodoor.resources import Task
    from dodoor.wire import EnqueueBatch, decode, encode

    n = int(argv[0])
    tasks = tuple(Task(f"c0/{i:08d}", 0.01, 64.0, 0.0, 0.001) for i in range(n))
    data = encode(EnqueueBatch(tasks, "scheduler-0", "life-1"))
    assert decode(data, EnqueueBatch).tasks == tasks
    out = {"encode_us": _best_us(lambda: encode(EnqueueBatch(tasks, "scheduler-0", "life-1")), n),
           "decode_us": _best_us(lambda: decode(data, EnqueueBatch), n),
           "bytes": len(data) / n}
    print(json.dumps(out))


def _run(tree: Path, batch: int) -> dict:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import runpy; "
            "m = runpy.run_path(sys.argv[2]); m['child'](sys.argv[3:])")
    out = subprocess.run([sys.executable, "-c", code, str(tree), str(Path(__file__).resolve()),
                          str(batch)], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-tree", default="")
    a = p.parse_args()
    trees = {"this tree": ROOT}
    if a.baseline_tree:
        trees["baseline"] = Path(a.baseline_tree).resolve()
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(a.rounds):
        for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
            res = _run(trees[name], a.batch)
            results[name].append(res)
            print(f"round {r + 1} {name}: build+encode {res['encode_us']:.2f} us/task, decode "
                  f"{res['decode_us']:.2f} us/task, {res['bytes']:.1f} bytes/task", flush=True)
    print(f"== EnqueueBatch of {a.batch}; load average {os.getloadavg()[0]:.1f}")
    if a.baseline_tree:
        for key in FIGURES:
            ratios = [t[key] / b[key] for t, b in zip(results["this tree"], results["baseline"])]
            print(f"this tree / baseline, {key}: median {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
