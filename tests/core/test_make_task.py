"""make_task builds the same Task as the dataclass constructor."""

import copy
import dataclasses
import pickle

import pytest

from dodoor.resources import Task, make_task
from dodoor.validation import parse_task


def _pair(**fields):
    slow = Task(**fields)
    fast = make_task(fields["task_id"], fields["cores"], fields["memory_mb"], fields["disk_mb"],
                     fields["duration_ms"], fields["image"], fields["command"],
                     fields["function"], fields["env"], fields["labels"],
                     fields.get("arrival_ms", 0.0))
    return slow, fast


@pytest.mark.parametrize("fields", [
    dict(task_id="a", cores=0.5, memory_mb=1.0, disk_mb=0.0, duration_ms=1000.0, image=None,
         command=None, function=None, env={}, labels={}),
    dict(task_id="b", cores=2.0, memory_mb=512.0, disk_mb=3.0, duration_ms=7.5, image="img",
         command=("sleep", "1"), function="f", env={"A": "1"}, labels={"x": "y"},
         arrival_ms=12.0),
])
def test_make_task_equals_constructor(fields):
    slow, fast = _pair(**fields)
    assert type(fast) is Task
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert copy.copy(fast) == slow
    assert fast.with_arrival(3.0) == slow.with_arrival(3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.cores = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):  # the dict fields make every Task unhashable alike
        hash(slow)
    with pytest.raises(TypeError):
        hash(fast)


def test_parse_task_builds_the_constructors_task():
    got = parse_task({"id": "t", "cores": 0.25, "memory_mb": 64, "disk_mb": 2,
                      "duration_ms": 5, "image": "i", "command": ["a", "b"],
                      "env": {"K": "V"}, "labels": {"l": "m"}})
    assert got == Task("t", 0.25, 64.0, 2.0, 5.0, image="i", command=("a", "b"),
                       env={"K": "V"}, labels={"l": "m"})
    assert parse_task({"id": "u", "cores": 1.0, "memory_mb": 1}) == Task("u", 1.0, 1.0)
