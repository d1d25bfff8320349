"""p99 submit → placed of single submissions, stage by stage, side by side (not a test).

Issue 17's latency target: single JSON submissions, open loop at half the
single-task peak, 1 scheduler and 8 agents (sleep executor, sqlite journal), p99
from the POST to its 202 (the 202 comes once the agent's journal commit is
fsync'd, docs/guarantees.md). Per tree and round, on a fresh cluster:

1. the raw fsync latency of the disk the journals are on (4 KiB write + fsync);
2. the single-task peak: closed loop, ``--single-concurrency`` in flight;
3. each rate of ``--rates`` (``half``: half of that peak; or tasks/s), open loop,
   with every daemon under ``benchmarks/latency_probe.py``: the client's
   p50/p99 and each stage's (parse, claim, enqueue, the agent's journal commit,
   GC pauses, loop lag), and the CPU per task of each process kind;
4. where the tail comes from: each process's worst loop lag and GC pause with
   when it happened, the slowest requests stage by stage, the stacks of loops
   that were more than 100 ms late, the agents' WAL checkpoints, and a 4 KiB
   fsync every 20 ms on the journals' disk during the run (``DiskWatch``).

Agents are left to finish the peak run's tasks before a rate is measured.
``--baseline-tree DIR`` (e.g. ``git worktree add --detach /tmp/lat-base main``)
runs the same rounds on that tree's daemons, alternating with this one.

Usage: python benchmarks/submit_latency.py [--seconds 5] [--rounds 1]
       [--rates half,635] [--baseline-tree DIR] [--ids client|server|client,server]
       [--probe-gc freeze,20000:10:10] [--detail-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latency_tails import DETAIL, DiskWatch, quantile, report_stalls
from live_cluster import Cluster, get, run_loadgen

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PROBE = HERE / "latency_probe.py"
# stages printed, in path order: (label, probe key, role)
STAGES = (
    ("scheduler handler POST /v1/tasks", "handler POST /v1/tasks", "scheduler"),
    ("  parse", "scheduler parse", "scheduler"),
    ("  check_fits", "scheduler check_fits", "scheduler"),
    ("  place (claim + enqueue)", "scheduler place", "scheduler"),
    ("    claim wait (per caller)", "scheduler claim wait", "scheduler"),
    ("    claim round trip (per request)", "peer /internal/lookup", "scheduler"),
    ("      load store handler", "handler POST /internal/lookup", "loadstore"),
    ("    enqueue wait (per caller)", "scheduler enqueue wait", "scheduler"),
    ("    enqueue round trip, single", "peer /internal/enqueue", "scheduler"),
    ("    enqueue round trip, batch", "peer /internal/enqueue_batch", "scheduler"),
    ("      agent handler, single", "handler POST /internal/enqueue", "agent"),
    ("      agent handler, batch", "handler POST /internal/enqueue_batch", "agent"),
    ("        journal wait", "agent journal wait", "agent"),
    ("          group commit (thread)", "agent group commit", "agent"),
    ("GC pause, scheduler", "gc pause", "scheduler"),
    ("GC pause, agents", "gc pause", "agent"),
    ("loop lag, scheduler", "loop lag", "scheduler"),
    ("loop lag, agents", "loop lag", "agent"),
    ("loop lag, load store", "loop lag", "loadstore"),
)


class ProbedCluster(Cluster):
    """The daemons of ``tree``, each under the latency probe."""

    def __init__(self, args: argparse.Namespace, workdir: Path, tree: Path) -> None:
        super().__init__(args, workdir, null=False)
        self.tree = tree
        # GC settings for this tree's daemons only (the baseline runs the defaults)
        self.gc_spec = args.probe_gc if tree == REPO else ""
        self.outs: list[tuple[str, Path]] = []

    def _spawn(self, argv: list[str], port: int, null: bool = False,
               profiled: bool = False) -> str:
        out = self.workdir / f"probe-{argv[0]}-{port}.json"
        self.outs.append((argv[0], out))
        log = open(self.workdir / f"{argv[0]}-{port}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        if self.gc_spec:
            env["DODOOR_PROBE_GC"] = self.gc_spec
        self.procs.append(subprocess.Popen(
            [sys.executable, str(PROBE), str(out), "--log-level", "WARNING", *argv],
            cwd=self.tree, env=env, stdout=log, stderr=subprocess.STDOUT))
        return f"http://127.0.0.1:{port}"

    def signal_all(self, sig: int) -> None:
        for proc in self.procs:
            proc.send_signal(sig)

    def samples(self) -> dict[str, dict[str, list[float]]]:
        """role -> stage -> samples, every process of a role together."""
        out: dict[str, dict[str, list[float]]] = {}
        for role, path in self.outs:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for stage, xs in data.items():
                if stage == DETAIL:
                    continue
                out.setdefault(role, {}).setdefault(stage, []).extend(xs)
        return out

    def details(self) -> list[dict]:
        """Per process: its role, its probe file's name and the probe's ``~detail``."""
        out = []
        for role, path in self.outs:
            try:
                detail = json.loads(path.read_text()).get(DETAIL, {})
            except (OSError, ValueError):
                continue
            out.append({"role": role, "process": path.stem.removeprefix("probe-"), **detail})
        return out

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until no agent has a task waiting or running (the peak run's leftovers)."""
        line = re.compile(r"^dodoor_agent_(?:queue_length|running)\{[^}]*\} ([0-9.e+]+)$", re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(sum(float(v) for v in line.findall(get(url + "/metrics"))) == 0
                       for url in self.agents):
                    return
            except OSError:  # an agent too busy to answer in time (a loaded machine)
                pass
            time.sleep(0.2)


def raw_fsync(directory: Path, n: int = 300) -> tuple[float, float]:
    """p50 and p99 (ms) of a 4 KiB write + fsync in ``directory``."""
    fd = os.open(directory / "fsync-probe", os.O_RDWR | os.O_CREAT, 0o644)
    xs = []
    try:
        for i in range(n):
            os.pwrite(fd, os.urandom(4096), (i % 16) * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            xs.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return quantile(xs, 0.5) * 1e3, quantile(xs, 0.99) * 1e3


def one_tree(a: argparse.Namespace, tree: Path, label: str) -> dict:
    """Peak and every rate on a fresh cluster of ``tree``; the figures by rate."""
    workdir = Path(tempfile.mkdtemp(prefix="dodoor-lat-"))
    cluster = ProbedCluster(a, workdir, tree)
    results: dict = {"label": label}
    try:
        results["fsync"] = raw_fsync(workdir)
        cluster.start()
        url = cluster.schedulers[0]
        run_loadgen(["--url", url, "--mode", "single", "--concurrency", "8", "--seconds", "1"])
        cpu0 = cluster.cpu()
        peak = run_loadgen(["--url", url, "--mode", "single", "--concurrency",
                            str(a.single_concurrency), "--seconds", str(a.seconds)])
        results["peak"] = peak["tasks_per_s"]
        results["peak_cpu_us"] = cpu_per_task(cluster.cpu(), cpu0, peak)
        for spec, ids in run_keys(a):
            rate = peak["tasks_per_s"] / 2 if spec == "half" else float(spec)
            cluster.wait_idle()
            cpu0 = cluster.cpu()
            cluster.signal_all(signal.SIGUSR1)
            t_start = time.time()
            with DiskWatch(workdir) as disk:
                run = run_loadgen(["--url", url, "--mode", "single", "--rate", f"{rate:.1f}",
                                   "--concurrency", "256", "--seconds", str(a.seconds),
                                   "--ids", ids])
            run["disk"] = disk.samples
            cluster.signal_all(signal.SIGUSR2)
            cpu1 = cluster.cpu()
            time.sleep(0.5)  # the probes write their files
            run["rate"] = rate
            run["cpu_us"] = cpu_per_task(cpu1, cpu0, run)
            run["stages"] = cluster.samples()
            run["detail"] = cluster.details()
            run["t_start"] = t_start
            run["load"] = os.getloadavg()[0]
            results[key_of(a, spec, ids)] = run
    finally:
        cluster.stop()
    return results


def run_keys(a: argparse.Namespace) -> list[tuple[str, str]]:
    """(rate spec, who names the tasks) for each run on one cluster, both kinds of ids
    back to back at each rate when ``--ids`` names both."""
    return [(spec, ids) for spec in a.rates.split(",") for ids in a.ids.split(",")]


def key_of(a: argparse.Namespace, spec: str, ids: str) -> str:
    return spec if "," not in a.ids else f"{spec}/{ids}"


def cpu_per_task(cpu1: dict, cpu0: dict, run: dict) -> dict[str, float]:
    """CPU (user + system) per placed task of each process kind over a load generator run."""
    n = max(run["placed"], 1)
    out = {k: (cpu1[k] - cpu0[k]) * 1e6 / n for k in ("scheduler0", "agents", "loadstore")}
    out["loadgen"] = run["cpu_s"] * 1e6 / n
    return out


def report_ids(res: dict, specs: list[str]) -> None:
    """Made ids (claim and enqueue together) against given ids (claim, then enqueue),
    run back to back on the same cluster."""
    for spec in dict.fromkeys(s.split("/")[0] for s in specs):
        c, m = res.get(f"{spec}/client"), res.get(f"{spec}/server")
        by_ids = res.get(spec, {}).get("by_ids", {})
        if "client" in by_ids and "server" in by_ids:  # --ids alternate
            c, m = by_ids["client"], by_ids["server"]
        if c and m:
            print(f"   {spec}: ids made by the scheduler / given by the client: p50 "
                  f"{m['p50_ms']:.2f} / {c['p50_ms']:.2f} ms = {m['p50_ms'] / c['p50_ms']:.2f}x, "
                  f"p99 {m['p99_ms']:.2f} / {c['p99_ms']:.2f} ms = "
                  f"{m['p99_ms'] / c['p99_ms']:.2f}x")


def report(res: dict, specs: list[str]) -> None:
    p50, p99 = res["fsync"]
    print(f"\n== {res['label']}: single-task peak {res.get('peak', 0):,.0f} tasks/s; "
          f"raw fsync p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if "peak_cpu_us" in res:
        print("   CPU per task at the peak: " + ", ".join(
            f"{k} {v:.0f} us" for k, v in res["peak_cpu_us"].items()))
    for spec in specs:
        run = res.get(spec)
        if run is None:
            continue
        print(f"-- {run['rate']:,.0f} tasks/s ({spec}), open loop: client submit->202 "
              f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms "
              f"({run['placed']} placed, {run['errors']} failed; load average {run['load']:.1f})")
        print("   CPU per task: " + ", ".join(f"{k} {v:.0f} us" for k, v in run["cpu_us"].items()))
        stages = run["stages"]
        print(f"   the agent's journal: {journal_figures(run)}")
        for name, key, role in STAGES:
            xs = stages.get(role, {}).get(key)
            if not xs:
                continue
            sizes = stages.get(role, {}).get(key + " size")
            extra = f", {sum(sizes) / len(sizes):.2f} per call" if sizes else ""
            print(f"   {name:40s} n={len(xs):6d}  p50 {quantile(xs, .5) * 1e3:7.2f} ms  "
                  f"p99 {quantile(xs, .99) * 1e3:7.2f} ms{extra}")
        report_stalls(run)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--rates", default="half,635",
                   help="comma-separated: 'half' (of the measured peak) or tasks/s")
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--schedulers", type=int, default=1)
    p.add_argument("--single-concurrency", type=int, default=32)
    p.add_argument("--policy", default="dodoor")
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--b", type=int, default=80)
    p.add_argument("--baseline-tree", default="", metavar="DIR")
    p.add_argument("--probe-gc", default="", metavar="SPEC",
                   help="this tree's daemons only: 'freeze' (gc.freeze() after the warm-up) "
                        "and/or thresholds 'T0:T1:T2', comma-separated; with --baseline-tree "
                        "set to the same code, the GC settings against the defaults")
    p.add_argument("--detail-out", default="", metavar="FILE",
                   help="write every run's figures, slowest requests and stall stacks as JSON")
    p.add_argument("--ids", default="client",
                   choices=("client", "server", "alternate", "client,server", "server,client"),
                   help="who names the tasks of the rate runs (server: the scheduler makes "
                        "the ids, so claim and enqueue go out together); both: each rate "
                        "runs with each, back to back on the same cluster; alternate: "
                        "request by request in one run, latencies reported apart")
    a = p.parse_args()
    a.profile, a.profile_target, a.profiler = "", "scheduler", "cprofile"  # Cluster's fields
    trees = [(REPO, "this tree")]
    if a.baseline_tree:
        base = Path(a.baseline_tree).resolve()
        if not (base / "dodoor").is_dir():
            p.error(f"--baseline-tree {a.baseline_tree!r} holds no dodoor package")
        trees.insert(0, (base, f"baseline {base}"))
    specs = [key_of(a, spec, ids) for spec, ids in run_keys(a)]
    rows: list[dict] = []
    for r in range(a.rounds):
        for tree, label in (trees if r % 2 == 0 else trees[::-1]):
            res = one_tree(a, tree, f"{label}, round {r + 1}")
            report(res, specs)
            report_ids(res, specs)
            res["tree"] = label
            rows.append(res)
            if a.detail_out:
                Path(a.detail_out).write_text(json.dumps(rows))
    if len(trees) > 1:
        print("\n== this tree / baseline, per round (client p99; peak)")
        for r in range(a.rounds):
            base, this = (x for x in rows[2 * r: 2 * r + 2] if x["tree"] == trees[0][1]), \
                (x for x in rows[2 * r: 2 * r + 2] if x["tree"] == trees[1][1])
            b, t = next(base), next(this)
            parts = [f"peak {t['peak'] / max(b['peak'], 1e-9):.2f}x",
                     "scheduler CPU/task at peak "
                     f"{t['peak_cpu_us']['scheduler0'] / b['peak_cpu_us']['scheduler0']:.2f}x",
                     f"agents {t['peak_cpu_us']['agents'] / b['peak_cpu_us']['agents']:.2f}x"]
            parts += [f"{s}: p50 {t[s]['p50_ms']:.2f} / {b[s]['p50_ms']:.2f} ms = "
                      f"{t[s]['p50_ms'] / b[s]['p50_ms']:.2f}x, p99 {t[s]['p99_ms']:.2f} / "
                      f"{b[s]['p99_ms']:.2f} ms = {t[s]['p99_ms'] / b[s]['p99_ms']:.2f}x"
                      for s in specs if s in t and s in b]
            print(f"   round {r + 1}: " + "; ".join(parts))
            for s in specs:
                if s in t and s in b:
                    print(f"     {s}, the agent's journal: " + "; ".join(
                        f"{name} {journal_figures(x[s])}" for name, x in (("this", t), ("base", b))))


def journal_figures(run: dict) -> str:
    """The agent's wait for its accept's commit against the commit itself, and how many
    group commits each placed task cost (an end committed alone is a second one)."""
    agent = run["stages"].get("agent", {})
    wait, commit = agent.get("agent journal wait", []), agent.get("agent group commit", [])
    behind = agent.get("agent accept behind an end", [])
    return (f"accept wait p50/p99 {quantile(wait, .5) * 1e3:.2f}/{quantile(wait, .99) * 1e3:.2f}"
            f" ms, commit p50/p99 {quantile(commit, .5) * 1e3:.2f}/"
            f"{quantile(commit, .99) * 1e3:.2f} ms, {len(commit) / max(run['placed'], 1):.2f}"
            f" commits per task, {100 * sum(behind) / max(len(behind), 1):.1f} % of accepts"
            " sent during a commit of ends alone")


if __name__ == "__main__":
    main()
