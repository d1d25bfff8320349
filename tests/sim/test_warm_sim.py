"""The simulator's warm containers: exact logs of who pays the warm start overhead."""

import math

import pytest

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate
from dodoor.sim.warm import WarmContainers, warm_key

A, B = 0, 1
AB = [NodeSpec("A", 8, 4096, 0, 1), NodeSpec("B", 2, 4096, 0, 1)]


def log_of(result):
    r = result.records
    return [(r.placed[i], r.start[i], r.end[i], r.node[i]) for i in range(len(r))]


def test_a_function_task_finding_an_idle_container_of_its_image_pays_the_warm_figure():
    # The tasks of tests/sim/test_scenarios.py, t0-t2 as functions: t1 starts on A as
    # t0 ends there and takes its container (5 ms); t2 is B's first (cold, 25 ms); t3 is
    # no function (cold). Placements are those of the cold run: starts are not scored.
    tasks = [Task("t0", 4, 512, 0, 1000, 0, function="matmul"),
             Task("t1", 4, 512, 0, 200, 10, function="linsolve"),
             Task("t2", 1, 256, 0, 300, 20, function="matmul"),
             Task("t3", 1, 256, 0, 50, 30)]
    settings = SimSettings(seed=1, start_overhead_ms=25.0, warm_start_overhead_ms=5.0)
    assert log_of(simulate(tasks, AB, "dodoor", settings)) == [
        (0.5, 0.5, 1025.5, A),
        (10.5, 1025.5, 1230.5, A),
        (20.5, 20.5, 345.5, B),
        (30.5, 345.5, 420.5, B),
    ]
    cold = simulate(tasks, AB, "dodoor", SimSettings(seed=1, start_overhead_ms=25.0))
    assert log_of(cold)[1] == (10.5, 1025.5, 1250.5, A)


@pytest.mark.parametrize("idle_ms, per_image, second_end", [
    (400.0, 2, 500.5 + 100 + 5),   # idle 375 ms < 400: warm
    (375.0, 2, 500.5 + 100 + 25),  # idle exactly the timeout: reaped, cold
    (400.0, 0, 500.5 + 100 + 25),  # no pool
])
def test_an_idle_container_lasts_idle_ms_and_the_pool_is_bounded(idle_ms, per_image, second_end):
    one = [NodeSpec("A", 4, 4096, 0, 1)]
    tasks = [Task("f0", 1, 64, 0, 100, 0, function="matmul"),
             Task("f1", 1, 64, 0, 100, 500, function="matmul")]
    settings = SimSettings(start_overhead_ms=25.0, warm_start_overhead_ms=5.0,
                           warm_idle_ms=idle_ms, warm_per_image=per_image)
    assert log_of(simulate(tasks, one, "dodoor", settings)) == [
        (0.5, 0.5, 125.5, A), (500.5, 500.5, second_end, A)]


def test_labels_opt_in_and_out_and_images_do_not_share_containers():
    assert warm_key(Task("a", 1, 1, function="matmul")) == warm_key(
        Task("b", 1, 1, function="floatops"))
    assert warm_key(Task("c", 1, 1, function="matmul", labels={"warm": "false"})) is None
    assert warm_key(Task("d", 1, 1, image="x", labels={"warm": "true"})) == "x"
    assert warm_key(Task("e", 1, 1, image="x")) is None
    pool = WarmContainers(["x", "y", "x"], per_image=1, idle_ms=10.0, warm_ms=1.0)
    assert pool.overhead(0, 0.0, 9.0) == 9.0
    pool.release(0, 2.0)
    assert pool.overhead(1, 3.0, 9.0) == 9.0  # image y has none
    assert pool.overhead(2, 3.0, 9.0) == 1.0 and pool.warm_starts == 1


@pytest.mark.parametrize("field, bad", [("warm_start_overhead_ms", -1.0),
                                        ("warm_start_overhead_ms", math.nan),
                                        ("warm_idle_ms", 0.0), ("warm_per_image", -1)])
def test_warm_settings_are_checked(field, bad):
    with pytest.raises(ValidationError, match=field):
        SimSettings(**{field: bad})
