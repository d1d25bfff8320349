"""``--priority-mix`` on replay, evaluate, submit and simulate: one parser, seeded draws."""

from __future__ import annotations

from collections import Counter

import pytest

from dodoor.priority import apply_priority_mix
from dodoor.tools.cli import build_parser, main
from dodoor.tools.cluster_command import _tasks_from_args
from dodoor.tools.replay_command import load_workload

URL = "http://127.0.0.1:9"  # never contacted: only the tasks are built


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("command", ["replay", "evaluate"])
def test_replay_and_evaluate_draw_classes_with_the_mix_seed(command):
    where = ["--url", URL] if command == "replay" else []
    plain = load_workload(_args(command, *where, "--limit", "400"))
    mixed = load_workload(_args(command, *where, "--limit", "400",
                                "--priority-mix", "high=0.2,normal=0.8", "--mix-seed", "5"))
    assert {t.priority for t in plain} == {1}
    # the draw is the core's, with the mix seed: same tasks, same classes
    assert mixed == apply_priority_mix(plain, {2: 0.2, 1: 0.8}, 5)
    counts = Counter(t.priority for t in mixed)
    assert set(counts) == {1, 2} and 40 <= counts[2] <= 120


def test_submit_single_task_class_and_mix_over_copies():
    one = _tasks_from_args(_args("submit", "--url", URL, "--priority", "critical"))
    assert [t.priority for t in one] == [3]
    copies = _tasks_from_args(_args("submit", "--url", URL, "--count", "200",
                                    "--priority-mix", "low=0.5,2=0.5", "--seed", "3"))
    again = _tasks_from_args(_args("submit", "--url", URL, "--count", "200",
                                   "--priority-mix", "low=0.5,2=0.5", "--seed", "3"))
    assert [t.priority for t in copies] == [t.priority for t in again]  # seeded
    assert set(Counter(t.priority for t in copies)) == {0, 2}
    assert all(t.to_dict().get("priority", 1) == t.priority for t in copies)  # sent on the wire


def test_submit_rejects_both_a_class_and_a_mix():
    with pytest.raises(Exception, match="--priority"):
        _tasks_from_args(_args("submit", "--url", URL, "--priority", "high",
                               "--priority-mix", "high=1"))


@pytest.mark.parametrize("command", [["simulate"], ["replay", "--url", URL], ["evaluate"],
                                     ["submit", "--url", URL]])
def test_a_bad_mix_is_one_usage_line_naming_the_value(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--priority-mix", "urgent=1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'urgent'" in err[0] and "--priority-mix" in err[0]
