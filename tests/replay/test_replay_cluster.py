"""Replay against a real LocalCluster (processes on 127.0.0.1, sleep executor)."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys
from pathlib import Path
import math
import random

import numpy as np
import pytest

from dodoor.tools.evaluate import free_base_port, wait_ready
from dodoor.tools.localcluster import ClusterSettings, LocalCluster
from dodoor.tools.replay import ReplaySettings, replay, scale_tasks
from workloads.registry import load_trace

pytestmark = pytest.mark.timeout(120)
N_TASKS = 200
REPO = Path(__file__).resolve().parents[2]


def write_trace(path, n: int, seed: int = 7) -> None:
    """A Dodoor-format CSV: n tasks over ~2 s, 50–250 ms each, small demands."""
    rng = random.Random(seed)
    arrival = 0.0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for i in range(n):
            arrival += rng.expovariate(n / 2000.0)
            writer.writerow([i, rng.choice([0.5, 1.0, 2.0]), rng.choice([256, 512, 1024]), 100,
                             rng.randint(50, 250), round(arrival), "simulated", "short"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    with LocalCluster(ClusterSettings(agents=4, schedulers=2, policy="random",
                                      base_port=free_base_port(), workdir=work)) as running:
        wait_ready(running.scheduler_urls, 4)
        yield running


@pytest.fixture(scope="module")
def replayed(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("replay")
    trace = work / "trace.csv"
    write_trace(trace, N_TASKS)
    tasks = scale_tasks(load_trace(trace), prefix="t-")
    settings = ReplaySettings(urls=tuple(cluster.scheduler_urls), loadstore=cluster.loadstore_url,
                              poll_s=0.2, timeout_s=90.0)
    result = asyncio.run(replay(tasks, settings, progress=None))
    summary = result.summary("random")
    csv_path = work / "tasks.csv"
    result.records.write_csv(csv_path, result.nodes)
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    return tasks, result, summary, rows


def test_every_task_terminal_and_succeeded(replayed):
    tasks, result, summary, rows = replayed
    assert result.states == {"succeeded": N_TASKS}
    assert result.resubmits == 0
    assert summary["tasks"] == N_TASKS and len(rows) == N_TASKS
    assert {r["task_id"] for r in rows} == {t.task_id for t in tasks}


def test_times_are_ordered_and_tasks_ran_their_duration(replayed):
    tasks, result, _, rows = replayed
    by_id = {t.task_id: t for t in tasks}
    for r in rows:
        submit, placed, start, end = (float(r[k]) for k in ("submit_ms", "placed_ms",
                                                            "start_ms", "end_ms"))
        assert submit <= placed <= start <= end, r
        # the sleep executor holds the task for its duration (timer slack only adds)
        assert end - start >= by_id[r["task_id"]].duration_ms - 5.0, r
        assert r["node"] in {n.node_id for n in result.nodes}
    # submissions follow the arrivals: a batch goes out at its first task's time, so a
    # task is sent at most one batch window early
    lateness = [float(r["submit_ms"]) - by_id[r["task_id"]].arrival_ms for r in rows]
    assert min(lateness) >= -ReplaySettings.batch_window_ms - 0.01


def test_summary_agrees_with_the_csv(replayed):
    _, _, summary, rows = replayed
    submit = np.array([float(r["submit_ms"]) for r in rows])
    placed = np.array([float(r["placed_ms"]) for r in rows])
    end = np.array([float(r["end_ms"]) for r in rows])
    makespan = end - submit
    # the CSV rounds to 1 µs
    assert summary["makespan_ms"]["mean"] == pytest.approx(makespan.mean(), abs=1e-3)
    assert summary["makespan_ms"]["p99"] == pytest.approx(np.percentile(makespan, 99), abs=1e-3)
    assert summary["sched_latency_ms"]["mean"] == pytest.approx((placed - submit).mean(), abs=1e-3)
    span_s = (end.max() - submit.min()) / 1000.0
    assert summary["throughput_tps"] == pytest.approx(N_TASKS / span_s, rel=1e-6)
    for key in ("policy", "nodes", "messages", "wall_s", "utilization"):
        assert key in summary


def test_messages_are_counted_once_per_message(replayed):
    _, result, summary, _ = replayed
    by_role = result.counts_by_role
    # random sends exactly one enqueue per task; both ends count it, the summary once
    assert by_role["scheduler"]["enqueue"] == N_TASKS
    assert by_role["agent"]["enqueue"] == N_TASKS
    assert summary["messages"]["by_type"]["enqueue"] == N_TASKS
    # node reports come from the agents' own counters and match what the store received;
    # under random no scheduler scores from load, so the agents send (almost) none: a
    # type that did not occur in the run is absent
    reports = summary["messages"]["by_type"].get("node_state", 0)
    assert reports == by_role["agent"].get("node_state", 0)
    # the agent counts a report when it sends it, the store when it handles it: a report
    # in flight at either scrape may shift one count per agent between the two
    assert abs(by_role["loadstore"].get("node_state", 0) - reports) <= 2 * 4
    total = sum(v for k, v in summary["messages"]["by_type"].items()
                if k in ("enqueue", "node_state", "snapshot", "deltas"))
    assert summary["messages"]["per_task"] == pytest.approx(total / N_TASKS)
    assert not math.isnan(summary["utilization"]["mean_cores"])


def test_replay_command_writes_summary_and_csv(cluster, tmp_path):
    trace = tmp_path / "trace.csv"
    write_trace(trace, 30, seed=3)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "dodoor", "replay", "--url", ",".join(cluster.scheduler_urls),
         "--loadstore", cluster.loadstore_url, "--trace", str(trace), "--speedup", "2",
         "--duration-scale", "0.5", "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = json.loads((out / "summary.json").read_text())
    assert len(summaries) == 1 and summaries[0]["policy"] == "random"  # from /healthz
    assert summaries[0]["tasks"] == 30 and summaries[0]["settings"]["states"] == {"succeeded": 30}
    assert summaries[0]["settings"]["speedup"] == 2.0
    assert summaries[0]["messages"]["by_type"]["enqueue"] == 30
    with (out / "tasks_random.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and all(r["end_ms"] for r in rows)
    # arrival gaps were halved: the last submission is no earlier than half the span
    arrivals = [float(line.split(",")[5]) for line in trace.read_text().splitlines()]
    span = (max(arrivals) - min(arrivals)) / 2
    assert max(float(r["submit_ms"]) for r in rows) >= span - ReplaySettings.batch_window_ms
    assert "submitted 30/30" in done.stderr
