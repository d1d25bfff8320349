"""The packing fallback in the simulator: counted, repeatable, and placing what sampling could not."""

import random

from dodoor.packing import PackingSettings
from dodoor.priority import apply_priority_mix
from dodoor.resources import NodeSpec, Task
from dodoor.sim.settings import SimSettings
from dodoor.sim.simulation import simulate


def inputs():
    rng = random.Random(3)
    nodes = [NodeSpec(f"n{i}", rng.choice([4, 8, 16]), 65536, 0, rng.choice([1, 2]))
             for i in range(12)]
    tasks = [Task(f"t{i}", rng.choice([1, 2, 4, 8]), 1024, 0, rng.uniform(200, 2000), i * 60.0)
             for i in range(300)]
    return nodes, apply_priority_mix(tasks, {2: 0.2, 1: 0.8}, 3)


def test_fallback_outcomes_add_up_and_runs_repeat():
    nodes, tasks = inputs()
    settings = SimSettings(seed=3, fallback=PackingSettings(max_nodes=6))
    first = simulate(tasks, nodes, "dodoor", settings).summary()
    again = simulate(tasks, nodes, "dodoor", settings).summary()
    fb = first["fallback"]
    assert fb["calls"] > 0 and fb["placed"] > 0
    assert fb["calls"] == fb["placed"] + fb["none_proven"] + fb["none_unproven"]
    assert {k: v for k, v in fb.items() if not k.startswith("solve_s")} == \
        {k: v for k, v in again["fallback"].items() if not k.startswith("solve_s")}
    assert first["makespan_ms"] == again["makespan_ms"]
    assert first["by_priority"]["high"]["tasks"] + first["by_priority"]["normal"]["tasks"] == 300
    plain = simulate(tasks, nodes, "dodoor", SimSettings(seed=3)).summary()
    assert "fallback" not in plain
