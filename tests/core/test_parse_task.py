"""parse_task builds the Task the dataclass constructor builds."""

from dodoor.resources import Task
from dodoor.validation import parse_task


def test_parse_task_builds_the_constructors_task():
    got = parse_task({"id": "t", "cores": 0.25, "memory_mb": 64, "disk_mb": 2,
                      "duration_ms": 5, "image": "i", "command": ["a", "b"],
                      "env": {"K": "V"}, "labels": {"l": "m"}})
    assert got == Task("t", 0.25, 64.0, 2.0, 5.0, image="i", command=("a", "b"),
                       env={"K": "V"}, labels={"l": "m"})
    assert parse_task({"id": "u", "cores": 1.0, "memory_mb": 1}) == Task("u", 1.0, 1.0)
