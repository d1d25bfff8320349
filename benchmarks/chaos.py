"""Chaos for minutes: the scenario of tests/faults/test_chaos.py, longer (prints a report).

1 load store, 2 schedulers, ``--agents`` process-executor agents on 127.0.0.1;
about 27 shell tasks/s (per 4 agents) submitted to both schedulers for
``--minutes`` while seeded rounds SIGKILL and restart agents (on their journals),
schedulers and the load store, and SIGSTOP agents past the enqueue timeout.
Prints a line per fault round, then the counts per state and per fault and
each invariant's verdict (see tests/faults/chaos_checks.py). The run's
directory (ledger, journals, daemon logs, chaos-report.txt) is kept.

Exit code: 0 every invariant held; 1 an invariant broke; 2 the harness itself
failed or the scenario did not happen as planned.

With ``--rebalance`` the load store also moves queued tasks to agents with a free
slot, and the run fails (exit 2) if no task was handed over.

Usage: python benchmarks/chaos.py --minutes 5 [--seed 20240611] [--agents 4] [--rebalance]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.chaos import DEFAULT_SEED, ChaosConfig, run_chaos  # noqa: E402

TASKS_PER_S_PER_AGENT = 27.0 / 4


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, required=True, help="length of the fault phase")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--rebalance", action="store_true",
                    help="the load store moves queued tasks to agents with a free slot")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the run's files go (default: a new temporary directory)")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.agents < 1:
        ap.error("--minutes must be > 0 and --agents >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    chaos_s = args.minutes * 60.0
    tasks = max(1000, int(TASKS_PER_S_PER_AGENT * args.agents * chaos_s))
    cfg = ChaosConfig(seed=args.seed, agents=args.agents, tasks=tasks, chaos_s=chaos_s,
                      settle_s=120.0, status_s=max(20.0, tasks / 200.0),
                      rebalance=args.rebalance)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dodoor-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {line}", flush=True)

    try:
        run = run_chaos(cfg, workdir, progress)
    except Exception as exc:  # the harness failed (a daemon would not restart, ...)
        print(f"chaos harness failed: {exc!r}; files in {workdir}", file=sys.stderr)
        return 2
    print(run.report)
    print(f"wall time {run.wall_s:.1f} s; files in {workdir} (chaos-report.txt has every "
          f"violation and the daemon log tails)")
    if run.verdict.violations:
        print(run.failure_message())
        return 1
    if run.problems:
        print(run.failure_message())
        return 2
    print("every invariant held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
