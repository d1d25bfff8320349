"""Live placement throughput and latency on loopback (not a test; prints figures).

Starts a load store, 2 schedulers and 16 agents (sleep executor, ~zero
durations) as ``python -m dodoor`` processes on 127.0.0.1, then runs a load
generator in a separate process against scheduler 0:

1. batched msgpack submissions (closed loop) -> placed tasks/s;
2. single-task JSON submissions (closed loop) -> placed tasks/s;
3. single-task submissions, open loop at half the single-task peak ->
   p50/p99 submit->enqueued latency (the 202 comes back once the agent has
   accepted the enqueue);
4. scheduling messages per task by type, from the daemons' /metrics.

The single-task latency stage by stage: ``benchmarks/submit_latency.py``. The cluster,
its CPU and message figures are ``live_cluster.py``; the load generator, run as
``live_throughput.py loadgen``, is ``live_loadgen.py``.

Usage: python benchmarks/live_throughput.py [--seconds 5] [--batch 500]
       [--policy dodoor] [--agents 16] [--schedulers 2] [--profile OUT]

``--profile OUT`` runs scheduler 0 under cProfile (or pyinstrument with
``--profiler pyinstrument`` when it is installed) during the batched run only,
and writes the profile to ``OUT`` (``.prof`` for pstats; ``.html``/``.txt``
from pyinstrument).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

# benchmarks/ is on sys.path when this file runs as a script
from live_cluster import Cluster, measured, messages, print_cpu, run_loadgen

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        from live_loadgen import loadgen_main

        loadgen_main(sys.argv[2:])
        return
    import live_tools

    if len(sys.argv) > 1 and sys.argv[1] in live_tools.HELPERS:
        live_tools.HELPERS[sys.argv[1]](sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--single-concurrency", type=int, default=32)
    p.add_argument("--policy", default="dodoor")
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--agents", type=int, default=16)
    p.add_argument("--schedulers", type=int, default=2)
    p.add_argument("--b", type=int, default=80)
    p.add_argument("--agents-kind", choices=("real", "null", "both"), default="both")
    p.add_argument("--batch-only", action="store_true",
                   help="only the batched run (quick A/B of the placement path)")
    p.add_argument("--profile", default="", metavar="OUT",
                   help="profile scheduler 0 during the batched run into OUT")
    p.add_argument("--profiler", choices=("cprofile", "pyinstrument", "timing"),
                   default="cprofile", help="timing: handler time and GC pauses as JSON")
    p.add_argument("--profile-phase", choices=("batch", "single", "latency"), default="batch")
    p.add_argument("--profile-target", choices=("scheduler", "agent"), default="scheduler",
                   help="scheduler 0, or agent 0 (real agents only)")
    p.add_argument("--dask-workers", type=int, default=4,
                   help="worker processes of the Dask comparison (when distributed is installed)")
    p.add_argument("--no-compare", action="store_true", help="skip the Dask comparison")
    a = p.parse_args()
    rates = [measure(a, null)
             for null in ([False, True] if a.agents_kind == "both" else [a.agents_kind == "null"])]
    if not a.no_compare:
        placed, rate = max(rates)  # the same number of tasks as dodoor's best batched run
        print(f"\n== comparison ({placed} tasks, dodoor batched {rate:,.0f} tasks/s)")
        from live_tools import compare_dask

        compare_dask(a, placed, rate)


def measure(a: argparse.Namespace, null: bool) -> tuple[int, float]:
    """Run every phase on a fresh cluster; returns (placed, tasks/s) of the batched run."""
    tmp = tempfile.mkdtemp(prefix="dodoor-bench-")
    cluster = Cluster(a, Path(tmp), null)
    kind = "null agents (accept and drop; the scheduler's ceiling)" if null else \
        "real agents (sleep executor, sqlite journal)"
    ok = False
    try:
        cluster.start()
        target = cluster.schedulers[0]
        print(f"\n== 1 load store, {a.schedulers} schedulers, {a.agents} {kind}, "
              f"policy {a.policy}, {os.cpu_count()} CPUs")
        run_loadgen(["--url", target, "--mode", "batch", "--batch", "50",
                     "--seconds", "1"])  # warm-up
        before = messages(cluster)
        cluster.profile(signal.SIGUSR1, a.profile_phase == "batch")
        batch = measured(cluster, ["--url", target, "--mode", "batch", "--batch", str(a.batch),
                                   "--concurrency", str(a.concurrency), "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "batch")
        after = messages(cluster)
        print(f"batched msgpack ({a.batch}/request, {a.concurrency} in flight): "
              f"{batch['tasks_per_s']:,.0f} tasks/s placed ({batch['placed']} tasks, "
              f"{batch['errors']} failed requests, p50 {batch['p50_ms']:.1f} ms/request)")
        print_cpu("batched", batch)
        if a.batch_only:
            ok = True
            return batch["placed"], batch["tasks_per_s"]
        cluster.profile(signal.SIGUSR1, a.profile_phase == "single")
        single = measured(cluster, ["--url", target, "--mode", "single", "--concurrency",
                                    str(a.single_concurrency), "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "single")
        print(f"single JSON ({a.single_concurrency} in flight): "
              f"{single['tasks_per_s']:,.0f} tasks/s placed ({single['errors']} failed)")
        print_cpu("single", single)
        rate = single["tasks_per_s"] / 2
        cluster.profile(signal.SIGUSR1, a.profile_phase == "latency")
        half = run_loadgen(["--url", target, "--mode", "single", "--rate", f"{rate:.1f}",
                            "--concurrency", "256", "--seconds", str(a.seconds)])
        cluster.profile(signal.SIGUSR2, a.profile_phase == "latency")
        print(f"submit->enqueued latency at half the single-task peak ({rate:,.0f} tasks/s, "
              f"open loop): p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms")
        floor = run_loadgen(["--url", target, "--mode", "healthz", "--rate", f"{rate:.1f}",
                             "--concurrency", "256", "--seconds", str(a.seconds)])
        print(f"  control, GET /healthz on scheduler 0 at the same rate (one hop, no "
              f"placement): p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        placed = batch["placed"]
        per_type = {k: (after.get(k, 0) - before.get(k, 0)) / placed
                    for k in sorted(set(after) | set(before)) if placed}
        from dodoor.messages import SCHEDULING_TYPES
        sched = sum(v for k, v in per_type.items() if k in SCHEDULING_TYPES)
        print("messages per task (batched run): " + ", ".join(
            f"{k} {v:.3f}" for k, v in per_type.items() if v) + f"; scheduling {sched:.3f}")
        print(f"vs issue targets: batched {batch['tasks_per_s'] / 20000:.2f}x of 20,000 tasks/s; "
              f"p99 {half['p99_ms'] / 5.0:.2f}x of 5 ms")
        ok = True
        return batch["placed"], batch["tasks_per_s"]
    except BaseException:
        print(f"failed; daemon logs kept in {tmp}", file=sys.stderr)
        raise
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
