"""``dodoor evaluate`` without a live cluster: summaries, seed spread, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dodoor", "evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_simulation_only_report_has_the_seed_spread(tmp_path):
    done = evaluate("--limit", "60", "--policies", "dodoor,random", "--sim-seeds", "3",
                    "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    sim = json.loads((tmp_path / "summary_sim.json").read_text())
    assert [s["policy"] for s in sim] == ["dodoor", "random"]
    for s in sim:
        spread = s["seed_spread"]
        m = spread["makespan_mean_ms"]
        assert spread["seeds"] == 3
        assert m["min"] <= s["makespan_ms"]["mean"] <= m["max"]  # seed 0 is one of the three
        assert m["min"] <= m["mean"] <= m["max"] and m["sd"] >= 0.0
    # random's placements depend on the seed, so its mean makespan does too
    assert sim[1]["seed_spread"]["makespan_mean_ms"]["sd"] > 0.0
    report = (tmp_path / "report.md").read_text()
    assert "Simulated mean makespan over 3 seeds (mean ± sd): dodoor " in report
    assert not (tmp_path / "summary_live.json").exists()


def test_bad_seed_count_is_a_clear_error(tmp_path):
    done = evaluate("--limit", "10", "--sim-seeds", "0", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "sim-seeds" in done.stderr and "got 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_start_overhead_lengthens_the_simulated_runs(tmp_path):
    runs = {}
    for overhead in ("0", "200"):
        out = tmp_path / overhead
        done = evaluate("--limit", "60", "--policies", "random", "--sim-seeds", "1",
                        "--start-overhead-ms", overhead, "--out", str(out))
        assert done.returncode == 0, done.stderr
        runs[overhead] = json.loads((out / "summary_sim.json").read_text())[0]
    # every task holds its slot 200 ms longer, so each ends at least 200 ms later
    assert runs["200"]["makespan_ms"]["mean"] >= runs["0"]["makespan_ms"]["mean"] + 200.0


def test_bad_start_overhead_is_a_clear_error(tmp_path):
    done = evaluate("--limit", "10", "--start-overhead-ms", "nan", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "start-overhead-ms" in done.stderr and "Traceback" not in done.stderr
