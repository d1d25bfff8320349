"""``dodoor simulate`` end to end on a 200-task slice."""

import csv
import json

from dodoor.tools.cli import main


def test_simulate_writes_summary_csv_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["simulate", "--limit", "200", "--load", "0.9", "--out", str(out),
                 "--policy", "dodoor,power-of-two,ideal", "--policy", "dodoor:d=8",
                 "--seed", "3"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["policy"] for s in summary] == ["dodoor", "power-of-two", "ideal", "dodoor:d=8"]
    assert all(s["tasks"] == 200 and s["nodes"] == 100 for s in summary)
    assert summary[1]["messages"]["per_task"] == 5.0
    assert summary[3]["settings"]["policy"]["d"] == 8
    with (out / "tasks_dodoor.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200 and rows[0]["node"].startswith("node-")
    assert (out / "tasks_dodoor_d8.csv").exists()
    for png in ("makespan_cdf.png", "utilization.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "dodoor/power-of-two: msgs/task 0.4" in printed
    assert "dodoor/ideal:" in printed


def test_bad_trace_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("0,2.0,4893,9046,59925,15,simulated,medium\n1,two,1,1,1,1,x,y\n")
    code = main(["simulate", "--trace", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("dodoor simulate: error: ") and "bad.csv:2" in err[-1]


def test_unknown_policy_and_param_are_rejected(tmp_path, capsys):
    assert main(["simulate", "--policy", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err
    assert main(["simulate", "--param", "dd=3", "--out", str(tmp_path)]) == 2
    assert "dd" in capsys.readouterr().err


def test_default_load_is_the_readme_setting_and_own_keeps_the_trace_timing(tmp_path):
    from dodoor.tools.cli import build_parser

    assert build_parser().parse_args(["simulate"]).load == "0.9"
    spans = {}
    for load in ("0.9", "own"):
        out = tmp_path / load
        assert main(["simulate", "--limit", "100", "--load", load, "--policy", "random",
                     "--no-plots", "--out", str(out)]) == 0
        with (out / "tasks_random.csv").open() as handle:
            submits = [float(r["submit_ms"]) for r in csv.DictReader(handle)]
        spans[load] = max(submits) - min(submits)
    # the first 100 tasks of the bundled trace arrive within ~1 s: at 0.9 they are spread out
    assert spans["own"] < spans["0.9"]


def test_more_than_one_load_points_to_sweep(tmp_path, capsys):
    assert main(["simulate", "--load", "0.5,0.9", "--out", str(tmp_path)]) == 2
    assert "one load per run" in capsys.readouterr().err


def test_out_that_is_a_file_is_one_line_before_any_simulation(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    for out in (taken, taken / "below"):
        assert main(["simulate", "--limit", "10", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dodoor simulate: error: --out: "), err
        assert "simulating" not in "".join(err)


def test_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    # /proc/1 is a directory nobody can create files in, root included
    assert main(["simulate", "--limit", "10", "--out", "/proc/1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("dodoor simulate: error: --out: cannot write "
                                                 "into /proc/1")


def test_a_list_of_full_specs_is_split_between_specs(tmp_path):
    out = tmp_path / "o"
    assert main(["simulate", "--limit", "50", "--no-plots", "--out", str(out),
                 "--policy", "dodoor-wait:d=16,alpha=0.3,dodoor,random"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["policy"] for s in summary] == ["dodoor-wait:d=16,alpha=0.3", "dodoor", "random"]
