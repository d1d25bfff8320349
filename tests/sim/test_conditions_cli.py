"""The realistic-conditions options of ``dodoor simulate`` and ``dodoor sweep``."""

import csv
import json

from dodoor.tools.cli import main

FLAGS = ["--estimate-sigma", "1", "--arrivals", "bursty", "--burst-ms", "5000/15000",
         "--rebalance", "steal", "--schedulers", "4"]


def test_simulate_runs_under_the_conditions_it_reports(tmp_path):
    out = tmp_path / "run"
    assert main(["simulate", "--limit", "300", "--out", str(out), "--no-plots",
                 "--policy", "dodoor-wait:d=16,power-of-two", *FLAGS]) == 0
    wait, probe = json.loads((out / "summary.json").read_text())
    assert wait["settings"]["estimate_sigma"] == 1.0
    assert wait["settings"]["bursts"] == {"on_ms": 5000.0, "off_ms": 15000.0}
    assert wait["settings"]["schedulers"] == 4
    assert wait["settings"]["rebalance"] == "steal" and "rebalance" in wait
    assert "rebalance" not in probe  # no load store to rebalance from
    moves = wait["rebalance"]["moves"]
    assert wait["messages"]["by_type"]["enqueue"] == 300 + moves


def test_sweep_passes_the_conditions_to_every_cell(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--limit", "300", "--param", "d=2,8", "--policy", "dodoor-wait",
            "--jobs", "1", "--out", str(out), "--no-plots"]
    assert main([*args, *FLAGS]) == 0
    with (out / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    with (tmp_path / "plain" / "sweep.csv").open() as handle:
        plain = list(csv.DictReader(handle))
    assert [r["d"] for r in rows] == ["2", "8"]
    # four schedulers with wrong estimates, bursts and moves: not the plain run
    assert [r["mean_makespan_s"] for r in rows] != [r["mean_makespan_s"] for r in plain]


def test_bad_condition_values_are_one_line_errors(tmp_path, capsys):
    for flags, field in ((["--estimate-sigma", "nan"], "estimate_sigma"),
                         (["--arrivals", "bursty", "--burst-ms", "10000"], "burst_ms"),
                         (["--rebalance-min-queue", "0"], "rebalance_min_queue")):
        for command in ("simulate", "sweep"):
            extra = ["--param", "d=2"] if command == "sweep" else []
            code = main([command, "--limit", "10", "--out", str(tmp_path / "o"), *extra, *flags])
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and field in err[-1], (command, flags, err)
