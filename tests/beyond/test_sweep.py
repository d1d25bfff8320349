"""``dodoor sweep``: every cell of the grid, in parallel processes, same rows as serial runs."""

from __future__ import annotations

import csv

import pytest

from dodoor.tools.cli import main
from dodoor.errors import ValidationError
from dodoor.tools.sweep import Cell, make_cells, parse_grid, parse_loads, run_cell


def _tiny_trace(path):
    # Dodoor CSV: id, cores, memory MB, disk MB, duration ms, start ms, type, mode
    rows = [f"t{i},{1 + i % 4},{512 * (1 + i % 3)},0,{2000 + 300 * (i % 7)},{100 * i},0,0"
            for i in range(40)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_sweep_writes_every_cell_of_the_grid(tmp_path):
    trace = _tiny_trace(tmp_path / "tiny.csv")
    out = tmp_path / "out"
    code = main(["sweep", "--trace", str(trace), "--param", "d=2,4,8", "--param", "b=8,80",
                 "--load", "0.5,own", "--jobs", "2", "--out", str(out)])
    assert code == 0
    with (out / "sweep.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cells = {(r["load"], r["d"], r["b"]) for r in rows}
    assert cells == {(load, d, b) for load in ("0.5", "own") for d in ("2", "4", "8")
                     for b in ("8", "80")}
    assert len(rows) == 12
    for r in rows:
        assert float(r["mean_makespan_s"]) > 0 and float(r["msgs_per_task"]) > 1
    md = (out / "sweep.md").read_text(encoding="utf-8")
    assert md.count("\n| ") == 13  # header + 12 rows
    for metric in ("mean_makespan_s", "p99_makespan_s", "msgs_per_task", "snapshot_age_ms"):
        assert (out / f"heatmap_{metric}.png").stat().st_size > 1000


def test_a_parallel_cell_equals_the_same_run_in_process(tmp_path):
    trace = str(_tiny_trace(tmp_path / "tiny.csv"))
    out = tmp_path / "o"
    main(["sweep", "--trace", trace, "--param", "d=4", "--load", "own", "--jobs", "1",
          "--schedulers", "2", "--out", str(out), "--no-plots"])
    with (out / "sweep.csv").open(encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    here = run_cell(Cell("dodoor", (("d", "4"),), None, trace, schedulers=2))
    alone = run_cell(Cell("dodoor", (("d", "4"),), None, trace))
    assert alone["msgs_per_task"] != here["msgs_per_task"]  # two schedulers: two snapshots a push
    assert float(row["mean_makespan_s"]) == pytest.approx(here["mean_makespan_s"])
    assert float(row["msgs_per_task"]) == pytest.approx(here["msgs_per_task"])


def test_grid_parsing_and_bad_values_are_named():
    assert parse_grid(["d=2,4", "b=auto,80"]) == {"d": ["2", "4"], "b": ["auto", "80"]}
    assert parse_loads("0.5, own") == [0.5, None]
    with pytest.raises(ValidationError, match="load"):
        parse_loads("fast")
    with pytest.raises(ValidationError, match="given twice"):
        parse_grid(["d=2", "d=4"])
    with pytest.raises(ValidationError) as err:
        make_cells("dodoor", {"dd": ["2"]}, [0.9], None)
    assert err.value.field == "dd"
    cells = make_cells("dodoor-wait:alpha=0.3", {"d": ["2", "8"]}, [0.9, None], None)
    assert [c.spec for c in cells] == ["dodoor-wait:alpha=0.3,d=2", "dodoor-wait:alpha=0.3,d=8"] * 2


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("sweep: ")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("args, names", [
    (["--trace", "MISSING"], "MISSING"),
    (["--cluster", "nope"], "unknown cluster 'nope'"),
    (["--load", "0.5,fast"], "'fast'"),
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--param", "dd=2,4"], "dd"),
])
def test_bad_input_is_one_line_before_any_worker_starts(tmp_path, capsys, args, names):
    argv = ["sweep", "--param", "d=2,4", "--limit", "20", "--no-plots",
            "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line.startswith("dodoor sweep: error: ") and names in line


def test_an_error_raised_inside_a_worker_comes_back_as_itself(tmp_path, capsys):
    # a task no node of the small cluster can hold: found by the simulation, in a worker
    trace = tmp_path / "big.csv"
    trace.write_text("0,64,512,0,200,0,simulated,medium\n1,1,512,0,200,100,simulated,medium\n")
    argv = ["sweep", "--trace", str(trace), "--cluster", "small", "--param", "d=2,4",
            "--load", "own", "--jobs", "2", "--no-plots", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line == "dodoor sweep: error: cores: task '0': requested 64 but the largest node has 28"


def test_a_list_of_policies_sweeps_each_with_its_own_heatmaps(tmp_path):
    trace = _tiny_trace(tmp_path / "tiny.csv")
    out = tmp_path / "out"
    code = main(["sweep", "--trace", str(trace), "--param", "d=2,4", "--load", "own",
                 "--policy", "dodoor-wait:alpha=0.3,dodoor", "--out", str(out)])
    assert code == 0
    with (out / "sweep.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["policy"], r["d"]) for r in rows] == [
        ("dodoor-wait:alpha=0.3", "2"), ("dodoor-wait:alpha=0.3", "4"),
        ("dodoor", "2"), ("dodoor", "4")]
    assert "| policy |" in (out / "sweep.md").read_text(encoding="utf-8")
    for folder in ("dodoor-wait_alpha0.3", "dodoor"):
        assert (out / folder / "heatmap_mean_makespan_s.png").exists()
