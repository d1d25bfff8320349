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


def _row(mean, p99, msgs=2.0):
    return {"mean_makespan_s": mean, "p99_makespan_s": p99, "msgs_per_task": msgs}


def test_seeds_give_the_median_and_range_of_each_seeds_own_ratio():
    bench = _bench()
    keys, rows = [], []
    # ideal per seed 10, 20, 40; the policy's mean per seed 12, 30, 44 -> ratios 1.2, 1.5, 1.1
    for seed, ideal, mean in ((0, 10.0, 12.0), (1, 20.0, 30.0), (2, 40.0, 44.0)):
        keys += [("ideal", None, 4, "steady", seed), ("p", 0.0, 4, "steady", seed)]
        rows += [_row(ideal, 2 * ideal), _row(mean, 4 * ideal, msgs=2.0 + seed)]
    table = bench.summarize(keys, rows, (0.0,))
    r = table[("p", 0.0, 4, "steady")]
    assert r["seeds"] == 3
    assert r["mean_ratio"] == 1.2 and r["mean_ratio_range"] == (1.1, 1.5)
    assert r["p99_ratio"] == 2.0 and r["p99_ratio_range"] == (2.0, 2.0)
    assert (r["mean"], r["msgs"]) == (30.0, 3.0)  # medians of the absolute values
    lines = bench.report(table, ["p"], (0.0,), (4,), "x.csv", seeds=3, arrivals_run=("steady",))
    assert "| p | 1.20 (1.10–1.50) / 2.00 (2.00–2.00) / 3.00 |" in lines


def test_a_reduced_grid_runs_only_what_it_names(tmp_path):
    assert _bench().main(["--limit", "150", "--seeds", "2", "--sigmas", "0", "--schedulers", "4",
                          "--arrivals", "steady", "--policies", "dodoor-wait:d=16 +others",
                          "--no-plots", "--jobs", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "realistic.json").read_text())
    assert {(r["policy"], r["sigma"], r["schedulers"], r["arrivals"], r["seeds"]) for r in rows} == {
        ("dodoor-wait:d=16 +others", 0.0, 4, "steady", 2), ("ideal", 0.0, 4, "steady", 2)}
