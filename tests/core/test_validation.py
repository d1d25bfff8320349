"""Task validation: every bad field is rejected with its name and the reason."""

import math

import numpy as np
import pytest

from dodoor.errors import NoFitError, ValidationError
from dodoor.resources import check_fits_somewhere
from dodoor.validation import parse_task

OK = {"id": "t1", "cores": 1.5, "memory_mb": 256, "disk_mb": 0, "duration_ms": 1000}


def test_a_full_task_parses():
    task = parse_task({**OK, "image": "dodoor-task:busybox", "command": ["sleep", "1"],
                       "env": {"A": "1"}, "labels": {"team": "x"}})
    assert (task.task_id, task.cores, task.memory_mb, task.command) == ("t1", 1.5, 256.0, ("sleep", "1"))
    assert task.env == {"A": "1"} and task.labels == {"team": "x"}


def test_missing_id_is_generated_when_a_factory_is_given():
    body = {k: v for k, v in OK.items() if k != "id"}
    assert parse_task(body, make_id=lambda: "gen-1").task_id == "gen-1"
    with pytest.raises(ValidationError, match="id: is required"):
        parse_task(body)


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"cores": math.nan}, "cores", "must be finite"),
        ({"cores": math.inf}, "cores", "must be finite"),
        ({"cores": -1}, "cores", "must be > 0"),
        ({"cores": 0}, "cores", "must be > 0"),
        ({"cores": "2"}, "cores", "must be a number, got str"),
        ({"cores": True}, "cores", "must be a number, got bool"),
        ({"memory_mb": 0}, "memory_mb", "must be >= 1"),
        ({"memory_mb": 1.5}, "memory_mb", "whole number"),
        ({"disk_mb": -5}, "disk_mb", "must be >= 0"),
        ({"duration_ms": 0}, "duration_ms", "must be > 0"),
        ({"duration_ms": -math.inf}, "duration_ms", "must be finite"),
        ({"id": ""}, "id", "must not be empty"),
        ({"id": 7}, "id", "must be a string"),
        ({"id": "x" * 300}, "id", "longer than 256"),
        ({"command": "sleep 1"}, "command", "must be a list of strings"),
        ({"command": []}, "command", "must not be empty"),
        ({"command": ["ok", 3]}, "command[1]", "must be a string"),
        ({"env": {"A": 1}}, "env.A", "must be a string"),
        ({"labels": ["x"]}, "labels", "must be an object"),
        ({"nice": 3}, "nice", "unknown field"),
        ({"priority": 4}, "priority", "must be in 0..3, got 4"),
        ({"priority": -1}, "priority", "must be in 0..3, got -1"),
        ({"priority": 1.5}, "priority", "must be a whole number, got 1.5"),
        ({"priority": "high"}, "priority", "must be a number, got str"),
        ({"priority": True}, "priority", "must be a number, got bool"),
    ],
)
def test_bad_fields_are_named(change, field, reason):
    with pytest.raises(ValidationError) as info:
        parse_task({**OK, **change}, where="tasks[2].")
    assert info.value.field == f"tasks[2].{field}"
    assert reason in info.value.reason


def test_non_object_is_rejected():
    with pytest.raises(ValidationError, match="must be an object, got list"):
        parse_task([1, 2])


def test_unicode_ids_are_kept():
    assert parse_task({**OK, "id": "tâche-✓"}).task_id == "tâche-✓"


CAP = np.array([[8.0, 65536.0, 1000.0], [28.0, 131072.0, 500.0]])


@pytest.mark.parametrize(
    "demand, field, reason",
    [
        ([32.0, 1.0, 0.0], "cores", "requested 32 but the largest node has 28"),
        ([1.0, 200000.0, 0.0], "memory_mb", "largest node has 131072"),
        ([1.0, 1.0, 2000.0], "disk_mb", "largest node has 1000"),
        ([16.0, 1.0, 800.0], "cores", "no single node"),
    ],
)
def test_no_fit_names_the_resource_and_the_largest_capacity(demand, field, reason):
    with pytest.raises(NoFitError) as info:
        check_fits_somewhere(np.array(demand), CAP)
    assert info.value.field == field
    assert reason in info.value.reason


def test_fitting_demand_passes_and_empty_cluster_fails():
    check_fits_somewhere(np.array([8.0, 65536.0, 1000.0]), CAP)
    with pytest.raises(NoFitError, match="no live nodes"):
        check_fits_somewhere(np.array([1.0, 1.0, 0.0]), np.zeros((0, 3)))


def test_priority_defaults_and_round_trips_through_the_wire():
    from dodoor.priority import DEFAULT_PRIORITY
    from dodoor.wire import Enqueue, decode, encode

    assert parse_task(OK).priority == DEFAULT_PRIORITY
    assert parse_task({**OK, "priority": None}).priority == DEFAULT_PRIORITY
    assert "priority" not in parse_task(OK).to_dict()  # absent on the wire = the default
    task = parse_task({**OK, "priority": 3})
    assert task.to_dict()["priority"] == 3
    assert parse_task({**OK, "priority": 2.0}).priority == 2
    message = decode(encode(Enqueue(task=task, scheduler_id="s1")))
    assert message.task.priority == 3
