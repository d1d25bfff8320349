"""Serverless-style task functions: the dodoor-task:python image runs this file.

It lives in the package (not beside the Dockerfile) so ``dodoor profile --local``
finds it after ``pip install .``; compose/build-images.sh copies it into the
image as /opt/task/functions.py. It needs nothing but numpy. Each function takes its problem size from the command line and prints one JSON
line with what it computed and how long it took, so a task's log tail is its result:

    python functions.py floatops 1000000     # N multiply-adds over a float64 vector
    python functions.py matmul 512           # N×N matrix multiply
    python functions.py linsolve 1000        # linpack-like: solve an N×N dense system
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def floatops(n: int, rng: np.random.Generator) -> dict[str, float]:
    """``n`` fused multiply-adds, vectorized."""
    x = rng.random(n)
    acc = x * 1.000001 + 0.5
    return {"checksum": float(acc.sum()), "flops": 2.0 * n}


def matmul(n: int, rng: np.random.Generator) -> dict[str, float]:
    """An ``n``×``n`` dense matrix product."""
    a = rng.random((n, n))
    b = rng.random((n, n))
    c = a @ b
    return {"checksum": float(np.trace(c)), "flops": 2.0 * n**3}


def linsolve(n: int, rng: np.random.Generator) -> dict[str, float]:
    """Solve ``A x = b`` for a random diagonally dominant ``A`` and report the residual."""
    a = rng.random((n, n)) + n * np.eye(n)
    b = rng.random(n)
    x = np.linalg.solve(a, b)
    residual = float(np.linalg.norm(a @ x - b) / np.linalg.norm(b))
    return {"residual": residual, "flops": 2.0 / 3.0 * n**3}


FUNCTIONS = {"floatops": floatops, "matmul": matmul, "linsolve": linsolve}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="functions.py", description=__doc__.splitlines()[0])
    parser.add_argument("function", choices=sorted(FUNCTIONS))
    parser.add_argument("size", type=int, help="problem size N (> 0)")
    parser.add_argument("--repeat", type=int, default=1, help="run the function this many times")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size <= 0 or args.repeat <= 0:
        parser.error(f"size and --repeat must be > 0, got size={args.size} repeat={args.repeat}")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for _ in range(args.repeat):
        result = FUNCTIONS[args.function](args.size, rng)
    elapsed = time.perf_counter() - start
    print(json.dumps({"function": args.function, "size": args.size, "repeat": args.repeat,
                      "seconds": round(elapsed, 6), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
