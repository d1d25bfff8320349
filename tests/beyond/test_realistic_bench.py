"""benchmarks/realistic.py --quick: the grid runs, checks the goal and draws its heatmaps."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("realistic_bench",
                                                  ROOT / "benchmarks" / "realistic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_grid(tmp_path, capsys):
    assert _bench().main(["--quick", "--jobs", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "realistic.json").read_text())
    cells = {(r["sigma"], r["schedulers"], r["arrivals"]) for r in rows}
    assert cells == {(s, m, a) for s in (0.0, 2.0) for m in (1, 4) for a in ("steady", "bursty")}
    by = {(r["policy"], r["sigma"], r["schedulers"], r["arrivals"]): r for r in rows}
    for (policy, sigma, m, arrivals), r in by.items():
        ideal = by[("ideal", sigma, m, arrivals)]
        assert r["mean_ratio"] == r["mean"] / ideal["mean"]
        if policy == "power-of-two":
            assert r["msgs"] == 5.0
    # wrong estimates hurt the default, and the variant with both options helps
    default = "dodoor-wait:d=16"
    both = default + " +rebalance +learn"
    assert by[(default, 2.0, 1, "steady")]["mean"] > by[(default, 0.0, 1, "steady")]["mean"]
    assert by[(both, 2.0, 1, "steady")]["mean"] < by[(default, 2.0, 1, "steady")]["mean"]
    assert "## Goal: default within 1.3x" in printed and "cells met" in printed
    assert "dodoor-wait:d=16 +rebalance +learn: beats the default in" in printed
    assert (tmp_path / "realistic.md").read_text().startswith("# Realistic conditions")
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["realistic_dodoor-wait_d16_mean_ratio.png",
                    "realistic_dodoor-wait_d16_p99_ratio.png",
                    "realistic_dodoor-wait_d16_rebalance_learn_mean_ratio.png",
                    "realistic_dodoor-wait_d16_rebalance_learn_p99_ratio.png"]
