"""``dodoor evaluate`` against live clusters: the cluster's own policy, --base-port, lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dodoor.tools.evaluate import free_base_port, wait_ready
from dodoor.tools.localcluster import ClusterSettings, LocalCluster
from tests.replay.test_replay_cluster import write_trace

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


def evaluate(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dodoor", "evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def small_trace(tmp_path: Path, n: int) -> str:
    trace = tmp_path / "trace.csv"
    write_trace(trace, n)  # n tasks of 50-250 ms over ~2 s
    return str(trace)


def test_live_url_evaluates_the_policy_the_cluster_runs(tmp_path):
    # run as `--policy dodoor-wait --param d=4`: the schedulers report dodoor-wait:d=4,
    # which is not among the policies asked for
    settings = ClusterSettings(agents=2, schedulers=1, policy="dodoor-wait", params=("d=4",),
                               base_port=free_base_port(), workdir=tmp_path / "c")
    with LocalCluster(settings) as cluster:
        wait_ready(cluster.scheduler_urls, 2)
        out = tmp_path / "out"
        done = evaluate("--live", cluster.scheduler_urls[0], "--policy", "random",
                        "--trace", small_trace(tmp_path, 30),
                        "--agents", "2", "--schedulers", "1", "--sim-seeds", "1",
                        "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    sim = json.loads((out / "summary_sim.json").read_text())
    live = json.loads((out / "summary_live.json").read_text())
    assert [s["policy"] for s in sim] == ["dodoor-wait:d=4", "random"]
    assert [s["policy"] for s in live] == ["dodoor-wait:d=4"]
    report = (out / "report.md").read_text()
    sim_vs_live = report.split("## Sim versus live", 1)[1]
    assert "| dodoor-wait:d=4 |" in sim_vs_live


def test_live_local_runs_on_the_base_port_given(tmp_path):
    base = free_base_port()
    out = tmp_path / "out"
    done = evaluate("--live", "local", "--base-port", str(base), "--policy", "random",
                    "--trace", small_trace(tmp_path, 20),
                    "--agents", "2", "--schedulers", "1", "--sim-seeds", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    members = json.loads((out / "cluster-random" / "loadstore.json").read_text())
    assert f"http://127.0.0.1:{base + 100}" in json.dumps(members)
    assert json.loads((out / "summary_live.json").read_text())[0]["policy"] == "random"


@pytest.mark.parametrize("args, names", [
    (["--live", "local", "--base-port", "70000"], "--base-port: must be in [1, "),
    (["--base-port", "9000"], "--base-port: applies to --live local only"),
    (["--policy", "dodoor-wait:d=0"], "d: must be >= 1, got 0"),
    (["--live", "http://127.0.0.1:1"], "--live: cannot reach scheduler http://127.0.0.1:1"),
])
def test_bad_live_settings_are_one_line_before_any_simulation(tmp_path, args, names):
    done = evaluate("--limit", "10", "--sim-seeds", "1", "--out", str(tmp_path), *args,
                    timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dodoor evaluate: error: "), lines
    assert names in lines[0]
    assert not (tmp_path / "summary_sim.json").exists()


def test_a_list_of_full_specs_parses(tmp_path):
    done = evaluate("--policy", "dodoor-wait:d=16,dodoor", "--limit", "30", "--sim-seeds", "1",
                    "--out", str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    sim = json.loads((tmp_path / "summary_sim.json").read_text())
    assert [s["policy"] for s in sim] == ["dodoor-wait:d=16", "dodoor"]
