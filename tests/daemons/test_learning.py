"""scheduler.learning: what a scheduler learns from the statuses it resolves."""

from __future__ import annotations

import pytest

from dodoor.resources import Task
from dodoor.wire import TaskStatus
from scheduler.learning import LearnedDurations


def _task(i: int, duration_ms: float = 1000.0, function: str = "f") -> Task:
    return Task(f"t{i}", 1.0, 100.0, 0.0, duration_ms, function=function)


def _ended(i: int, ran_ms: float, state: str = "succeeded") -> TaskStatus:
    return TaskStatus(f"t{i}", state, "n", queued_ms=0.0, started_ms=50.0,
                      finished_ms=50.0 + ran_ms, exit_code=0)


def test_exact_declarations_change_nothing():
    learned = LearnedDurations(100)
    for i in range(20):
        task = _task(i)
        assert learned.scored(task) is task
        learned.saw(_ended(i, 1000.0))
    assert learned.learned == 20
    task = _task(99)
    assert learned.scored(task) is task


def test_a_kind_declared_ten_times_too_long_is_scored_near_its_truth():
    learned = LearnedDurations(100)
    for i in range(8):
        assert learned.scored(_task(i)).duration_ms == 1000.0  # warm-up: the declaration
        learned.saw(_ended(i, 100.0))
    assert learned.scored(_task(50)).duration_ms == pytest.approx(100.0)
    # another kind is untouched
    assert learned.scored(_task(51, function="g")).duration_ms == 1000.0
    summary = learned.summary()
    assert summary["learned"] == 8 and summary["kinds"]["function/f"]["observed"] == 8
    assert summary["kinds"]["function/f"]["factor"] == pytest.approx(0.1)


@pytest.mark.parametrize("status", [
    _ended(0, 100.0, "failed"), _ended(0, 100.0, "cancelled"), _ended(0, 100.0, "lost"),
    TaskStatus("t0", "running", "n", started_ms=5.0), _ended(0, 0.0), _ended(0, float("nan")),
    _ended(7, 100.0),  # not placed here
])
def test_ends_that_say_nothing_of_the_duration_teach_nothing(status):
    learned = LearnedDurations(100)
    learned.scored(_task(0))
    learned.saw(status)
    assert learned.learned == 0 and learned.learner.observed(("function", "f")) == 0


def test_each_end_is_learned_once_and_forgotten_tasks_not_at_all():
    learned = LearnedDurations(2)
    for i in range(3):
        learned.scored(_task(i))
    learned.saw(_ended(0, 100.0))  # dropped: the limit keeps the last two
    learned.saw(_ended(1, 100.0))
    learned.saw(_ended(1, 100.0))  # a client asking again
    assert learned.learned == 1
    assert learned.summary()["awaiting"] == 1
