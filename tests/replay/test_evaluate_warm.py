"""``dodoor evaluate --warm`` and ``--compose``'s compose file, without a cluster."""

from __future__ import annotations

from pathlib import Path

import dodoor.tools.evaluate as evaluate_module
from dodoor.tools.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_compose_runs_use_the_repositorys_compose_file():
    assert evaluate_module.COMPOSE_FILE == REPO / "compose" / "docker-compose.yml"
    assert evaluate_module.COMPOSE_FILE.is_file()


def _tasks_evaluated(monkeypatch, tmp_path, *extra: str) -> list:
    seen: list = []

    def fake_evaluate(tasks, settings):
        seen.extend(tasks)
        report = tmp_path / "report.md"
        report.write_text("report\n")
        return report

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    assert main(["evaluate", "--limit", "20", "--function-mix", "--out", str(tmp_path),
                 *extra]) == 0
    return seen


def test_warm_opts_every_task_into_the_warm_pool_and_keeps_its_other_labels(monkeypatch,
                                                                            tmp_path):
    cold = _tasks_evaluated(monkeypatch, tmp_path / "cold")
    warm = _tasks_evaluated(monkeypatch, tmp_path / "warm", "--warm")
    assert len(cold) == len(warm) == 20
    assert all("warm" not in t.labels for t in cold)
    for c, w in zip(cold, warm):
        assert dict(w.labels) == {**c.labels, "warm": "true"}
        assert (w.task_id, w.function, w.duration_ms) == (c.task_id, c.function, c.duration_ms)
